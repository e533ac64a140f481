"""What every command shares: the pipeline file option and output helpers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_file_option", "pipeline_path", "print_table"]

DEFAULT_PIPELINE = "pipeline.yaml"


def add_file_option(parser: argparse.ArgumentParser) -> None:
    """Add ``-f/--file`` (the pipeline file) to a command's parser."""
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        default=None,
        help=f"pipeline file (default: $HEADRACE_PIPELINE or ./{DEFAULT_PIPELINE})",
    )


def pipeline_path(args: argparse.Namespace) -> Path:
    """The pipeline file: ``-f`` on the command, else on ``headrace``, else env, else default."""
    chosen = getattr(args, "file", None) or getattr(args, "global_file", None)
    return Path(chosen or os.environ.get("HEADRACE_PIPELINE") or DEFAULT_PIPELINE)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as an aligned plain-text table on stdout."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
        if n == 0:
            sys.stdout.write("  ".join("-" * w for w in widths) + "\n")
