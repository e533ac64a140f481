"""``headrace check``, ``headrace config show`` and ``headrace secrets keygen|encrypt``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

import yaml

from headrace.errors import ConfigError
from headrace_cli.common import add_file_option, pipeline_path, print_table

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["COMMANDS", "register"]

COMMANDS = ("check", "config", "secrets")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check",
        help="validate a pipeline file (and with --connect, reach everything it names)",
        description=(
            "Validate the pipeline file: keys, types, expressions, topic wiring, ${ENV} and "
            "enc: secrets. Exit 0 if valid, 2 with one line per problem if not. With "
            "--connect also contact Kafka, MySQL, S3, MongoDB and DynamoDB (read-only) and "
            "exit 1 if anything named is unreachable."
        ),
    )
    add_file_option(check)
    check.add_argument(
        "--connect",
        action="store_true",
        help="also check every topic/bucket/table/collection is reachable",
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds per connection attempt with --connect (default 5)",
    )
    check.set_defaults(func=_check)

    config = sub.add_parser("config", help="show the resolved pipeline file, secrets redacted")
    csub = config.add_subparsers(dest="config_cmd", metavar="ACTION", required=True)
    show = csub.add_parser(
        "show",
        help="print the resolved configuration with secrets as ***",
        description="Print the pipeline file after ${ENV} interpolation, "
        "decryption and defaults, with every secret replaced by ***.",
    )
    add_file_option(show)
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.set_defaults(func=_show)
    ref = csub.add_parser(
        "reference",
        help="print the configuration reference (every key, its type, default and meaning)",
        description="Print every key of the pipeline file as a Markdown table, generated from "
        "the config model itself (docs/configuration.md holds this output).",
    )
    ref.set_defaults(func=_reference)

    secrets = sub.add_parser("secrets", help="create a key and encrypt values for enc: entries")
    ssub = secrets.add_subparsers(dest="secrets_cmd", metavar="ACTION", required=True)
    keygen = ssub.add_parser(
        "keygen",
        help="print a new Fernet key for HEADRACE_SECRET_KEY",
        description="Print a new Fernet key. Keep it out of the repo: "
        "export HEADRACE_SECRET_KEY=<key> where the pipeline runs.",
    )
    keygen.set_defaults(func=_keygen)
    enc = ssub.add_parser(
        "encrypt",
        help="encrypt a value with $HEADRACE_SECRET_KEY and print enc:<token>",
        description="Encrypt VALUE (or standard input, so it stays out of shell history) "
        "with the key in $HEADRACE_SECRET_KEY; paste the printed enc:<token> into the file.",
    )
    enc.add_argument("value", nargs="?", default="-", help="the value, or - for stdin (default)")
    enc.set_defaults(func=_encrypt)


def _load(args: argparse.Namespace) -> Pipeline:
    from headrace.config import load_pipeline

    return load_pipeline(pipeline_path(args))


def _check(args: argparse.Namespace) -> int:
    pipeline = _load(args)
    print(
        f"{pipeline_path(args)}: pipeline {pipeline.name!r} is valid: "
        f"{len(pipeline.sources)} source(s), {len(pipeline.stages)} stage(s), "
        f"{len(pipeline.sinks)} sink(s)"
    )
    from headrace.config.delivery import delivery_notes
    from headrace.config.keys import pipeline_notes

    for note in [*pipeline_notes(pipeline), *delivery_notes(pipeline)]:
        print(f"  {note}")
    if not args.connect:
        return 0
    from headrace_cli.reachability import check_reachable

    findings = check_reachable(pipeline, timeout=args.timeout)
    print_table(
        ["owner", "kind", "target", "ok", "detail"],
        [[f.owner, f.kind, f.target, "yes" if f.ok else "NO", f.detail] for f in findings],
    )
    failed = [f for f in findings if not f.ok]
    if failed:
        print(f"{len(failed)} of {len(findings)} checks failed", file=sys.stderr)
        return 1
    return 0


def _show(args: argparse.Namespace) -> int:
    data = _load(args).redacted()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    return 0


def _reference(args: argparse.Namespace) -> int:
    from headrace.config.reference import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from headrace.config import generate_key

    print(generate_key())
    return 0


def _encrypt(args: argparse.Namespace) -> int:
    from headrace.config import SecretError, encrypt

    key = os.environ.get("HEADRACE_SECRET_KEY")
    if not key:
        raise ConfigError(
            "HEADRACE_SECRET_KEY is not set; create a key with "
            "`headrace secrets keygen` and export it"
        )
    value = sys.stdin.read().rstrip("\n") if args.value == "-" else args.value
    if not value:
        raise ConfigError("nothing to encrypt: pass VALUE or pipe it on standard input")
    try:
        print(encrypt(value, key))
    except SecretError as exc:
        raise ConfigError(f"HEADRACE_SECRET_KEY: {exc}") from None
    return 0
