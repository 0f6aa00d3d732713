"""Discord's rate limits as the fake enforces them: a bucket per route and major parameter (the
channel, guild or interaction token the path names), and the global limit per bot token, with
the headers discord.py reads to wait before it would hit a 429.

A bucket is a fixed window: the first request opens it for ``per_s`` seconds with ``limit``
requests; ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset-After`` tell the truth about it, so
discord.py's own limiter sleeps until the window closes instead of being refused.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Limit:
    """``limit`` requests per ``per_s`` seconds, counted apart for each channel, guild or
    interaction token the route names. Routes with the same ``bucket`` share one count, as
    Discord's routes that answer the same ``X-RateLimit-Bucket`` do."""

    limit: int
    per_s: float
    bucket: str = ""  # "": the route is a bucket of its own

    def __post_init__(self) -> None:
        if self.limit < 1 or self.per_s <= 0:
            raise ValueError(f"a limit needs limit >= 1 and per_s > 0, not {self}")


_REACTION = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"
_WEBHOOK = "/webhooks/{application_id}/{token}"
# Discord's buckets for what a bot does most (measured by libraries, partly documented); a test
# can change them on ``server.limits.routes``.
DISCORD_LIMITS: dict[str, Limit] = {
    "POST /channels/{channel_id}/messages": Limit(5, 5.0, "message-create"),
    "PATCH /channels/{channel_id}/messages/{message_id}": Limit(5, 5.0, "message-edit"),
    "DELETE /channels/{channel_id}/messages/{message_id}": Limit(5, 1.0, "message-delete"),
    f"PUT {_REACTION}/@me": Limit(1, 0.25, "reactions"),
    f"DELETE {_REACTION}/{{user_id}}": Limit(1, 0.25, "reactions"),
    # Interaction followups and their edits: 5 per 2 s per interaction token.
    f"POST {_WEBHOOK}": Limit(5, 2.0, "interaction-webhook"),
    f"GET {_WEBHOOK}/messages/{{message_id}}": Limit(5, 2.0, "interaction-webhook"),
    f"PATCH {_WEBHOOK}/messages/{{message_id}}": Limit(5, 2.0, "interaction-webhook"),
    f"DELETE {_WEBHOOK}/messages/{{message_id}}": Limit(5, 2.0, "interaction-webhook"),
}
DEFAULT_LIMIT = Limit(50, 1.0)  # any other route
GLOBAL_LIMIT = Limit(50, 1.0, "global")  # per bot token; interaction routes are exempt
_MAJOR = ("channel_id", "guild_id", "application_id", "interaction_id", "token")


@dataclass(frozen=True)
class Verdict:
    """What a bucket said about one request, and the headers that say it to the client."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    bucket: str  # the X-RateLimit-Bucket hash
    scope: str = "user"  # of a refusal: "user" (a route's bucket) or "global"

    def headers(self) -> dict[str, str]:
        reset_after = math.ceil(self.reset_after * 1000) / 1000  # never early
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket,
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(reset_after)))
            headers["X-RateLimit-Scope"] = self.scope
            headers["Via"] = "1.1 google"  # without it discord.py takes a 429 for a Cloudflare ban
            if self.scope == "global":
                headers["X-RateLimit-Global"] = "true"
        return headers

    def refusal(self) -> web.Response:
        """Discord's 429: JSON ``retry_after`` and ``global``, and the headers above."""
        body = {
            "message": "You are being rate limited.",
            "retry_after": math.ceil(self.reset_after * 1000) / 1000,
            "global": self.scope == "global",
            "code": 0,
        }
        headers = {**self.headers(), "Content-Type": "application/json"}
        return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)


@dataclass
class _Window:
    opened: float
    used: int = 0


def bucket_hash(name: str) -> str:
    return f"{zlib.crc32(name.encode()):08x}"


@dataclass
class RateLimiter:
    """The fake's buckets. ``routes`` maps a route template to its ``Limit`` (others get
    ``default``); ``global_limit`` (None: off) covers every route but the interaction ones."""

    routes: dict[str, Limit] = field(default_factory=lambda: dict(DISCORD_LIMITS))
    default: Limit = DEFAULT_LIMIT
    global_limit: Limit | None = GLOBAL_LIMIT
    clock: Callable[[], float] = time.monotonic
    refused: int = 0  # 429s this limiter answered
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)

    def take(self, route: str, params: dict[str, str], *, under_global: bool) -> Verdict:
        """Counts one request to ``route`` (a template) with its path ``params``, or refuses it.

        A refused request counts against nothing, as on Discord."""
        limit = self.routes.get(route, self.default)
        name = limit.bucket or route
        major = "+".join(params[key] for key in _MAJOR if key in params)
        now = self.clock()
        window = self._window((name, major), limit, now)
        reset_after = window.opened + limit.per_s - now
        bucket = bucket_hash(name)
        if window.used >= limit.limit:
            self.refused += 1
            return Verdict(False, limit.limit, 0, reset_after, bucket)
        if under_global and self.global_limit is not None:
            glob = self._window(("global", ""), self.global_limit, now)
            if glob.used >= self.global_limit.limit:
                self.refused += 1
                wait = glob.opened + self.global_limit.per_s - now
                return Verdict(False, limit.limit, 0, wait, bucket, "global")
            glob.used += 1
        window.used += 1
        return Verdict(True, limit.limit, limit.limit - window.used, reset_after, bucket)

    def _window(self, key: tuple[str, str], limit: Limit, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.opened + limit.per_s:
            window = self._windows[key] = _Window(now)
        return window

    def relax(self) -> None:
        """Roomy buckets everywhere, no global limit, and every count forgotten: for a test
        about something else, or before setting limits of its own."""
        self.routes = {}
        self.default = Limit(1000, 1.0)
        self.global_limit = None
        self._windows.clear()
