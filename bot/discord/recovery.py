"""Jobs resumed after a restart: the result goes to the job's channel, for its member, and the
status message the stopped process left says where it went."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from bot.discord import metrics, render
from bot.discord.delivery import Delivery, Status, offered
from bot.discord.retries import DeliveryFailed, best_effort, with_retries
from bot.discord.text import NO_PINGS, capped
from bot.imagine.records import options_of

if TYPE_CHECKING:
    from bot.imagine.outcomes import ImagineOutcome
    from storage.records import JobRecord

log = logging.getLogger(__name__)


async def post_recovered(delivery: Delivery, outcome: ImagineOutcome) -> None:
    """A job resumed after a restart: its result goes to its channel, for its member, and
    the status message the stopped process left ("queued", "drawing …") says where."""
    storage = delivery.client.storage
    record = await storage.audit.get_job(outcome.job_id)
    if record is None or record.channel_id is None or record.source != "discord":
        return
    stale = await storage.posts.messages_for_job(record.id)  # an open job: its statuses
    title = f"{render.title(record)} (resumed after a restart)"
    label = delivery.client.service.model_label
    legend = render.legend(offered(record))
    content, file = render.final(outcome, title, options_of(record), label, legend)
    status = Status(record.channel_id, record.guild_id, record.user_id)
    with metrics.posting():
        await _post(delivery, record, (content, file), status, stale)


async def _post(
    delivery: Delivery,
    record: JobRecord,
    post: tuple[str, discord.File | None],
    status: Status,
    stale: Sequence[tuple[int, int]],
) -> None:
    """The result in a new message for its member, then the ``stale`` statuses (channel and
    message ids) point to it."""
    content, file = post
    await delivery.until_live()
    try:
        message = await with_retries(
            lambda: delivery.to_channel(record.channel_id, record.user_id, content, file, status),
            f"posting resumed job {record.id}",
            timeout_s=delivery.client.request_timeout_s,
            backoff_s=delivery.client.retry_backoff_s,
        )
    except (DeliveryFailed, discord.HTTPException) as error:
        log.error("could not post resumed job %d ◆ %s", record.id, error)
        return
    if message is None:
        return
    await delivery.add_controls(message, record, has_picture=file is not None)
    said = f"{render.title(record)}\n🔁 sdbot restarted meanwhile; the result: {message.jump_url}"
    for channel_id, message_id in stale:
        channel = delivery.live().get_partial_messageable(channel_id, guild_id=record.guild_id)
        old = channel.get_partial_message(message_id)
        await best_effort(
            functools.partial(old.edit, content=capped(said), allowed_mentions=NO_PINGS),
            f"pointing the status of job {record.id} to its result",
        )
