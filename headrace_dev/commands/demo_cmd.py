"""``headrace demo``: the shop pipeline end to end on the local stack, optionally verified."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from headrace_cli.common import print_table
from headrace_dev.stack import StackPaths

__all__ = ["COMMANDS", "register"]

COMMANDS = ("demo",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="start the local stack and run the shop demo pipeline end to end",
        description=(
            "Bring the local stack up (installing it the first time), seed a shop dataset "
            "(MariaDB shop.orders with inserts and later updates; S3 customers/ as JSONL and "
            "CSV objects, a few lines malformed on purpose), post order reviews over HTTP "
            "through the pipeline's gateway (JWT, JSON Schema; a few invalid on purpose), "
            "run examples/shop/pipeline.yaml "
            "with `headrace run --until-idle` (orders enriched with the customer's tier, "
            "revenue per customer per 5-minute window, the top 10 customers per window by "
            "dense_rank, rate-limited DynamoDB writes), then print what each stage did, the "
            "dead letters with a sample reason, some results and where the metrics are. "
            "Every run starts from scratch: it deletes the previous demo's topics, "
            "checkpoints, MongoDB database `shop` and DynamoDB table `shop-orders`."
        ),
        epilog=(
            "--verify recomputes the expected results from the sources (SQL in MariaDB for "
            "aggregates and ranks, Python for the enrichment) and compares them key by key "
            "with MongoDB and DynamoDB: exit 0 and OK with counts, or exit 1 with the first "
            "differences."
        ),
    )
    p.add_argument("--orders", type=int, default=20_000, help="orders (default 20000)")
    p.add_argument("--customers", type=int, default=300, help="customers (default 300)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the dataset (default 7)")
    p.add_argument(
        "--verify", action="store_true", help="check the results against the oracle (see below)"
    )
    p.add_argument(
        "--verify-only",
        action="store_true",
        help="do not run anything: verify what the last demo run left in the sinks",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="give up if the pipeline is not idle after this many seconds (default 1200)",
    )
    p.add_argument(
        "--cdc",
        action="store_true",
        help="the change-data-capture variant: examples/shop/pipeline_cdc.yaml reads "
        "shop.orders from MariaDB's binlog (a snapshot, then deletes, updates and inserts) "
        "into MongoDB shop.orders_cdc; --verify compares it with SELECT * of the table",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="instead, run the one-pass smoke check of every stack component (no pipeline)",
    )
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from headrace_dev.stack import Stack, read_env_file

    if args.orders < 1 or args.customers < 1:
        print("demo: --orders and --customers must be at least 1", file=sys.stderr)
        return 2
    stack = Stack(StackPaths.from_env(), log=lambda msg: print(f"stack: {msg}", file=sys.stderr))
    stack.up()
    env = read_env_file(stack.paths.env_file)
    if args.smoke:
        return _smoke(env, args)
    if args.cdc:
        return _cdc(env, args)
    if not args.verify_only:
        code = _run(env, args)
        if code != 0:
            return code
        _print_report(env)
    if args.verify or args.verify_only:
        return _verify(env)
    return 0


def _cdc(env: dict[str, str], args: argparse.Namespace) -> int:
    """The CDC variant: seed, run to idle (the snapshot), change the table, run to idle
    again (the binlog), report, verify against SELECT * (headrace_dev.demo.shop_cdc)."""
    from headrace_dev.demo.shop import prepare
    from headrace_dev.demo.shop_cdc import CDC_FILE, CDC_TOPIC, change_orders, verify_cdc

    if not args.verify_only:
        prepare(env, orders=args.orders, customers=args.customers, seed=args.seed)
        code = _run_file(env, args, CDC_FILE, "the snapshot")
        if code != 0:
            return code
        deleted, updated, inserted = change_orders(env["HEADRACE_MYSQL_URL"], args.seed)
        print(
            f"demo: changed shop.orders: {deleted} deleted, {updated} updated (returned), "
            f"{inserted} inserted"
        )
        code = _run_file(env, args, CDC_FILE, "the binlog")
        if code != 0:
            return code
        from headrace_dev.demo.shop import topic_records

        print(f"\n{CDC_TOPIC}: {topic_records(env, CDC_TOPIC)} change records")
    if args.verify or args.verify_only:
        print("\nverify: SELECT * FROM shop.orders against MongoDB shop.orders_cdc ...")
        return _print_verdict(verify_cdc(env))
    return 0


def _run(env: dict[str, str], args: argparse.Namespace) -> int:
    from headrace_dev.demo.shop import PIPELINE_FILE, prepare

    prepare(env, orders=args.orders, customers=args.customers, seed=args.seed)
    return _run_file(env, args, PIPELINE_FILE, "the pipeline")


def _run_file(env: dict[str, str], args: argparse.Namespace, pipeline: Path, what: str) -> int:
    """``headrace run --until-idle`` on ``pipeline``; 0, or 1 with the end of its output."""
    from headrace_dev.demo.shop import start_run

    log = Path(tempfile.mkstemp(prefix="headrace-demo-", suffix=".log")[1])
    print(f"demo: headrace run --until-idle -f {pipeline} (its output: {log})")
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = start_run(env, out, pipeline=pipeline, idle_timeout=args.timeout)
        code = _wait(proc, log)
    print(f"demo: {what} ran to idle in {time.monotonic() - started:.0f}s")
    if code != 0:
        print(f"demo: `headrace run` exited with {code}; the end of its output:", file=sys.stderr)
        sys.stderr.write("".join(log.read_text(errors="replace").splitlines(True)[-30:]))
        return 1
    return 0


def _wait(proc: object, log: Path) -> int:
    """Wait for the run, echoing its supervisor lines ([run] ...) as they come."""
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    seen = 0
    while True:
        code = proc.poll()
        lines = log.read_text(errors="replace").splitlines()
        for line in lines[seen:]:
            if line.startswith("[run]"):
                print(f"  {line}")
        seen = len(lines)
        if code is not None:
            return int(code)
        time.sleep(1.0)


def _print_report(env: dict[str, str]) -> None:
    from headrace_dev.demo.shop import report

    rep = report(env)
    print("\nrecords per stage (Kafka topics):")
    print_table(["stage", "topic", "records"], [list(row) for row in rep.topics])
    print("\ndead letters (bad input is kept, never dropped; `headrace dlq list TOPIC`):")
    if rep.dead_letters:
        print_table(["topic", "letters", "sample reason"], [list(r) for r in rep.dead_letters])
    else:
        print("  none")
    print(
        f"\nMongoDB shop.revenue: {rep.mongo_docs.get('revenue', 0)} documents, "
        f"shop.top10: {rep.mongo_docs.get('top10', 0)} documents, "
        f"shop.reviews: {rep.mongo_docs.get('reviews', 0)} documents (posted to the gateway)"
    )
    if rep.top10:
        ws = rep.top10[0]["window_start"]
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(ws) / 1000))
        print(f"top 10 customers of the latest window ({stamp} UTC, dense_rank by revenue):")
        print_table(
            ["rank", "customer", "tier", "revenue", "orders"],
            [
                [d["rank"], d["customer_id"], d.get("tier"), d["revenue"], d.get("orders")]
                for d in rep.top10
            ],
        )
    print(f"\nDynamoDB shop-orders: {rep.dynamo_items} items, e.g.")
    for item in rep.orders_sample:
        shown = {k: item.get(k) for k in ("id", "customer_id", "status", "version", "total")}
        print(f"  {shown}")
    print(
        f"\nmetrics: every process registered with Prometheus at "
        f"{env.get('HEADRACE_PROMETHEUS_URL')} (try: sum by (stage) "
        '(headrace_records_total{pipeline="shop"})); a Grafana dashboard ships in '
        "headrace/observability/grafana/headrace.json"
    )
    _print_console(env)


def _print_console(env: dict[str, str]) -> None:
    """The headrace console's URL, when the stack's Prometheus serves it (one line)."""
    from headrace.observability import console_url

    url = console_url(env.get("HEADRACE_PROMETHEUS_URL") or "", timeout=2.0)
    if url:
        print(f"dashboard: {url}?pipeline=shop")


def _verify(env: dict[str, str]) -> int:
    from headrace_dev.demo.shop_verify import verify
    from headrace_dev.stack import aws_client

    print("\nverify: recomputing the expected results from MariaDB and S3 ...")
    return _print_verdict(verify(env, aws_client(env, "s3"), aws_client(env, "dynamodb")))


def _print_verdict(verdict: Any) -> int:
    for check in verdict.checks:
        mark = "OK  " if check.ok else "DIFF"
        print(f"  {mark} {check.name}: expected {check.expected}, found {check.got}")
        for line in check.differences:
            print(f"         {line}")
    if verdict.ok:
        print("OK: every sink and dead-letter topic equals the oracle")
        return 0
    print("verify: the results differ from the oracle (first differences above)")
    return 1


def _smoke(env: dict[str, str], args: argparse.Namespace) -> int:
    from headrace_dev.demo.smoke import run_smoke

    started = time.monotonic()
    rep = run_smoke(env, orders=args.orders, customers=args.customers, seed=args.seed)
    print_table(
        ["step", "records"],
        [
            ["MariaDB orders -> Kafka", rep.produced],
            ["Faust worker: orders counted per customer", rep.counted],
            ["MongoDB (FerretDB) documents", rep.mongo_docs],
            ["DynamoDB (moto) items", rep.dynamo_items],
        ],
    )
    print(
        f"\nOK: Kafka, MongoDB and DynamoDB all equal the SQL counts for all "
        f"{rep.mongo_docs} customers ({time.monotonic() - started:.1f}s)"
    )
    return 0
