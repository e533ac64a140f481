"""``headrace status``: one terminal view of the running pipeline (no Grafana needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from headrace_cli.common import print_table

__all__ = ["COMMANDS", "register", "restarts_text"]

COMMANDS = ("status",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="rates, lags, dead letters and health of every running headrace process",
        description="Scrape the /metrics endpoint of every running headrace process (found "
        "through the Prometheus target files in $HEADRACE_PROMETHEUS_TARGETS, default "
        ".stack/conf/prometheus/targets) twice and print one line per process: record "
        "rates, consumer lag, dead letters, the p99 end-to-end latency of what sinks wrote "
        "between the scrapes, health, how often `headrace run` restarted the process (and "
        "why it last exited), and the last fault it recovered from without a restart "
        "(what, when, how long the recovery took). Target files of processes that are gone "
        "are removed first.",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between the two scrapes used for rates (default 2)",
    )
    p.add_argument("--targets", help="folder of Prometheus target files (default: see above)")
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from headrace.metrics import prune_stale_targets, targets_folder
    from headrace_cli.status_view import collect, describe_fault, discover_targets

    folder = Path(args.targets or targets_folder())
    if folder.is_dir() and (removed := prune_stale_targets(folder)):
        print(f"removed {len(removed)} stale target file(s) of processes that are gone")
    targets = discover_targets(folder)
    if not targets:
        print(f"no running headrace process found (no target files in {folder})")
        return 1
    views = collect(targets, interval=args.interval)
    rows = []
    for v in views:
        rates = ", ".join(f"{k} {r:,.0f}/s" for k, r in sorted(v.rates.items()) if r) or "idle"
        health = "-" if v.healthy is None else ("ok" if v.healthy else "UNHEALTHY")
        if v.stalled:
            health += f" ({v.stalled:.0f} stalled)"
        if v.broker_reachable is False:
            health += ", broker unreachable"
        rows.append(
            [
                v.process,
                v.address,
                "up" if v.up else "DOWN",
                rates if v.up else "-",
                f"{v.lag:,.0f}",
                f"{v.dlq_total:,.0f}",
                "-" if v.e2e_p99 is None else f"{v.e2e_p99 * 1000:,.0f} ms",
                health,
                restarts_text(v.restarts, v.last_exit),
                describe_fault(v.last_fault) if v.up else "-",
            ]
        )
    print_table(
        [
            "process",
            "metrics",
            "state",
            "records",
            "lag",
            "dead letters",
            "e2e p99",
            "health",
            "restarts",
            "last fault",
        ],
        rows,
    )
    return 0 if all(v.up for v in views) else 1


def restarts_text(restarts: int | None, last_exit: str | None) -> str:
    """``"2 (exit 1)"``: the count and how the last run ended (its code or signal only; the
    full reason is in the run's log and ``headrace_last_exit``); ``"-"`` when unknown."""
    if restarts is None:
        return "-"
    if not restarts or not last_exit:
        return str(restarts)
    return f"{restarts} ({last_exit.split(':', 1)[0]})"
