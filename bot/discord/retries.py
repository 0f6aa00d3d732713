"""Posting to Discord when Discord or the network misbehaves.

A job is recorded and drawn whatever happens to the messages that show it: a progress edit is
best effort (:func:`best_effort`), the result is tried a few times with a growing pause
(:func:`with_retries`), and a status message that cannot be edited any more (deleted, too old,
its interaction token expired) makes the caller post a new message instead (:class:`Gone`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import discord

log = logging.getLogger(__name__)

T = TypeVar("T")

UNKNOWN_MESSAGE = 10008  # the message was deleted
UNKNOWN_WEBHOOK = 10015  # the interaction token is unknown (expired)
INVALID_TOKEN = 50027  # the interaction token expired (15 min)
TOO_OLD_TO_EDIT = 30046  # too many edits to a message older than an hour
GONE_CODES = frozenset({UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, INVALID_TOKEN, TOO_OLD_TO_EDIT})


class Restarting(Exception):
    """No client is logged in to post through: `sdbot run` is restarting it."""


# What a request to Discord raises besides discord.HTTPException: aiohttp's connection and
# payload errors, a timeout, a reset socket, RuntimeError("Session is closed") from the
# session of a client that was closed and restarted while a job was being followed, and
# Restarting while its successor has not logged in yet.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
    RuntimeError,
    Restarting,
)
DISCORD_ERRORS: tuple[type[BaseException], ...] = (discord.HTTPException, *NETWORK_ERRORS)


class Gone(Exception):
    """The message cannot be edited any more: post a new one."""


class DeliveryFailed(Exception):
    """Every try failed on a transient error (the last one is the cause)."""


def is_gone(error: BaseException) -> bool:
    """A message deleted or too old to edit, or an expired interaction token."""
    return isinstance(error, discord.HTTPException) and (
        error.code in GONE_CODES or error.status == 401
    )


def is_token_gone(error: BaseException) -> bool:
    """The interaction token expired: the message itself may still be edited elsewhere."""
    return isinstance(error, discord.HTTPException) and (
        error.code in (UNKNOWN_WEBHOOK, INVALID_TOKEN) or error.status == 401
    )


def is_transient(error: BaseException) -> bool:
    """Worth another try: Discord's server errors and rate limits that outlasted discord.py's
    own retries, and the network."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(error, NETWORK_ERRORS)


def describe(error: BaseException) -> str:
    if isinstance(error, discord.HTTPException):
        return f"HTTP {error.status} code {error.code}: {error.text}"
    return f"{type(error).__name__}: {error}"


async def with_retries(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    tries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> T:
    """``call()`` until it works, ``tries`` times at most with a doubling pause; a try that
    gets no answer within ``timeout_s`` fails (discord.py sets no timeout of its own).

    Raises :class:`Gone` for a message that cannot be edited any more, :class:`DeliveryFailed`
    when every try failed on a transient error, and any other error as it is (a refusal that
    another try would not change: a file too large, a missing permission).
    """
    for attempt in range(tries):
        try:
            return await asyncio.wait_for(call(), timeout_s)
        except DISCORD_ERRORS as error:
            if is_gone(error):
                raise Gone(describe(error)) from error
            if not is_transient(error):
                raise
            log.warning("%s ◆ try %d of %d failed ◆ %s", what, attempt + 1, tries, describe(error))
            if attempt + 1 == tries:
                raise DeliveryFailed(f"{what}: {describe(error)}") from error
        await asyncio.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable: the last try returns or raises")


async def best_effort(
    call: Callable[[], Awaitable[object]], what: str, *, timeout_s: float = 15.0
) -> bool:
    """``call()`` once, for ``timeout_s`` at most; a failure is logged, never raised.
    False: it failed."""
    try:
        await asyncio.wait_for(call(), timeout_s)
    except DISCORD_ERRORS as error:
        log.info("%s failed ◆ %s", what, describe(error))
        return False
    return True
