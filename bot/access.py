"""Who may see a job and who may use a control on its post: pure rules, no Discord, no database.

The Discord handlers ask these functions and raise what they return; the CLI can ask the same
questions. A refusal is a typed :class:`AccessRefused` (an :class:`SdbotError`) whose message
is the sentence the member reads; the command tree's ``on_error`` shows it.

The guild's own gates (a ban, a pause, the channels the bot answers in) stay with the admission
path (``ImagineService.gate``), which records a refused request; :class:`Gated` carries one of
them to the member when a command other than ``/imagine`` meets it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from common.errors import SdbotError
from storage.models import JobKind, JobStatus

if TYPE_CHECKING:
    from bot.imagine.outcomes import Refusal
    from storage.records import JobRecord


class AccessRefused(SdbotError):
    """A member may not do this here; the message says what, in the member's words."""


class NoSuchJob(AccessRefused):
    """The job does not exist where it was asked for (another server's job does not exist)."""

    def __init__(self, job_id: int, *, in_guild: bool) -> None:
        super().__init__(f"there is no job {job_id} {'in this server' if in_guild else 'here'}")
        self.job_id = job_id


class JobHidden(AccessRefused):
    """A blocked or refused job is shown only to its requester and the moderators."""

    def __init__(self, job_id: int, status: JobStatus) -> None:
        super().__init__(
            f"job {job_id} was {status.value}; only its requester and moderators can see it"
        )
        self.job_id = job_id


class NoOpenJob(AccessRefused):
    """``/cancel`` without a job number, from a member with nothing queued or running here."""

    def __init__(self) -> None:
        super().__init__("you have no queued or running job here")


class Gated(AccessRefused):
    """The guild's moderators stand in the way (a ban, a channel rule): ``refusal`` says which."""

    def __init__(self, refusal: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.reason = reason


class Control(enum.StrEnum):
    """What a reaction under a post does."""

    UPSCALE = "upscale"  # 1️⃣–4️⃣: that picture, at twice the size
    VARY = "vary"  # ↖️ ↗️ ↙️ ↘️: four variations of that picture (its quadrant in the grid)
    REROLL = "reroll"  # 🔄: the prompt again with new seeds
    ZOOM = "zoom"  # 🔍 under an upscale: its picture zoomed out 2×, the border drawn
    DELETE = "delete"  # ❌: the post goes


class Use(enum.StrEnum):
    """What becomes of a control a member used."""

    ALLOW = "allow"
    REFUSE = "refuse"  # the reaction is taken off again; nothing else is said
    IGNORE = "ignore"  # not a control on this post: an emoji like any other


def job_refusal(
    record: JobRecord | None, job_id: int, *, guild_id: int | None, user_id: int
) -> NoSuchJob | None:
    """Whether job ``job_id`` exists for a member asking in ``guild_id`` (None: a DM): a job of
    this server made on Discord; in direct messages, one's own jobs only."""
    if (
        record is None
        or record.source != "discord"
        or record.guild_id != guild_id
        or (guild_id is None and record.user_id != user_id)
    ):
        return NoSuchJob(job_id, in_guild=guild_id is not None)
    return None


def hidden_refusal(record: JobRecord, *, user_id: int, moderator: bool) -> JobHidden | None:
    """A blocked or refused job's text is its requester's and the moderators' alone."""
    if record.status in (JobStatus.BLOCKED, JobStatus.REFUSED) and not (
        record.user_id == user_id or moderator
    ):
        return JobHidden(record.id, record.status)
    return None


def controls_for(kind: str, *, has_picture: bool, from_prompt: bool = True) -> tuple[Control, ...]:
    """The controls under a post: a grid's upscale, vary and reroll; an upscale's zoom; a post
    without a picture delete alone. Vary and zoom draw their start again from a seed, so only a
    job drawn from its prompt alone (``from_prompt``: no picture given in, no control picture,
    not a vary or zoom) offers them."""
    if not has_picture or kind == JobKind.DESCRIBE.value:
        return (Control.DELETE,)
    if kind == JobKind.UPSCALE.value:
        return (Control.ZOOM, Control.DELETE) if from_prompt else (Control.DELETE,)
    if not from_prompt:
        return (Control.UPSCALE, Control.REROLL, Control.DELETE)
    return (Control.UPSCALE, Control.VARY, Control.REROLL, Control.DELETE)


def drawn_from_prompt(record: JobRecord) -> bool:
    """Whether a job was drawn from its prompt alone (what :func:`controls_for` asks)."""
    return record.start == "text" and record.control is None and record.source_seed is None


def control_use(
    control: Control,
    record: JobRecord,
    *,
    user_id: int,
    moderator: bool,
    open_to_everyone: bool,
) -> Use:
    """Who may use a control: delete is the requester's and the moderators'; upscale, vary,
    reroll and zoom also everyone's when the guild opened the controls. A control the post
    does not offer (an upscale's on a grid, a grid's on an upscale) is no control."""
    owner = user_id == record.user_id
    if control is Control.DELETE:
        return Use.ALLOW if owner or moderator else Use.REFUSE
    if (control is Control.ZOOM) != (record.kind == JobKind.UPSCALE.value):
        return Use.IGNORE
    return Use.ALLOW if owner or moderator or open_to_everyone else Use.REFUSE
