"""``headrace chaos``: the shop pipeline under injected faults, checked by the demo's oracle."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headrace_dev.chaos.faults import Episode
    from headrace_dev.chaos.runner import Screenshot

__all__ = ["COMMANDS", "register"]

COMMANDS = ("chaos",)

#: the page ``--record`` rewrites between its markers (figures written by the runner only)
PAGE = Path(__file__).resolve().parents[2] / "docs" / "chaos.md"
BEGIN, END = "<!-- chaos-results:begin -->", "<!-- chaos-results:end -->"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from headrace_dev.chaos.scenario import SCENARIOS

    names = "\n".join(
        f"  {s.name:5} {len(s.faults)} fault kinds, {s.orders:,} orders per round, "
        + (f"rounds for {s.duration / 60:.0f} min" if s.duration else f"{s.rounds} round(s)")
        for s in SCENARIOS.values()
    )
    p = sub.add_parser(
        "chaos",
        help="run the shop pipeline under injected broker, database and process faults",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Bring the local stack up, then run rounds of the shop demo pipeline while "
            "injecting faults one at a time: Kafka, MariaDB and FerretDB restarted, killed "
            "or paused (SIGSTOP), moto paused, and pipeline processes (sources, the worker, "
            "sinks) killed with SIGKILL or SIGTERM. After each fault it measures how long the "
            "pipeline took to progress again; after each round it checks that the run went "
            "idle by itself, that every sink equals the demo's oracle exactly and that no "
            "dead letter was caused by a fault. It prints a table per fault (times injected, "
            "recovery p50/max) and per round, and the peak RSS of each process; exit 0 when "
            "every round held, 1 otherwise. It uses the demo's fixed names (topics shop.*, "
            "database shop): do not run it beside `headrace demo`.",
            width=90,
        )
        + f"\n\nscenarios:\n{names}",
    )
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="ci", help="default ci")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--orders", type=int, help="orders per round (default: the scenario's)")
    p.add_argument(
        "--minutes", type=float, help="run rounds for this long (default: the scenario's)"
    )
    p.add_argument(
        "--faults",
        help="only the scenario's faults whose names contain one of these comma-separated "
        "words (e.g. 'kafka paused,mid-recovery'), each injected once",
    )
    p.add_argument(
        "--out",
        help="folder for the run's logs, results.json and screenshots "
        "(default .stack/chaos/<scenario>-<time>)",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help=f"write the tables into {PAGE.relative_to(PAGE.parents[1])} between its markers",
    )
    p.set_defaults(func=_chaos)


def _chaos(args: argparse.Namespace) -> int:
    from headrace_dev.chaos.runner import run_scenario
    from headrace_dev.chaos.scenario import SCENARIOS
    from headrace_dev.stack import Stack, StackPaths, read_env_file

    scenario = SCENARIOS[args.scenario]
    if args.orders is not None:
        if args.orders < 1000:
            print("chaos: --orders must be at least 1000", file=sys.stderr)
            return 2
        scenario = replace(scenario, orders=args.orders)
    if args.faults:
        words = [w.strip() for w in args.faults.split(",") if w.strip()]
        chosen = tuple(f for f in scenario.faults if any(w in f.name for w in words))
        if not chosen:
            names = ", ".join(f.name for f in scenario.faults)
            print(f"chaos: --faults {args.faults!r} matches none of: {names}", file=sys.stderr)
            return 2
        scenario = replace(scenario, faults=chosen, every_fault=True, rounds=3, shuffle=False)
    if args.minutes is not None:
        scenario = replace(scenario, duration=args.minutes * 60, rounds=0)
    # SIGTERM unwinds like Ctrl-C, so a paused server is resumed and the run is stopped
    signal.signal(signal.SIGTERM, _terminate)
    stack = Stack(StackPaths.from_env(), log=lambda m: print(f"stack: {m}", file=sys.stderr))
    stack.up()
    env = read_env_file(stack.paths.env_file)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.out or stack.paths.root / "chaos" / f"{scenario.name}-{stamp}")
    print(f"chaos: scenario {scenario.name}, seed {args.seed}; logs in {out}")
    result = run_scenario(scenario, env, stack, out, seed=args.seed, screenshot=_screenshotter(env))
    (out / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    tables = render(result)
    print(tables)
    if args.record:
        record(tables, result, PAGE)
        print(f"chaos: wrote the tables into {PAGE}")
    print(f"chaos: {'OK' if result.ok else 'FAILED'}; details in {out / 'results.json'}")
    return 0 if result.ok else 1


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _screenshotter(env: dict[str, str]) -> Screenshot | None:
    """A screenshot of the console framed on each episode (two minutes before the fault to
    now), or None when Chromium is not there (``headrace_dev.console_shot``)."""
    from headrace_dev.console_shot import console_link, find_chromium, screenshot

    if find_chromium() is None:
        print("chaos: no Chromium here: no console screenshots", file=sys.stderr)
        return None
    prometheus = env.get("HEADRACE_PROMETHEUS_URL", "http://127.0.0.1:9090")

    def shot(episode: Episode, path: Path) -> None:
        now = time.time()
        url = console_link(
            prometheus, pipeline="shop", duration=now - episode.started + 120, end=now
        )
        screenshot(url, path)

    return shot


def render(result: object) -> str:
    """The fault, round and memory tables of ``result`` (a ``ChaosResult``) as Markdown."""
    import io

    from headrace_dev.chaos.runner import ChaosResult

    assert isinstance(result, ChaosResult)
    buf = io.StringIO()

    def table(head: list[str], rows: list[list[str]]) -> None:
        buf.write("| " + " | ".join(head) + " |\n")
        buf.write("|" + "---|" * len(head) + "\n")
        for row in rows:
            buf.write("| " + " | ".join(row) + " |\n")
        buf.write("\n")

    minutes = (result.ended - result.started) / 60
    buf.write(
        f"Scenario `{result.scenario}`, seed {result.seed}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(result.started))}, "
        f"{minutes:.0f} min, {len(result.rounds)} round(s): "
        f"{'every invariant held' if result.ok else 'FAILED'}.\n\n"
    )
    table(
        ["fault", "injected", "recovery p50 (s)", "recovery max (s)", "not recovered"],
        result.fault_table(),
    )
    table(
        [
            "round",
            "orders",
            "faults",
            "restarts",
            "seconds",
            "oracle differences (lost, duplicated or wrong)",
            "fault-caused dead letters",
            "result",
        ],
        result.round_table(),
    )
    table(
        ["process", "peak RSS (MiB)"],
        [[n, f"{b / 2**20:,.0f}"] for n, b in sorted(result.peak_rss.items())],
    )
    return buf.getvalue()


def record(tables: str, result: object, page: Path) -> None:
    """Replace the text between the page's markers with ``tables``."""
    text = page.read_text() if page.exists() else f"# Chaos results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"chaos: {page} lacks the markers {BEGIN} / {END}; add them back")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{tables}{END}{tail}")
