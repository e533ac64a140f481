"""Entry point of the ``headrace`` console script.

Exit codes: 0 success; 1 a runtime failure (a server down, a stack install that failed);
2 bad configuration or bad command-line usage, always before anything was written.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from headrace.errors import HeadraceError

__all__ = ["build_parser", "main"]

#: Modules that each define ``COMMANDS`` (the names they add) and ``register(subparsers)``.
#: The developer commands (``headrace_dev.commands``) are loaded by name: the CLI does not
#: depend on the developer tooling, which may be absent (a production install).
_COMMAND_MODULES = [
    "headrace_dev.commands.demo_cmd",
    "headrace_dev.commands.stack_cmd",
    "headrace_cli.config_cmd",
    "headrace_cli.test_cmd",
    "headrace_cli.produce_cmd",
    "headrace_cli.worker_cmd",
    "headrace_cli.sink_cmd",
    "headrace_cli.run_cmd",
    "headrace_cli.gateway_cmd",
    "headrace_cli.dlq_cmd",
    "headrace_dev.commands.bench_cmd",
    "headrace_dev.commands.chaos_cmd",
    "headrace_cli.status_cmd",
]


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, max_help_position=14, width=110)


def build_parser() -> argparse.ArgumentParser:
    """The full command tree; ``headrace --help`` lists every command with one line each."""
    parser = argparse.ArgumentParser(
        prog="headrace",
        description=(
            "headrace: an event-streaming pipeline. S3 objects and MySQL rows into Kafka, "
            "Faust stages (transform, rate-limit, aggregate, rank), sinks into MongoDB and "
            "DynamoDB. Describe it in one pipeline file; run it with these commands."
        ),
        epilog="Run `headrace COMMAND --help` for a command's options.",
        formatter_class=_formatter,
    )
    parser.add_argument(
        "-f",
        "--file",
        dest="global_file",
        metavar="FILE",
        default=None,
        help="pipeline file (default: $HEADRACE_PIPELINE or ./pipeline.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.register(sub)
    return parser


def _command_modules() -> list[ModuleType]:
    """The command modules, in help order (the developer ones only where installed)."""
    found = []
    for name in _COMMAND_MODULES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if not name.startswith("headrace_dev.") or not (exc.name or "").startswith(
                "headrace_dev"
            ):
                raise
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and turn errors into a message and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except HeadraceError as exc:
        print(f"headrace {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"headrace {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
