"""Commands whose implementation lands with later work: each fails clearly, exit code 1."""

from __future__ import annotations

import argparse
import sys

from headrace.cli.common import add_file_option

__all__ = ["register"]

#: command -> (one-line help, what will implement it)
PENDING: dict[str, tuple[str, str]] = {
    "produce": ("run one source (S3 or MySQL) into Kafka as a long-lived process", "producers"),
    "worker": ("run the Faust worker that executes the pipeline's stages", "stream stages"),
    "sink": ("run one sink (MongoDB or DynamoDB) as a long-lived process", "sink connectors"),
    "run": ("run every source, the worker and every sink, supervised", "end-to-end run"),
    "publish": ("publish ad-hoc records (JSONL or CSV) to a topic", "producers"),
    "dlq": ("list, show and replay dead-letter records", "end-to-end run"),
    "bench": ("measure each stage against its raw-client baseline", "observability and benchmarks"),
}


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], skip: set[str] | None = None
) -> None:
    """Register every pending command not in ``skip`` (those another module provides)."""
    for name, (help_text, _) in PENDING.items():
        if name in (skip or set()):
            continue
        p = sub.add_parser(name, help=f"{help_text} (not yet)", description=help_text)
        add_file_option(p)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_not_yet, command_name=name)


def _not_yet(args: argparse.Namespace) -> int:
    name = args.command_name
    work = PENDING[name][1]
    print(
        f"headrace {name}: not available yet in this version (it arrives with the {work} work); "
        "see `headrace --help` for the commands that work today",
        file=sys.stderr,
    )
    return 1
