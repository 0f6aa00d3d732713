"""Rate limits whose cost follows the work: token buckets per guild and per user, a per-user cap
on queued + running jobs, and a bound on the whole queue.

The unit of work is one *standard image*: 512×512 pixels, 20 steps, one variant. A 4-variant
grid at 512 px and 20 steps costs 4; the embedded model's 64 px grid costs 4 × (64²/512²) =
0.0625. A request over a limit gets :class:`RateLimited` with a sentence for the user and the
time until it would be accepted; nothing is dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from generation.errors import RateLimited as RateLimited  # raised here; callers import it here
from generation.options import GenerationOptions

STANDARD_PIXELS = 512 * 512
STANDARD_STEPS = 20
# Rates and bursts, in standard images: below one image in ten hours a wait overflows a timer.
MIN_RATE, MAX_RATE = 0.1, 1_000_000.0


def work_units(width: int, height: int, steps: int, variants: int) -> float:
    """What a request costs, in standard images."""
    return (width * height / STANDARD_PIXELS) * (steps / STANDARD_STEPS) * variants


def options_units(options: GenerationOptions) -> float:
    """What a request costs, its redraw at the larger size (an upscale) included."""
    o = options
    units = work_units(o.width, o.height, o.steps, o.variants)
    if o.upscale > 1:
        side = o.upscale
        units += work_units(o.width * side, o.height * side, o.refine_steps, o.variants)
    return units


@dataclass
class TokenBucket:
    """``rate`` units an hour, at most ``burst`` saved up; starts full."""

    rate_per_hour: float
    burst: float
    tokens: float = math.nan
    updated: float = math.nan

    def __post_init__(self) -> None:
        if self.rate_per_hour <= 0 or self.burst <= 0:
            raise ValueError(
                f"a bucket needs a positive rate and burst, got {self.rate_per_hour}/h and "
                f"{self.burst}"
            )

    def _refill(self, now: float) -> None:
        if math.isnan(self.tokens):
            self.tokens, self.updated = self.burst, now
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_hour / 3600)
        self.updated = now

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` could be taken (0: now). A cost above the burst is charged as
        the whole burst: a big request waits for a full bucket, it is never refused forever."""
        self._refill(now)
        needed = min(cost, self.burst) - self.tokens
        return 0.0 if needed <= 1e-9 else needed * 3600 / self.rate_per_hour

    def retune(self, rate_per_hour: float, burst: float) -> None:
        """New limits from a guild's settings take effect at once; saved tokens stay (capped)."""
        self.rate_per_hour, self.burst = rate_per_hour, burst
        if not math.isnan(self.tokens):
            self.tokens = min(self.tokens, burst)

    def take(self, cost: float, now: float) -> None:
        self._refill(now)
        self.tokens -= min(cost, self.burst)

    def refund(self, cost: float, now: float) -> None:
        """Gives back what :meth:`take` charged for ``cost``; the bucket never holds more than
        its burst."""
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + min(cost, self.burst))


@dataclass(frozen=True)
class Limits:
    """One guild's limits (its settings, or these defaults)."""

    user_units_per_hour: float = 60.0
    user_burst: float = 8.0
    guild_units_per_hour: float = 600.0
    guild_burst: float = 40.0
    max_jobs_per_user: int = 3  # queued + running
    max_queue_depth: int = 1000  # the whole queue, every guild


@dataclass
class _Usage:
    bucket: TokenBucket
    active: int = 0


@dataclass
class RateLimiter:
    """Admission for the queue: call :meth:`admit` before queueing, :meth:`finished` after."""

    clock: Callable[[], float]
    limits_for: Callable[[int | None], Limits] = field(default=lambda guild: Limits())
    _users: dict[tuple[int | None, int | None], _Usage] = field(default_factory=dict)
    _guilds: dict[int | None, TokenBucket] = field(default_factory=dict)
    depth: int = 0

    def admit(
        self,
        guild_id: int | None,
        user_id: int | None,
        units: float,
        limits: Limits | None = None,
    ) -> None:
        """Charges the request or raises RateLimited with the reason and the wait. ``limits``
        (the guild's, read by the caller) overrides ``limits_for``."""
        limits = limits or self.limits_for(guild_id)
        now = self.clock()
        if self.depth >= limits.max_queue_depth:
            raise queue_full(limits)
        user = self._user(guild_id, user_id, limits)
        if user.active >= limits.max_jobs_per_user:
            raise too_many_jobs(user.active, limits)
        guild = self._guild(guild_id, limits)
        user_wait = user.bucket.wait_for(units, now)
        guild_wait = guild.wait_for(units, now)
        if user_wait or guild_wait:
            raise over_rate(user_wait, guild_wait, limits)
        user.bucket.take(units, now)
        guild.take(units, now)
        user.active += 1
        self.depth += 1

    def readmit(self, guild_id: int | None, user_id: int | None) -> None:
        """Counts a job admitted before a restart: no charge, no refusal."""
        self._user(guild_id, user_id, self.limits_for(guild_id)).active += 1
        self.depth += 1

    def refund(self, guild_id: int | None, user_id: int | None, units: float) -> None:
        """A job admitted earlier was cancelled before it started: its units go back to the
        user's and the guild's buckets (call :meth:`finished` for its place as well)."""
        now = self.clock()
        usage = self._users.get((guild_id, user_id))
        if usage is not None:
            usage.bucket.refund(units, now)
        guild = self._guilds.get(guild_id)
        if guild is not None:
            guild.refund(units, now)

    def finished(self, guild_id: int | None, user_id: int | None) -> None:
        """A job admitted earlier ended (done, failed or cancelled)."""
        usage = self._users.get((guild_id, user_id))
        if usage is not None and usage.active > 0:
            usage.active -= 1
        self.depth = max(0, self.depth - 1)

    def _user(self, guild_id: int | None, user_id: int | None, limits: Limits) -> _Usage:
        key = (guild_id, user_id)
        if key not in self._users:
            bucket = TokenBucket(limits.user_units_per_hour, limits.user_burst)
            self._users[key] = _Usage(bucket)
        usage = self._users[key]
        usage.bucket.retune(limits.user_units_per_hour, limits.user_burst)
        return usage

    def _guild(self, guild_id: int | None, limits: Limits) -> TokenBucket:
        if guild_id not in self._guilds:
            self._guilds[guild_id] = TokenBucket(limits.guild_units_per_hour, limits.guild_burst)
        bucket = self._guilds[guild_id]
        bucket.retune(limits.guild_units_per_hour, limits.guild_burst)
        return bucket


def queue_full(limits: Limits) -> RateLimited:
    return RateLimited(
        f"the queue is full ({limits.max_queue_depth} jobs); try again in a minute", 60.0
    )


def too_many_jobs(active: int, limits: Limits) -> RateLimited:
    return RateLimited(
        f"you already have {active} job{'s' if active != 1 else ''} queued or running (at most "
        f"{limits.max_jobs_per_user}); wait for one to finish",
        None,
    )


def over_rate(user_wait: float, guild_wait: float, limits: Limits) -> RateLimited:
    if user_wait >= guild_wait:
        who = f"your limit is {_units(limits.user_units_per_hour)} an hour"
    else:
        who = f"this server's limit is {_units(limits.guild_units_per_hour)} an hour"
    wait = max(user_wait, guild_wait)
    return RateLimited(f"you can make this in {_duration(wait)} ({who})", wait)


def _units(value: float) -> str:
    return f"{value:g} standard image{'s' if value != 1 else ''}"


def _duration(seconds: float) -> str:
    seconds = math.ceil(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
