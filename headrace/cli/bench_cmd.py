"""``headrace bench``: each stage against its raw-client baseline, measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
import time
from pathlib import Path

from headrace.bench import BenchFigure
from headrace.cli.common import print_table, stack_paths
from headrace.errors import HeadraceError

__all__ = ["COMMANDS", "register"]

COMMANDS = ("bench",)

#: figure group -> (module with ``run(env, quick) -> list[BenchFigure]``, what it compares)
SUITES: dict[str, tuple[str, str]] = {
    "produce": ("producers.bench", "S3 and MySQL sources vs plain confluent-kafka / SQLAlchemy"),
    "stream": ("streams.bench", "our stages vs a naive Faust agent on the same topic"),
    "sink": ("connectors.bench", "MongoDB and DynamoDB sinks vs the raw clients"),
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
            "as records/s and a ratio (ours / baseline), with peak memory. Results are "
            "written to bench/results/ as JSON and Markdown.",
            width=90,
        )
        + f"\n\nsuites:\n{lines}",
    )
    p.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=[*SUITES, "all"],
        help="which benchmarks (default all)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: under a minute per suite")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per figure instead of a table"
    )
    p.add_argument("--out", default="bench/results", help="results folder (default bench/results)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from headrace.stack import Stack, read_env_file

    stack = Stack(stack_paths(), log=lambda msg: print(f"stack: {msg}", file=sys.stderr))
    stack.up()
    env = read_env_file(stack.paths.env_file)
    chosen = list(SUITES) if args.suite == "all" else [args.suite]
    figures: list[BenchFigure] = []
    for suite in chosen:
        module_name, _ = SUITES[suite]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise HeadraceError(f"bench {suite}: not available yet in this version") from None
        print(f"bench: running {suite}{' (quick)' if args.quick else ''}", file=sys.stderr)
        for fig in module.run(env, args.quick):
            figures.append(fig)
            if args.json:
                print(fig.json_line(), flush=True)
    if not args.json:
        _table(figures)
    _write(Path(args.out), figures, args.quick)
    return 0


def _table(figures: list[BenchFigure]) -> None:
    print_table(
        ["figure", "records", "ours/s", "baseline", "baseline/s", "ratio", "peak MiB"],
        [
            [
                f.name,
                f.records,
                f"{f.ours_per_s:,.0f}",
                f.baseline,
                f"{f.baseline_per_s:,.0f}",
                f"{f.ratio:.2f}",
                f"{f.peak_rss_mb:.0f}",
            ]
            for f in figures
        ],
    )


def _write(folder: Path, figures: list[BenchFigure], quick: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "quick" if quick else "full"
    data = [f.as_dict() for f in figures]
    (folder / f"{stamp}-{kind}.json").write_text(json.dumps(data, indent=2) + "\n")
    rows = [
        "| figure | records | ours/s | baseline | baseline/s | ratio | peak MiB |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    rows += [
        f"| {f.name} | {f.records} | {f.ours_per_s:,.0f} | {f.baseline} | "
        f"{f.baseline_per_s:,.0f} | {f.ratio:.2f} | {f.peak_rss_mb:.0f} |"
        for f in figures
    ]
    text = f"# headrace bench ({kind}, {stamp})\n\n" + "\n".join(rows) + "\n"
    (folder / f"{stamp}-{kind}.md").write_text(text)
    (folder / f"latest-{kind}.md").write_text(text)
    print(f"bench: results in {folder}/{stamp}-{kind}.json and .md", file=sys.stderr)
