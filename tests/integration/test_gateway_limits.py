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
    requests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (key, body)
    offered: int = 0  # records sent before the deadline, retries included


def _pipeline(bootstrap: str, topic: str, warm: str, port: int, metrics_port: int) -> str:
    data = {
        "name": "gatewaylimits",
        "kafka": {"bootstrap_servers": bootstrap},
        "metrics": {"port": metrics_port},
        "gateway": {
            "host": "127.0.0.1",
            "port": port,
            "auth": {"secret": "${" + SECRET_ENV + "}", "issuer": ISSUER, "audience": AUDIENCE},
            "topics": {
                topic: {
                    "key": ["id"],
                    "schema": {"type": "object", "required": ["id", "client", "seq"]},
                    "limit": {"rate": RATE, "burst": BURST},
                },
                warm: {},
            },
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


def _read_topic(bootstrap: str, topic: str) -> list[tuple[str, int, int]]:
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
        for p in range(PARTITIONS):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
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
    pipeline.write_text(_pipeline(kafka_bootstrap, topic, warm, port, _free_port()))
    log = tmp_path / "gateway.log"
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/topics/{topic}/records"
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
            warm_url = f"{base}/topics/{warm}/records"
            tally = asyncio.run(_load(url, tokens, SECONDS, (warm_url, warm_token)))
            replay_ids = sorted({i.rsplit("-", 1)[0] for i in tally.accepted})[:50]
            wrong_replays = asyncio.run(_replay(url, tokens, tally, replay_ids))
            assert proc.poll() is None, log.read_text()[-3000:]  # it served throughout
        finally:
            proc.terminate()
            proc.wait(30)

    # Every answer was a 200 or a 429 with the right headers.
    assert set(tally.answers) <= {200, 429}, (tally.answers, tally.bad_200[:5])
    assert not tally.bad_429, tally.bad_429[:5]
    assert not tally.bad_200, tally.bad_200[:5]
    # Accepted == what the bucket allows over the time requests were arriving.
    elapsed = tally.last_sent - tally.first_sent
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
