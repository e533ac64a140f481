"""The Idempotency-Key store: the first answer replayed, other bodies refused, bounded,
expiring, and in-flight duplicates waiting for the first request."""

from __future__ import annotations

import asyncio

import pytest

from gateway.idempotency import Answer, IdempotencyStore, KeyReused

OK = Answer(200, {}, b'{"accepted": 1}')


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_answer_is_replayed() -> None:
    async def main() -> None:
        store = IdempotencyStore(ttl=60, max_entries=10)
        first = await store.begin("k", b"body")
        assert first.owner and first.answer is None
        store.finish(first, OK)
        again = await store.begin("k", b"body")
        assert not again.owner
        assert again.answer == OK

    asyncio.run(main())


def test_the_same_key_with_another_body_is_refused() -> None:
    async def main() -> None:
        store = IdempotencyStore(ttl=60, max_entries=10)
        store.finish(await store.begin("k", b"one"), OK)
        with pytest.raises(KeyReused, match="different request body"):
            await store.begin("k", b"two")

    asyncio.run(main())


def test_answers_expire_after_ttl() -> None:
    async def main() -> None:
        clock = Clock()
        store = IdempotencyStore(ttl=10, max_entries=10, clock=clock)
        store.finish(await store.begin("k", b"b"), OK)
        clock.now = 9.9
        assert (await store.begin("k", b"b")).answer == OK
        clock.now = 10.0
        fresh = await store.begin("k", b"b")
        assert fresh.owner, "expired: the retry runs again"
        assert len(store) == 1

    asyncio.run(main())


def test_the_store_is_bounded_oldest_finished_answer_goes_first() -> None:
    async def main() -> None:
        store = IdempotencyStore(ttl=60, max_entries=2)
        store.finish(await store.begin("a", b""), OK)
        store.finish(await store.begin("b", b""), OK)
        store.finish(await store.begin("c", b""), OK)
        assert len(store) == 2
        assert (await store.begin("a", b"")).owner, "a was forgotten"
        assert (await store.begin("c", b"")).answer == OK

    asyncio.run(main())


def test_the_store_is_bounded_in_bytes_too() -> None:
    async def main() -> None:
        big = Answer(200, {}, b"x" * 1000)
        store = IdempotencyStore(ttl=60, max_entries=100, max_bytes=2500)
        for key in "abc":
            store.finish(await store.begin(key, b""), big)
        assert len(store) == 2 and store.bytes <= 2500
        assert (await store.begin("a", b"")).owner, "the oldest answer went first"
        assert (await store.begin("c", b"")).answer == big

    asyncio.run(main())


def test_expiry_and_abandon_give_the_bytes_back() -> None:
    async def main() -> None:
        clock = Clock()
        store = IdempotencyStore(ttl=10, max_entries=10, clock=clock)
        store.finish(await store.begin("k", b""), OK)
        assert store.bytes > 0
        clock.now = 11
        claim = await store.begin("k", b"")
        assert store.bytes == 0
        store.abandon(claim)
        assert store.bytes == 0 and len(store) == 0

    asyncio.run(main())


def test_an_in_flight_duplicate_waits_for_the_first_answer() -> None:
    async def main() -> None:
        store = IdempotencyStore(ttl=60, max_entries=10)
        first = await store.begin("k", b"b")
        waiter = asyncio.create_task(store.begin("k", b"b"))
        await asyncio.sleep(0.01)
        assert not waiter.done(), "the duplicate waits while the first is in flight"
        store.finish(first, OK)
        claim = await waiter
        assert claim.answer == OK and not claim.owner

    asyncio.run(main())


def test_an_abandoned_request_hands_the_key_to_the_waiter() -> None:
    async def main() -> None:
        store = IdempotencyStore(ttl=60, max_entries=10)
        first = await store.begin("k", b"b")
        waiter = asyncio.create_task(store.begin("k", b"b"))
        await asyncio.sleep(0.01)
        store.abandon(first)  # e.g. a 503: not an answer to keep
        claim = await waiter
        assert claim.owner and claim.answer is None
        store.finish(claim, OK)
        assert (await store.begin("k", b"b")).answer == OK

    asyncio.run(main())


def test_only_the_owner_finishes() -> None:
    async def main() -> None:
        store = IdempotencyStore(ttl=60, max_entries=10)
        store.finish(await store.begin("k", b"b"), OK)
        replay = await store.begin("k", b"b")
        with pytest.raises(ValueError, match="does not own"):
            store.finish(replay, OK)

    asyncio.run(main())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        IdempotencyStore(ttl=0, max_entries=1)
    with pytest.raises(ValueError):
        IdempotencyStore(ttl=1, max_entries=0)
