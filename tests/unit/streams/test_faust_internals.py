"""The private parts of faust-streaming, mode-streaming and aiokafka that ``streams/`` relies on.

``streams/consumer.py`` replaces Faust's fetch loop (``_drain_messages``) and writes Faust's
ack bookkeeping itself (``_acked``, ``_acked_index``, ``_committed_offset``, ...);
``streams/table_store.py`` writes into a RocksDB store's partition databases;
``streams/health.py`` reads the table recovery's state through ``getattr`` with a default, so
a rename would silently turn its checks off. None of that is public API: pyproject.toml bounds
the three packages to the series tested, and this file fails, with what to re-check, when an
upgrade inside (or past) those bounds changes one of them.

Each entry of ``RELIED`` is one name and one check:

- ``override``: a method we override or hand to Faust in its place; it exists, is a coroutine
  function (or not) as ours is, and has exactly our parameters;
- ``call``: a callable we call; it takes the parameters we pass and requires no other;
- ``attribute``: a value we read or write on a live object (built cheaply: an app that never
  connects), with the shape we use it in;
- ``source``: the library's code still does what our code counts on (a needle in its source);
- ``copy``: our code is a copy of this function; its code (comments and docstrings aside) must
  hash to the fingerprint recorded when the copy was last compared with it.

``test_the_checker_*`` shows each check failing on a fake class that lacks or changed a name.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import functools
import hashlib
import inspect
import tempfile
import textwrap
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any, Literal, cast

import aiokafka
import faust
import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.consumer import subscription_state as aiokafka_subscription
from faust.stores import base as store_base
from faust.stores import rocksdb as store_rocksdb
from faust.transport import consumer as faust_consumer
from faust.transport.conductor import Conductor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import tuples as faust_tuples
from mode.utils import futures as mode_futures

from streams.consumer import BatchApp, BatchConsumer, BatchConsumerThread

Kind = Literal["override", "call", "attribute", "source", "copy"]

CONSUMER = "streams/consumer.py"
FAUST = "faust-streaming"
MODE = "mode-streaming"
AIOKAFKA = "aiokafka"


@dataclass(frozen=True)
class Relied:
    """One private name we rely on, and how (see the module doc)."""

    dist: str  # the distribution that owns it: its version goes into the message
    where: str  # the owner as the message names it, e.g. "Consumer"
    owner: Callable[[], Any]  # the class, module or live object to look at
    name: str
    kind: Kind
    uses: str  # "<our module> overrides|calls|reads|writes|copies"
    recheck: str  # what to re-check in our code when the check fails
    is_async: bool | None = None  # override/call: a coroutine function (None: either)
    params: tuple[str, ...] = ()  # override: exactly these; call: we pass these by name
    shape: Callable[[Any], bool] | None = None  # attribute: the value is usable as we use it
    shape_doc: str = ""  # attribute: that shape in words
    needles: tuple[str, ...] = ()  # source: each of these is in the code
    digest: str = ""  # copy: fingerprint of the code our copy was compared with

    @property
    def id(self) -> str:
        return f"{self.where}.{self.name}:{self.kind}"


def fingerprint(func: Any) -> str:
    """A hash of ``func``'s code that ignores comments, docstrings and layout."""
    return fingerprint_source(textwrap.dedent(inspect.getsource(func)))


def fingerprint_source(source: str) -> str:
    """``fingerprint`` of code given as text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _found(r: Relied) -> str | None:
    """What is wrong with ``r`` in the installed packages; None when it is as we use it."""
    owner = r.owner()
    if not hasattr(owner, r.name):
        return "it is gone"
    value = getattr(owner, r.name)
    if r.kind in ("override", "call"):
        if not callable(value):
            return f"it is no longer callable: {value!r}"
        if r.is_async is not None and inspect.iscoroutinefunction(value) != r.is_async:
            return "it is now " + ("a coroutine function" if not r.is_async else "synchronous")
        sig = inspect.signature(value)
        names = [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if r.kind == "override" and names != list(r.params):
            return f"its parameters are now {sig}, ours are ({', '.join(r.params)})"
        if r.kind == "call":
            missing = [p for p in r.params if p not in names]
            required = [
                p.name
                for p in sig.parameters.values()
                if p.name != "self"
                and p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                and p.name not in r.params
            ]
            if missing or required:
                return f"its parameters are now {sig}, we pass ({', '.join(r.params)})"
    elif r.kind == "attribute":
        if r.shape is not None and not r.shape(value):
            return f"it is now {value!r}, we use it as {r.shape_doc}"
    elif r.kind == "source":
        try:
            code = inspect.getsource(value)
        except (OSError, TypeError) as exc:
            return f"its source cannot be read ({exc})"
        absent = [n for n in r.needles if n not in code]
        if absent:
            return f"its code no longer has {', '.join(repr(n) for n in absent)}"
    elif r.kind == "copy":
        now = fingerprint(value)
        if now != r.digest:
            return f"its code changed (fingerprint {now}, compared copy: {r.digest})"
    return None


def check(r: Relied) -> str | None:
    """The failure message for ``r``, or None when the installed package still matches."""
    found = _found(r)
    if found is None:
        return None
    return (
        f"{r.dist} {version(r.dist)} changed {r.where}.{r.name}, which {r.uses}: "
        f"re-check {r.recheck} [{found}]"
    )


# -- live objects, built without a broker ---------------------------------------------------


#: what the aiokafka consumer below is built with, to find where it keeps them
FETCH_WAIT, ISOLATION = 1234, "read_committed"


@functools.cache
def _worker() -> SimpleNamespace:
    """A ``BatchApp`` (never started), its consumer and table recovery service; a RocksDB
    table store (not opened); an aiokafka consumer (never started)."""
    tmp = tempfile.TemporaryDirectory(prefix="headrace-faust-internals-")  # removed at exit
    datadir = tmp.name

    async def build() -> SimpleNamespace:
        app = BatchApp(
            "faust-internals-test", broker="kafka://127.0.0.1:1", store="memory://", datadir=datadir
        )
        rocks = faust.App(
            "faust-internals-rocks", broker="kafka://127.0.0.1:1", store="rocksdb://",
            datadir=datadir,
        )  # fmt: skip
        table = rocks.Table("t", default=None, partitions=1)
        kafka = aiokafka.AIOKafkaConsumer(
            bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=FETCH_WAIT, isolation_level=ISOLATION
        )
        await kafka.stop()
        return SimpleNamespace(
            app=app,
            consumer=app.consumer,
            recovery=cast(Any, app.tables).recovery,
            store=table.data,
            kafka=kafka,
            tmp=tmp,
        )

    return asyncio.run(build())


def _app() -> Any:
    return _worker().app


def _consumer() -> Any:
    return _worker().consumer


def _recovery() -> Any:
    return _worker().recovery


def _rocksdb_store() -> Any:
    return _worker().store


def _aiokafka_consumer() -> Any:
    return _worker().kafka


def _defaultdict_of(default: Callable[[], Any]) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, defaultdict)
        and v.default_factory is not None
        and (v.default_factory() == default())
    )


def _event(v: Any) -> bool:
    return callable(getattr(v, "is_set", None)) and callable(getattr(v, "wait", None))


def _cls(c: type) -> Callable[[], type]:
    return lambda: c


#: what BatchConsumer subclasses (Faust's aiokafka driver): names are looked up through it,
#: so an override in the driver counts as a change too
DriverConsumer = faust_aiokafka.Consumer
FaustConsumer = faust_consumer.Consumer  # its base (bookkeeping, fetch loop, commit)
BASE = "transport.consumer.Consumer"
_ACKS = "BatchConsumer.ack_offsets (it does Consumer.ack's bookkeeping for a batch)"
_LOOP = (
    "BatchConsumer._drain_messages, a copy of Faust's fetch loop with a batch path: compare it "
    "with the new loop (read offsets, gaps, commit_every, flow control, stop errors)"
)

RELIED: tuple[Relied, ...] = (
    # -- streams/consumer.py: the fetch loop ------------------------------------------------
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_drain_messages", "override",
           f"{CONSUMER} overrides", _LOOP, is_async=True, params=("fetcher",)),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_drain_messages", "copy",
           f"{CONSUMER} copies", _LOOP + "; then record the new fingerprint in this test",
           digest="534d036692b697d3"),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "getmany", "copy", f"{CONSUMER} copies",
           "BatchConsumer._drain_messages, which does getmany's filtering itself (generation, "
           "active and buffered partitions); then record the new fingerprint in this test",
           digest="1936842581381d27"),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_wait_next_records", "call",
           f"{CONSUMER} calls", "BatchConsumer._drain_messages (it awaits "
           "_wait_next_records(1.0) for (records by TP, active partitions))",
           is_async=True, params=("timeout",)),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_wait_next_records", "source",
           f"{CONSUMER} calls", "BatchConsumer._drain_messages (it unpacks the result as "
           "records, active partitions)", needles=("return records, active_partitions",)),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_to_message", "call",
           f"{CONSUMER} calls", "BatchConsumer._drain_messages (Faust's per-message path)",
           is_async=False, params=("tp", "record")),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_add_gap", "call",
           f"{CONSUMER} calls", "BatchConsumer._record_gaps and _drain_messages",
           is_async=True, params=("tp", "offset_from", "offset_to")),
    Relied(FAUST, "Consumer", _consumer, "_read_offset", "attribute",
           f"{CONSUMER} reads and writes", "BatchConsumer._drain_messages (last offset read "
           "per TP)", shape=_defaultdict_of(lambda: None),
           shape_doc="a defaultdict TP -> offset or None"),
    Relied(FAUST, "Consumer", _consumer, "_buffered_partitions", "attribute",
           f"{CONSUMER} reads", "BatchConsumer._drain_messages (partitions still buffered)",
           shape=lambda v: isinstance(v, set), shape_doc="a set of TP"),
    Relied(FAUST, "Consumer", _consumer, "flow_active", "attribute", f"{CONSUMER} reads",
           "BatchConsumer._drain_messages (fetching paused at a rebalance)",
           shape=lambda v: isinstance(v, bool), shape_doc="a bool"),
    Relied(FAUST, "Consumer", _consumer, "suspend_flow", "attribute", f"{CONSUMER} reads",
           "BatchConsumer._drain_messages (it waits on suspend_flow.wait())",
           shape=_event, shape_doc="an event"),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "consumer_stopped_errors", "attribute",
           f"{CONSUMER} reads", "BatchConsumer._drain_messages (a stopped consumer ends it)",
           shape=lambda v: isinstance(v, tuple) and bool(v)
           and all(isinstance(e, type) and issubclass(e, BaseException) for e in v),
           shape_doc="a tuple of exception classes"),
    Relied(FAUST, "App", _app, "consumer_generation_id", "attribute", f"{CONSUMER} reads",
           "BatchConsumer._drain_messages (a batch of an older generation is dropped)",
           shape=lambda v: isinstance(v, int), shape_doc="an int"),
    Relied(FAUST, "Conductor", _cls(Conductor), "acks_enabled_for", "call",
           f"{CONSUMER} calls", "BatchConsumer._drain_messages (gaps only where acks count)",
           is_async=False, params=("topic",)),
    Relied(MODE, "Service", _consumer, "_stopped", "attribute", f"{CONSUMER} reads",
           "BatchConsumer._drain_messages (the consumer's and the fetcher's _stopped.is_set "
           "end the loop)", shape=_event, shape_doc="an event with is_set()"),
    # -- streams/consumer.py: acks and commits ----------------------------------------------
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "ack", "copy", f"{CONSUMER} copies",
           _ACKS + "; then record the new fingerprint in this test", digest="c8d9d2a19869c5f5"),
    Relied(FAUST, "Consumer", _consumer, "_committed_offset", "attribute",
           f"{CONSUMER} reads", _ACKS, shape=_defaultdict_of(lambda: None),
           shape_doc="a defaultdict TP -> committed offset or None"),
    Relied(FAUST, "Consumer", _consumer, "_acked_index", "attribute", f"{CONSUMER} writes",
           _ACKS, shape=_defaultdict_of(set), shape_doc="a defaultdict TP -> set of offsets"),
    Relied(FAUST, "Consumer", _consumer, "_acked", "attribute", f"{CONSUMER} writes",
           _ACKS, shape=_defaultdict_of(list), shape_doc="a defaultdict TP -> list of offsets"),
    Relied(FAUST, "Consumer", _consumer, "_n_acked", "attribute", f"{CONSUMER} writes",
           _ACKS, shape=lambda v: isinstance(v, int), shape_doc="an int"),
    Relied(FAUST, "Consumer", _consumer, "_waiting_for_ack", "attribute", f"{CONSUMER} reads",
           _ACKS + " (it wakes wait_empty through notify)",
           shape=lambda v: v is None or isinstance(v, asyncio.Future),
           shape_doc="None or an asyncio.Future"),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_new_offset", "source",
           f"{CONSUMER} writes what it reads",
           _ACKS + " (the commit must still take its offsets from _acked and _gap)",
           needles=("self._acked[tp]", "self._gap[tp]")),
    Relied(FAUST, "tuples", lambda: faust_tuples, "ack_lock", "attribute",
           f"{CONSUMER} reads", _ACKS + " (it holds the lock Faust's acks hold)",
           shape=lambda v: callable(getattr(v, "__enter__", None))
           and callable(getattr(v, "acquire", None)),
           shape_doc="a lock"),
    Relied(MODE, "futures", lambda: mode_futures, "notify", "call", f"{CONSUMER} calls",
           _ACKS, is_async=False, params=("fut",)),
    # -- streams/consumer.py: rebalance and shutdown ----------------------------------------
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "wait_empty", "override",
           f"{CONSUMER} overrides", "BatchConsumer.wait_empty (drop buffers, wait for the "
           "batches in flight, then Faust's commit)", is_async=True),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "wait_empty", "source",
           f"{CONSUMER} overrides", "BatchConsumer.wait_empty (super().wait_empty() must still "
           "commit)", needles=("commit_and_end_transactions",)),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "on_stop", "override",
           f"{CONSUMER} overrides", "BatchConsumer.on_stop (close the buffers, then Faust's "
           "stop)", is_async=True),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "on_stop", "source",
           f"{CONSUMER} overrides", "BatchConsumer.on_stop (the driver's stop must still go on "
           "to the base's, which calls our wait_empty)", needles=("super().on_stop()",)),
    Relied(FAUST, BASE, _cls(FaustConsumer), "on_stop", "source",
           f"{CONSUMER} overrides", "BatchConsumer.on_stop (with stream_wait_empty, Faust's "
           "stop must call our wait_empty)", needles=("stream_wait_empty", "self.wait_empty()")),
    Relied(FAUST, "App", _cls(faust.App), "_consumer_wait_empty", "source",
           f"{CONSUMER} relies on", "BatchApp's stream_wait_empty=True (a revocation must call "
           "consumer.wait_empty)", needles=("stream_wait_empty", "consumer.wait_empty()")),
    Relied(FAUST, "App", _cls(faust.App), "_on_partitions_revoked", "source",
           f"{CONSUMER} relies on", "BatchApp's stream_wait_empty=True (a revocation must call "
           "consumer.wait_empty)", needles=("_consumer_wait_empty",)),
    Relied(FAUST, "App", _app, "conf", "attribute", f"{CONSUMER} sets",
           "BatchApp.__init__ (stream_wait_empty=True)",
           shape=lambda v: getattr(v, "stream_wait_empty", None) is True,
           shape_doc="settings with stream_wait_empty True"),
    # -- streams/consumer.py: the objects Faust builds --------------------------------------
    Relied(FAUST, "App", _cls(faust.App), "_new_consumer", "override", f"{CONSUMER} overrides",
           "BatchApp._new_consumer", is_async=False),
    Relied(FAUST, "App", _cls(faust.App), "_new_consumer", "copy", f"{CONSUMER} copies",
           "BatchApp._new_consumer (the consumer's arguments); then record the new "
           "fingerprint in this test", digest="4856d0d885cff9c6"),
    Relied(FAUST, "App", _app, "consumer", "attribute", f"{CONSUMER} overrides",
           "BatchApp._new_consumer (Faust must still build app.consumer with it)",
           shape=lambda v: isinstance(v, BatchConsumer), shape_doc="a BatchConsumer"),
    # the base's: the driver's __init__ takes *args, **kwargs on to it
    Relied(FAUST, BASE, _cls(FaustConsumer), "__init__", "call", f"{CONSUMER} calls",
           "BatchApp._new_consumer (the keywords it passes)",
           params=("transport", "callback", "on_partitions_revoked", "on_partitions_assigned",
                   "loop")),
    Relied(FAUST, "App", _cls(faust.App), "_on_partitions_revoked", "call",
           f"{CONSUMER} passes on", "BatchApp._new_consumer (the revocation callback)",
           is_async=True, params=("revoked",)),
    Relied(FAUST, "App", _cls(faust.App), "_on_partitions_assigned", "call",
           f"{CONSUMER} passes on", "BatchApp._new_consumer (the assignment callback)",
           is_async=True, params=("assigned",)),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_new_consumer_thread", "override",
           f"{CONSUMER} overrides", "BatchConsumer._new_consumer_thread", is_async=False),
    Relied(FAUST, "Consumer", _cls(DriverConsumer), "_new_consumer_thread", "copy",
           f"{CONSUMER} copies", "BatchConsumer._new_consumer_thread (the thread's arguments); "
           "then record the new fingerprint in this test", digest="935107c5390d82d5"),
    Relied(FAUST, "Consumer", _consumer, "_thread", "attribute", f"{CONSUMER} overrides",
           "BatchConsumer._new_consumer_thread (Faust must still build the thread with it)",
           shape=lambda v: isinstance(v, BatchConsumerThread),
           shape_doc="a BatchConsumerThread"),
    Relied(FAUST, "AIOKafkaConsumerThread", _cls(faust_aiokafka.AIOKafkaConsumerThread),
           "_create_worker_consumer", "override", f"{CONSUMER} overrides",
           "BatchConsumerThread._create_worker_consumer", is_async=False, params=("transport",)),
    # -- streams/consumer.py: aiokafka's consumer -------------------------------------------
    Relied(AIOKAFKA, "AIOKafkaConsumer", _aiokafka_consumer, "_fetch_max_wait_ms", "attribute",
           f"{CONSUMER} writes", "BatchConsumerThread._create_worker_consumer (it sets the "
           "fetch wait after construction)", shape=lambda v: v == FETCH_WAIT,
           shape_doc=f"the fetch_max_wait_ms given ({FETCH_WAIT})"),
    Relied(AIOKAFKA, "AIOKafkaConsumer", _aiokafka_consumer, "_isolation_level", "attribute",
           f"{CONSUMER} writes", "BatchConsumerThread._create_worker_consumer (it sets the "
           "isolation level after construction)", shape=lambda v: v == ISOLATION,
           shape_doc=f"the isolation_level given ({ISOLATION!r})"),
    Relied(AIOKAFKA, "AIOKafkaConsumer", _cls(aiokafka.AIOKafkaConsumer), "start", "source",
           f"{CONSUMER} writes", "BatchConsumerThread._create_worker_consumer (start() must "
           "still build the fetcher from the attributes it sets)",
           needles=("fetch_max_wait_ms=self._fetch_max_wait_ms",
                    "isolation_level=self._isolation_level")),
    # -- streams/consumer.py: offsets passed after the last record (_ack_passed) ------------
    Relied(FAUST, BASE, _cls(FaustConsumer), "perform_seek", "override", f"{CONSUMER} overrides",
           "BatchConsumer.perform_seek (after it, each partition's fetch position is its "
           "committed offset)", is_async=True, params=()),
    Relied(FAUST, BASE, _cls(FaustConsumer), "perform_seek", "source", f"{CONSUMER} reads",
           "BatchConsumer.perform_seek (it reads the committed offsets Faust stores)",
           needles=("await self.seek_to_committed()", "self._committed_offset.update(")),
    Relied(FAUST, "AIOKafkaConsumerThread", _cls(faust_aiokafka.AIOKafkaConsumerThread),
           "_ensure_consumer", "call", f"{CONSUMER} calls",
           "BatchConsumer._ack_passed (the thread's aiokafka consumer)", is_async=False),
    Relied(AIOKAFKA, "AIOKafkaConsumer", _aiokafka_consumer, "_subscription", "attribute",
           f"{CONSUMER} reads", "BatchConsumer._ack_passed (the fetch positions)",
           shape=lambda v: isinstance(v, aiokafka_subscription.SubscriptionState),
           shape_doc="a SubscriptionState"),
    Relied(AIOKAFKA, "Assignment", _cls(aiokafka_subscription.Assignment),
           "state_value", "call", f"{CONSUMER} calls",
           "BatchConsumer._ack_passed (subscription.assignment.state_value(tp))",
           is_async=False, params=("tp",)),
    Relied(AIOKAFKA, "PartitionRecords", _cls(aiokafka_fetcher.PartitionRecords),
           "_unpack_records", "source", f"{CONSUMER} relies on",
           "BatchConsumer._ack_passed (the position must pass control batches after the "
           "last record, and only once every record before them was returned)",
           needles=("if next_batch.is_control_batch:",
                    "self.next_fetch_offset = next_batch.next_offset")),
    Relied(AIOKAFKA, "FetchResult", _cls(aiokafka_fetcher.FetchResult), "_update_position",
           "source", f"{CONSUMER} relies on", "BatchConsumer._ack_passed (the position is "
           "where the returned records end)",
           needles=("state.consumed_to(self._partition_records.next_fetch_offset)",)),
    # -- streams/table_store.py and streams/datadir.py: the RocksDB store -------------------
    Relied(FAUST, "rocksdb.Store", _cls(store_rocksdb.Store), "_db_for_partition", "call",
           "streams/table_store.py calls", "table_store.write (a batch into one partition's "
           "database)", is_async=False, params=("partition",)),
    Relied(FAUST, "Store", _cls(store_base.Store), "_encode_key", "call",
           "streams/table_store.py calls", "table_store.write (keys as Faust's recovery "
           "stores them)", is_async=False, params=("key",)),
    Relied(FAUST, "Store", _cls(store_base.Store), "_encode_value", "call",
           "streams/table_store.py calls", "table_store.write (values as Faust's recovery "
           "stores them)", is_async=False, params=("value",)),
    Relied(FAUST, "rocksdb.Store", _rocksdb_store, "use_rocksdict", "attribute",
           "streams/table_store.py reads", "table_store._write_batch (which driver's "
           "WriteBatch)", shape=lambda v: isinstance(v, bool), shape_doc="a bool"),
    Relied(FAUST, "rocksdb.Store", _cls(store_rocksdb.Store), "partition_path", "call",
           "streams/datadir.py calls", "datadir.drop_stale_stores (where a partition's "
           "database lives)", is_async=False, params=("partition",)),
    # -- streams/health.py: read with getattr and a default (a rename turns a check off) ---
    Relied(FAUST, "TableManager", _app, "tables", "attribute", "streams/health.py reads",
           "Health.check_recovery and readyz (app.tables.recovery)",
           shape=lambda v: hasattr(v, "recovery"), shape_doc="a table manager with .recovery"),
    Relied(FAUST, "Recovery", _recovery, "in_recovery", "attribute", "streams/health.py reads",
           "Health.check_recovery and readyz (recovery running)",
           shape=lambda v: isinstance(v, bool), shape_doc="a bool"),
    Relied(FAUST, "Recovery", _recovery, "completed", "attribute", "streams/health.py reads",
           "Health.readyz (recovery done)", shape=_event, shape_doc="an event"),
    Relied(MODE, "Service", _recovery, "crashed", "attribute", "streams/health.py reads",
           "Health.check_recovery (recovery service crashed)",
           shape=lambda v: isinstance(v, bool), shape_doc="a bool"),
    Relied(MODE, "Service", _recovery, "crash_reason", "attribute", "streams/health.py reads",
           "Health.check_recovery (why it crashed)",
           shape=lambda v: v is None or isinstance(v, BaseException),
           shape_doc="None or an exception"),
)  # fmt: skip


@pytest.mark.parametrize("relied", RELIED, ids=[r.id for r in RELIED])
def test_what_we_rely_on_is_still_there(relied: Relied) -> None:
    problem = check(relied)
    assert problem is None, problem


def test_every_private_name_of_consumer_py_is_listed() -> None:
    """A new ``self._<name>`` in streams/consumer.py that is Faust's must be added above."""
    import streams.consumer as ours

    source = inspect.getsource(ours)
    used = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            used.add(node.attr)
    own = {"_fanout_acks", "_buffers", "_all_buffers", "_record_gaps", "_ack_passed", "_drop"}
    own |= {"_delivered_to", "_dropped"}
    listed = {r.name for r in RELIED} | {"_gap"}  # _gap: through _add_gap and _new_offset
    assert used - own - listed == set(), (
        "streams/consumer.py uses private names this test does not guard: "
        f"{sorted(used - own - listed)}; add them to RELIED"
    )


def test_the_bounds_in_pyproject_cover_the_installed_versions() -> None:
    """The series tested here is the one pyproject.toml allows (the bounds name this test)."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name: Requirement(d) for d in deps}
    for dist in (FAUST, MODE, AIOKAFKA):
        assert dist in reqs, f"pyproject.toml does not bound {dist}, whose internals we use"
        spec = reqs[dist].specifier
        assert any(s.operator == "<" for s in spec), f"{dist} has no upper bound: {spec}"
        assert spec.contains(version(dist)), f"{dist} {version(dist)} is outside {spec}"


# -- the checker itself, on fakes ------------------------------------------------------------


class _FakeConsumer:
    """Faust's consumer as we use it, for the checker's own tests."""

    def __init__(self) -> None:
        self._committed_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self._acked: defaultdict[Any, list[int]] = defaultdict(list)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        pass

    async def _drain_messages(self, fetcher: Any) -> None:
        pass

    def _new_offset(self, tp: Any) -> None:
        self._acked[tp], self._gap[tp] = [], []  # type: ignore[attr-defined]


class _MissingCommitted(_FakeConsumer):
    def __init__(self) -> None:
        super().__init__()
        del self._committed_offset


class _AckedAsPlainDict(_FakeConsumer):
    def __init__(self) -> None:
        super().__init__()
        self._acked = {}  # type: ignore[assignment]


class _GapTakesARange(_FakeConsumer):
    async def _add_gap(self, tp: Any, offsets: range) -> None:  # type: ignore[override]
        pass


class _SyncGap(_FakeConsumer):
    def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:  # type: ignore[override]
        pass


class _DrainWithTimeout(_FakeConsumer):
    async def _drain_messages(self, fetcher: Any, timeout: float = 1.0) -> None:
        pass


class _CommitFromElsewhere(_FakeConsumer):
    def _new_offset(self, tp: Any) -> None:
        self._pending: dict[Any, list[int]] = {tp: []}


def _spec(name: str, kind: Kind) -> Relied:
    return next(r for r in RELIED if r.name == name and r.kind == kind)


def _on(fake: type, name: str, kind: Kind) -> Relied:
    """The real entry for ``name``, pointed at ``fake`` (an instance for attributes)."""
    target: Any = fake() if kind == "attribute" else fake
    return dataclasses.replace(_spec(name, kind), owner=lambda: target)


@pytest.mark.parametrize(
    ("relied", "found"),
    [
        (_on(_MissingCommitted, "_committed_offset", "attribute"), "[it is gone]"),
        (_on(_AckedAsPlainDict, "_acked", "attribute"), "we use it as a defaultdict"),
        (_on(_GapTakesARange, "_add_gap", "call"), "we pass (tp, offset_from, offset_to)"),
        (_on(_SyncGap, "_add_gap", "call"), "it is now synchronous"),
        (_on(_DrainWithTimeout, "_drain_messages", "override"), "ours are (fetcher)"),
        (_on(_CommitFromElsewhere, "_new_offset", "source"), "no longer has 'self._acked[tp]'"),
        (_on(_FakeConsumer, "_drain_messages", "copy"), "its code changed (fingerprint"),
    ],
    ids=["gone", "shape", "params", "sync", "override-params", "source", "copy"],
)
def test_the_checker_fails_with_what_to_recheck(relied: Relied, found: str) -> None:
    message = check(relied)
    assert message is not None
    expected = f"{relied.dist} {version(relied.dist)} changed {relied.where}.{relied.name}, which "
    assert message.startswith(expected + relied.uses + ": re-check " + relied.recheck), message
    assert found in message, message


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("_committed_offset", "attribute"),
        ("_acked", "attribute"),
        ("_add_gap", "call"),
        ("_drain_messages", "override"),
        ("_new_offset", "source"),
    ],
)
def test_the_checker_passes_a_fake_with_the_shape_we_use(name: str, kind: Kind) -> None:
    assert check(_on(_FakeConsumer, name, kind)) is None


def test_the_fingerprint_ignores_comments_docstrings_and_layout_only() -> None:
    plain = "def f(x):\n    return x + 1\n"
    documented = 'def f(x):\n    """Doc."""\n    # why\n    return (x +\n            1)  # note\n'
    changed = "def f(x):\n    return x + 2\n"
    assert fingerprint_source(plain) == fingerprint_source(documented)
    assert fingerprint_source(plain) != fingerprint_source(changed)
