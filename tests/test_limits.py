"""Rate limits: cost follows the work, buckets refill, caps and the queue bound answer with a
reason and a wait, and a guild's new settings apply at once."""

from __future__ import annotations

import pytest

from generation.limits import Limits, RateLimited, RateLimiter, TokenBucket, work_units


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cost_follows_pixels_steps_and_variants() -> None:
    assert work_units(512, 512, 20, 1) == 1.0
    assert work_units(512, 512, 20, 4) == 4.0
    assert work_units(1024, 1024, 40, 1) == 8.0
    assert work_units(64, 64, 20, 4) == pytest.approx(0.0625)


def test_bucket_refills_at_its_rate_and_caps_at_its_burst() -> None:
    bucket = TokenBucket(rate_per_hour=60, burst=2)  # one unit a minute
    assert bucket.wait_for(2, now=0) == 0
    bucket.take(2, now=0)
    assert bucket.wait_for(1, now=0) == pytest.approx(60)
    assert bucket.wait_for(1, now=30) == pytest.approx(30)
    assert bucket.wait_for(1, now=3600) == 0
    assert bucket.wait_for(5, now=3600) == 0  # capped at the burst: waits, never refused forever
    with pytest.raises(ValueError, match="positive rate and burst"):
        TokenBucket(rate_per_hour=0, burst=1)


def test_a_user_over_the_limit_is_told_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, lambda guild: Limits(user_units_per_hour=60, user_burst=4))
    for _ in range(4):
        limiter.admit(1, 10, 1.0)
        limiter.finished(1, 10)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(1, 10, 1.0)
    assert refused.value.retry_after == pytest.approx(60)
    assert str(refused.value) == (
        "you can make this in 1 min (your limit is 60 standard images an hour)"
    )
    limiter.admit(1, 11, 1.0)  # another user of the same guild is not affected
    clock.now += 60
    limiter.admit(1, 10, 1.0)


def test_the_guild_bucket_is_shared_by_its_users() -> None:
    clock = Clock()
    limits = Limits(guild_units_per_hour=36, guild_burst=3, user_burst=10, max_jobs_per_user=10)
    limiter = RateLimiter(clock, lambda guild: limits)
    for user in (1, 2, 3):
        limiter.admit(5, user, 1.0)
    with pytest.raises(RateLimited, match="this server's limit is 36 standard images an hour"):
        limiter.admit(5, 4, 1.0)
    limiter.admit(6, 4, 1.0)  # another guild has its own


def test_caps_on_running_jobs_and_on_the_queue() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, lambda guild: Limits(max_jobs_per_user=2, max_queue_depth=3))
    limiter.admit(1, 1, 0.1)
    limiter.admit(1, 1, 0.1)
    with pytest.raises(RateLimited, match="you already have 2 jobs queued or running") as capped:
        limiter.admit(1, 1, 0.1)
    assert capped.value.retry_after is None  # it depends on a job finishing
    limiter.finished(1, 1)
    limiter.admit(1, 1, 0.1)
    limiter.admit(2, 9, 0.1)
    with pytest.raises(RateLimited, match=r"the queue is full \(3 jobs\)"):
        limiter.admit(3, 3, 0.1)


def test_new_guild_settings_apply_at_once() -> None:
    clock = Clock()
    current = {"limits": Limits(user_units_per_hour=3600, user_burst=10)}
    limiter = RateLimiter(clock, lambda guild: current["limits"])
    limiter.admit(1, 1, 9.0)  # one unit left
    limiter.finished(1, 1)
    current["limits"] = Limits(user_units_per_hour=60, user_burst=2)  # an admin made it stricter
    with pytest.raises(RateLimited, match="your limit is 60 standard images an hour") as refused:
        limiter.admit(1, 1, 2.0)
    assert refused.value.retry_after == pytest.approx(60)


def test_a_refund_gives_back_what_was_taken_never_above_the_burst() -> None:
    bucket = TokenBucket(rate_per_hour=60, burst=2)
    bucket.take(2, now=0)
    bucket.refund(1, now=0)
    assert bucket.wait_for(1, now=0) == 0
    assert bucket.wait_for(2, now=0) == pytest.approx(60)
    bucket.refund(5, now=30)  # charged as the whole burst at most, so refunded so at most
    assert bucket.wait_for(2, now=30) == 0
    bucket.take(1, now=30)
    assert bucket.wait_for(2, now=30) == pytest.approx(60)


def test_a_cancelled_job_gives_its_units_back_to_its_user_and_its_guild() -> None:
    clock = Clock()
    limits = Limits(
        user_units_per_hour=1, user_burst=2, guild_units_per_hour=1, guild_burst=3,
        max_jobs_per_user=10,
    )  # fmt: skip
    limiter = RateLimiter(clock, lambda guild: limits)
    limiter.admit(1, 10, 1.0)
    limiter.admit(1, 10, 1.0)
    limiter.admit(1, 11, 1.0)  # the guild's last unit
    with pytest.raises(RateLimited, match="your limit"):
        limiter.admit(1, 10, 1.0)
    limiter.refund(1, 10, 1.0)
    limiter.finished(1, 10)
    limiter.admit(1, 10, 1.0)  # the user's unit and the guild's came back
    with pytest.raises(RateLimited, match="this server's limit"):
        limiter.admit(1, 12, 1.0)
    limiter.refund(2, 20, 1.0)  # a guild and user it never saw: nothing to give back
    assert limiter.depth == 3


def test_a_refusal_is_a_generation_error_the_front_ends_can_explain() -> None:
    from common.errors import ErrorKind, SdbotError
    from generation.errors import GenerationError
    from generation.limits import queue_full

    refusal = queue_full(Limits(max_queue_depth=3))
    assert isinstance(refusal, GenerationError)
    assert isinstance(refusal, SdbotError)
    assert refusal.kind is ErrorKind.BAD_INPUT
    assert refusal.retry_after == 60.0
