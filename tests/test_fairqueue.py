"""The fair queue: round-robin across guilds then users, cancel, positions, and the property
that matters: a flooding guild does not starve a quiet one. Then the Lua that mirrors it (and
the token bucket) run in a real Redis against the Python on random inputs."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable

import pytest

from generation.limits import Limits, RateLimited, TokenBucket
from generation.options import GenerationOptions
from generation.protocol import WorkRequest
from generation.queue import CancelOutcome, QueuedJob, Throughput, places
from generation.queue.fair import FairQueue
from generation.queue.redis import RedisQueue, decode_request
from moderation.policy import ImagePolicy
from tests.conftest import REDIS_URL


def _drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while (popped := queue.pop()) is not None:
        out.append(popped[1])
    return out


def test_round_robin_across_guilds_then_users() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(3):
        queue.push(f"A1-{n}", guild=1, user=11)
    queue.push("A2-0", guild=1, user=12)
    queue.push("B1-0", guild=2, user=21)
    queue.push("B1-1", guild=2, user=21)
    predicted = [ticket.id for ticket in queue.order()]
    popped = []
    while (job := queue.pop()) is not None:
        popped.append(job)
    assert [item for _, item in popped] == ["A1-0", "B1-0", "A2-0", "B1-1", "A1-1", "A1-2"]
    assert [ticket.id for ticket, _ in popped] == predicted  # order() predicts pop() exactly
    assert len(queue) == 0


def test_a_newcomer_goes_before_the_guild_just_served() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("A1", guild=1, user=1)
    queue.push("A2", guild=1, user=1)
    assert queue.pop() is not None  # A1: guild 1 was served last and is alone at the front
    queue.push("B1", guild=2, user=2)  # arrives while A1 runs
    assert _drain(queue) == ["B1", "A2"]  # not behind another of guild 1's jobs


def test_cancel_and_positions() -> None:
    queue: FairQueue[str] = FairQueue()
    first = queue.push("a", guild=1, user=1)
    second = queue.push("b", guild=1, user=1)
    other = queue.push("c", guild=2, user=2)
    assert queue.positions() == {first.id: 0, other.id: 1, second.id: 2}
    assert queue.cancel(first) is True
    assert queue.cancel(first) is False
    assert queue.positions() == {second.id: 0, other.id: 1}
    assert _drain(queue) == ["b", "c"]
    assert queue.cancel(other) is False  # already popped


def test_a_flood_does_not_starve_a_trickle() -> None:
    """One server, service time 1: guild A queues 200 jobs at once from 5 users, guild B adds
    one job every 7 time units. B's wait stays within two service times."""
    queue: FairQueue[tuple[str, float]] = FairQueue()
    for n in range(200):
        queue.push(("A", 0.0), guild=1, user=n % 5)
    waits = {"A": [], "B": []}
    now, next_b = 0.0, 0.0
    while len(queue) or next_b < 150:
        while next_b <= now and next_b < 150:
            queue.push(("B", next_b), guild=2, user=99)
            next_b += 7
        popped = queue.pop()
        if popped is None:
            now = next_b
            continue
        guild, arrived = popped[1]
        waits[guild].append(now - arrived)
        now += 1.0
    assert len(waits["B"]) == 22
    assert max(waits["B"]) <= 2.0
    assert len(waits["A"]) == 200


def test_fair_order_is_what_pop_returns_on_random_queues() -> None:
    """``fair_order`` (which Redis positions use) predicts ``pop`` after any pushes and pops."""
    rng = random.Random(11)
    for _ in range(50):
        queue: FairQueue[int] = FairQueue()
        for n in range(rng.randrange(1, 40)):
            queue.push(n, guild=rng.choice([1, 2, 3, None]), user=rng.choice([1, 2, None]))
            if rng.random() < 0.3:
                queue.pop()
        predicted = [item for _, item in queue.items_in_order()]
        assert _drain(queue) == predicted


# The Lua scripts against the pure Python on random inputs, in a real Redis.


def _job(job_id: int, guild: int | None, user: int | None) -> QueuedJob:
    options = GenerationOptions("a red circle", "", (1,), 4, 3.0, 64, 64, "dpmpp")
    policy = ImagePolicy(threshold=0.5, strict_threshold=0.3)
    return QueuedJob(WorkRequest(job_id, options, policy), guild, user)


async def _claim(queue: RedisQueue, consumer: str = "probe") -> int | None:
    answer = await queue.scripts.claim(args=[queue.prefix, consumer])
    return None if not answer else decode_request(answer[2]).job_id


@pytest.mark.redis
@pytest.mark.parametrize("seed", [5, 6, 7])
async def test_redis_keeps_the_fair_order_places_and_etas_of_the_python_queue(
    redis_prefix: str, seed: int
) -> None:
    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    # One worker seen, at 2 s a standard image: the ETAs follow from the same pace.
    await queue.client.hset(f"{redis_prefix}:stats", "seconds_per_unit", 2.0)
    await queue.client.zadd(f"{redis_prefix}:workers", {"probe": time.time() + 3600})
    rng = random.Random(seed)
    local: FairQueue[int] = FairQueue()
    tickets = {}
    popped_local: list[int] = []
    popped_redis: list[int | None] = []
    try:
        for job_id in range(1, 201):
            if rng.random() < 0.6:  # pushes from a busy guild, a quiet one, and no guild (CLI)
                guild = rng.choice([1, 1, 1, 1, 2, None])
                user = rng.choice([10, 11, 12]) if guild == 1 else rng.choice([20, None])
                tickets[job_id] = local.push(job_id, guild=guild, user=user)
                await queue.submit(_job(job_id, guild, user))
            elif rng.random() < 0.2 and tickets:  # a cancel of a job that may still wait
                victim = rng.choice(list(tickets))
                removed = local.cancel(tickets.pop(victim))
                assert (await queue.cancel(victim) == CancelOutcome.DEQUEUED) == removed
            else:
                popped = local.pop()
                popped_local.append(popped[1] if popped else -1)
                popped_redis.append(await _claim(queue) or -1)
            if job_id % 25 == 0:  # the places and ETAs the bot announces
                units = _job(0, None, None).units
                order = [(item, units) for _, item in local.items_in_order()]
                assert await queue.positions() == places(order, Throughput(2.0))
        assert popped_redis == popped_local
        assert len(popped_local) > 30
    finally:
        await queue.close()


async def _wait_of(admission: Awaitable[None]) -> float:
    """0 when admitted, else the wait the refusal names."""
    try:
        await admission
    except RateLimited as refusal:
        return -1.0 if refusal.retry_after is None else refusal.retry_after
    return 0.0


@pytest.mark.redis
async def test_the_lua_token_bucket_answers_like_token_bucket(redis_prefix: str) -> None:
    """Random saved levels, ages, rates, bursts and costs: the wait the Lua admission gives and
    the level it saves are TokenBucket's (within what the clock moved during the call)."""
    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    rng = random.Random(3)
    try:
        for trial in range(150):
            rate, burst = rng.choice([6.0, 60.0, 600.0]), rng.choice([1.0, 4.0, 8.0, 40.0])
            saved, age = rng.uniform(0, 50), rng.choice([0.0, 10.0, 600.0, 7200.0])
            cost = rng.choice([0.0625, 0.5, 1.0, 4.0, 12.0, 60.0])
            user = f"{redis_prefix}:rl:u:1:{trial}"
            seconds, micros = await queue.client.time()
            now = seconds + micros / 1e6
            await queue.client.hset(
                user, mapping={"tokens": saved, "updated": now - age, "burst": 10.0}
            )
            limits = Limits(rate, burst, 1e12, 1e12, 10**6, 10**9)
            bucket = TokenBucket(10.0, 10.0, tokens=saved, updated=now - age)
            bucket.retune(rate, burst)
            wait = bucket.wait_for(cost, now)
            answered = await _wait_of(queue.admit(1, trial, cost, limits))
            drift = 0.05 * rate / 3600  # the call's own time, at most 50 ms
            assert answered == pytest.approx(wait, abs=drift * 3600 / rate + 1e-6)
            if not wait:
                bucket.take(cost, now)
                stored = float(await queue.client.hget(user, "tokens") or "nan")
                assert stored == pytest.approx(bucket.tokens, abs=drift + 1e-9)
    finally:
        await queue.close()
