"""The gateway process: build the parts, serve HTTP with uvicorn, stop gracefully.

- ``build_gateway(pipeline, port)`` makes the ``Gateway`` of a pipeline's ``gateway:`` section:
  validators (schemas read now: a missing file is a ``ConfigError``, exit 2), the Kafka
  publisher, the breaker (its state in the metric), the limiter, the authenticator and the
  idempotency store; it creates the declared topics (3 partitions) and their ``.dlq``
  (1 partition) when missing.
- ``serve(pipeline, host, port)`` runs the gateway in this thread until SIGTERM or SIGINT:
  uvicorn (uvloop, httptools) on a socket bound first (``port`` 0 picks a free one; the
  listening line ``gateway: listening on http://HOST:PORT`` is logged and printed), the
  process's /metrics registered for Prometheus like every other process
  (``headrace.metrics.serve``). On SIGTERM uvicorn stops accepting, lets the requests in
  flight finish, then the producer is flushed and ``serve`` returns 0 (1 when records were
  still unacknowledged after ``produce_timeout``). The process's GIL switch interval is
  ``SWITCH_INTERVAL``, and what was built before serving is frozen out of the garbage
  collector's sight (``_freeze_heap``; see both).
- ``GatewayThread`` runs the same server in a background thread, for tests and benchmarks
  that want the gateway in their own process; ``stop()`` is the graceful path of SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.app import Gateway, create_app
from gateway.breaker import Breaker, State
from gateway.idempotency import IdempotencyStore
from gateway.publish import KafkaPublisher
from gateway.validate import build_validators
from headrace.dlq import dlq_topic
from headrace.errors import ConfigError
from headrace.kafka_clients import ensure_topics

if TYPE_CHECKING:
    import uvicorn

    from headrace.config import Pipeline
    from headrace.config.gateway import GatewayConfig

__all__ = ["DEFAULT_PARTITIONS", "GatewayThread", "build_gateway", "serve"]

log = logging.getLogger("headrace.gateway")

DEFAULT_PARTITIONS = 3
GRACE = 10.0
"""Seconds requests in flight get to finish after SIGTERM before connections are closed."""


def _section(pipeline: Pipeline) -> GatewayConfig:
    if pipeline.gateway is None:
        raise ConfigError(
            "the pipeline file has no gateway: section; add one (docs/gateway.md)",
            path=str(pipeline.file) if pipeline.file else None,
            key="gateway",
        )
    return pipeline.gateway


def build_gateway(pipeline: Pipeline, port: int) -> Gateway:
    """The gateway of ``pipeline`` (see the module docstring); ``port`` names its
    transactional producer (atomic topics), so two processes on one host differ."""
    from gateway.auth import Authenticator
    from gateway.limits import Limiter

    cfg = _section(pipeline)
    validators = build_validators(pipeline)
    wanted = {t: DEFAULT_PARTITIONS for t in cfg.topics} | {dlq_topic(t): 1 for t in cfg.topics}
    ensure_topics(pipeline.kafka, wanted)
    breaker = Breaker(
        failures=cfg.breaker.failures,
        open_for=cfg.breaker.open_for,
        on_change=lambda state: metrics.BREAKER_STATE.set(int(state)),
    )
    metrics.BREAKER_STATE.set(int(State.CLOSED))
    transactional_id = None
    if cfg.atomic_topics():
        transactional_id = f"headrace.{pipeline.name}.gateway.{socket.gethostname()}.{port}"
        if cfg.processes > 1:  # processes may share the port (SO_REUSEPORT): the pid too
            transactional_id += f".{os.getpid()}"
    publisher = KafkaPublisher(
        pipeline.kafka,
        timeout=cfg.produce_timeout,
        transactional_id=transactional_id,
        on_down=breaker.trip,
    )
    topic_limits = {name: t.limit for name, t in cfg.topics.items() if t.limit is not None}
    limiter = Limiter(cfg.limits, topic_limits, processes=cfg.processes)
    authenticator = Authenticator(cfg.auth) if cfg.auth is not None else None
    return Gateway(
        config=cfg,
        pipeline=pipeline.name,
        validators=validators,
        publisher=publisher,
        breaker=breaker,
        limiter=limiter,
        idempotency=IdempotencyStore(
            ttl=cfg.idempotency.ttl,
            max_entries=cfg.idempotency.max_entries,
            max_bytes=cfg.idempotency.max_bytes,
        ),
        authenticator=authenticator,
        auth_in_thread=cfg.auth is not None and cfg.auth.jwks_url is not None,
    )


def _bind(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; ``shared`` (``processes`` > 1) lets the other
    gateway processes of the pipeline bind the same port (SO_REUSEPORT: the kernel spreads
    new connections over them). ``ConfigError`` when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); set gateway.port to a free port "
            "or pass --port 0 for any free one",
            key="gateway.port",
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn_server(config: uvicorn.Config, gateway: Gateway) -> uvicorn.Server:
    """uvicorn's server for ``gateway`` (see ``Quiet``)."""
    import uvicorn

    class Quiet(uvicorn.Server):
        """uvicorn's server, except: a SIGTERM/SIGINT that stopped it cleanly is not raised
        again at the end (uvicorn re-raises it, so the process would die of the signal
        instead of exiting 0 after the flush); and the signal marks the gateway as no
        longer serving at once (``/healthz`` answers 503 while requests finish)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            gateway.serving = False
            if not self.should_exit:
                log.info(
                    "gateway: %s received; finishing requests in flight, then flushing",
                    signal.Signals(sig).name,
                )
            super().handle_exit(sig, frame)

    return Quiet(config)


class _Server:
    """A uvicorn server of one gateway on one bound socket; closes the producer at shutdown."""

    def __init__(self, gateway: Gateway, sock: socket.socket) -> None:
        import uvicorn

        self.gateway = gateway
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.unflushed = 0
        app = create_app(gateway, lifespan=self._lifespan)
        self.config = uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=int(GRACE),
            backlog=2048,
        )
        self.server: uvicorn.Server = _uvicorn_server(self.config, gateway)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Any) -> Any:
        yield
        self.gateway.serving = False
        timeout = self.gateway.config.produce_timeout
        self.unflushed = await asyncio.to_thread(self.gateway.publisher.close, timeout)
        if self.unflushed:
            log.error("gateway: %d record(s) not acknowledged at exit", self.unflushed)
        else:
            log.info("gateway: producer flushed")

    def run(self) -> None:
        self.server.run(sockets=[self.sock])


def serve(
    pipeline: Pipeline,
    host: str | None = None,
    port: int | None = None,
    *,
    metrics_port: int | None = None,
) -> int:
    """Run the gateway until SIGTERM/SIGINT (see the module docstring); the exit code."""
    from headrace.metrics import serve as serve_metrics

    cfg = _section(pipeline)
    host = cfg.host if host is None else host
    sock = _bind(host, cfg.port if port is None else port, shared=cfg.processes > 1)
    actual = sock.getsockname()[1]
    gateway = build_gateway(pipeline, actual)
    mport = serve_metrics(
        pipeline.name,
        "gateway",
        "gateway",
        pipeline.metrics.port if metrics_port is None else metrics_port,
        pipeline.metrics.final_scrape,
    )
    sys.setswitchinterval(SWITCH_INTERVAL)
    server = _Server(gateway, sock)
    _freeze_heap(server)
    shown = f"[{host}]" if ":" in host else host
    line = f"gateway: listening on http://{shown}:{actual} (metrics port {mport})"
    log.info(line)
    print(line, file=sys.stdout, flush=True)
    server.run()
    log.info("gateway: stopped")
    return 1 if server.unflushed else 0


def _freeze_heap(server: _Server) -> None:
    """Take every object made before serving (modules, the app, schemas, the producer) out of
    the cyclic garbage collector's sight (``gc.freeze``) and collect young objects less
    often (``GC_THRESHOLD``). Every full collection of the gateway's heap stopped the event
    loop: in one run of the bench's phases, 20-23 of them per process took 1.1-1.8 s in all,
    up to 110-155 ms each (at load 1-3 on the shared 2-core machine), every request waiting
    meanwhile. Frozen, they scan only what was made since; with the thresholds, the whole
    collector took 0.1-0.2 s per process in the same phases instead of 1.5-2.6 s. Objects
    made while serving are collected as before. For ``serve``'s own process only."""
    import gc

    server.config.load()  # uvicorn's own imports, now rather than once serving
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


GC_THRESHOLD = (10_000, 10, 10)
"""The collector's thresholds while serving (Python's default: 700, 10, 10): a young
collection per 10,000 net allocations, not per 700 (a 500-record request allocates tens of
thousands of objects, most freed by reference counting before any collection could)."""

SWITCH_INTERVAL = 0.0005
"""Seconds the event loop's thread may keep the GIL while the producer's poll thread waits
for it to run a delivery report (Python's default: 0.005). A request is answered only once
its report ran, so with the default a busy loop delayed reports by up to 5 ms each, and
more as they queued: in process, one-record publishes beside a loop busy in 300 us steps
took p90 47-54 ms / p99 126-147 ms at 0.005 and p90 6-11 ms / p99 15-66 ms at 0.0005
(load 10-14 on the shared 2-core machine). Set by ``serve`` for its process only."""


class GatewayThread:
    """The gateway of ``pipeline`` served from a background thread of this process.

    ``start()`` returns once it listens (``port``: the bound port, ``url``); ``stop()``
    stops accepting, lets requests in flight finish and flushes the producer. Metrics are
    this process's registry (no target file is written)."""

    def __init__(self, pipeline: Pipeline, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pipeline = pipeline
        self.sock = _bind(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.gateway = build_gateway(pipeline, self.port)
        self._server = _Server(self.gateway, self.sock)
        self._thread = threading.Thread(target=self._server.run, name="gateway", daemon=True)

    def start(self, timeout: float = 30.0) -> GatewayThread:
        """Start serving; wait up to ``timeout`` s until it listens."""
        self._thread.start()
        until = time.monotonic() + timeout
        while not self._server.server.started:
            if not self._thread.is_alive() or time.monotonic() > until:
                raise RuntimeError(f"the gateway did not start listening within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """Stop gracefully; return the records left unacknowledged."""
        self.gateway.serving = False
        self._server.server.should_exit = True
        self._thread.join(timeout)
        return self._server.unflushed

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(pipeline: Pipeline, host: str = "127.0.0.1", port: int = 0) -> Iterator[GatewayThread]:
    """``with running(pipeline) as gw:`` a ``GatewayThread`` started and stopped."""
    gw = GatewayThread(pipeline, host, port).start()
    try:
        yield gw
    finally:
        gw.stop()
