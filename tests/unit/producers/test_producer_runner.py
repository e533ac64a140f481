"""The runner with a fake broker: checkpoints trail the acks, poison goes to the DLQ, a failed
delivery stops before any checkpoint past it, stop() finishes cleanly."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer

from headrace.checkpoints import CheckpointStore, decode_checkpoint
from headrace.dlq import HEADER_POSITION
from headrace.errors import DeliveryError
from producers.batch import Batch, Poison
from producers.encoder import RecordEncoder
from producers.runner import DeliveryReports, Runner
from schemas import JsonCodec, Record


class FakeMsg:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Holds deliveries until ``release()``; ``fail`` makes deliveries to a topic fail (reported
    to ``reports``, as librdkafka does with delivery.report.only.error); ``hold`` keeps
    deliveries outstanding for that many flush calls."""

    def __init__(self) -> None:
        self.reports = DeliveryReports()
        self.queued: list[tuple[Any, ...]] = []
        self.delivered: list[tuple[Any, ...]] = []
        self.hold = 0
        self.fail: str | None = None

    def produce(
        self,
        topic,
        value=None,
        key=None,
        partition=-1,
        on_delivery=None,
        callback=None,
        timestamp=0,
        headers=None,
    ):
        """confluent-kafka's signature (the runner passes its arguments by position)."""
        # no per-message callbacks: they cost more than producing
        assert on_delivery is None and callback is None and partition == -1
        self.queued.append((topic, value, key, headers, timestamp))

    def release(self) -> None:
        queued, self.queued = self.queued, []
        for item in queued:
            self.delivered.append(item)
            if item[0] == self.fail:
                error = KafkaError(KafkaError._MSG_TIMED_OUT, "broker said no")
                self.reports(error, cast(Message, FakeMsg(item[0])))

    def poll(self, timeout=0.0):
        return 0

    def __len__(self) -> int:
        return len(self.queued)

    def flush(self, timeout=0.0):
        if self.hold > 0:
            self.hold -= 1
            return len(self.queued)
        self.release()
        return 0

    def topics(self, topic):
        return [d for d in self.delivered if d[0] == topic]


class FakeStore:
    def __init__(self, state=None) -> None:
        self.state = state
        self.saved: list[Any] = []
        self.delivered_at_save: list[int] = []
        self.topic = "_cp"

    def load(self):
        return self.state

    def save(self, producer, state, on_delivery=None):
        self.saved.append(state)
        self.delivered_at_save.append(len(producer.topics("t")))
        producer.produce("_cp", value=orjson.dumps(state), key=b"src", on_delivery=on_delivery)


class ListSource:
    name = "src"
    unit = "objects"

    def __init__(self, batches, on_batch=None) -> None:
        self._batches = batches
        self.restored: Any = "unset"
        self.closed = False
        self.on_batch = on_batch

    def restore(self, state):
        self.restored = state

    def batches(self):
        for i, b in enumerate(self._batches):
            yield b
            if self.on_batch:
                self.on_batch(i)

    def close(self):
        self.closed = True


def _rec(i: int) -> Record:
    return Record({"id": i, "v": f"x{i}"}, position={"line": i})


def _runner(source, producer, store, **kw) -> Runner:
    enc = RecordEncoder(JsonCodec(), ["id"], None)
    return Runner(
        pipeline="p",
        source=source,
        topic="t",
        encoder=enc,
        producer=producer,
        store=store,
        reports=producer.reports,
        checkpoint_interval=0.0,
        **kw,
    )


def test_records_in_order_and_last_checkpoint_after_everything_acked() -> None:
    batches = [Batch([_rec(1), _rec(2)], {"n": 2}), Batch([_rec(3)], {"n": 3})]
    source, producer, store = ListSource(batches), FakeProducer(), FakeStore({"n": 0})
    progress = _runner(source, producer, store).run(once=True, poll_interval=0)
    assert source.restored == {"n": 0}
    assert [orjson.loads(d[1])["id"] for d in producer.topics("t")] == [1, 2, 3]
    assert [d[2] for d in producer.topics("t")] == [b"1", b"2", b"3"]
    assert store.delivered_at_save[-1] == 3  # every record acknowledged before the checkpoint
    assert store.saved[-1] == {"n": 3}
    assert progress.records == 3
    assert source.closed


def test_no_checkpoint_while_a_batch_is_unacknowledged() -> None:
    producer = FakeProducer()
    producer.hold = 3  # three flushes find deliveries still outstanding
    store = FakeStore()
    source = ListSource([Batch([_rec(1), _rec(2)], {"n": 2}), Batch([_rec(3)], {"n": 3})])
    runner = _runner(source, producer, store)
    gen = source.batches()
    runner._send(next(gen))
    assert producer.delivered == [] and store.saved == []
    runner._advance(block=False)  # the barrier waits until batch 1 is acknowledged
    assert store.saved == [{"n": 2}]
    assert store.delivered_at_save == [2]  # both records were acknowledged before the save
    runner.checkpoint_interval = 60.0
    runner._send(next(gen))
    runner._advance(block=False)  # not due: no barrier, no checkpoint
    assert store.saved == [{"n": 2}]
    runner._drain()
    assert store.saved == [{"n": 2}, {"n": 3}]
    assert store.delivered_at_save == [2, 3]


def test_poison_and_unencodable_records_go_to_the_dlq_with_positions() -> None:
    bad_line = Poison(b"{oops", "JSONDecodeError", "line 2: not valid JSON", {"line": 2})
    no_key = Record({"v": "no id"}, position={"line": 3}, raw=b'{"v": "no id"}')
    batches = [Batch([_rec(1), no_key], {"n": 3}, [bad_line])]
    producer, store = FakeProducer(), FakeStore()
    progress = _runner(ListSource(batches), producer, store).run(once=True, poll_interval=0)
    dlq = producer.topics("t.dlq")
    assert [(d[1], orjson.loads(dict(d[3])[HEADER_POSITION])) for d in dlq] == [
        (b'{"v": "no id"}', {"line": 3}),
        (b"{oops", {"line": 2}),
    ]
    assert progress.dead_letters == 2
    assert progress.records == 1
    assert store.saved[-1] == {"n": 3}  # the source moved on past the poison


def test_failed_delivery_stops_without_checkpointing_past_it() -> None:
    producer, store = FakeProducer(), FakeStore()
    producer.fail = "t"
    with pytest.raises(DeliveryError, match="broker said no"):
        _runner(ListSource([Batch([_rec(1)], {"n": 1})]), producer, store).run(
            once=True, poll_interval=0
        )
    assert store.saved == []


def test_stop_ends_after_the_current_batch_with_a_checkpoint() -> None:
    producer, store = FakeProducer(), FakeStore()
    runner: Runner | None = None

    def on_batch(i: int) -> None:
        if i == 1:
            assert runner is not None
            runner.stop()

    source = ListSource([Batch([_rec(i)], {"n": i}) for i in range(1, 6)], on_batch=on_batch)
    runner = _runner(source, producer, store)
    runner.run(once=False, poll_interval=5)
    # stop() arrived while the source made batch 3: that batch is finished, nothing after it
    assert [orjson.loads(d[1])["id"] for d in producer.topics("t")] == [1, 2, 3]
    assert store.saved[-1] == {"n": 3}
    assert decode_checkpoint("x", None) is None


def test_metrics_are_counted_per_source() -> None:
    from prometheus_client import REGISTRY

    labels = {"pipeline": "metricsp", "stage": "src", "kind": "source"}

    def sample(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    before = sample("headrace_records_total", outcome="produced")
    batches = [Batch([_rec(1), _rec(2), Record({"v": 1})], {"n": 1})]
    enc = RecordEncoder(JsonCodec(), ["id"], None)
    producer = FakeProducer()
    Runner(
        pipeline="metricsp",
        source=ListSource(batches),
        topic="t",
        encoder=enc,
        producer=cast(Producer, producer),
        store=cast(CheckpointStore, FakeStore()),
        reports=producer.reports,
        checkpoint_interval=0.0,
    ).run(once=True, poll_interval=0)
    assert sample("headrace_records_total", outcome="produced") - before == 2
    assert sample("headrace_dlq_records_total") >= 1
    assert sample("headrace_bytes_total", direction="out") > 0
    assert sample("headrace_batch_seconds_count") >= 1


def test_a_record_the_producer_refuses_goes_to_the_dlq() -> None:
    from confluent_kafka import KafkaException

    class Refusing(FakeProducer):
        def produce(self, topic, value=None, key=None, *args, **kw):
            if topic == "t" and value and len(value) > 30:
                raise KafkaException("Message size too large")
            super().produce(topic, value, key, *args, **kw)

    big = Record({"id": 9, "v": "x" * 50}, position={"line": 9})
    producer, store = Refusing(), FakeStore()
    progress = _runner(ListSource([Batch([_rec(1), big], {"n": 2})]), producer, store).run(
        once=True, poll_interval=0
    )
    assert progress.records == 1
    [dead] = producer.topics("t.dlq")
    assert dead[2] == b"9"
    assert b"too large" in dict(dead[3])["headrace.error.message"]
    assert store.saved[-1] == {"n": 2}


def test_a_lost_checkpoint_is_an_error_not_silence() -> None:
    class LosingStore(FakeStore):
        def save(self, producer, state, on_delivery=None):
            self.saved.append(state)
            producer.produce("_cp", value=b"{}", key=b"src", on_delivery=on_delivery)

    producer, store = FakeProducer(), LosingStore()
    producer.fail = "_cp"
    with pytest.raises(DeliveryError, match="checkpoint"):
        _runner(ListSource([Batch([_rec(1)], {"n": 1})]), producer, store).run(
            once=True, poll_interval=0
        )


def test_checkpoints_wait_for_a_quiet_moment_or_force_a_barrier_after_three_intervals() -> None:
    producer, store = FakeProducer(), FakeStore()
    batches = [Batch([_rec(i)], {"n": i}) for i in range(1, 4)]
    runner = _runner(ListSource(batches), producer, store)
    runner.checkpoint_interval = 1.0
    gen = runner.source.batches()

    runner._send(next(gen))
    runner._last_checkpoint -= 1.5  # due, but a delivery is outstanding: no stall
    runner._advance(block=False)
    assert store.saved == [] and len(producer.queued) == 1
    producer.release()  # a quiet moment: the checkpoint needs no waiting
    runner._advance(block=False)
    assert store.saved == [{"n": 1}]

    runner._send(next(gen))
    runner._send(next(gen))
    runner._last_checkpoint -= 3.5  # never quiet for three intervals: wait for the acks
    runner._advance(block=False)
    assert store.saved == [{"n": 1}, {"n": 3}]
    assert store.delivered_at_save == [1, 3]


def test_an_unchanged_position_is_not_stored_again() -> None:
    """A caught-up source polls and reports the same position each time (a new but equal
    object): the checkpoint topic gets nothing new."""
    producer, store = FakeProducer(), FakeStore()
    batches = [Batch([_rec(1)], {"n": 1}), Batch([], {"n": 1}), Batch([], {"n": 1})]
    runner = _runner(ListSource(batches), producer, store)
    gen = runner.source.batches()
    for _ in range(3):
        runner._send(next(gen))
        producer.release()
        runner._last_checkpoint -= 5.0
        runner._advance(block=False)
    assert store.saved == [{"n": 1}]


class Bounded(FakeProducer):
    """A local queue of ``room`` messages: BufferError when it is full; poll() delivers."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.full = 0

    def produce(self, topic, value=None, key=None, *args, **kw):
        if len(self.queued) >= self.room:
            self.full += 1
            raise BufferError("Local: Queue full")
        super().produce(topic, value, key, *args, **kw)

    def poll(self, timeout=0.0):
        self.release()
        return 0


def _timed(i: int, **extra) -> Record:
    value = {"id": i, "ts": f"2024-05-01T00:00:{i:02d}Z", **extra}
    return Record(value, position={"line": i}, raw=orjson.dumps(value))


def test_a_full_local_queue_resumes_at_the_record_it_refused() -> None:
    producer, store = Bounded(room=3), FakeStore()
    batch = Batch([_timed(i) for i in range(1, 11)], {"n": 10})
    enc = RecordEncoder(JsonCodec(), ["id"], "ts")
    runner = _runner(ListSource([batch]), producer, store)
    runner.encoder = enc
    progress = runner.run(once=True, poll_interval=0)
    sent = producer.topics("t")
    assert producer.full >= 3  # the queue filled up several times inside the batch
    assert [d[2] for d in sent] == [str(i).encode() for i in range(1, 11)]  # once each, in order
    assert [d[4] for d in sent] == [1714521600000 + i * 1000 for i in range(1, 11)]
    assert progress.records == 10
    assert store.saved[-1] == {"n": 10}


def test_refused_and_poison_records_keep_their_own_positions() -> None:
    from confluent_kafka import KafkaException

    class Refusing(FakeProducer):
        def produce(self, topic, value=None, key=None, *args, **kw):
            if topic == "t" and value and len(value) > 60:
                raise KafkaException("Message size too large")
            super().produce(topic, value, key, *args, **kw)

    no_time = Record({"id": 2}, position={"line": 2}, raw=b'{"id": 2}')
    records = [_timed(1), no_time, _timed(3, pad="x" * 40), _timed(4), _timed(5, pad="y" * 40)]
    producer, store = Refusing(), FakeStore()
    runner = _runner(ListSource([Batch(records, {"n": 5})]), producer, store)
    runner.encoder = RecordEncoder(JsonCodec(), ["id"], "ts")
    progress = runner.run(once=True, poll_interval=0)
    assert [d[2] for d in producer.topics("t")] == [b"1", b"4"]
    dlq = producer.topics("t.dlq")
    assert {orjson.loads(dict(d[3])[HEADER_POSITION])["line"]: d[2] for d in dlq} == {
        2: b"2",
        3: b"3",
        5: b"5",
    }
    assert progress.records == 2
    assert progress.dead_letters == 3
    assert progress.bytes == sum(len(d[1]) for d in producer.topics("t"))


class NoEncoder(RecordEncoder):
    def encode_many(self, values, raws):
        raise AssertionError("rows the source encoded are not encoded again")


def test_rows_the_source_encoded_are_produced_as_they_are() -> None:
    from producers.batch import Rows
    from producers.encoder import Encoded

    values = [{"id": 1}, {"id": 2}]
    encoded = Encoded([b"k1", b"k2"], [b"v1", b"v2"], [1000, 2000])
    rows = Rows(values, [b"v1", b"v2"], lambda i: {"line": i + 1}, encoded)
    bad = Poison(b'{"x": 1}', "PoisonRecord", "key field 'id' missing", {"line": 3}, b"k3")
    producer, store = FakeProducer(), FakeStore()
    runner = _runner(ListSource([Batch(rows, {"n": 3}, [bad])]), producer, store)
    runner.encoder = NoEncoder(JsonCodec(), ["id"], None)
    progress = runner.run(once=True, poll_interval=0)
    assert [(d[1], d[2], d[4]) for d in producer.topics("t")] == [
        (b"v1", b"k1", 1000),
        (b"v2", b"k2", 2000),
    ]
    [dead] = producer.topics("t.dlq")
    assert dead[1] == b'{"x": 1}' and dead[2] == b"k3"
    assert progress.records == 2 and progress.dead_letters == 1


def test_encoded_rows_must_match_their_values() -> None:
    from producers.batch import Rows
    from producers.encoder import Encoded

    with pytest.raises(ValueError, match="1 encoded records for 2 records"):
        Rows([{"id": 1}, {"id": 2}], None, None, Encoded(None, [b"v1"], None))


class ArgsProducer(FakeProducer):
    """Records the positional arguments of each produce call as they came."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def produce(self, *args, **kw):
        if args[0] == "t":  # the records (the runner passes them by position)
            assert not kw
            self.calls.append(args)
        super().produce(*args, **kw)


def _encoded_batch(encoded: Any) -> Batch:
    from producers.batch import Rows

    values = [{"id": i} for i in range(len(encoded.datas))]
    return Batch(Rows(values, None, lambda i: {"line": i}, encoded), {"n": 1})


def test_headers_a_source_sets_are_produced_and_others_are_produced_as_before() -> None:
    from producers.encoder import Encoded

    h1, h2 = [("a", b"1")], [("a", b"2"), ("b", b"x")]
    cases = [  # (encoded, the produce calls expected)
        (
            Encoded([b"k1", b"k2"], [b"v1", b"v2"], [1000, 2000], headers=[h1, h2]),
            [
                ("t", b"v1", b"k1", -1, None, None, 1000, h1),
                ("t", b"v2", b"k2", -1, None, None, 2000, h2),
            ],
        ),
        (  # headers without event times: timestamp 0 ("now", librdkafka's default)
            Encoded([b"k1"], [b"v1"], None, headers=[h1]),
            [("t", b"v1", b"k1", -1, None, None, 0, h1)],
        ),
        (  # no headers: the very calls of before (3 arguments, or 7 with times)
            Encoded([b"k1"], [b"v1"], None),
            [("t", b"v1", b"k1")],
        ),
        (Encoded([b"k1"], [b"v1"], [5]), [("t", b"v1", b"k1", -1, None, None, 5)]),
    ]
    for encoded, calls in cases:
        producer = ArgsProducer()
        runner = _runner(ListSource([_encoded_batch(encoded)]), producer, FakeStore())
        runner.encoder = NoEncoder(JsonCodec(), ["id"], None)
        runner.run(once=True, poll_interval=0)
        assert producer.calls == calls


def test_headers_stay_with_their_records_when_poison_is_left_out() -> None:
    from headrace.errors import PoisonRecord
    from producers.encoder import Encoded

    h = [[("n", b"0")], None, [("n", b"2")]]
    encoded = Encoded([b"k0", None, b"k2"], [b"v0", None, b"v2"], [1, None, 3], headers=h)
    encoded.poison[1] = PoisonRecord("bad")
    good, index = encoded.good()
    assert index == [0, 2] and good.headers == [[("n", b"0")], [("n", b"2")]]


def test_a_once_run_knows_whether_a_stop_cut_it_short() -> None:
    """``headrace produce --once`` exits 143, not 0, when SIGTERM stopped it before the
    source's end: ``headrace run`` takes exit 0 of a --once source as "all ingested" and would
    never start it again (the chaos suite's `produce SIGTERM` lost the rest of the table)."""
    producer, store = FakeProducer(), FakeStore()
    runner: Runner | None = None

    def on_batch(i: int) -> None:
        if i == 1:
            assert runner is not None
            runner.stop()

    source = ListSource([Batch([_rec(i)], {"n": i}) for i in range(1, 6)], on_batch=on_batch)
    runner = _runner(source, producer, store)
    runner.run(once=True, poll_interval=5)
    assert runner.interrupted and store.saved[-1] == {"n": 3}

    whole = _runner(ListSource([Batch([_rec(1)], {"n": 1})]), FakeProducer(), FakeStore())
    whole.run(once=True, poll_interval=5)
    assert not whole.interrupted  # read to the end: done

    early = _runner(ListSource([Batch([_rec(1)], {"n": 1})]), FakeProducer(), FakeStore())
    early.stop()  # SIGTERM before the first pass
    early.run(once=True, poll_interval=5)
    assert early.interrupted


def test_produce_once_exits_143_when_stopped_early(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from headrace_cli import produce_cmd

    class Stopped:
        interrupted = True
        store = None

        def run(self, *, once: bool, poll_interval: float) -> Any:
            return None

        def stop(self) -> None: ...

        def stall(self) -> None:
            return None

    monkeypatch.setattr("headrace.config.load_pipeline", lambda _p: object())
    monkeypatch.setattr(
        "producers.build.source_config", lambda _p, _n: argparse.Namespace(type="s3")
    )
    monkeypatch.setattr("producers.build.build_runner", lambda *_a, **_k: (Stopped(), 1.0))
    monkeypatch.setattr("headrace.host.host", lambda _p, **kw: kw["run"]())
    monkeypatch.setattr("producers.progress.ProgressDisplay.done", lambda *_a: None)
    args = argparse.Namespace(name="orders", once=True, reset=False, file=None)
    assert produce_cmd._produce(args) == produce_cmd.STOPPED_EARLY == 143
    Stopped.interrupted = False
    assert produce_cmd._produce(args) == 0
    args.once = False  # a long-running source stopped by SIGTERM is done: exit 0
    Stopped.interrupted = True
    assert produce_cmd._produce(args) == 0
