"""The gateway's HTTP application (Starlette): routes and the order a publish request follows.

``create_app(gateway)`` returns the ASGI app for a ``Gateway`` (its parts, built by
``gateway.server.build_gateway`` or by a test with fakes). Routes:

- ``POST /topics/{topic}/records``: publish (below);
- ``GET /healthz``: 200 while the process serves (503 once it is shutting down);
- ``GET /readyz``: 200 when a broker answers a metadata request within 2 s and the breaker
  is not open, else 503 naming why;
- ``GET /metrics``: Prometheus text; ``GET /openapi.json`` and ``GET /docs``: the API.

A publish request goes through, in this order (the first refusal answers):

1. authentication (``auth`` configured): 401; the client is the token's ``sub``, else the
   peer address;
2. the topic: 404 unless declared under ``gateway.topics``; then authorization: 403;
3. the body: 413 past ``max_body``, 415 for another content type, 400 for malformed JSON
   (line and column);
4. ``Idempotency-Key``: the first answer again (the ``Idempotency-Replayed: true`` header
   says so), 422 when the key was used with another body;
5. the circuit breaker: 503 with ``Retry-After`` at once while open;
6. the rate limits: 429 with ``Retry-After`` and ``RateLimit-*`` (413 when the request has
   more records than a burst: it could never pass);
7. validation: rejected records go to ``<topic>.dlq``; an ``atomic`` topic refuses the whole
   request (422) when one record is rejected, and writes nothing;
8. produce, and answer once the broker acknowledged: 200 (all accepted), 207 (some
   rejected) or 422 (none accepted), with each record's partition and offset or reason.
   A produce that fails or times out: 503 with ``Retry-After``.

Answers are JSON. Errors are ``{"error": reason}``; publish results are ``{"topic",
"accepted", "rejected", "results": [{"index", "status": "accepted", "partition", "offset"}
| {"index", "status": "rejected", "reason"}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway import metrics
from gateway.auth import AuthError, Principal
from gateway.bodies import BodyError, Item, parse_records, read_body
from gateway.breaker import Breaker, State, Ticket
from gateway.idempotency import Answer, Claim, IdempotencyStore, KeyReused
from gateway.openapi import docs_page, openapi_spec
from gateway.publish import Delivery, Publisher, PublishError, QueueFull
from gateway.validate import Message, Rejection, TopicValidator
from headrace.dlq import DeadLetter

if TYPE_CHECKING:
    from headrace.config.gateway import GatewayConfig

__all__ = ["PUBLISH_ROUTE", "Gateway", "create_app"]

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]

log = logging.getLogger(__name__)

PUBLISH_ROUTE = "/topics/{topic}/records"
STAGE = "gateway"
"""The ``headrace.stage`` header of the gateway's dead letters."""
READY_TIMEOUT = 2.0
PROBE_TIMEOUT = 1.0
_KEPT = frozenset({200, 207, 422})
"""Answers an Idempotency-Key keeps: the request was decided (accepted or rejected).
Refusals that a retry may change (429, 503, 5xx) are not kept."""


class Authenticator(Protocol):
    """What the routes use of ``gateway.auth.Authenticator``: both raise ``AuthError``."""

    def authenticate(self, authorization: str | None) -> Principal: ...

    def authorize(self, principal: Principal, topic: str) -> None: ...


class Decision(Protocol):
    """``gateway.limits.Decision``."""

    @property
    def allowed(self) -> bool: ...

    @property
    def headers(self) -> dict[str, str]: ...

    @property
    def too_large(self) -> bool: ...


class Limiter(Protocol):
    """``gateway.limits.Limiter``."""

    def acquire(self, client: str, topic: str, n: int) -> Awaitable[Decision]: ...


class _Refusal(Exception):
    """Answer now with ``status`` and ``{"error": reason}``. ``later``: the request's records
    may still be acknowledged; awaiting it gives the answer they then deserve."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Mapping[str, str] | None = None,
        later: Callable[[], Awaitable[Response]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})
        self.later = later


@dataclass
class Gateway:
    """Everything the routes use; one per process (one event loop)."""

    config: GatewayConfig
    pipeline: str
    validators: dict[str, TopicValidator]
    publisher: Publisher
    breaker: Breaker
    limiter: Limiter
    idempotency: IdempotencyStore
    authenticator: Authenticator | None = None
    """None: no ``auth`` configured, every caller may publish."""
    auth_in_thread: bool = False
    """Authenticate in a worker thread (a JWKS URL may be fetched while checking a token)."""
    clock: Callable[[], float] = time.time
    serving: bool = field(default=True)
    settling: set[asyncio.Future[None]] = field(default_factory=set)
    """Tasks waiting for the outcome of timed-out requests (see ``_settle``)."""


def create_app(gateway: Gateway, lifespan: Lifespan | None = None) -> Starlette:
    """The ASGI app of ``gateway`` (see the module docstring); ``lifespan`` runs around the
    serving (the server flushes the producer when it ends)."""
    spec = orjson.dumps(openapi_spec(sorted(gateway.validators)))

    async def publish(request: Request) -> Response:
        who = [request.client.host if request.client else "unknown"]
        try:
            response = await _publish(gateway, request, who)
        except _Refusal as exc:
            response = _error(exc.status, exc.reason, exc.headers)
        except Exception:
            log.exception("gateway: publishing to %r failed", request.path_params.get("topic"))
            response = _error(500, "internal error; the gateway's log has the details")
        metrics.REQUESTS.labels(
            PUBLISH_ROUTE, str(response.status_code), metrics.client_label(who[0])
        ).inc()
        return response

    async def healthz(request: Request) -> Response:
        if not gateway.serving:
            return _counted("/healthz", _error(503, "shutting down"), request)
        return _counted("/healthz", _json(200, {"status": "ok"}), request)

    async def readyz(request: Request) -> Response:
        if gateway.breaker.state is State.OPEN:
            reason = gateway.breaker.reason or "the circuit breaker is open"
            response = _error(503, f"not ready: {reason}", _retry(gateway.breaker.retry_after()))
        elif not gateway.serving:
            response = _error(503, "not ready: shutting down")
        elif not await gateway.publisher.reachable(READY_TIMEOUT):
            response = _error(503, f"not ready: no broker answered within {READY_TIMEOUT:g} s")
        else:
            response = _json(200, {"status": "ready"})
        return _counted("/readyz", response, request)

    async def metrics_page(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = await asyncio.to_thread(generate_latest)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(openapi_spec(sorted(gateway.validators))))

    routes = [
        Route(PUBLISH_ROUTE, publish, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _counted(route: str, response: Response, request: Request) -> Response:
    client = request.client.host if request.client else "unknown"
    metrics.REQUESTS.labels(route, str(response.status_code), metrics.client_label(client)).inc()
    return response


async def _publish(gateway: Gateway, request: Request, who: list[str]) -> Response:
    """Steps 1 to 8 of the module docstring. ``who[0]`` is the client's id: the peer
    address, replaced by the token's ``sub`` once authenticated."""
    topic = request.path_params["topic"]
    client = who[0]
    principal = None
    if gateway.authenticator is not None:
        principal = await _authenticate(gateway, request.headers.get("authorization"))
        client = who[0] = principal.sub
    validator = gateway.validators.get(topic)
    if validator is None:
        raise _Refusal(404, f"topic {topic!r} is not writable through this gateway")
    if gateway.authenticator is not None and principal is not None:
        try:
            gateway.authenticator.authorize(principal, topic)
        except AuthError as exc:
            raise _Refusal(exc.status, exc.reason) from None
    try:
        body = await read_body(
            request.stream(), gateway.config.max_body, request.headers.get("content-length")
        )
        content_type = request.headers.get("content-type")
        items, _single = parse_records(body, content_type)
    except BodyError as exc:
        raise _Refusal(exc.status, str(exc)) from None
    key_header = request.headers.get("idempotency-key")
    if key_header is None:
        return await _run(gateway, request, client, validator, items)
    if not 1 <= len(key_header) <= 255:
        raise _Refusal(400, "Idempotency-Key must be 1 to 255 characters")
    fingerprint = hashlib.blake2b(
        b"\0".join([(content_type or "").encode(), request.url.query.encode(), body]),
        digest_size=16,
    ).digest()
    try:
        claim = await gateway.idempotency.begin(f"{client}\0{topic}\0{key_header}", fingerprint)
    except KeyReused as exc:
        raise _Refusal(422, str(exc)) from None
    if claim.answer is not None:
        headers = {**claim.answer.headers, "Idempotency-Replayed": "true"}
        return Response(claim.answer.body, claim.answer.status, headers, "application/json")
    try:
        response = await _run(gateway, request, client, validator, items)
    except _Refusal as refusal:
        if refusal.later is None:
            gateway.idempotency.abandon(claim)
        else:  # a retry with this key waits for the records' outcome, not a second produce
            task = asyncio.ensure_future(_settle(gateway, claim, refusal.later))
            gateway.settling.add(task)
            task.add_done_callback(gateway.settling.discard)
        raise
    except BaseException:
        gateway.idempotency.abandon(claim)
        raise
    if response.status_code in _KEPT:
        gateway.idempotency.finish(claim, Answer(response.status_code, {}, bytes(response.body)))
    else:
        gateway.idempotency.abandon(claim)
    return response


async def _settle(gateway: Gateway, claim: Claim, later: Callable[[], Awaitable[Response]]) -> None:
    """Keep the answer a timed-out request's records got in the end for its key (or forget
    the key when they failed)."""
    try:
        response = await later()
    except Exception:
        gateway.idempotency.abandon(claim)
        return
    if response.status_code in _KEPT:
        gateway.idempotency.finish(claim, Answer(response.status_code, {}, bytes(response.body)))
    else:
        gateway.idempotency.abandon(claim)


async def _authenticate(gateway: Gateway, header: str | None) -> Principal:
    assert gateway.authenticator is not None
    try:
        if gateway.auth_in_thread:
            principal: Principal = await asyncio.to_thread(
                gateway.authenticator.authenticate, header
            )
        else:
            principal = gateway.authenticator.authenticate(header)
    except AuthError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        raise _Refusal(exc.status, exc.reason, headers) from None
    return principal


async def _run(
    gateway: Gateway,
    request: Request,
    client: str,
    validator: TopicValidator,
    items: list[Item],
) -> Response:
    """Steps 5 to 8: breaker, limits, validation, produce."""
    topic = validator.topic
    await _pass_breaker(gateway)
    decision = await gateway.limiter.acquire(client, topic, len(items))
    limit_headers = dict(decision.headers)
    if not decision.allowed:
        if decision.too_large:
            raise _Refusal(
                413,
                f"{len(items)} records in one request is more than the rate limit's burst "
                "allows; send fewer records per request",
                limit_headers,
            )
        metrics.RATELIMITED.labels(metrics.client_label(client), topic).inc()
        raise _Refusal(429, "rate limit exceeded; retry after Retry-After seconds", limit_headers)
    now_ms = int(gateway.clock() * 1000)
    envelope = request.query_params.get("envelope", "").lower() in ("1", "true", "yes")
    messages, rejections = validator.check(
        items, now_ms=now_ms, explicit_key=request.query_params.get("key"), envelope=envelope
    )
    if rejections and validator.config.atomic:
        metrics.RECORDS.labels(topic, "rejected").inc(len(items))
        return _results(422, topic, [], rejections, limit_headers, atomic=True)
    letters = [_letter(topic, client, r, now_ms) for r in rejections]
    started = time.perf_counter()
    try:
        if validator.config.atomic:
            deliveries = await gateway.publisher.publish_atomic(topic, messages)
        else:
            deliveries = await gateway.publisher.publish(topic, messages, letters)
    except QueueFull as exc:
        gateway.breaker.trip(exc.reason)
        raise _Refusal(503, exc.reason, _retry(gateway.breaker.retry_after())) from None
    except PublishError as exc:
        gateway.breaker.failure(exc.reason)
        later = None
        if exc.later is not None:
            settle = exc.later

            async def answer() -> Response:
                deliveries = await settle()
                return _answer(gateway, topic, messages, deliveries, rejections, {}, started)

            later = answer
        raise _Refusal(503, exc.reason, _retry(gateway.breaker.retry_after()), later) from None
    return _answer(gateway, topic, messages, deliveries, rejections, limit_headers, started)


def _answer(
    gateway: Gateway,
    topic: str,
    messages: list[Message],
    deliveries: list[Delivery],
    rejections: list[Rejection],
    headers: Mapping[str, str],
    started: float,
) -> Response:
    """The answer to records the broker acknowledged (200, 207 or 422), counted."""
    gateway.breaker.success()
    if messages:
        metrics.PRODUCE_SECONDS.labels(topic).observe(time.perf_counter() - started)
        metrics.RECORDS.labels(topic, "accepted").inc(len(messages))
    if rejections:
        metrics.RECORDS.labels(topic, "rejected").inc(len(rejections))
    if not messages:
        status = 422
    else:
        status = 207 if rejections else 200
    accepted = list(zip(messages, deliveries, strict=True))
    return _results(status, topic, accepted, rejections, headers)


async def _pass_breaker(gateway: Gateway) -> None:
    breaker = gateway.breaker
    ticket = breaker.allow()
    if ticket is Ticket.GO:
        return
    if ticket is Ticket.PROBE:
        if await gateway.publisher.reachable(PROBE_TIMEOUT):
            breaker.success()
            return
        breaker.failure(f"no broker answered within {PROBE_TIMEOUT:g} s")
    reason = breaker.reason or "the broker is unreachable"
    raise _Refusal(
        503, f"Kafka is unavailable ({reason}); retry later", _retry(breaker.retry_after())
    )


def _letter(topic: str, client: str, rejection: Rejection, now_ms: int) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        stage=STAGE,
        error_class="PoisonRecord",
        message=rejection.reason,
        position={"client": client, "index": rejection.index, "received_ms": now_ms},
        key=rejection.key,
        value=rejection.value,
    )


def _results(
    status: int,
    topic: str,
    accepted: list[tuple[Message, Delivery]],
    rejected: list[Rejection],
    headers: Mapping[str, str],
    *,
    atomic: bool = False,
) -> Response:
    results: list[dict[str, Any]] = [
        {"index": m.index, "status": "accepted", "partition": d.partition, "offset": d.offset}
        for m, d in accepted
    ]
    if rejected:  # the accepted alone are in request order already
        results += [{"index": r.index, "status": "rejected", "reason": r.reason} for r in rejected]
        results.sort(key=lambda r: int(r["index"]))
    body: dict[str, Any] = {
        "topic": topic,
        "accepted": len(accepted),
        "rejected": len(rejected),
        "results": results,
    }
    if atomic:
        body["error"] = (
            f"topic {topic!r} is atomic: {len(rejected)} record(s) rejected, so nothing was written"
        )
    return _json(status, body, headers)


def _retry(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, dict(headers or {}), "application/json")


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json(status, {"error": reason}, headers)
