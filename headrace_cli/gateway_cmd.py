"""``headrace gateway``: the HTTP gateway process, and ``headrace gateway token``.

``headrace gateway [PIPELINE]`` serves ``POST /topics/<topic>/records`` for the topics of the
file's ``gateway:`` section until SIGTERM or SIGINT: it stops accepting, lets the requests in
flight finish, flushes the producer and exits 0 (1 when records stayed unacknowledged). A bad
file exits 2 before it listens.

``headrace gateway token --sub SVC --scope publish:orders --ttl 1h [PIPELINE]`` prints a token
that the file's ``gateway.auth`` accepts (``gateway.auth.mint_token``), for local use.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from headrace.errors import ConfigError, HeadraceError
from headrace_cli.common import DEFAULT_PIPELINE, add_file_option

__all__ = ["COMMANDS", "register"]

COMMANDS = ("gateway",)

_DEPENDENCIES = ("starlette", "uvicorn", "jwt", "jsonschema")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve HTTP publishing to the gateway's topics (or mint a token: gateway token)",
        description=(
            "Serve POST /topics/<topic>/records for the topics under gateway.topics: records "
            "are authenticated (JWT), rate-limited, validated against the topic's schema and "
            "produced to Kafka; the answer comes after the broker acknowledged them, with "
            "each record's partition and offset (rejected records go to <topic>.dlq). Also "
            "GET /healthz, /readyz, /metrics, /openapi.json and /docs. SIGTERM: stop "
            "accepting, finish the requests in flight, flush, exit 0. "
            "`headrace gateway token --sub SVC --scope publish:TOPIC --ttl 1h` prints a "
            "token the file's gateway.auth accepts. See docs/gateway.md."
        ),
        usage=(
            "headrace gateway [-f FILE] [--host HOST] [--port PORT] [PIPELINE]\n"
            "       headrace gateway token --sub SUB --scope SCOPE [--scope SCOPE ...] "
            "[--ttl TTL] [-f FILE] [PIPELINE]"
        ),
    )
    _add_options(p)
    p.add_argument(
        "words",
        nargs=argparse.REMAINDER,
        metavar="PIPELINE",
        help=f"the pipeline file (default: -f, $HEADRACE_PIPELINE or ./{DEFAULT_PIPELINE}); "
        "`token ...` mints a token instead of serving",
    )
    p.set_defaults(func=_run, parser=p)


def _add_options(p: argparse.ArgumentParser) -> None:
    add_file_option(p)
    serving = p.add_argument_group("serving")
    serving.add_argument("--host", default=None, help="address to listen on (default gateway.host)")
    serving.add_argument(
        "--port", type=int, default=None, help="port to listen on (default gateway.port; 0: free)"
    )
    serving.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of the process's own /metrics for Prometheus (default metrics.port; 0 or "
        "busy: a free port); the gateway's port serves /metrics too",
    )
    token = p.add_argument_group("gateway token")
    token.add_argument("--sub", default=None, help="the token's subject: the client's id")
    token.add_argument(
        "--scope",
        action="append",
        default=[],
        help="a scope, e.g. publish:orders (repeat for several)",
    )
    token.add_argument(
        "--ttl", default="1h", help="how long the token is valid: 30m, 1h, 7d (default 1h)"
    )


def _reparse(args: argparse.Namespace) -> tuple[bool, str | None]:
    """(minting?, pipeline positional) from ``args.words``, whose options (written after the
    first positional word) are parsed into ``args``."""
    words = list(args.words)
    minting = bool(words) and words[0] == "token"
    if minting:
        words = words[1:]
    inner = argparse.ArgumentParser(prog=args.parser.prog, add_help=False)
    _add_options(inner)
    inner.add_argument("pipeline", nargs="?", default=None)
    defaults = {k: getattr(args, k) for k in ("file", "host", "port", "metrics_port", "sub", "ttl")}
    inner.set_defaults(**defaults, scope=list(args.scope))
    parsed = inner.parse_intermixed_args(words)
    for name, value in vars(parsed).items():
        setattr(args, name, value)
    return minting, parsed.pipeline


def _pipeline_file(args: argparse.Namespace, positional: str | None) -> Path:
    chosen = positional or args.file or getattr(args, "global_file", None)
    return Path(chosen or os.environ.get("HEADRACE_PIPELINE") or DEFAULT_PIPELINE)


def _run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    minting, positional = _reparse(args)
    if not minting and (args.sub is not None or args.scope):
        parser.error("--sub and --scope are options of `headrace gateway token`")
    if minting and (args.host is not None or args.port is not None):
        parser.error("--host and --port are options of serving, not of `headrace gateway token`")
    _require_dependencies()
    from headrace.config import load_pipeline

    if minting:
        return _token(args, load_pipeline(_pipeline_file(args, positional)))
    from gateway.server import serve

    pipeline = load_pipeline(_pipeline_file(args, positional))
    return serve(pipeline, args.host, args.port, metrics_port=args.metrics_port)


def _token(args: argparse.Namespace, pipeline: object) -> int:
    from gateway.auth import mint_token
    from headrace.config import Pipeline
    from headrace.config.durations import parse_duration

    assert isinstance(pipeline, Pipeline)
    if not args.sub:
        args.parser.error("gateway token needs --sub (the client's id)")
    if not args.scope:
        args.parser.error("gateway token needs at least one --scope, e.g. --scope publish:orders")
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as exc:
        args.parser.error(f"--ttl: {exc}")
    if pipeline.gateway is None or pipeline.gateway.auth is None:
        raise ConfigError(
            "no gateway.auth in the pipeline file: the gateway accepts requests without a "
            "token; configure gateway.auth (docs/gateway.md) to mint tokens",
            path=str(pipeline.file) if pipeline.file else None,
            key="gateway.auth",
        )
    print(mint_token(pipeline.gateway.auth, sub=args.sub, scopes=list(args.scope), ttl=ttl))
    return 0


def _require_dependencies() -> None:
    missing = [m for m in _DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        raise HeadraceError(
            f"the gateway needs {', '.join(missing)}, which are not installed; "
            "pip install 'headrace[gateway]'"
        )
