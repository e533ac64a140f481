"""``headrace stack up|down|status|logs``: the local stack of real servers."""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from headrace_cli.common import print_table
from headrace_dev.stack import StackPaths

if TYPE_CHECKING:
    from headrace_dev.stack import ComponentStatus, Stack

__all__ = ["COMMANDS", "register"]

COMMANDS = ("stack",)

_COMPONENTS = "kafka, mariadb, ferretdb, moto, prometheus"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stack",
        help="install, start, stop and inspect the local stack (Kafka, MariaDB, FerretDB, ...)",
        description=(
            "The local stack: Apache Kafka (KRaft), MariaDB, FerretDB (MongoDB protocol), "
            "moto (S3 + DynamoDB) and Prometheus, all on 127.0.0.1. Installed on first use "
            "(cached under ~/.cache/headrace), state under ./.stack, endpoints written to "
            "./.stack/env. Ports can be moved with HEADRACE_STACK_<NAME>_PORT."
        ),
    )
    ssub = p.add_subparsers(dest="stack_cmd", metavar="ACTION", required=True)
    up = ssub.add_parser("up", help="install (first time) and start components; idempotent")
    up.add_argument(
        "names", nargs="*", metavar="NAME", help=f"components (default all: {_COMPONENTS})"
    )
    up.set_defaults(func=_up)
    down = ssub.add_parser("down", help="stop the components this stack started (by pid)")
    down.add_argument("names", nargs="*", metavar="NAME", help="components (default all)")
    down.set_defaults(func=_down)
    st = ssub.add_parser("status", help="show each component's state, pid, port and endpoint")
    st.set_defaults(func=_status)
    logs = ssub.add_parser("logs", help="print (or follow) a component's log")
    logs.add_argument("name", metavar="NAME", help=f"one of: {_COMPONENTS}, install")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    logs.add_argument("--follow", action="store_true", help="keep printing as the log grows")
    logs.set_defaults(func=_logs)


def _stack() -> Stack:
    from headrace_dev.stack import Stack

    return Stack(StackPaths.from_env(), log=lambda msg: print(f"stack: {msg}", file=sys.stderr))


def _up(args: argparse.Namespace) -> int:
    stack = _stack()
    rows = stack.up(args.names)
    _print_status(rows)
    _print_console(rows)
    _prune_targets(stack.paths.conf / "prometheus" / "targets")
    print(f"\nendpoints: {stack.paths.env_file}  (source it, or let tests and the demo read it)")
    return 0


def _prune_targets(folder: Path) -> None:
    """Scrape targets left by headrace processes that were killed would show as down."""
    from headrace.metrics import prune_stale_targets

    if folder.is_dir() and (removed := prune_stale_targets(folder)):
        print(f"prometheus: removed {len(removed)} stale target file(s) of processes that are gone")


def _down(args: argparse.Namespace) -> int:
    stopped = _stack().down(args.names)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    rows = _stack().status()
    _print_status(rows)
    _print_console(rows)
    return 0 if all(r.state == "running" for r in rows) else 1


def _print_status(rows: list[ComponentStatus]) -> None:
    print_table(
        ["component", "state", "pid", "port", "endpoint"],
        [[r.name, r.state, r.pid or "-", r.port, r.endpoint] for r in rows],
    )


def _print_console(rows: list[ComponentStatus]) -> None:
    """One line: the headrace console's URL when the stack's Prometheus serves it, else why
    not and the fix (nothing when Prometheus is not among ``rows`` or not running)."""
    from headrace.observability import console_url

    for row in rows:
        if row.name == "prometheus" and row.state == "running":
            url = console_url(row.endpoint)
            print(
                f"\nconsole: {url}"
                if url
                else "\nconsole: not served by the running Prometheus (started without it); "
                "fix: headrace stack down prometheus && headrace stack up prometheus"
            )


def _logs(args: argparse.Namespace) -> int:
    paths = StackPaths.from_env()
    if args.name == "install":
        path = paths.log_file("install")
    else:
        path = _stack().log_path(args.name)
    if not path.exists():
        print(
            f"no log yet for {args.name} ({path}); run `headrace stack up` first", file=sys.stderr
        )
        return 1
    if args.follow:
        os.execvp("tail", ["tail", "-n", str(args.lines), "-F", str(path)])  # noqa: S606
    with open(path, errors="replace") as fh:
        for line in deque(fh, maxlen=args.lines):
            sys.stdout.write(line)
    return 0
