"""The gateway's routes with a fake publisher: statuses, per-record results, dead letters,
atomic topics, idempotency, the breaker, limits, auth, 404 for undeclared topics, health,
metrics and the OpenAPI page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.app import Gateway, create_app
from gateway.auth import Authenticator, mint_token
from gateway.breaker import Breaker, State
from gateway.idempotency import IdempotencyStore
from gateway.limits import Limiter
from gateway.publish import Delivery, PublishError, QueueFull
from gateway.validate import Message, build_validators
from headrace.config import Pipeline
from headrace.dlq import HEADER_ERROR_MESSAGE, HEADER_STAGE, DeadLetter

SECRET = "k" * 40
SCHEMA = {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}}


def state_of(breaker: Breaker) -> State:
    """The breaker's state, read afresh (mypy would keep an earlier assert's narrowing)."""
    return breaker.state


class FakePublisher:
    """Records what would be produced; offsets count up per topic on partition 0."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, Message]] = []
        self.letters: list[DeadLetter] = []
        self.transactions: list[list[Message]] = []
        self.fail: PublishError | None = None
        self.up = True
        self.closed = False
        self.calls = 0

    def _deliver(self, topic: str, messages: Sequence[Message]) -> list[Delivery]:
        out = []
        for m in messages:
            out.append(Delivery(0, len(self.produced)))
            self.produced.append((topic, m))
        return out

    async def publish(
        self, topic: str, messages: Sequence[Message], letters: Sequence[DeadLetter]
    ) -> list[Delivery]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        self.letters.extend(letters)
        return self._deliver(topic, messages)

    async def publish_atomic(self, topic: str, messages: Sequence[Message]) -> list[Delivery]:
        self.transactions.append(list(messages))
        return self._deliver(topic, messages)

    async def reachable(self, timeout: float) -> bool:
        return self.up

    def close(self, timeout: float) -> int:
        self.closed = True
        return 0


def make(
    *,
    auth: bool = False,
    limits: dict[str, Any] | None = None,
    topic_limit: dict[str, Any] | None = None,
) -> tuple[TestClient, FakePublisher, Gateway]:
    gateway_cfg: dict[str, Any] = {
        "topics": {
            "orders": {
                "key": "id",
                "schema": SCHEMA,
                **({"limit": topic_limit} if topic_limit else {}),
            },
            "events": {},
            "ledger": {"key": "id", "schema": SCHEMA, "atomic": True},
        }
    }
    if auth:
        gateway_cfg["auth"] = {"secret": SECRET, "issuer": "test", "audience": "gw"}
    if limits:
        gateway_cfg["limits"] = limits
    pipeline = Pipeline.model_validate(
        {"name": "p", "kafka": {"bootstrap_servers": "h:9092"}, "gateway": gateway_cfg}
    )
    cfg = pipeline.gateway
    assert cfg is not None
    publisher = FakePublisher()
    topic_limits = {n: t.limit for n, t in cfg.topics.items() if t.limit is not None}
    gateway = Gateway(
        config=cfg,
        pipeline="p",
        validators=build_validators(pipeline),
        publisher=publisher,
        breaker=Breaker(failures=2, open_for=30.0),
        limiter=Limiter(cfg.limits, topic_limits),
        idempotency=IdempotencyStore(ttl=60, max_entries=100),
        authenticator=Authenticator(cfg.auth) if cfg.auth else None,
        clock=lambda: 1000.0,
    )
    return TestClient(create_app(gateway)), publisher, gateway


@pytest.fixture
def client() -> Iterator[tuple[TestClient, FakePublisher, Gateway]]:
    yield make()


def post(client: TestClient, topic: str, body: Any, **headers: str) -> Any:
    kind = headers.pop("content_type", "application/json")
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        f"/topics/{topic}/records",
        content=data,
        headers={"Content-Type": kind, **{k.replace("_", "-"): v for k, v in headers.items()}},
    )


def test_all_accepted_is_200_with_partition_and_offset(client: Any) -> None:
    http, pub, _ = client
    r = post(http, "orders", [{"id": 1, "qty": 1}, {"id": 2, "qty": 3}])
    assert r.status_code == 200
    assert r.json() == {
        "topic": "orders",
        "accepted": 2,
        "rejected": 0,
        "results": [
            {"index": 0, "status": "accepted", "partition": 0, "offset": 0},
            {"index": 1, "status": "accepted", "partition": 0, "offset": 1},
        ],
    }
    assert [(t, m.key, m.timestamp_ms) for t, m in pub.produced] == [
        ("orders", b"1", 1_000_000),
        ("orders", b"2", 1_000_000),
    ]


def test_some_rejected_is_207_and_they_are_dead_lettered(client: Any) -> None:
    http, pub, _ = client
    r = post(http, "orders", [{"id": 1, "qty": 1}, {"id": 2, "qty": 0}, {"qty": 1}])
    assert r.status_code == 207
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    assert body["results"][1] == {
        "index": 1,
        "status": "rejected",
        "reason": "record 1: does not match the topic's JSON Schema: field 'qty': 0 is less "
        "than the minimum of 1",
    }
    assert body["results"][2]["reason"] == "record 2: key field 'id' is missing"
    assert [letter.topic for letter in pub.letters] == ["orders", "orders"]
    headers = dict(pub.letters[0].headers())
    assert headers[HEADER_STAGE] == b"gateway"
    assert headers[HEADER_ERROR_MESSAGE].startswith(b"record 1: does not match")
    assert pub.letters[0].key == b"2"
    assert orjson.loads(pub.letters[0].value or b"") == {"id": 2, "qty": 0}


def test_nothing_accepted_is_422(client: Any) -> None:
    http, pub, _ = client
    r = post(http, "orders", {"qty": 1})
    assert r.status_code == 422
    assert r.json()["results"] == [
        {"index": 0, "status": "rejected", "reason": "record 0: key field 'id' is missing"}
    ]
    assert len(pub.letters) == 1


def test_atomic_topics_refuse_the_whole_request_and_write_nothing(client: Any) -> None:
    http, pub, _ = client
    r = post(http, "ledger", [{"id": 1, "qty": 1}, {"id": 2, "qty": 0}])
    assert r.status_code == 422
    body = r.json()
    assert "atomic" in body["error"] and body["accepted"] == 0
    assert pub.produced == [] and pub.letters == [] and pub.transactions == []
    r = post(http, "ledger", [{"id": 1, "qty": 1}, {"id": 2, "qty": 2}])
    assert r.status_code == 200
    assert [len(t) for t in pub.transactions] == [2]


def test_jsonl_bodies(client: Any) -> None:
    http, pub, _ = client
    r = post(http, "events", b'{"a": 1}\n{"a": 2}\n', content_type="application/x-ndjson")
    assert r.status_code == 200 and r.json()["accepted"] == 2
    assert [m.value for _, m in pub.produced] == [b'{"a": 1}', b'{"a": 2}']


def test_explicit_key_and_envelopes(client: Any) -> None:
    http, pub, _ = client
    assert (
        http.post(
            "/topics/events/records?key=abc",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        ).status_code
        == 200
    )
    assert (
        http.post(
            "/topics/events/records?envelope=true",
            content=b'[{"value": {"a": 1}, "key": "k", "time": 7}]',
            headers={"Content-Type": "application/json"},
        ).status_code
        == 200
    )
    assert [(m.key, m.timestamp_ms) for _, m in pub.produced] == [(b"abc", 1_000_000), (b"k", 7)]


@pytest.mark.parametrize(
    ("body", "kind", "status", "error"),
    [
        (b'{"a": ', "application/json", 400, "malformed JSON at line 1 column 7"),
        (b"a,b", "text/csv", 415, "text/csv"),
        (b"[" + b"1," * 600_000 + b"1]", "application/json", 413, "max_body"),
    ],
)
def test_body_errors(client: Any, body: bytes, kind: str, status: int, error: str) -> None:
    http, pub, gw = client
    object.__setattr__(gw.config, "max_body", 1_000_000)
    r = post(http, "events", body, content_type=kind)
    assert r.status_code == status
    assert error in r.json()["error"]
    assert pub.produced == []


def test_undeclared_topics_are_404(client: Any) -> None:
    http, pub, _ = client
    r = post(http, "secret.topic", {"a": 1})
    assert r.status_code == 404
    assert r.json() == {"error": "topic 'secret.topic' is not writable through this gateway"}
    assert post(http, "orders.dlq", {"a": 1}).status_code == 404
    assert pub.produced == []


def test_idempotency_key_replays_the_first_answer(client: Any) -> None:
    http, pub, _ = client
    first = post(http, "events", {"a": 1}, Idempotency_Key="req-1")
    again = post(http, "events", {"a": 1}, Idempotency_Key="req-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert len(pub.produced) == 1
    other = post(http, "events", {"a": 2}, Idempotency_Key="req-1")
    assert other.status_code == 422 and "different request body" in other.json()["error"]
    assert post(http, "events", {"a": 1}, Idempotency_Key="req-2").status_code == 200
    assert len(pub.produced) == 2


def test_a_failed_request_is_not_kept_for_its_idempotency_key(client: Any) -> None:
    http, pub, _ = client
    pub.fail = PublishError("broker said no")
    assert post(http, "events", {"a": 1}, Idempotency_Key="r").status_code == 503
    pub.fail = None
    r = post(http, "events", {"a": 1}, Idempotency_Key="r")
    assert r.status_code == 200 and "Idempotency-Replayed" not in r.headers
    assert len(pub.produced) == 1


def test_the_breaker_opens_and_answers_503_at_once_then_probes(client: Any) -> None:
    http, pub, gw = client
    pub.fail = PublishError("timed out")
    r = post(http, "events", {"a": 1})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", "one failure: still closed"
    r = post(http, "events", {"a": 1})
    assert r.status_code == 503 and r.headers["Retry-After"] == "30", "the second opens it"
    assert state_of(gw.breaker) is State.OPEN
    calls = pub.calls
    r = post(http, "events", {"a": 1})
    assert r.status_code == 503 and "Kafka is unavailable (timed out)" in r.json()["error"]
    assert int(r.headers["Retry-After"]) >= 1
    assert pub.calls == calls, "refused without trying the producer"
    assert http.get("/readyz").status_code == 503
    # open_for passes: the next request probes the broker (a metadata request) and closes it
    gw.breaker._opened_at -= 30
    pub.fail = None
    assert post(http, "events", {"a": 1}).status_code == 200
    assert state_of(gw.breaker) is State.CLOSED


def test_a_failed_probe_keeps_it_open(client: Any) -> None:
    http, pub, gw = client
    gw.breaker.trip("all brokers down")
    gw.breaker._opened_at -= 30
    pub.up = False
    r = post(http, "events", {"a": 1})
    assert r.status_code == 503 and "no broker answered" in r.json()["error"]
    assert state_of(gw.breaker) is State.OPEN


def test_a_full_producer_queue_trips_the_breaker(client: Any) -> None:
    http, pub, gw = client
    pub.fail = QueueFull("the gateway's producer queue is full; retry later")
    r = post(http, "events", {"a": 1})
    assert r.status_code == 503 and "Retry-After" in r.headers
    assert state_of(gw.breaker) is State.OPEN


def test_rate_limits_answer_429_with_headers() -> None:
    http, pub, _ = make(topic_limit={"rate": 1, "per": "1m", "burst": 2})
    first = post(http, "orders", [{"id": 1, "qty": 1}])
    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    r = post(http, "orders", [{"id": 2, "qty": 1}, {"id": 3, "qty": 1}])
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1 and "RateLimit-Reset" in r.headers
    big = post(http, "orders", [{"id": i, "qty": 1} for i in range(3)])
    assert big.status_code == 413 and "burst" in big.json()["error"]
    assert len(pub.produced) == 1


def test_auth_refusals_and_the_client_is_the_token_subject() -> None:
    http, pub, gw = make(auth=True, limits={"rate": 1, "per": "1m", "burst": 1})
    assert gw.config.auth is not None
    token = mint_token(gw.config.auth, sub="svc-a", scopes=["publish:events"], ttl=60)
    r = post(http, "events", {"a": 1})
    assert r.status_code == 401 and r.json() == {"error": "missing Authorization header"}
    assert r.headers["WWW-Authenticate"] == "Bearer"
    r = post(http, "events", {"a": 1}, Authorization="Bearer nope")
    assert r.status_code == 401 and r.json() == {"error": "malformed token"}
    r = post(http, "orders", {"id": 1, "qty": 1}, Authorization=f"Bearer {token}")
    assert r.status_code == 403 and "publish:orders" in r.json()["error"]
    r = post(http, "nope", {"id": 1}, Authorization=f"Bearer {token}")
    assert r.status_code == 404
    assert post(http, "events", {"a": 1}, Authorization=f"Bearer {token}").status_code == 200
    r = post(http, "events", {"a": 1}, Authorization=f"Bearer {token}")
    assert r.status_code == 429, "svc-a's own bucket (burst 1) is empty"
    other = mint_token(gw.config.auth, sub="svc-b", scopes=["publish:events"], ttl=60)
    assert post(http, "events", {"a": 1}, Authorization=f"Bearer {other}").status_code == 200
    assert len(pub.produced) == 2


def test_health_ready_metrics_and_openapi(client: Any) -> None:
    http, pub, gw = client
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    pub.up = False
    r = http.get("/readyz")
    assert r.status_code == 503 and "no broker answered" in r.json()["error"]
    post(http, "events", {"a": 1})
    text = http.get("/metrics").text
    for name in (
        "headrace_gateway_requests_total",
        "headrace_gateway_records_total",
        "headrace_gateway_produce_seconds",
        "headrace_gateway_breaker_state",
    ):
        assert name in text
    assert 'headrace_gateway_records_total{outcome="accepted",topic="events"}' in text
    spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    enum = spec["paths"]["/topics/{topic}/records"]["post"]["parameters"][0]["schema"]["enum"]
    assert enum == ["events", "ledger", "orders"]
    assert "POST /topics/{topic}/records" in http.get("/docs").text
    gw.serving = False
    assert http.get("/healthz").status_code == 503


def test_a_retry_after_a_produce_timeout_gets_the_records_outcome() -> None:
    """The acknowledgements timed out (503), but the records were written a little later: a
    retry with the same Idempotency-Key waits for and gets that outcome, not a second
    produce."""
    _, pub, gw = make()

    async def later() -> list[Delivery]:
        await asyncio.sleep(0.3)
        return pub._deliver("events", [message])

    message = Message(0, None, b'{"a": 1}', 1)
    pub.fail = PublishError("the broker did not acknowledge the records within 5 s", later=later)
    with TestClient(create_app(gw)) as http:
        first = post(http, "events", {"a": 1}, Idempotency_Key="slow")
        assert first.status_code == 503
        pub.fail = None
        retry = post(http, "events", {"a": 1}, Idempotency_Key="slow")
        assert retry.status_code == 200, retry.json()
        assert retry.headers["Idempotency-Replayed"] == "true"
        assert retry.json()["results"] == [
            {"index": 0, "status": "accepted", "partition": 0, "offset": 0}
        ]
        assert pub.calls == 1 and len(pub.produced) == 1, "produced once"


def test_a_timed_out_request_that_fails_in_the_end_runs_again() -> None:
    _, pub, gw = make()

    async def later() -> list[Delivery]:
        await asyncio.sleep(0.1)
        raise PublishError("the broker did not acknowledge every record: timed out")

    pub.fail = PublishError("no acknowledgement within 5 s", later=later)
    with TestClient(create_app(gw)) as http:
        assert post(http, "events", {"a": 1}, Idempotency_Key="k").status_code == 503
        pub.fail = None
        retry = post(http, "events", {"a": 1}, Idempotency_Key="k")
        assert retry.status_code == 200 and "Idempotency-Replayed" not in retry.headers
        assert pub.calls == 2 and len(pub.produced) == 1
