"""What the fake Discord knows: snowflakes, guilds, channels, members, roles, messages, and
Discord's permission arithmetic, each able to render itself as Discord's JSON."""

from __future__ import annotations

import io
import itertools
import mimetypes
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image

DISCORD_EPOCH_MS = 1_420_070_400_000
_counter = itertools.count(1)


class Permission:
    """The bits this fake checks (Discord's values)."""

    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MANAGE_GUILD = 1 << 5
    ADMINISTRATOR = 1 << 3
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    MANAGE_ROLES = 1 << 28
    MODERATE_MEMBERS = 1 << 40
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38  # threads need this instead of SEND_MESSAGES

    # Discord's default @everyone, which has both thread bits.
    MEMBER = (
        VIEW_CHANNEL | SEND_MESSAGES | ADD_REACTIONS | READ_MESSAGE_HISTORY | ATTACH_FILES
        | EMBED_LINKS | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS
    )  # fmt: skip
    BOT = MEMBER | MANAGE_MESSAGES


def snowflake(at: float | None = None) -> int:
    """A Discord id whose timestamp is ``at`` (seconds since the Unix epoch; default now)."""
    ms = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_counter) & 0x3FFFFF)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


@dataclass
class User:
    id: int
    name: str
    bot: bool = False
    dms_open: bool = True  # False: the user does not accept DMs from this server (50007)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Overwrite:
    """A channel's permission overwrite for a role (kind 0) or a member (kind 1)."""

    target_id: int
    kind: int
    allow: int = 0
    deny: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.target_id),
            "type": self.kind,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclass
class Channel:
    """A guild text channel, a DM (``recipient``) or a public thread (``parent``): a thread has
    no overwrites or NSFW flag of its own, its parent's count."""

    id: int
    name: str
    guild_id: int | None = None  # None: a DM
    nsfw: bool = False
    overwrites: list[Overwrite] = field(default_factory=list)
    recipient: User | None = None  # DMs
    parent: Channel | None = None  # threads
    owner_id: int | None = None  # threads: who started it
    created: float = field(default_factory=time.time)

    TEXT, DM, PUBLIC_THREAD = 0, 1, 11

    @property
    def kind(self) -> int:
        if self.parent is not None:
            return self.PUBLIC_THREAD
        return self.DM if self.guild_id is None else self.TEXT

    def is_nsfw(self) -> bool:
        """The channel's age restriction; a thread's is its parent's."""
        return self.parent.nsfw if self.parent is not None else self.nsfw

    def to_json(self) -> dict[str, Any]:
        if self.parent is not None:
            return self._thread_json(self.parent)
        if self.guild_id is None:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": 1,
                "recipients": [self.recipient.to_json()],
                "last_message_id": None,
            }
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": 0,
            "nsfw": self.nsfw,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "permission_overwrites": [o.to_json() for o in self.overwrites],
        }

    def _thread_json(self, parent: Channel) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.PUBLIC_THREAD,
            "guild_id": str(self.guild_id),
            "parent_id": str(parent.id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "nsfw": parent.nsfw,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _iso(self.created),
                "locked": False,
                "create_timestamp": _iso(self.created),
            },
        }


@dataclass
class Member:
    user: User
    role_ids: list[int]
    joined_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user.to_json(),
            "roles": [str(r) for r in self.role_ids],
            "joined_at": _iso(self.joined_at),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
        }


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    threads: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def permissions(self, user_id: int, channel: Channel | None = None) -> int:
        """Discord's computation: base from roles, then the channel's overwrites (a thread's
        parent's)."""
        if channel is not None and channel.parent is not None:
            channel = channel.parent
        if user_id == self.owner_id:
            return -1  # every bit
        member = self.members.get(user_id)
        if member is None:
            return 0
        base = self.everyone.permissions
        for role_id in member.role_ids:
            base |= self.roles[role_id].permissions
        if base & Permission.ADMINISTRATOR:
            return -1
        if channel is None:
            return base
        by_target = {(o.kind, o.target_id): o for o in channel.overwrites}
        everyone = by_target.get((0, self.id))
        if everyone is not None:
            base = (base & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            overwrite = by_target.get((0, role_id))
            if overwrite is not None:
                allow, deny = allow | overwrite.allow, deny | overwrite.deny
        base = (base & ~deny) | allow
        personal = by_target.get((1, user_id))
        if personal is not None:
            base = (base & ~personal.deny) | personal.allow
        return base

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "owner_id": str(self.owner_id),
            "icon": None,
            "unavailable": False,
            "member_count": len(self.members),
            "large": False,
            "features": [],
            "roles": [role.to_json() for role in self.roles.values()],
            "channels": [channel.to_json() for channel in self.channels.values()],
            "members": [member.to_json() for member in self.members.values()],
            "threads": [thread.to_json() for thread in self.threads.values()],
            "emojis": [],
            "stickers": [],
            "voice_states": [],
            "presences": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "joined_at": _iso(time.time()),
        }


@dataclass
class Upload:
    """A file as it is uploaded: by the bot in a multipart request, or by a member into a
    command's attachment option (``slash(..., image=Upload("cat.png", data))``). Without a
    content type, it is guessed from the file name, as Discord does."""

    filename: str
    data: bytes
    content_type: str = ""

    def __post_init__(self) -> None:
        if not self.content_type:
            guessed, _ = mimetypes.guess_type(self.filename)
            self.content_type = guessed or "application/octet-stream"


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    ephemeral: bool = False  # a member's file in a command option: kept for the interaction only

    def image(self) -> Image.Image:
        """The attachment decoded as a picture (raises if it is not one)."""
        picture = Image.open(io.BytesIO(self.data))
        picture.load()
        return picture

    def size_of_picture(self) -> tuple[int, int] | None:
        """Its width and height when it is a picture Discord reads (from the header), else None."""
        try:
            with Image.open(io.BytesIO(self.data)) as picture:
                return picture.size
        except (OSError, ValueError, Image.DecompressionBombError):
            return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        size = self.size_of_picture() if self.content_type.startswith("image/") else None
        if size is not None:
            out["width"], out["height"] = size
        if self.ephemeral:
            out["ephemeral"] = True
        return out


@dataclass
class Message:
    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    components: list[dict[str, Any]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    reactions: dict[str, list[int]] = field(default_factory=dict)  # emoji -> user ids, in order
    interaction_id: int | None = None
    webhook_id: int | None = None
    message_reference: dict[str, Any] | None = None
    edits: int = 0
    deleted: bool = False
    created: float = field(default_factory=time.time)

    EPHEMERAL = 1 << 6
    LOADING = 1 << 7  # a deferred interaction response, "sdbot is thinking…"

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & self.EPHEMERAL)

    @property
    def reacted(self) -> list[str]:
        """The emoji on the message, in the order they were first added."""
        return [emoji for emoji, users in self.reactions.items() if users]

    def to_json(self, me: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "type": 20 if self.interaction_id else (19 if self.message_reference else 0),
            "channel_id": str(self.channel_id),
            "author": self.author.to_json(),
            "content": self.content,
            "timestamp": _iso(self.created),
            "edited_timestamp": _iso(time.time()) if self.edits else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_json() for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "flags": self.flags,
            "components": self.components,
            "reactions": [
                {
                    "emoji": {"id": None, "name": emoji},
                    "count": len(users),
                    "me": me in users,
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in self.reactions.items()
                if users
            ],
        }
        if self.guild_id is not None:
            out["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            out["webhook_id"] = str(self.webhook_id)
        if self.message_reference is not None:
            out["message_reference"] = self.message_reference
        return out
