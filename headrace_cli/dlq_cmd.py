"""``headrace dlq list|show|replay TOPIC``: see dead letters and send them back."""

from __future__ import annotations

import argparse
import itertools
import json
from typing import TYPE_CHECKING

from headrace.errors import HeadraceError
from headrace_cli.common import add_file_option, pipeline_path, print_table

if TYPE_CHECKING:
    from headrace.config import KafkaConfig
    from headrace_cli.dlq_reader import StoredLetter

__all__ = ["COMMANDS", "register"]

COMMANDS = ("dlq",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dlq",
        help="list, show and replay dead-letter records",
        description="Dead letters are records a source, stage or sink rejected; they wait in "
        "<topic>.dlq with headers saying which stage, why, and from where. TOPIC may be the "
        "topic or its .dlq.",
    )
    dsub = p.add_subparsers(dest="dlq_cmd", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="one line per dead letter: position, stage, reason")
    show = dsub.add_parser("show", help="every detail of dead letters, original bytes included")
    rep = dsub.add_parser(
        "replay",
        help="produce dead letters back to their topic (after fixing the cause)",
        description="Send each dead letter's original key and bytes back to the topic it was "
        "meant for. Progress is remembered, so a second replay sends only newer letters.",
    )
    for q in (ls, show, rep):
        add_file_option(q)
        q.add_argument("topic", metavar="TOPIC", help="the topic (or its .dlq)")
    ls.add_argument("-n", "--limit", type=int, default=50, help="letters to show (default 50)")
    ls.set_defaults(func=_list)
    show.add_argument("-n", "--limit", type=int, default=5, help="letters to show (default 5)")
    show.set_defaults(func=_show)
    rep.add_argument("--stage", help="replay only letters from this stage/source/sink")
    rep.add_argument(
        "--from-start",
        action="store_true",
        help="ignore earlier replays and start from the first letter",
    )
    rep.add_argument("--dry-run", action="store_true", help="count what would be replayed")
    rep.set_defaults(func=_replay)


def _kafka(args: argparse.Namespace) -> KafkaConfig:
    from headrace.config import load_pipeline

    return load_pipeline(pipeline_path(args)).kafka


def _letters(args: argparse.Namespace) -> list[StoredLetter]:
    from headrace_cli.dlq_reader import read_dead_letters

    try:
        return list(itertools.islice(read_dead_letters(_kafka(args), args.topic), args.limit))
    except LookupError as exc:
        raise HeadraceError(str(exc)) from None


def _list(args: argparse.Namespace) -> int:
    letters = _letters(args)
    print_table(
        ["partition:offset", "stage", "error", "reason", "position"],
        [
            [
                f"{x.partition}:{x.offset}",
                x.stage,
                x.error_class,
                x.message[:80],
                json.dumps(x.position, default=str)[:60],
            ]
            for x in letters
        ],
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    for x in _letters(args):
        print(f"--- {x.partition}:{x.offset}  (meant for {x.topic})")
        print(f"stage:    {x.stage}")
        print(f"error:    {x.error_class}: {x.message}")
        print(f"position: {json.dumps(x.position, default=str)}")
        print(f"key:      {x.key!r}")
        value = x.value or b""
        print(f"value:    {value[:500]!r}{' ...' if len(value) > 500 else ''}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from headrace_cli.dlq_reader import replay

    try:
        replayed, skipped = replay(
            _kafka(args),
            args.topic,
            stage=args.stage,
            from_start=args.from_start,
            dry_run=args.dry_run,
        )
    except LookupError as exc:
        raise HeadraceError(str(exc)) from None
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {replayed} dead letter(s); skipped {skipped} from other stages")
    return 0
