"""``headrace run``: every source, the worker and every sink of a pipeline, supervised."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from headrace.errors import HeadraceError
from headrace.metrics import targets_folder
from headrace_cli.common import add_file_option, pipeline_path

if TYPE_CHECKING:
    from headrace.config import Pipeline
    from headrace_cli.supervisor import ProcessSpec, Supervisor

__all__ = ["COMMANDS", "register"]

COMMANDS = ("run",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run every source, the worker, every sink and the gateway, supervised",
        description="Start `headrace produce` for each source, one `headrace worker` (if the "
        "pipeline has stages), `headrace sink` for each sink and `headrace gateway` (if the "
        "file has a gateway: section), with prefixed output. A "
        "process that crashes is restarted with backoff (1s, 2s, 4s ... 30s) and reported. "
        "Ctrl-C or SIGTERM stops them all cleanly. The pipeline file is validated first: a "
        "bad file exits 2 before anything starts.",
    )
    add_file_option(p)
    p.add_argument(
        "--until-idle",
        action="store_true",
        help="run sources once, then exit 0 when every consumer lag is 0 and every "
        "window is closed (for finite datasets, tests and the demo)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=1800.0,
        help="with --until-idle, give up (exit 1) after this many seconds",
    )
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="do not restart crashed processes (exit 1 when one fails)",
    )
    p.set_defaults(func=_run)


def _specs(
    pipeline: Pipeline,
    file: Path,
    once: bool,
    done: Callable[[str], bool] | None = None,
    input_done: Path | None = None,
) -> list[ProcessSpec]:
    """Sources first; the worker once the topics sources write exist; each sink once its
    topic exists (a stage's output topic is created by the worker). A process started before
    its input topic exists would stop with "topic does not exist".

    With ``once`` and ``input_done``, the worker closes windows by its idle timer only once
    that file exists (``_IdleCheck`` creates it when the input is complete; see
    ``streams.stages.aggregate``): a source that stalls mid-run no longer closes windows early.

    With ``once`` (``--until-idle``: a finite dataset) and lookups, the order is stricter so
    the result does not depend on timing: the sources feeding a lookup table run to the end
    first, then the worker starts, and the other sources start only once the worker has read
    every lookup topic to its end (its consumer lag on them is 0). ``done(name)`` says whether
    a finite process has finished (the supervisor's ``is_done``). The topics of delayed
    sources are created up front (broker-default partitions), since the worker waits for
    its input topics to exist.
    """
    from headrace_cli.supervisor import ProcessSpec

    base = [sys.executable, "-m", "headrace_cli.main", "-f", str(file)]
    exists = _TopicProbe(pipeline)
    lookup_topics = sorted({s.lookup.table_from for s in pipeline.stages.values() if s.lookup})
    ordered = once and bool(lookup_topics) and bool(pipeline.stages) and done is not None
    feeders = [n for n, src in pipeline.sources.items() if src.topic in lookup_topics]
    feeders_done = partial(_all_done, done, [f"produce:{n}" for n in feeders])
    lookups_read = _LookupsRead(pipeline, lookup_topics)
    specs = []
    for name in pipeline.sources:
        ready = None
        if ordered and name not in feeders:
            ready = partial(_both, feeders_done, lookups_read)
        argv = [*base, "produce", name, *(["--once"] if once else [])]
        specs.append(ProcessSpec(f"produce:{name}", argv, finite=once, ready=ready))
    produced_by_stages = {stage.to for stage in pipeline.stages.values()}
    if pipeline.stages:
        stage_inputs = {s.from_ for s in pipeline.stages.values()}
        stage_inputs |= set(lookup_topics)
        needed = sorted(stage_inputs - produced_by_stages)
        worker_ready = partial(exists, needed)
        if ordered:
            _create_topics(pipeline, [s.topic for n, s in pipeline.sources.items()])
            worker_ready = partial(_both, feeders_done, worker_ready)
        worker_argv = [*base, "worker"]
        if once and input_done is not None:
            worker_argv += ["--input-done-file", str(input_done)]
        specs.append(ProcessSpec("worker", worker_argv, ready=worker_ready))
    for name, sink in pipeline.sinks.items():
        specs.append(
            ProcessSpec(f"sink:{name}", [*base, "sink", name], ready=partial(exists, [sink.from_]))
        )
    if pipeline.gateway is not None:  # long-lived: --until-idle does not wait for it
        n = pipeline.gateway.processes  # more than 1: they share the port (SO_REUSEPORT)
        for i in range(n):
            specs.append(ProcessSpec("gateway" if n == 1 else f"gateway:{i}", [*base, "gateway"]))
    return specs


def _all_done(done: Callable[[str], bool] | None, names: list[str]) -> bool:
    return done is not None and all(done(n) for n in names)


def _both(first: Callable[[], bool], second: Callable[[], bool]) -> bool:
    return first() and second()


def _create_topics(pipeline: Pipeline, topics: list[str]) -> None:
    """Create the missing ``topics`` with the broker's default partition count."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from headrace.kafka_clients import client_config

    admin = AdminClient(client_config(pipeline.kafka))
    have = set(admin.list_topics(timeout=10).topics)
    missing = sorted(set(topics) - have)
    if not missing:
        return
    for topic, fut in admin.create_topics([NewTopic(t, -1, -1) for t in missing]).items():
        try:
            fut.result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise HeadraceError(f"run: cannot create topic {topic!r}: {exc}") from exc


class _LookupsRead:
    """True once a consumer group (the worker) reads every lookup topic with lag 0 (asked at
    most every ``every`` seconds, and stays True once it was)."""

    every = 2.0

    def __init__(self, pipeline: Pipeline, topics: list[str]) -> None:
        self.pipeline = pipeline
        self.topics = topics
        self._ok = False
        self._last = 0.0

    def __call__(self) -> bool:
        if self._ok or not self.topics:
            return True
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        from headrace_cli.idle import active_group_lag

        try:
            lags = active_group_lag(self.pipeline.kafka, self.topics)
        except Exception:  # a broker that restarts or a topic without a leader yet: ask again
            return False
        self._ok = bool(lags) and all(v == 0 for v in lags.values())
        return self._ok


class _TopicProbe:
    """``probe(topics)`` is True when every topic exists (metadata asked at most every 1 s)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._known: set[str] = set()
        self._last = 0.0

    def __call__(self, topics: list[str]) -> bool:
        if set(topics) <= self._known:
            return True
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            from confluent_kafka.admin import AdminClient

            from headrace.kafka_clients import client_config

            meta = AdminClient(client_config(self.pipeline.kafka)).list_topics(timeout=5)
            self._known = {t for t, m in meta.topics.items() if m.error is None}
        return set(topics) <= self._known


def _input_done_path(pipeline: Pipeline) -> Path:
    """A fresh path (not yet existing) for this run's input-complete marker."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"headrace-run-{pipeline.name}-"))
    return folder / "input-done"


def _read_topics(pipeline: Pipeline) -> set[str]:
    topics = {stage.from_ for stage in pipeline.stages.values()}
    topics |= {s.lookup.table_from for s in pipeline.stages.values() if s.lookup is not None}
    topics |= {sink.from_ for sink in pipeline.sinks.values()}
    return topics


class _IdleCheck:
    """True once sources are done and lag is 0 with windows closed on 3 checks in a row."""

    def __init__(
        self,
        pipeline: Pipeline,
        sup: Supervisor,
        every: float = 2.0,
        input_done: Path | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: created once every source finished and every lag is 0: the worker may then close
        #: its last windows by its idle timer (``headrace worker --input-done-file``)
        self.input_done = input_done
        self.sup = sup
        self.every = every
        self.readers = _read_topics(pipeline)
        self.streak = 0
        self.last = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.every or not self.sup.finite_done():
            return False
        self.last = now
        from headrace_cli.idle import active_group_lag

        try:
            lags = active_group_lag(self.pipeline.kafka, self.readers)
        except Exception as exc:
            self.sup.say(f"[run] idle check failed: {type(exc).__name__}: {exc or '(no message)'}")
            self.streak = 0
            return False
        readers_needed = (1 if self.pipeline.stages else 0) + len(self.pipeline.sinks)
        idle = len(lags) >= readers_needed and all(v == 0 for v in lags.values())
        if idle and self.input_done is not None and not self.input_done.exists():
            self.input_done.touch()  # the input is complete: the last windows may close
            self.sup.say("[run] every source finished and every lag is 0: closing open windows")
        idle = idle and self._windows_closed()
        self.streak = self.streak + 1 if idle else 0
        return self.streak >= 3

    def _windows_closed(self) -> bool:
        """Every worker this run started reports its window entries, for every aggregate
        stage, and none is open.

        A stage reports them only once it has restored the state of every partition it
        holds (``streams.runner``): a worker just restarted reports nothing yet, and its
        restored windows may still be open. Only the endpoints of the workers running now
        count (their target files end in ``-<pid>.json``): a file left by a killed worker
        names a port nobody answers on.
        """
        from headrace_cli.status_view import discover_targets, scrape

        folder = _targets_folder()
        pids = [pid for name, _, pid, _ in self.sup.status() if name == "worker" and pid]
        if self.pipeline.stages and not pids:
            return False  # the worker is between restarts
        for pid in pids:
            pattern = f"{self.pipeline.name}-stage-*-{pid}.json"
            found = discover_targets(folder, pattern)
            if not found:
                return False  # not serving metrics yet: its windows are unknown
            for _label, address in found:
                try:
                    samples = scrape(address, 2.0)
                except OSError:
                    return False
                if any(
                    name == "headrace_window_state_keys" and value > 0
                    for (name, _labels), value in samples.items()
                ):
                    return False
                reported = {
                    dict(labels).get("stage")
                    for (name, labels), _value in samples.items()
                    if name == "headrace_window_state_keys"
                }
                aggregates = {n for n, st in self.pipeline.stages.items() if st.aggregate}
                if not aggregates <= reported:
                    return False  # a stage has not restored its state yet
        return True


def _run(args: argparse.Namespace) -> int:
    from headrace.config import load_pipeline
    from headrace_cli.supervisor import Supervisor

    file = pipeline_path(args).absolute()
    pipeline = load_pipeline(file)  # ConfigError -> exit 2 before anything starts
    missing = _missing_commands(pipeline)
    if missing:
        raise HeadraceError(
            f"this version cannot run the pipeline yet: `headrace "
            f"{', '.join(missing)}` not available"
        )
    _share_targets_folder()
    holder: list[Supervisor] = []
    input_done = _input_done_path(pipeline) if args.until_idle else None
    specs = _specs(
        pipeline,
        file,
        args.until_idle,
        done=lambda name: holder[0].is_done(name),
        input_done=input_done,
    )
    sup = Supervisor(
        specs,
        out=sys.stdout,
        restart=not args.no_restart,
        describe=partial(_describe, pipeline.name),
    )
    holder.append(sup)
    _say_console(sup, pipeline.name)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sup.request_stop())
    deadline = time.monotonic() + args.idle_timeout
    idle = _IdleCheck(pipeline, sup, input_done=input_done) if args.until_idle else None
    timed_out = False

    def until() -> bool:
        nonlocal timed_out
        if args.no_restart and sup.failed:
            return True
        if idle is None:
            return False
        if time.monotonic() > deadline:
            timed_out = True
            return True
        return idle()

    sup.run(until=until)
    if sup.failed:
        sup.say(f"[run] failed: {', '.join(sup.failed)}")
        return 1
    if timed_out:
        sup.say(f"[run] not idle after {args.idle_timeout:.0f}s; stopped everything")
        return 1
    sup.say(
        "[run] idle: every source finished, every lag is 0; stopped" if idle else "[run] stopped"
    )
    return 0


def _say_console(sup: Supervisor, pipeline: str) -> None:
    """One line with the headrace console's URL when the local stack's Prometheus serves it
    (``HEADRACE_PROMETHEUS_URL``, else the one in the stack's env file)."""
    from headrace.observability import console_url

    prometheus = os.environ.get("HEADRACE_PROMETHEUS_URL") or _stack_prometheus()
    url = console_url(prometheus, timeout=1.0) if prometheus else None
    if url:
        sup.say(f"[run] dashboard: {url}?pipeline={pipeline}")


def _stack_prometheus() -> str | None:
    """``HEADRACE_PROMETHEUS_URL`` from the local stack's env file (``<stack dir>/env``;
    ``$HEADRACE_STACK_DIR``, default ``./.stack``, as ``headrace stack`` has it)."""
    env_file = Path(os.environ.get("HEADRACE_STACK_DIR") or ".stack").resolve() / "env"
    try:
        lines = env_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "HEADRACE_PROMETHEUS_URL":
            return value.strip() or None
    return None


def _share_targets_folder() -> None:
    """Make every child register its /metrics endpoint where ``run`` looks for it: the
    configured ``HEADRACE_PROMETHEUS_TARGETS``, else the local stack's Prometheus targets,
    else a private temporary folder (no local stack: ``run`` still finds its processes)."""
    if os.environ.get("HEADRACE_PROMETHEUS_TARGETS"):
        return
    folder = targets_folder()
    if not folder.is_dir():
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="headrace-run-targets-"))
    os.environ["HEADRACE_PROMETHEUS_TARGETS"] = str(folder)


def _targets_folder() -> Path:
    return targets_folder()


def _describe(pipeline: str, pids: list[int]) -> dict[int, str]:
    """pid -> "in 1,200/s, out 1,180/s, lag 340, 2 dead letters" from each running process's
    registered /metrics endpoint (processes without one are left out)."""
    from headrace_cli.status_view import collect, discover_targets

    by_address: dict[str, int] = {}
    targets = []
    for pid in pids:
        for label, address in discover_targets(_targets_folder(), f"{pipeline}-*-{pid}.json"):
            targets.append((label, address))
            by_address[address] = pid
    out: dict[int, str] = {}
    for view in collect(targets, interval=1.0, timeout=1.0):
        if not view.up:
            continue
        rates = ", ".join(f"{k} {v:,.0f}/s" for k, v in sorted(view.rates.items()) if v) or "idle"
        text = f"{rates}, lag {view.lag:,.0f}"
        if view.dlq_total:
            text += f", {view.dlq_total:,.0f} dead letters"
        out[by_address[view.address]] = text
    return out


def _missing_commands(pipeline: Pipeline) -> list[str]:
    from headrace_cli.main import _command_modules

    provided = {c for m in _command_modules() for c in m.COMMANDS}
    needed = (["produce"] if pipeline.sources else []) + (["worker"] if pipeline.stages else [])
    needed += ["sink"] if pipeline.sinks else []
    needed += ["gateway"] if pipeline.gateway is not None else []
    return [c for c in needed if c not in provided]
