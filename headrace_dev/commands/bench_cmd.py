"""``headrace bench``: each stage against its raw-client baseline, measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from headrace.errors import HeadraceError
from headrace_cli.common import print_table
from headrace_dev.bench.common import BenchFigure, reset_peak_rss
from headrace_dev.bench.record import PAGE, RECORDS_DIR, SuiteRun, machine, record_run
from headrace_dev.stack import StackPaths

__all__ = ["COMMANDS", "register"]

COMMANDS = ("bench",)

#: figure group -> (module with ``run(env, quick) -> list[BenchFigure]``, what it compares)
SUITES: dict[str, tuple[str, str]] = {
    "produce": (
        "headrace_dev.bench.produce",
        "S3 and MySQL sources vs plain confluent-kafka / SQLAlchemy",
    ),
    "stream": ("headrace_dev.bench.stream", "our stages vs a naive Faust agent on the same topic"),
    "sink": ("headrace_dev.bench.sink", "MongoDB and DynamoDB sinks vs the raw clients"),
    "e2e": (
        "headrace_dev.bench.e2e",
        "p50/p99 latency, MariaDB -> source -> stage -> --sink, steady --rate",
    ),
    "cdc": (
        "headrace_dev.bench.cdc",
        "MySQL CDC source (snapshot, binlog, lag) vs PyMySQL / mysql-replication reads",
    ),
    "gateway": (
        "headrace_dev.bench.gateway",
        "HTTP gateway (wrk; auth, schema, limits on) vs the raw confluent-kafka producer",
    ),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lines = "\n".join(f"  {k:8} {v[1]}" for k, v in SUITES.items())
    p = sub.add_parser(
        "bench",
        help="measure each stage against its raw-client baseline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run benchmarks on the local stack (started if needed). Every figure is measured "
            "together with its raw baseline in the same run, on the same data, and reported "
            "as records/s and a ratio (ours / baseline), with the peak memory of the process "
            "that did the work; latency figures add p50_ms and p99_ms. Results are written "
            "to bench/results/ as JSON and Markdown (also as latest-quick|full.json|md); "
            "that folder is this machine's scratch and is not committed.",
            width=90,
        )
        + f"\n\nsuites:\n{lines}\n\n"
        + textwrap.fill(
            f"--record keeps the run: it appends one JSON line per figure to "
            f"{RECORDS_DIR}/<date>.jsonl (<date>: today in UTC, as 2026-12-31) with the date "
            "and time, the git commit (and whether tracked files differed from it), the "
            "suite, quick or full, the machine's CPU count and architecture and its 1-minute "
            f"load average as each suite ended; then it rewrites {PAGE} from every file in "
            f"{RECORDS_DIR}/. "
            "Commit both. Only suites that finished are recorded. Paths are relative to the "
            "current directory (run it from the checkout).",
            width=90,
            break_on_hyphens=False,
        ),
    )
    p.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=[*SUITES, "all"],
        help="which benchmarks (default all)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: about a minute per suite")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per figure instead of a table"
    )
    p.add_argument(
        "--rate",
        type=int,
        default=5000,
        help="e2e: records/s offered steadily at the source (default 5000, the target)",
    )
    p.add_argument(
        "--sink",
        choices=["mongodb", "dynamodb"],
        default="mongodb",
        help="e2e: the sink at the end of the pipeline: mongodb (the stack's FerretDB, default: "
        "it sustains the higher rate here) or dynamodb (moto)",
    )
    p.add_argument(
        "--peer",
        choices=["quix"],
        default=None,
        help="stream: also run Quix Streams on the same topic (built in its own venv under "
        "the cache dir on first use; it needs PyPI once)",
    )
    p.add_argument("--out", default="bench/results", help="results folder (default bench/results)")
    p.add_argument(
        "--no-save", action="store_true", help="print only; write nothing to the results folder"
    )
    p.add_argument(
        "--record",
        action="store_true",
        help=f"append this run's figures to {RECORDS_DIR}/<date>.jsonl and regenerate "
        f"{PAGE} from all recorded runs (see above)",
    )
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from headrace_dev.stack import Stack, read_env_file

    stack = Stack(StackPaths.from_env(), log=lambda msg: print(f"stack: {msg}", file=sys.stderr))
    stack.up()
    env = read_env_file(stack.paths.env_file)
    chosen = list(SUITES) if args.suite == "all" else [args.suite]
    figures: list[BenchFigure] = []
    finished: list[SuiteRun] = []
    failed: list[str] = []
    for suite in chosen:
        # Several suites: each in its own process, so a figure's peak memory is its own and
        # not what earlier suites left in this process's heap; a failing suite does not
        # lose the others' figures.
        ok = True
        if len(chosen) > 1:
            suite_figures, ok = _suite_in_child(suite, args)
            if not ok:
                failed.append(suite)
        else:
            print(f"bench: running {suite}{' (quick)' if args.quick else ''}", file=sys.stderr)
            suite_figures = _suite_here(suite, env, args)
        if ok:
            finished.append(SuiteRun(suite, suite_figures, machine()))
        for fig in suite_figures:
            figures.append(fig)
            if args.json:
                print(fig.json_line(), flush=True)
    if not args.json:
        _table(figures)
    if not args.no_save:
        _write(Path(args.out), figures, args.quick)
    if args.record:
        if any(run.figures for run in finished):
            path = record_run(finished, quick=args.quick)
            print(f"bench: recorded in {path}; {PAGE} rewritten", file=sys.stderr)
        else:
            print("bench: nothing to record (no suite finished)", file=sys.stderr)
    if failed:
        print(f"bench: failed: {', '.join(failed)} (see their output above)", file=sys.stderr)
        return 1
    return 0


def _suite_here(suite: str, env: dict[str, str], args: argparse.Namespace) -> list[BenchFigure]:
    module_name, _ = SUITES[suite]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise HeadraceError(f"bench {suite}: not available yet in this version") from None
    reset_peak_rss()
    options: dict[str, Any] = {}
    if suite == "e2e":
        options = {"rate": args.rate, "sink": args.sink}
    elif suite == "stream":
        options = {"peer": args.peer}
    figures: list[BenchFigure] = module.run(env, args.quick, **options)
    return figures


def _suite_in_child(suite: str, args: argparse.Namespace) -> tuple[list[BenchFigure], bool]:
    """Run one suite as ``headrace bench SUITE --json --no-save``; (its figures, exit 0?)."""
    argv = [sys.executable, "-m", "headrace_cli.main", "bench", suite, "--json", "--no-save"]
    argv += ["--rate", str(args.rate), "--sink", args.sink] + (["--quick"] if args.quick else [])
    argv += ["--peer", args.peer] if args.peer else []
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    figures = [
        BenchFigure.from_dict(json.loads(line))
        for line in done.stdout.splitlines()
        if line.startswith("{")
    ]
    return figures, done.returncode == 0


_HEADERS = ["figure", "records", "ours/s", "baseline", "baseline/s", "ratio", "peak MiB"]
_LATENCY = ["p50 ms", "p99 ms"]


def _row(f: BenchFigure, latency: bool) -> list[str]:
    row = [
        f.name,
        f"{f.records:,}",
        f"{f.ours_per_s:,.0f}",
        f.baseline,
        f"{f.baseline_per_s:,.0f}",
        f"{f.ratio:.2f}",
        f"{f.peak_rss_mb:.0f}",
    ]
    if latency:
        row += ["-" if v is None else f"{v:,.0f}" for v in (f.p50_ms, f.p99_ms)]
    return row


def _has_latency(figures: list[BenchFigure]) -> bool:
    return any(f.p99_ms is not None for f in figures)


def _table(figures: list[BenchFigure]) -> None:
    latency = _has_latency(figures)
    print_table(_HEADERS + (_LATENCY if latency else []), [_row(f, latency) for f in figures])


def markdown(figures: list[BenchFigure], title: str) -> str:
    """The Markdown report: one table row per figure, then each figure's note."""
    latency = _has_latency(figures)
    headers = _HEADERS + (_LATENCY if latency else [])
    align = ["---", "---:", "---:", "---", "---:", "---:", "---:"] + (
        ["---:", "---:"] if latency else []
    )
    lines = [f"# {title}", "", "| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_row(f, latency)) + " |" for f in figures]
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def _write(folder: Path, figures: list[BenchFigure], quick: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "quick" if quick else "full"
    data = [f.as_dict() for f in figures]
    for name in (f"{stamp}-{kind}.json", f"latest-{kind}.json"):
        (folder / name).write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(figures, f"headrace bench ({kind}, {stamp})")
    (folder / f"{stamp}-{kind}.md").write_text(text)
    (folder / f"latest-{kind}.md").write_text(text)
    print(f"bench: results in {folder}/{stamp}-{kind}.json and .md", file=sys.stderr)
