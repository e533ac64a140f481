"""The gateway's topic limit under a burst, against the stack's Kafka (issue #18).

`headrace gateway` runs as a process with a topic limited to 200 records/s with a burst of
400. 400 clients (each its own token, so its own client) POST 4 records at a time, each
request with its own ``Idempotency-Key``, for 5 s, their first requests arriving within
0.2 s (after each client's connection is open and one warm-up POST to another topic has gone
through). A client that gets a 429 waits ``Retry-After`` (plus up to 0.5 s of jitter) and
retries the same request with the same key; 40 clients give a request's first attempt a
2 ms timeout and retry it at once with the same key when it expires, as a client does
whose answer got lost. Then:

- accepted == what the bucket allows, ``burst + rate x elapsed``, within 2%, while the
  clients offered at least twice that (the bucket decided, not the gateway's speed);
- every 429 carries ``Retry-After`` (an integer >= 1) and the ``RateLimit-*`` headers, and
  every 200 the ``RateLimit-*`` headers;
- every accepted record is on the topic exactly once, at the partition and offset its answer
  gave, and nothing else is: retries after a 429 or a timeout duplicated nothing;
- a retry of an answered request replays the first answer (same offsets) and writes nothing.

A second test runs a topic with ``queue: true``: 100 requests at once against rate 50/s,
burst 10 and ``max_wait`` 1 s: the burst passes at once, the next 50 are held up to ~1 s and
accepted, the rest get their 429 (with ``Retry-After``) at once; the topic holds exactly the
accepted records.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from confluent_kafka import Consumer, TopicPartition

from gateway.auth import mint_token
from headrace.config.gateway_security import GatewayAuth

RATE = 200
BURST = 400
CLIENTS = 400
RAMP = 0.2
"""Seconds over which the 400 clients send their first request (a burst; all at once, the
test process itself kept the gateway off the CPU for the first ~0.1 s, which cost tokens)."""
PER_REQUEST = 4
"""Records per POST: the clients offer records several times faster than the limit even on
a loaded machine, so the bucket, not the gateway's speed, decides what is accepted."""
SECONDS = 5.0
PARTITIONS = 3
TIMEOUT_CLIENTS = 40
"""Clients whose records' first attempt has a timeout short enough to expire now and then."""
ISSUER = "headrace-test"
AUDIENCE = "headrace-gateway"
SECRET_ENV = "HRTEST_GATEWAY_SECRET"


@dataclass
class Tally:
    """What the clients saw."""

    accepted: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (p, offset)
    answers: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    replayed: int = 0  # answers to retries that the gateway replayed (Idempotency-Replayed)
    retries: int = 0
    bad_429: list[str] = field(default_factory=list)
    bad_200: list[str] = field(default_factory=list)
    first_sent: float = 0.0
    last_sent: float = 0.0
    last_refused: float = 0.0  # when the last 429 to a request sent before the deadline came
    requests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (key, body)
    offered: int = 0  # records sent before the deadline, retries included


def _pipeline(bootstrap: str, topics: dict[str, Any], port: int) -> str:
    """A pipeline file of only a gateway on ``port`` with HS256 auth and ``topics``."""
    data = {
        "name": "gatewaylimits",
        "kafka": {"bootstrap_servers": bootstrap},
        "metrics": {"port": _free_port()},
        "gateway": {
            "host": "127.0.0.1",
            "port": port,
            "auth": {"secret": "${" + SECRET_ENV + "}", "issuer": ISSUER, "audience": AUDIENCE},
            "topics": topics,
        },
    }
    return json.dumps(data, indent=2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the gateway exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the gateway was not ready within 60 s:\n{log.read_text()[-3000:]}")


@contextmanager
def _gateway(pipeline: Path, secret: str, log: Path, repo_root: Path, base: str) -> Iterator[None]:
    """``headrace gateway`` on ``pipeline`` while the block runs (ready when it starts)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "headrace_cli.main", "gateway", "-f", str(pipeline)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=repo_root,
            env={**os.environ, SECRET_ENV: secret},
        )
        try:
            _wait_ready(proc, base, log)
            yield
            assert proc.poll() is None, log.read_text()[-3000:]  # it served throughout
        finally:
            proc.terminate()
            proc.wait(30)


def _check_limit_headers(headers: Any, status: int) -> str | None:
    """None when the headers are right for ``status``, else what is wrong."""
    for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        value = headers.get(name)
        if value is None or not value.isdigit():
            return f"{status}: {name} is {value!r}"
    if headers["RateLimit-Limit"] != str(BURST):
        return f"{status}: RateLimit-Limit {headers['RateLimit-Limit']}"
    if status == 429:
        retry = headers.get("Retry-After")
        if retry is None or not retry.isdigit() or int(retry) < 1:
            return f"429: Retry-After is {retry!r}"
    return None


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    number: int,
    deadline: float,
    tally: Tally,
) -> None:
    rng = random.Random(number)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    short = number < TIMEOUT_CLIENTS
    seq = 0
    await asyncio.sleep(RAMP * number / CLIENTS)  # the burst arrives over RAMP seconds
    while time.monotonic() < deadline:
        request_id = f"c{number:03d}-{seq:05d}"
        seq += 1
        ids = [f"{request_id}-{j}" for j in range(PER_REQUEST)]
        body = json.dumps([{"id": i, "client": number, "seq": seq} for i in ids]).encode()
        key = uuid4().hex
        tally.requests[request_id] = (key, body)
        attempt = 0
        timed_out = False
        while True:
            attempt += 1
            now = time.monotonic()
            if attempt > 1 and now >= deadline and not timed_out:
                break  # a refused record is given up at the deadline; a timed-out one is
                # retried until its answer is known (the gateway may have accepted it)
            tally.first_sent = tally.first_sent or now
            if now < deadline:  # past it only timed-out requests are retried, for their answer
                tally.last_sent = max(tally.last_sent, now)
                tally.offered += PER_REQUEST
            if attempt > 1:
                tally.retries += 1
            timeout = aiohttp.ClientTimeout(total=0.002 if short and attempt == 1 else 30)
            try:
                async with session.post(
                    url,
                    data=body,
                    headers={**headers, "Idempotency-Key": key},
                    timeout=timeout,
                ) as response:
                    payload = await response.read()
                    status = response.status
                    timed_out = False
                    tally.answers[status] += 1
                    problem = _check_limit_headers(response.headers, status)
                    if status == 429:
                        if now < deadline:  # a 429 comes right after its decision
                            tally.last_refused = max(tally.last_refused, time.monotonic())
                        if problem:
                            tally.bad_429.append(problem)
                        # honour Retry-After, with jitter so the clients do not come back together
                        retry_after = response.headers.get("Retry-After", "1")
                        pause = int(retry_after) if retry_after.isdigit() else 1
                        await asyncio.sleep(pause + rng.uniform(0, 0.5))
                        continue
                    if status != 200:
                        tally.bad_200.append(f"{status}: {payload[:200]!r}")
                        break
                    if response.headers.get("Idempotency-Replayed") == "true":
                        tally.replayed += 1
                    elif problem:
                        tally.bad_200.append(problem)
                    results = json.loads(payload)["results"]
                    for record_id, result in zip(ids, results, strict=True):
                        tally.accepted[record_id] = (result["partition"], result["offset"])
                    break
            except TimeoutError:
                tally.timeouts += 1  # retried at once with the same key
                timed_out = True
        if seq > 10_000:
            break


async def _load(url: str, tokens: list[str], seconds: float, warm: tuple[str, str]) -> Tally:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # open every client's connection first (GET /healthz takes no token), so the clock
        # does not start with 400 TCP handshakes queued in front of the first decisions
        health = url.split("/topics/")[0] + "/healthz"

        async def connect() -> None:
            async with session.get(health) as response:
                await response.read()

        await asyncio.gather(*(connect() for _ in tokens))
        # one POST to another topic first: whatever the gateway sets up on its first publish
        # (lazy imports, the producer's id and metadata) is done before the clock starts
        warm_url, warm_token = warm
        async with session.post(
            warm_url,
            data=b'{"id": "warm-up", "client": -1, "seq": 0}',
            headers={"Authorization": f"Bearer {warm_token}", "Content-Type": "application/json"},
        ) as response:
            assert response.status == 200, await response.text()
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(session, url, token, n, deadline, tally) for n, token in enumerate(tokens))
        )
    return tally


async def _replay(url: str, tokens: list[str], tally: Tally, requests: list[str]) -> list[str]:
    """Send answered requests again (same client, key and body): each must replay its first
    answer."""
    wrong = []
    async with aiohttp.ClientSession() as session:
        for request_id in requests:
            key, body = tally.requests[request_id]
            token = tokens[int(request_id[1:4])]
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            }
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                results = json.loads(payload)["results"] if response.status == 200 else []
                got = [(r["partition"], r["offset"]) for r in results]
                want = [tally.accepted[f"{request_id}-{j}"] for j in range(PER_REQUEST)]
                if response.status != 200 or got != want:
                    wrong.append(f"{request_id}: {response.status} {got}")
    return wrong


def _read_topic(
    bootstrap: str, topic: str, partitions: int = PARTITIONS
) -> list[tuple[str, int, int]]:
    """Every message of ``topic`` as (record id, partition, offset)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}.check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        found: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 30
        while sum(ends.values()) > len(found) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                value = message.value()
                partition, offset = message.partition(), message.offset()
                assert value is not None and partition is not None and offset is not None
                found.append((json.loads(value)["id"], partition, offset))
        assert len(found) == sum(ends.values()), (len(found), ends)
        return found
    finally:
        consumer.close()


def test_a_burst_is_cut_to_the_bucket_and_retries_duplicate_nothing(
    new_topic: Any, kafka_bootstrap: str, repo_root: Path, tmp_path: Path
) -> None:
    topic = new_topic(".gw", PARTITIONS)
    secret = secrets.token_urlsafe(32)
    auth = GatewayAuth.model_validate({"secret": secret, "issuer": ISSUER, "audience": AUDIENCE})
    tokens = [
        mint_token(auth, sub=f"client-{n}", scopes=[f"publish:{topic}"], ttl=600)
        for n in range(CLIENTS)
    ]
    port = _free_port()
    pipeline = tmp_path / "pipeline.yaml"
    warm = new_topic(".warm", 1)
    warm_token = mint_token(auth, sub="warm-up", scopes=[f"publish:{warm}"], ttl=600)
    limited = {
        "key": ["id"],
        "schema": {"type": "object", "required": ["id", "client", "seq"]},
        "limit": {"rate": RATE, "burst": BURST},
    }
    pipeline.write_text(_pipeline(kafka_bootstrap, {topic: limited, warm: {}}, port))
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/topics/{topic}/records"
    with _gateway(pipeline, secret, tmp_path / "gateway.log", repo_root, base):
        warm_url = f"{base}/topics/{warm}/records"
        tally = asyncio.run(_load(url, tokens, SECONDS, (warm_url, warm_token)))
        replay_ids = sorted({i.rsplit("-", 1)[0] for i in tally.accepted})[:50]
        wrong_replays = asyncio.run(_replay(url, tokens, tally, replay_ids))

    # Every answer was a 200 or a 429 with the right headers.
    assert set(tally.answers) <= {200, 429}, (tally.answers, tally.bad_200[:5])
    assert not tally.bad_429, tally.bad_429[:5]
    assert not tally.bad_200, tally.bad_200[:5]
    # Accepted == what the bucket allows over the time requests were being decided: from the
    # first request sent to the last one sent, or to the last 429 if the gateway was still
    # deciding requests sent before the deadline (a backlog on a loaded machine)
    elapsed = max(tally.last_sent, tally.last_refused) - tally.first_sent
    allowed = BURST + RATE * elapsed
    accepted = len(tally.accepted)
    summary = (
        f"accepted {accepted}, bucket allows {allowed:.0f} over {elapsed:.2f} s; "
        f"{tally.offered} records offered; answers {dict(tally.answers)}, "
        f"{tally.timeouts} timeouts, {tally.retries} retries, {tally.replayed} replayed"
    )
    print(summary)
    # the clients offered far more than the limit: the bucket decided, not the gateway's speed
    assert tally.offered >= 2 * allowed and tally.answers[429] > CLIENTS, summary
    assert abs(accepted - allowed) <= 0.02 * allowed, summary
    # both kinds of retry ran, and timed-out requests the gateway had taken were answered
    # again (replayed or awaited in flight), not run twice
    assert tally.timeouts > 0 and tally.retries > tally.timeouts and tally.replayed > 0, summary

    # Every accepted record is on the topic exactly once, where its answer said; nothing else.
    on_topic = _read_topic(kafka_bootstrap, topic)
    counts = Counter(record_id for record_id, _, _ in on_topic)
    duplicated = {k: v for k, v in counts.items() if v > 1}
    assert not duplicated, list(duplicated.items())[:5]
    assert set(counts) == set(tally.accepted)
    assert {rid: (p, o) for rid, p, o in on_topic} == tally.accepted

    # A retried answered request replays its answer and writes nothing.
    assert not wrong_replays, wrong_replays[:5]
    assert len(_read_topic(kafka_bootstrap, topic)) == len(on_topic)


def test_queue_holds_requests_up_to_max_wait_then_refuses(
    new_topic: Any, kafka_bootstrap: str, repo_root: Path, tmp_path: Path
) -> None:
    """``queue: true``: past the burst, requests are held for their tokens (served in order at
    the rate) while that takes at most ``max_wait``; the rest get their 429 at once."""
    rate, burst, max_wait, sent = 50, 10, 1.0, 100
    topic = new_topic(".q", 1)
    secret = secrets.token_urlsafe(32)
    auth = GatewayAuth.model_validate({"secret": secret, "issuer": ISSUER, "audience": AUDIENCE})
    token = mint_token(auth, sub="queued", scopes=[f"publish:{topic}"], ttl=600)
    limit = {"rate": rate, "burst": burst, "queue": True, "max_wait": f"{max_wait}s"}
    port = _free_port()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(_pipeline(kafka_bootstrap, {topic: {"key": ["id"], "limit": limit}}, port))
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sends: list[float] = []

    async def post_all() -> tuple[list[tuple[str, int, float, Any]], float]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def connect() -> None:
                async with session.get(f"{base}/healthz") as response:
                    await response.read()

            await asyncio.gather(*(connect() for _ in range(sent)))
            start = time.monotonic()

            async def one(n: int) -> tuple[str, int, float, Any]:
                sends.append(time.monotonic())
                body = json.dumps({"id": f"r{n:03d}"}).encode()
                url = f"{base}/topics/{topic}/records"
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    return (f"r{n:03d}", response.status, time.monotonic(), response.headers)

            answers = await asyncio.gather(*(one(n) for n in range(sent)))
            return answers, start

    with _gateway(pipeline, secret, tmp_path / "gateway.log", repo_root, base):
        answers, start = asyncio.run(post_all())

    accepted = [(rid, at - start) for rid, status, at, _ in answers if status == 200]
    refused = [(at - start, h) for _, status, at, h in answers if status == 429]
    assert len(accepted) + len(refused) == sent, [a[1] for a in answers]
    # the burst at once, then rate x max_wait more held (plus what refilled while the 100
    # requests were arriving)
    spread = max(sends) - min(sends)
    most = burst + rate * (max_wait + spread) + 1
    assert burst + rate * max_wait <= len(accepted) <= most, (len(accepted), spread)
    held = sorted(t for _, t in accepted)
    assert held[-1] >= 0.8 * max_wait  # the last ones were held close to max_wait
    assert held[-1] <= max_wait + 1.0  # and not longer (plus answering)
    for _, h in refused:
        assert h["Retry-After"].isdigit() and int(h["Retry-After"]) >= 1, dict(h)
        assert h["RateLimit-Limit"] == str(burst)
    assert max(t for t, _ in refused) < max_wait  # refused at once, not after waiting
    on_topic = {rid for rid, _, _ in _read_topic(kafka_bootstrap, topic, partitions=1)}
    assert on_topic == {rid for rid, _ in accepted}
