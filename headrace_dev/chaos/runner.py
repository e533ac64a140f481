"""Runs a chaos scenario over the shop pipeline on the local stack (see ``headrace_dev.chaos``).

A round: ``prepare`` (reset and seed the shop dataset), ``headrace run --until-idle`` on
``examples/shop/pipeline.yaml``, faults injected one at a time while the pipeline has work,
each followed by a wait for recovery, then the run must reach idle by itself and the invariant
is checked:

- every sink equals the demo's oracle exactly (``headrace_dev.demo.shop_verify``: no loss, no
  duplicate, no stale rank) and the three dead-letter topics the input explains hold exactly the
  input's bad records;
- no other dead-letter topic of the pipeline holds anything (no fault-caused dead letter);
- the run went idle and exited 0 within the round's timeout (nothing stuck: the supervisor or
  a process's own watchdog restarted what died or wedged).

Recovery of an episode is measured from the fault's start until the part of the pipeline it
hit progressed again in Kafka (a source's topic grew, a consumer group committed further) or
had nothing left to do (group lag 0, source finished); see ``headrace_dev.chaos.probe``.
"""

from __future__ import annotations

import json
import random
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from headrace_dev.chaos.faults import Episode, Fault, Injector
from headrace_dev.chaos.probe import Progress, RssSampler, Snapshot
from headrace_dev.chaos.proxy import SlowProxy
from headrace_dev.chaos.scenario import Scenario
from headrace_dev.stack import Stack

__all__ = ["ChaosResult", "RoundResult", "run_scenario"]

Say = Callable[[str], None]
Screenshot = Callable[[Episode, Path], None]

#: dead-letter topics whose letters the shop input explains (checked by the oracle)
EXPLAINED_LETTERS = ("shop.customers.dlq", "shop.orders.placed.dlq", "shop.reviews.dlq")
_STARTED = re.compile(r"\[run\] started (\S+) \(pid (\d+)\)")
_EXITED = re.compile(r"\[run\] (\S+) exited with (-?\d+); restart #(\d+)")


@dataclass
class RoundResult:
    """One round: its episodes, the supervisor's restarts and the invariant's findings."""

    index: int
    orders: int
    episodes: list[Episode] = field(default_factory=list)
    restarts: list[tuple[str, int]] = field(default_factory=list)  # (process, exit code)
    run_exit: int | None = None
    seconds: float = 0.0
    oracle: list[tuple[str, int, int, int]] = field(default_factory=list)  # name, exp, got, diffs
    oracle_lines: list[str] = field(default_factory=list)
    stray_letters: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.run_exit == 0
            and bool(self.oracle)
            and all(diffs == 0 for _, _, _, diffs in self.oracle)
            and not self.stray_letters
            and all(e.recovered is not None for e in self.episodes)
        )


@dataclass
class ChaosResult:
    """A whole scenario's rounds, the peak RSS per process and the summary table."""

    scenario: str
    seed: int
    rounds: list[RoundResult] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.rounds) and all(r.ok for r in self.rounds)

    def episodes(self) -> list[Episode]:
        return [e for r in self.rounds for e in r.episodes]

    def fault_table(self) -> list[list[str]]:
        """Rows: fault, times injected, recovery p50 and max (s), not recovered."""
        by_fault: dict[str, list[Episode]] = {}
        for e in self.episodes():
            by_fault.setdefault(e.fault.name, []).append(e)
        rows = []
        for name, eps in sorted(by_fault.items()):
            secs = [e.recovery_seconds for e in eps if e.recovery_seconds is not None]
            rows.append(
                [
                    name,
                    str(len(eps)),
                    f"{statistics.median(secs):.1f}" if secs else "-",
                    f"{max(secs):.1f}" if secs else "-",
                    str(len(eps) - len(secs)),
                ]
            )
        return rows

    def round_table(self) -> list[list[str]]:
        """Rows: round, orders, faults, restarts, seconds, oracle differences, stray letters."""
        return [
            [
                str(r.index),
                f"{r.orders:,}",
                str(len(r.episodes)),
                str(len(r.restarts)),
                f"{r.seconds:.0f}",
                str(sum(d for *_, d in r.oracle)) if r.oracle else "not checked",
                str(sum(r.stray_letters.values())),
                "ok" if r.ok else "FAILED",
            ]
            for r in self.rounds
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "started": self.started,
            "ended": self.ended,
            "ok": self.ok,
            "peak_rss_bytes": self.peak_rss,
            "rounds": [
                {
                    "index": r.index,
                    "orders": r.orders,
                    "ok": r.ok,
                    "run_exit": r.run_exit,
                    "seconds": round(r.seconds, 1),
                    "restarts": r.restarts,
                    "oracle": [
                        {"check": n, "expected": e, "got": g, "differences": d}
                        for n, e, g, d in r.oracle
                    ],
                    "oracle_lines": r.oracle_lines,
                    "stray_letters": r.stray_letters,
                    "episodes": [
                        {
                            "fault": e.fault.name,
                            "victim": e.victim,
                            "started": e.started,
                            "cleared": e.cleared,
                            "recovery_seconds": e.recovery_seconds,
                            "screenshot": e.screenshot,
                            "note": e.note,
                        }
                        for e in r.episodes
                    ],
                }
                for r in self.rounds
            ],
        }


def run_scenario(
    scenario: Scenario,
    env: Mapping[str, str],
    stack: Stack,
    out_dir: Path,
    *,
    seed: int = 1,
    say: Say = print,
    screenshot: Screenshot | None = None,
) -> ChaosResult:
    """Run ``scenario`` (see the module doc); logs and screenshots go to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    result = ChaosResult(scenario.name, seed, started=time.time())
    rss = RssSampler()
    pending: list[Fault] = []
    index = 0
    while True:
        if not pending and not (scenario.every_fault and index):
            pending = list(scenario.faults)
            if scenario.shuffle:
                rng.shuffle(pending)
        index += 1
        rnd = _round(scenario, env, stack, out_dir, index, seed, rng, pending, rss, say, screenshot)
        result.rounds.append(rnd)
        say(
            f"chaos: round {index} {'ok' if rnd.ok else 'FAILED'} in {rnd.seconds:.0f}s, "
            f"{len(rnd.episodes)} fault(s), {len(rnd.restarts)} restart(s)"
        )
        if not rnd.ok:
            for line in _why(rnd):
                say(f"chaos: round {index}: {line}")
        result.peak_rss = dict(rss.peaks)
        # written after every round, so a long run that is stopped keeps what it found
        (out_dir / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        if scenario.every_fault and not pending:
            break
        if scenario.rounds and index >= scenario.rounds:
            break
        if not scenario.rounds and time.time() - result.started >= scenario.duration:
            break
    result.peak_rss = dict(rss.peaks)
    result.ended = time.time()
    return result


def _round(
    scenario: Scenario,
    env: Mapping[str, str],
    stack: Stack,
    out_dir: Path,
    index: int,
    seed: int,
    rng: random.Random,
    pending: list[Fault],
    rss: RssSampler,
    say: Say,
    screenshot: Screenshot | None,
) -> RoundResult:
    from headrace.config import load_pipeline
    from headrace_dev.demo.shop import GROUP_PREFIXES, PIPELINE_FILE, prepare, start_run

    data = prepare(
        env, orders=scenario.orders, customers=scenario.customers, seed=seed * 1000 + index, say=say
    )
    pipeline = load_pipeline(PIPELINE_FILE)
    sources = {name: (src.type, src.topic) for name, src in pipeline.sources.items()}
    rnd = RoundResult(index, len(data.orders))
    log = out_dir / f"round-{index}.log"
    began = time.monotonic()
    progress = Progress(env["HEADRACE_KAFKA_BOOTSTRAP"], "shop.", GROUP_PREFIXES)
    mongo = urlsplit(env["HEADRACE_MONGO_URI"])
    proxy = SlowProxy(mongo.hostname or "127.0.0.1", mongo.port or 27017).start()
    run_env = {
        **env,
        "HEADRACE_MONGO_URI": f"mongodb://127.0.0.1:{proxy.port}",
        # the worker's local table stores: the run's own, never another shop run's
        "HEADRACE_DATA_DIR": str(out_dir / "worker-data"),
    }
    with open(log, "wb") as out:
        run = start_run(run_env, out, idle_timeout=scenario.round_timeout)
        injector = Injector(
            stack,
            lambda: _pids(log),
            rng=rng,
            say=say,
            proxy=proxy,
            running=lambda: run.poll() is None,
        )
        try:

            def inject(fault: Fault) -> None:
                try:
                    episode = injector.inject(fault)
                except LookupError as exc:  # its process has finished: the next round
                    say(f"{exc}; it waits for the next round")
                    pending.append(fault)
                    return
                topics, groups, srcs = _affected(episode, progress, sources)
                timeout = scenario.recovery_timeout
                _await_recovery(episode, progress, topics, groups, srcs, run, rss, log, timeout)
                rec = episode.recovery_seconds
                say(
                    f"chaos: {fault.name} ({episode.victim}): "
                    + (f"recovered in {rec:.1f}s" if rec is not None else "NOT recovered")
                )
                if screenshot is not None:
                    shot = out_dir / f"round-{index}-{len(rnd.episodes) + 1:02d}.png"
                    try:
                        screenshot(episode, shot)
                        episode.screenshot = str(shot)
                    except Exception as exc:  # the console is a view: never fail a round on it
                        episode.note = f"no screenshot: {type(exc).__name__}: {str(exc)[:200]}"
                rnd.episodes.append(episode)

            # faults that matter only while the sources read: as soon as MySQL sources run
            early = [f for f in pending if f.early]
            if early:
                mysql = [n for n, (t, _) in sources.items() if t.startswith("mysql")]
                _await_started(log, [f"produce:{n}" for n in mysql], run, rss, timeout=180)
                injector.process_wait = 5.0
                for fault in early:
                    pending.remove(fault)
                    _sleep(rng.uniform(0.5, 2.0), run, rss, log)
                    if run.poll() is not None:
                        pending.append(fault)
                        continue
                    inject(fault)
            injector.process_wait = 60.0
            _await_flow(progress, run, rss, log, timeout=180)
            for fault in [f for f in pending if not f.early]:
                _sleep(rng.uniform(*scenario.gap), run, rss, log)
                if run.poll() is not None:
                    break
                pending.remove(fault)
                inject(fault)
            rnd.run_exit = _await_exit(run, rss, log, began + scenario.round_timeout)
        finally:
            injector.release()
            proxy.delay = 0.0
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
                try:
                    run.wait(120)
                except subprocess.TimeoutExpired:
                    run.kill()
            progress.close()
            proxy.stop()
    rnd.seconds = time.monotonic() - began
    text = log.read_text(errors="replace")
    rnd.restarts = [(name, int(code)) for name, code, _ in _EXITED.findall(text)]
    if rnd.run_exit == 0:
        _check(env, rnd)
    else:
        say(f"chaos: round {index}: headrace run exited with {rnd.run_exit}; see {log}")
    return rnd


def _why(rnd: RoundResult) -> list[str]:
    """What made a round fail, in lines for the log."""
    lines = []
    if rnd.run_exit != 0:
        lines.append(f"headrace run exited with {rnd.run_exit}")
    lines += [f"oracle: {line}" for line in rnd.oracle_lines[:10]]
    lines += [f"fault-caused dead letters: {t}: {n}" for t, n in rnd.stray_letters.items()]
    lines += [
        f"{e.fault.name} ({e.victim}) not recovered; {e.note or ''}"
        for e in rnd.episodes
        if e.recovered is None
    ]
    return lines


def _check(env: Mapping[str, str], rnd: RoundResult) -> None:
    from headrace_dev.demo.shop_verify import verify
    from headrace_dev.stack import aws_client

    verdict = verify(env, aws_client(env, "s3"), aws_client(env, "dynamodb"))
    rnd.oracle = [(c.name, c.expected, c.got, len(c.differences)) for c in verdict.checks]
    rnd.oracle_lines = [f"{c.name}: {d}" for c in verdict.checks for d in c.differences[:5]]
    rnd.stray_letters = _stray_letters(env["HEADRACE_KAFKA_BOOTSTRAP"])


def _stray_letters(bootstrap: str) -> dict[str, int]:
    """Letters in the pipeline's dead-letter topics that the input does not explain."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "headrace-chaos-letters"})
    try:
        found: dict[str, int] = {}
        for name, meta in consumer.list_topics(timeout=10).topics.items():
            if not (name.startswith("shop.") and name.endswith(".dlq")):
                continue
            if name in EXPLAINED_LETTERS:
                continue
            count = 0
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                count += max(0, high - low)
            if count:
                found[name] = count
        return found
    finally:
        consumer.close()


def _pids(log: Path) -> dict[str, int]:
    """The newest pid of each pipeline process, from ``headrace run``'s own lines."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    return {name: int(pid) for name, pid in _STARTED.findall(text)}


def _await_started(
    log: Path,
    names: list[str],
    run: subprocess.Popen[bytes],
    rss: RssSampler,
    *,
    timeout: float,
) -> None:
    """Wait until one of the processes ``names`` was started (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        if set(_pids(log)) & set(names):
            return
        _sleep(0.2, run, rss, log)


def _sleep(seconds: float, run: subprocess.Popen[bytes], rss: RssSampler, log: Path) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and run.poll() is None:
        rss.sample(_pids(log))
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


def _await_flow(
    progress: Progress,
    run: subprocess.Popen[bytes],
    rss: RssSampler,
    log: Path,
    *,
    timeout: float,
) -> None:
    """Wait until a sink committed something (the whole pipeline flows), or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        snap = progress.read()
        if snap is not None and any(
            "sink" in g and committed > 0 for g, (committed, _) in snap.groups.items()
        ):
            return
        _sleep(1.0, run, rss, log)


def _affected(
    episode: Episode, progress: Progress, sources: Mapping[str, tuple[str, str]]
) -> tuple[list[str], list[str], list[str]]:
    """(topics, consumer groups, source names) of the part of the pipeline a fault hit."""
    snap = progress.read()
    groups = sorted(snap.groups) if snap is not None else []
    fault, victim = episode.fault, episode.victim
    mysql = [n for n, (t, _) in sources.items() if t.startswith("mysql")]
    s3 = [n for n, (t, _) in sources.items() if t == "s3"]

    def topics_of(names: list[str]) -> list[str]:
        return [sources[n][1] for n in names]

    if fault.on_server:
        if fault.target == "kafka":
            return topics_of(list(sources)), groups, list(sources)
        if fault.target == "mariadb":
            return topics_of(mysql), [], mysql
        if fault.target == "ferretdb":
            return [], [g for g in groups if "mongo" in g], []
        return topics_of(s3), [g for g in groups if "dynamo" in g], s3  # moto
    if victim.startswith("produce:"):
        name = victim.split(":", 1)[1]
        return topics_of([name]), [], [name]
    if victim.startswith("sink:"):
        name = victim.split(":", 1)[1]
        return [], [g for g in groups if g.endswith(name) or f".{name}" in g], []
    return [], [g for g in groups if "sink" not in g], []  # the worker


def _source_done(log: Path, name: str) -> bool:
    try:
        return f"[run] produce:{name} finished" in log.read_text(errors="replace")
    except OSError:
        return False


def _await_recovery(
    episode: Episode,
    progress: Progress,
    topics: list[str],
    groups: list[str],
    sources: list[str],
    run: subprocess.Popen[bytes],
    rss: RssSampler,
    log: Path,
    timeout: float,
) -> None:
    """Set ``episode.recovered`` when the hit part progressed again (see the module doc)."""
    ref: Snapshot | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:  # the run went idle and ended: nothing left to recover
            episode.recovered = time.time()
            episode.note = "the run went idle before progress could be seen"
            return
        snap = progress.read()
        if snap is not None:
            if ref is None:
                ref = snap
            elif snap.advanced(ref, topics, groups):
                episode.recovered = time.time()
                return
            if snap.idle(groups) and all(_source_done(log, s) for s in sources):
                episode.recovered = time.time()
                return
        _sleep(1.0, run, rss, log)
    if progress.last_error:
        episode.note = f"Kafka unreadable: {progress.last_error}"


def _await_exit(
    run: subprocess.Popen[bytes], rss: RssSampler, log: Path, deadline: float
) -> int | None:
    while run.poll() is None and time.monotonic() < deadline:
        _sleep(2.0, run, rss, log)
    return run.poll()
