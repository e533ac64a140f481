"""``headrace demo``: bring the local stack up and run the smoke pipeline, checked end to end."""

from __future__ import annotations

import argparse
import sys
import time

from headrace.cli.common import print_table, stack_paths

__all__ = ["COMMANDS", "register"]

COMMANDS = ("demo",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="start the local stack and run the demo pipeline end to end, verified",
        description=(
            "Bring the local stack up (installing it the first time), seed MariaDB and S3, "
            "send orders through Kafka and a Faust worker that counts them per customer, "
            "write the counts to MongoDB (FerretDB) and DynamoDB (moto), and compare both "
            "with the same counts computed by SQL. Exit 0 only if everything matches."
        ),
    )
    p.add_argument("--orders", type=int, default=5000, help="orders to generate (default 5000)")
    p.add_argument("--customers", type=int, default=200, help="customers (default 200)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from headrace.demo.smoke import run_smoke
    from headrace.stack import Stack, read_env_file

    stack = Stack(stack_paths(), log=lambda msg: print(f"stack: {msg}", file=sys.stderr))
    stack.up()
    env = read_env_file(stack.paths.env_file)
    print(f"demo: {args.orders} orders for {args.customers} customers (seed {args.seed})")
    started = time.monotonic()
    report = run_smoke(env, orders=args.orders, customers=args.customers, seed=args.seed)
    elapsed = time.monotonic() - started
    print_table(
        ["step", "records"],
        [
            ["MariaDB orders -> Kafka", report.produced],
            ["Faust worker: orders counted per customer", report.counted],
            ["MongoDB (FerretDB) documents", report.mongo_docs],
            ["DynamoDB (moto) items", report.dynamo_items],
        ],
    )
    print("\nsample (customer_id -> orders):")
    for row in report.sample:
        print(f"  {row['customer_id']}: {row['orders']}")
    print(
        f"\nOK: Kafka, MongoDB and DynamoDB all equal the SQL counts for all "
        f"{report.mongo_docs} customers ({elapsed:.1f}s). "
        f"Prometheus: {env.get('HEADRACE_PROMETHEUS_URL')}"
    )
    return 0
