"""Discord's side of the metrics: how fast interactions are acknowledged, and which HTTP calls
fail.

discord.py sends everything through two methods: ``HTTPClient.request`` (the bot's own REST
calls) and ``AsyncWebhookAdapter.request`` (interaction callbacks, follow-ups and edits of an
interaction's messages, through its token). :func:`instrument` wraps both once per process, so
every client counts, including one `sdbot run` starts after a failure.

- ``sdbot_discord_api_errors{method, route, status}``: a call that failed, after discord.py's
  own retries. ``route`` is discord.py's route template (``/channels/{channel_id}/messages``),
  never the formatted URL with its ids or an interaction's token; ``status`` 0: no answer (the
  connection failed or was cut). A call cancelled by its caller (our own timeout, a shutdown)
  is not counted: nothing says Discord failed it.
- ``sdbot_discord_ack_seconds``: from an interaction's arrival (the gateway event parsed in this
  process, :func:`watch_interactions`) to the end of its first answer (the callback: a defer or
  a message), accepted or not: one Discord refused as too late (404, code 10062) is timed
  until the refusal, and counted in ``sdbot_discord_acks_expired_total`` besides.
- ``sdbot_stage_seconds{stage="posting"}``: an outcome's Discord calls (:func:`posting`): the
  result, its fallbacks and controls, with the wait for a client `sdbot run` restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import discord
from discord.http import HTTPClient, Route
from discord.webhook.async_ import AsyncWebhookAdapter

from common.metrics import DISCORD_ACK, DISCORD_ACKS_EXPIRED, DISCORD_API_ERRORS, STAGE

UNKNOWN_INTERACTION = 10062  # Discord's code for a callback past the 3 s (or a second try's)
CALLBACK_PATH = "/interactions/{webhook_id}/{webhook_token}/callback"
ARRIVALS_KEPT_S = 60.0  # Discord wants the first answer within 3 s; later ones are refused
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)

_arrivals: OrderedDict[int, float] = OrderedDict()  # interaction id → monotonic arrival
_WRAPPED = "_sdbot_metrics"
_ID = re.compile(r"\d{5,}")  # a snowflake (17 to 20 digits); never a route's own word

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def instrument() -> None:
    """Wraps discord.py's two request methods (once per process; again: nothing)."""
    for owner in (HTTPClient, AsyncWebhookAdapter):
        request = owner.request
        if not getattr(request, _WRAPPED, False):
            owner.request = _counted(request)  # type: ignore[method-assign]


def _counted(request: F) -> F:
    @functools.wraps(request)
    async def wrapper(self: object, route: Route, *args: Any, **kwargs: Any) -> Any:
        try:
            answer = await request(self, route, *args, **kwargs)
        except discord.HTTPException as error:
            _failed(route, error.status)
            _answered(route, expired=error.code == UNKNOWN_INTERACTION)
            raise
        except discord.RateLimited:  # a 429 longer than the client's max_ratelimit_timeout
            _failed(route, 429)
            _answered(route)
            raise
        except NETWORK_ERRORS:
            _failed(route, 0)
            _answered(route)
            raise
        _answered(route)
        return answer

    setattr(wrapper, _WRAPPED, True)
    return wrapper  # type: ignore[return-value]


def _answered(route: Route, *, expired: bool = False) -> None:
    """An interaction callback ended, accepted or not: its first one is timed. A refused one
    counts too (the time until Discord refused it): a callback after 3 s fails with 10062, and
    a histogram of the accepted ones alone would never show the interactions it exists for."""
    if route.path != CALLBACK_PATH or route.webhook_id is None:
        return
    if _acknowledged(int(route.webhook_id)) and expired:
        DISCORD_ACKS_EXPIRED.inc()


def _failed(route: Route, status: int) -> None:
    DISCORD_API_ERRORS.labels(route.method, template(route), str(status)).inc()


def template(route: Route) -> str:
    """The route's path template; an id a discord.py method formatted into it anyway (one
    does: PUT onboarding) reads as ``{id}``."""
    return _ID.sub("{id}", route.path)


def _acknowledged(interaction_id: int) -> bool:
    """Times the first answer of an interaction (True); a later one finds nothing (False)."""
    arrived = _arrivals.pop(interaction_id, None)
    if arrived is None:
        return False
    DISCORD_ACK.observe(time.monotonic() - arrived)
    return True


def watch_interactions(client: discord.Client) -> None:
    """Notes when each interaction reaches ``client``: its gateway event, before discord.py
    builds the interaction and hands it to the command tree."""
    parsers: dict[str, Callable[[Any], None]] = client._connection.parsers
    parse = parsers["INTERACTION_CREATE"]

    def parse_interaction(data: Any) -> None:
        arrived(int(data["id"]))
        parse(data)

    parsers["INTERACTION_CREATE"] = parse_interaction


def arrived(interaction_id: int, at: float | None = None) -> None:
    """An interaction arrived (``at``: monotonic; default now). Arrivals older than
    ``ARRIVALS_KEPT_S`` that were never answered are forgotten."""
    now = time.monotonic() if at is None else at
    _arrivals[interaction_id] = now
    while _arrivals:
        oldest, when = next(iter(_arrivals.items()))
        if now - when <= ARRIVALS_KEPT_S:
            break
        del _arrivals[oldest]


@contextlib.contextmanager
def posting() -> Iterator[None]:
    """Times an outcome's posting, whether it worked or failed; one stopped by a cancel (a
    shutdown) is not counted."""
    started = time.monotonic()
    try:
        yield
    except asyncio.CancelledError:
        raise
    except BaseException:
        STAGE.labels("posting").observe(time.monotonic() - started)
        raise
    STAGE.labels("posting").observe(time.monotonic() - started)
