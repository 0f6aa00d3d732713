"""FakeDiscord: an aiohttp server on 127.0.0.1 that the unmodified discord.py client logs in to,
plus the test API that plays members and guilds and inspects what the bot did.

See fake_discord/README.md for a guide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web

from fake_discord import rest
from fake_discord.gateway import Gateway
from fake_discord.model import (
    Attachment,
    Channel,
    Guild,
    Member,
    Message,
    Overwrite,
    Permission,
    Role,
    Upload,
    User,
    snowflake,
)
from fake_discord.ratelimit import RateLimiter
from fake_discord.rest import Call, DiscordError

T = TypeVar("T")
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
ATTACHMENT_OPTION = 11  # ApplicationCommandOptionType.ATTACHMENT
# Routes that Discord's global rate limit does not cover.
_INTERACTION_ROUTES = (
    "POST /interactions/",
    "POST /webhooks/",
    "PATCH /webhooks/",
    "GET /webhooks/",
)


@dataclass
class Fault:
    """What the next matching requests get instead of (or before) a normal answer."""

    route: str  # "POST /channels/{channel_id}/messages", or "*" for every route
    count: int
    status: int = 0  # 429 or 5xx; 0 with a delay: only slow
    retry_after: float = 0.0
    is_global: bool = False
    delay: float = 0.0


@dataclass
class ConnectionFault:
    """A request whose connection breaks: ``phase`` "request" (closed before the fake reads or
    does anything), "response" (the fake did the work, then closed before answering), "body"
    (status and headers sent, the body cut short), or "stall" (no answer for ``seconds``, or
    until the client gives up, then closed; nothing done)."""

    route: str
    count: int
    phase: str
    seconds: float | None = None


@dataclass
class Interaction:
    id: int
    token: str
    name: str
    user: User
    guild_id: int | None
    channel_id: int
    created: float  # on the fake's clock
    sent_at: float  # time.perf_counter(), for latency
    attachment_size_limit: int
    responded: bool = False
    response_type: int | None = None
    ephemeral: bool = False
    expired_ack: bool = False
    acked_at: float | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    acknowledged: asyncio.Event = field(default_factory=asyncio.Event)
    type: int = 2  # APPLICATION_COMMAND; 4: APPLICATION_COMMAND_AUTOCOMPLETE
    focused: dict[str, Any] | None = None  # autocomplete: the option typed in (synced schema)
    choices: list[dict[str, Any]] | None = None  # autocomplete: the bot's answer (type 8)

    @property
    def ack_latency(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at

    @property
    def messages(self) -> list[Message]:
        shown = [self.original] if self.original else []
        by_id = {m.id: m for m in [*shown, *self.followups]}  # the first followup may be original
        return [m for m in by_id.values() if not m.deleted]


class FakeDiscord:
    """Discord's REST API and gateway on a loopback port, with state a test controls."""

    def __init__(self) -> None:
        self.token = "fake." + secrets.token_urlsafe(24)
        self.application_id = snowflake()
        self.bot_user = User(self.application_id, "sdbot", bot=True)
        self.owner = User(snowflake(), "owner")
        self.users: dict[int, User] = {u.id: u for u in (self.bot_user, self.owner)}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.interactions: dict[int, Interaction] = {}
        self.commands: dict[tuple[int | None, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.unhandled: list[Call] = []
        self.errors: list[str] = []  # exceptions inside the fake's own handlers
        self.faults: list[Fault] = []
        self.connection_faults: list[ConnectionFault] = []
        self.limits = RateLimiter()  # Discord's buckets and global limit; tests may change them
        self.edit_age_limit_s = 3600.0  # older messages: edits refused with 30046
        self.ack_deadline_s = 3.0
        self.token_lifetime_s = 15 * 60.0
        self.attachment_size_limit = DEFAULT_ATTACHMENT_LIMIT
        self.upload_limit = DEFAULT_ATTACHMENT_LIMIT  # a member's file (a guild without boosts)
        self.uploads: dict[int, Attachment] = {}  # members' files in command options, by id
        self.downloads: list[Call] = []  # every GET of a CDN URL, in order
        self.gateway = Gateway(self)
        self._clock_offset = 0.0
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._guard])
        app.router.add_get("/gateway/ws", self.gateway.handle)
        app.router.add_get("/cdn/attachments/{channel}/{message}/{filename}", self._cdn)
        app.router.add_get(
            "/cdn/ephemeral-attachments/{application}/{attachment}/{filename}", self._cdn_upload
        )
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        await self.gateway.close_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def check(self) -> None:
        """Fails when the bot called a route the fake does not know, or a handler broke."""
        assert not self.unhandled, (
            f"routes the fake does not know: {[c.route for c in self.unhandled]}"
        )
        assert not self.errors, f"the fake's own handlers failed: {self.errors}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"{self.url.replace('http', 'ws', 1)}/gateway/ws"

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the clock -----------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the Unix epoch on the fake's clock (``advance`` moves it)."""
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Moves the fake's clock on: interaction deadlines and token lifetimes see it.

        discord.py's ``Interaction.is_expired()`` reads the real clock, so a bot under test
        learns of an expired token the way it must on Discord too: a 401 with code 50027."""
        self._clock_offset += seconds

    # --- building the world ------------------------------------------------------------------

    def create_user(self, name: str) -> User:
        user = User(snowflake(), name)
        self.users[user.id] = user
        return user

    def create_guild(
        self, name: str = "guild", *, everyone: int = Permission.MEMBER, bot: int = Permission.BOT
    ) -> Guild:
        """A guild with @everyone (``everyone`` permissions), the bot as a member with a role of
        ``bot`` permissions, and its owner; add channels and members with the methods below."""
        guild = Guild(snowflake(), name, owner_id=self.owner.id)
        guild.roles[guild.id] = Role(guild.id, "@everyone", everyone)
        bot_role = Role(snowflake(), "sdbot", bot, position=1)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = Member(self.bot_user, [bot_role.id])
        guild.members[self.owner.id] = Member(self.owner, [])
        self.guilds[guild.id] = guild
        if self.gateway.session is not None:
            self.gateway.dispatch("GUILD_CREATE", self.gateway.guild_json(guild.id))
        return guild

    def create_role(self, guild: Guild, name: str, permissions: int) -> Role:
        role = Role(snowflake(), name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        self.gateway.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.to_json()}
        )
        return role

    def set_roles(self, guild: Guild, user: User, roles: list[Role]) -> None:
        """Changes a member's roles (the bot hears GUILD_MEMBER_UPDATE if it has the intent)."""
        member = guild.members[user.id]
        member.role_ids = [role.id for role in roles]
        self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE", {"guild_id": str(guild.id), **member.to_json()}, in_guild=True
        )

    def set_overwrites(self, channel: Channel, overwrites: list[Overwrite]) -> None:
        channel.overwrites = list(overwrites)
        self.gateway.dispatch("CHANNEL_UPDATE", channel.to_json())

    def create_channel(
        self,
        guild: Guild,
        name: str = "general",
        *,
        nsfw: bool = False,
        overwrites: list[Overwrite] | None = None,
    ) -> Channel:
        channel = Channel(snowflake(), name, guild.id, nsfw, list(overwrites or []))
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.gateway.dispatch("CHANNEL_CREATE", channel.to_json())
        return channel

    def create_thread(
        self, channel: Channel, name: str = "thread", *, owner: User | None = None
    ) -> Channel:
        """A public thread (type 11) in ``channel``, started by ``owner`` (the guild's owner by
        default). As on Discord it has the parent's permissions and NSFW flag, and posting in
        it needs Send Messages in Threads instead of Send Messages. The bot hears THREAD_CREATE
        (and finds it in GUILD_CREATE's ``threads`` after a new IDENTIFY)."""
        if channel.kind != Channel.TEXT or channel.guild_id is None:
            raise ValueError(f"a thread starts in a guild text channel, not {channel.name!r}")
        guild = self.guilds[channel.guild_id]
        starter = owner or self.owner
        thread = Channel(snowflake(self.now()), name, guild.id, parent=channel, owner_id=starter.id)
        guild.threads[thread.id] = thread
        self.channels[thread.id] = thread
        self.gateway.dispatch("THREAD_CREATE", {**thread.to_json(), "newly_created": True})
        return thread

    def add_member(self, guild: Guild, user: User, roles: list[Role] | None = None) -> Member:
        member = Member(user, [role.id for role in roles or []])
        guild.members[user.id] = member
        self.gateway.dispatch(
            "GUILD_MEMBER_ADD", {"guild_id": str(guild.id), **member.to_json()}, in_guild=True
        )
        return member

    def dm_channel(self, user: User) -> Channel:
        for channel in self.channels.values():
            if channel.guild_id is None and channel.recipient is user:
                return channel
        channel = Channel(snowflake(), user.name, recipient=user)
        self.channels[channel.id] = channel
        return channel

    # --- acting as members ---------------------------------------------------------------------

    def _command_schema(self, guild_id: int | None, name: str) -> tuple[dict[str, Any], bool]:
        top = name.split()[0]
        if (guild_id, top) in self.commands:
            return self.commands[(guild_id, top)], True
        if (None, top) in self.commands:
            return self.commands[(None, top)], False
        known = sorted({n for _, n in self.commands})
        raise LookupError(f"no application command {top!r} was synced; synced: {known}")

    def _options(
        self,
        schema: dict[str, Any],
        path: list[str],
        values: dict[str, Any],
        guild: Guild | None,
        checked: bool,
        user: User,
        focused: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Discord's option payload for a (sub)command, typed from the synced schema, checked
        as Discord's own client checks it (unless ``checked`` is False). ``focused``: the option
        being typed in an autocomplete, sent as the text typed so far, unchecked."""
        options = schema.get("options") or []
        if path:
            sub = next((o for o in options if o["name"] == path[0] and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"{schema['name']!r} has no subcommand {path[0]!r}")
            inner, within = self._options(sub, path[1:], values, guild, checked, user, focused)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}], within
        by_name = {o["name"]: o for o in options}
        out: list[dict[str, Any]] = []
        resolved: dict[str, Any] = {}
        for key, value in values.items():
            if key not in by_name:
                raise LookupError(
                    f"{schema['name']!r} has no option {key!r}; it has {sorted(by_name)}"
                )
            option = by_name[key]
            if (option["type"] == ATTACHMENT_OPTION) != isinstance(value, Upload):
                raise ValueError(  # Discord resolves the files its client uploaded, nothing else
                    f"Discord would not send {key}={type(value).__name__}: an attachment "
                    "option takes an Upload (a file), and only an attachment option does"
                )
            if key == focused:
                if not option.get("autocomplete"):
                    raise ValueError(f"{schema['name']!r} option {key!r} has no autocomplete")
                out.append(
                    {"name": key, "type": option["type"], "value": str(value), "focused": True}
                )
                continue
            if checked:
                _check_option(option, value)
            if isinstance(value, User):
                resolved.setdefault("users", {})[str(value.id)] = value.to_json()
                member = guild.members.get(value.id) if guild else None
                if member is not None:
                    partial = {k: v for k, v in member.to_json().items() if k != "user"}
                    resolved.setdefault("members", {})[str(value.id)] = partial
                value = str(value.id)
            elif isinstance(value, Channel):  # resolved as Discord does: with the member's
                permissions = guild.permissions(user.id, value) if guild else 0  # permissions
                channel = {**value.to_json(), "permissions": str(permissions & (2**53 - 1))}
                resolved.setdefault("channels", {})[str(value.id)] = channel
                value = str(value.id)
            elif isinstance(value, Upload):
                attachment = self._upload(value, checked)
                resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_json()
                value = str(attachment.id)
            out.append({"name": key, "type": option["type"], "value": value})
        if checked and focused is None:  # an autocomplete comes before the form is complete
            missing = [o["name"] for o in options if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"Discord would not send {schema['name']!r} without {missing}")
        return out, resolved

    def _upload(self, upload: Upload, checked: bool) -> Attachment:
        """A member's file, uploaded as Discord's client does before it sends the command
        (refused over ``upload_limit``, as the client refuses it), served from the CDN."""
        if checked and len(upload.data) > self.upload_limit:
            raise ValueError(
                f"Discord's client does not upload {upload.filename} of {len(upload.data)} "
                f"bytes: the limit is {self.upload_limit}"
            )
        attachment_id = snowflake(self.now())
        name = urllib.parse.quote(upload.filename)
        url = f"{self.url}/cdn/ephemeral-attachments/{self.application_id}/{attachment_id}/{name}"
        attachment = Attachment(
            attachment_id, upload.filename, upload.data, upload.content_type, url, ephemeral=True
        )
        self.uploads[attachment_id] = attachment
        return attachment

    async def slash(
        self,
        user: User,
        channel: Channel,
        command: str,
        /,
        *,
        attachment_size_limit: int | None = None,
        checked: bool = True,
        **options: Any,
    ) -> Interaction:
        """Sends INTERACTION_CREATE for ``/command`` (``"mod ban"`` for a subcommand) as ``user``
        in ``channel``.

        As Discord's client does, it refuses what Discord would never send: an unknown command
        or option, a missing required option, a value outside the synced choices, range or
        length, a command the member may not see (``default_member_permissions``) or an
        age-restricted command outside an NSFW channel. ``checked=False`` sends it anyway, as
        a modified client could.
        """
        return self._command(user, channel, command, attachment_size_limit, checked, options)

    async def autocomplete(
        self, user: User, channel: Channel, command: str, /, focused: str, **options: Any
    ) -> Interaction:
        """Sends APPLICATION_COMMAND_AUTOCOMPLETE (type 4) as Discord does while ``user`` types
        ``/command``: the options filled so far, ``focused`` (an option synced with
        ``autocomplete``) holding the text typed in it. The bot's answer (callback type 8) is
        ``interaction.choices`` once ``interaction.acknowledged`` is set."""
        if focused not in options:
            raise ValueError(f"the focused option {focused!r} needs the text typed in it")
        return self._command(user, channel, command, None, True, options, focused)

    def _command(
        self,
        user: User,
        channel: Channel,
        command: str,
        attachment_size_limit: int | None,
        checked: bool,
        options: dict[str, Any],
        focused: str | None = None,
    ) -> Interaction:
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        schema, guild_command = self._command_schema(channel.guild_id, command)
        if checked and guild is not None:
            needed = int(schema.get("default_member_permissions") or 0)
            granted = guild.permissions(user.id, channel)
            if needed and granted & needed != needed and granted != -1:
                raise PermissionError(f"Discord does not show /{schema['name']} to {user.name}")
            if schema.get("nsfw") and not channel.is_nsfw():
                raise PermissionError(
                    f"/{schema['name']} is age-restricted; #{channel.name} is not"
                )
        path = command.split()[1:]
        opts, resolved = self._options(schema, path, options, guild, checked, user, focused)
        data: dict[str, Any] = {"id": schema["id"], "name": schema["name"], "type": 1}
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if guild_command and guild is not None:
            data["guild_id"] = str(guild.id)
        created = self.now()
        interaction = Interaction(
            id=snowflake(created),
            token="itoken." + secrets.token_urlsafe(32),
            name=command,
            user=user,
            guild_id=guild.id if guild else None,
            channel_id=channel.id,
            created=created,
            sent_at=time.perf_counter(),
            attachment_size_limit=attachment_size_limit or self.attachment_size_limit,
            type=2 if focused is None else 4,
            focused=None if focused is None else _option_schema(schema, path, focused),
        )
        self.interactions[interaction.id] = interaction
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": interaction.type,
            "data": data,
            "channel_id": str(channel.id),
            "channel": channel.to_json(),
            "token": interaction.token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
            "context": 0 if guild else 1,
            "attachment_size_limit": interaction.attachment_size_limit,
        }
        if guild is not None:
            member = guild.members.get(user.id) or self.add_member(guild, user)
            payload["guild_id"] = str(guild.id)
            payload["guild_locale"] = "en-US"
            payload["member"] = {
                **member.to_json(),
                "permissions": str(guild.permissions(user.id, channel) & (2**53 - 1)),
            }
            payload["app_permissions"] = str(
                guild.permissions(self.bot_user.id, channel) & (2**53 - 1)
            )
        else:
            payload["user"] = user.to_json()
        self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def react(self, user_id: int, message: Message, emoji: str, *, dispatch: bool = True) -> None:
        users = message.reactions.setdefault(emoji, [])
        if user_id in users:
            return
        users.append(user_id)
        if dispatch:
            data = self._reaction_event(user_id, message, emoji)
            data["message_author_id"] = str(message.author.id)
            if message.guild_id is not None:
                member = self.guilds[message.guild_id].members.get(user_id)
                if member is not None:
                    data["member"] = member.to_json()
            self.gateway.dispatch(
                "MESSAGE_REACTION_ADD", data, in_guild=message.guild_id is not None
            )
        self.changed()

    def unreact(self, user_id: int, message: Message, emoji: str) -> None:
        users = message.reactions.get(emoji, [])
        if user_id not in users:
            return
        users.remove(user_id)
        self.gateway.dispatch(
            "MESSAGE_REACTION_REMOVE",
            self._reaction_event(user_id, message, emoji),
            in_guild=message.guild_id is not None,
        )
        self.changed()

    async def add_reaction(self, user: User, message: Message, emoji: str) -> None:
        """``user`` reacts to ``message`` (the bot gets MESSAGE_REACTION_ADD)."""
        self.react(user.id, message, emoji)

    async def remove_reaction(self, user: User, message: Message, emoji: str) -> None:
        self.unreact(user.id, message, emoji)

    @staticmethod
    def _reaction_event(user_id: int, message: Message, emoji: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": {"id": None, "name": emoji},
            "type": 0,
            "burst": False,
            "burst_colors": [],
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        return data

    # --- what the bot did ----------------------------------------------------------------------

    def add_message(self, message: Message) -> None:
        self.messages[message.id] = message
        if not message.ephemeral:
            self.gateway.dispatch(
                "MESSAGE_CREATE",
                message.to_json(self.bot_user.id),
                in_guild=message.guild_id is not None,
            )
        self.changed()

    def interaction_message(
        self,
        interaction: Interaction,
        body: dict[str, Any],
        files: list[Upload],
        *,
        loading: bool = False,
    ) -> Message:
        channel = self.channels[interaction.channel_id]
        body = dict(body)
        if loading:
            body["flags"] = int(body.get("flags") or 0) | Message.LOADING
        return rest.new_message(
            self,
            channel,
            self.bot_user,
            body,
            files,
            interaction_id=interaction.id,
            webhook_id=self.application_id,
        )

    def edit_message(
        self,
        message: Message,
        body: dict[str, Any],
        files: list[Upload],
        *,
        finish_loading: bool = False,
    ) -> None:
        if "content" in body:
            message.content = body["content"] or ""
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if "attachments" in body:  # the attachments listed stay, the others go
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            message.attachments = [a for a in message.attachments if str(a.id) in kept]
        if files:
            message.attachments += [
                Attachment(
                    snowflake(),
                    upload.filename,
                    upload.data,
                    upload.content_type,
                    f"{self.url}/cdn/attachments/{message.channel_id}/{message.id}/{upload.filename}",
                )
                for upload in files
            ]
        if finish_loading:
            message.flags &= ~Message.LOADING
        message.edits += 1
        if not message.ephemeral:
            self.gateway.dispatch(
                "MESSAGE_UPDATE",
                message.to_json(self.bot_user.id),
                in_guild=message.guild_id is not None,
            )
        self.changed()

    def delete_message(self, message: Message) -> None:
        message.deleted = True
        data = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        self.gateway.dispatch("MESSAGE_DELETE", data, in_guild=message.guild_id is not None)
        self.changed()

    def acknowledge(self, interaction: Interaction, kind: int, *, ephemeral: bool) -> None:
        interaction.responded = True
        interaction.response_type = kind
        interaction.ephemeral = ephemeral
        interaction.acked_at = time.perf_counter()
        interaction.acknowledged.set()
        self.changed()

    def channel_messages(self, channel: Channel, *, deleted: bool = False) -> list[Message]:
        """The channel's messages in the order they were created."""
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel.id and (deleted or not m.deleted)
        ]

    def calls_to(self, route: str) -> list[Call]:
        """The calls made to one route template, e.g. ``"PUT /channels/{channel_id}/messages/
        {message_id}/reactions/{emoji}/@me"`` (a prefix of it works too)."""
        return [call for call in self.calls if call.route.startswith(route)]

    async def wait_for(
        self, predicate: Callable[[], T | None], within: float = 60.0, what: str = ""
    ) -> T:
        """Waits until ``predicate()`` returns something truthy (checked on every change).

        ``within`` is a ceiling for a loaded machine, not a pace: it returns as soon as the
        predicate holds."""

        async def waiting() -> T:
            async with self._changed:
                while True:
                    found = predicate()
                    if found:
                        return found
                    # Woken by every change the fake makes, and every 50 ms for the others.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)

        try:
            return await asyncio.wait_for(waiting(), within)
        except TimeoutError:
            raise AssertionError(
                f"waited {within} s for {what or predicate}; calls so far: "
                + ", ".join(f"{c.route} {c.status}" for c in self.calls[-12:])
            ) from None

    def changed(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        self.spawn(notify())

    # --- faults --------------------------------------------------------------------------------

    def rate_limit(
        self, route: str = "*", *, count: int = 1, retry_after: float = 0.2, is_global: bool = False
    ) -> None:
        """The next ``count`` calls to ``route`` get 429 with Discord's headers and body.

        Interaction routes are not under the global limit, so a global 429 cannot target them.
        """
        if is_global and route.startswith(_INTERACTION_ROUTES):
            raise ValueError(f"{route!r} is an interaction route: Discord's global limit skips it")
        self.faults.append(Fault(route, count, 429, retry_after, is_global))

    def fail(self, route: str = "*", *, status: int = 502, count: int = 1) -> None:
        """The next ``count`` calls to ``route`` get a server error."""
        self.faults.append(Fault(route, count, status))

    def slow(self, route: str = "*", *, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls to ``route`` are answered ``seconds`` late (then normally)."""
        self.faults.append(Fault(route, count, delay=seconds))

    def _take_fault(self, route: str) -> Fault | None:  # first matching fault with count left
        for fault in self.faults:
            if fault.count > 0 and fault.route in ("*", route):
                fault.count -= 1
                return fault
        return None

    def drop(self, route: str = "*", *, phase: str = "response", count: int = 1) -> None:
        """The next ``count`` calls to ``route`` lose their connection.

        ``phase="request"``: closed as the request arrives, before the fake does anything (a
        large upload sees ``ClientOSError`` "Connection reset by peer", a small request
        ``ServerDisconnectedError``). ``"response"``: the fake does the work (a message is
        posted), then closes without answering (``ServerDisconnectedError``): the client cannot
        know it succeeded. ``"body"``: the work is done, status and headers arrive, the body is
        cut short (``ClientPayloadError``). discord.py retries none of them on Linux."""
        if phase not in ("request", "response", "body"):
            raise ValueError(f"phase must be 'request', 'response' or 'body', not {phase!r}")
        self.connection_faults.append(ConnectionFault(route, count, phase))

    def stall(self, route: str = "*", *, seconds: float | None = None, count: int = 1) -> None:
        """The next ``count`` calls to ``route`` get no answer: the fake does nothing and holds
        the connection open for ``seconds`` (None: until the client gives up or the fake
        closes), then closes it (``ServerDisconnectedError``). discord.py sets no timeout of
        its own on REST calls (aiohttp's default is 5 minutes): a bot needs its own."""
        self.connection_faults.append(ConnectionFault(route, count, "stall", seconds))

    def _take_connection_fault(self, route: str) -> ConnectionFault | None:
        for fault in self.connection_faults:
            if fault.count > 0 and fault.route in ("*", route):
                fault.count -= 1
                return fault
        return None

    # --- HTTP plumbing -------------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Around every REST call: the connection faults and Discord's rate limits first, then
        the bucket's truthful ``X-RateLimit-*`` headers on the answer."""
        tail = request.match_info.get("tail")
        found = rest.match(request.method, "/" + tail) if tail is not None else None
        if found is None:
            return await handler(request)
        route, params, _, _ = found
        fault = self._take_connection_fault(route)
        if fault is not None and fault.phase in ("request", "stall"):
            self._record(request, route, params).answered = False
            if fault.phase == "stall":
                await _stall(request, fault.seconds)
            _close(request)
            return web.Response(status=204)  # never sent: the connection is gone
        under_global = not route.startswith(_INTERACTION_ROUTES)
        verdict = self.limits.take(route, params, under_global=under_global)
        if not verdict.allowed:
            call = self._record(request, route, params)
            await self._read_body(request, call)
            call.status = 429
            return verdict.refusal()
        first = len(self.calls)
        response = await handler(request)
        if response.status != 429:  # a rate_limit() fault brings its own headers
            response.headers.update(verdict.headers())
        if fault is None:
            return response
        for call in self.calls[first:]:
            if call.route == route and call.params == params:
                call.answered = False
                break
        if fault.phase == "body" and isinstance(response, web.Response) and response.body:
            return await _cut_short(request, response)
        _close(request)
        return response

    def _record(self, request: web.Request, route: str, params: dict[str, str]) -> Call:
        """A call the fake answered before its handler ran (429, dropped, stalled)."""
        path = request.path.removeprefix("/api/v10")
        call = Call(request.method, route, path, params, dict(request.query))
        call.at = time.perf_counter()
        self.calls.append(call)
        return call

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        message = self.messages.get(int(request.match_info["message"]))
        found = [
            attachment
            for attachment in (message.attachments if message else [])
            if attachment.filename == request.match_info["filename"]
        ]
        return self._download(request, found[0] if found else None)

    async def _cdn_upload(self, request: web.Request) -> web.StreamResponse:
        attachment = self.uploads.get(int(request.match_info["attachment"]))
        if attachment is not None and attachment.filename != request.match_info["filename"]:
            attachment = None
        return self._download(request, attachment)

    def _download(self, request: web.Request, attachment: Attachment | None) -> web.Response:
        """A CDN answer, recorded in ``downloads`` (status 404 when there is no such file)."""
        call = Call(request.method, request.path, request.path, {}, dict(request.query))
        call.at = time.perf_counter()
        self.downloads.append(call)
        self.changed()
        if attachment is None:
            call.status = 404
            return web.Response(status=404)
        call.status = 200
        return web.Response(body=attachment.data, content_type=attachment.content_type)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        found = rest.match(request.method, path)
        call = Call(
            request.method,
            f"{request.method} {path}",
            path,
            {},
            dict(request.query),
            at=time.perf_counter(),
        )
        await self._read_body(request, call)
        self.calls.append(call)
        if found is None:
            self.unhandled.append(call)
            call.status = 404
            return _json(404, {"message": f"the fake has no route {call.route}", "code": 0}, "")
        call.route, call.params, handler, needs_auth = found
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            call.status = 401
            return _json(401, {"message": "401: Unauthorized", "code": 0}, call.route)
        fault = self._take_fault(call.route)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status == 429:
                call.status = 429
                return _rate_limited(fault)
            if fault.status:
                call.status = fault.status
                return web.Response(status=fault.status, text="upstream error (fault injected)")
        try:
            rest.check_request(call)  # what Discord's schema and documented limits refuse
            status, body = await handler(self, call)
        except DiscordError as error:
            call.status, call.code, call.error = error.status, error.code, error.body()
            return _json(error.status, error.body(), call.route)
        except Exception as error:  # a bug in the fake: a 400 the bot will not retry, recorded
            self.errors.append(f"{call.route}: {type(error).__name__}: {error}")
            call.status = 400
            return _json(400, {"message": f"the fake failed: {error}", "code": 0}, call.route)
        call.status = status
        self.changed()
        return _json(status, body, call.route)

    @staticmethod
    async def _read_body(request: web.Request, call: Call) -> None:
        if request.content_type == "application/json":
            call.json = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):  # a nested multipart: not Discord's
                    continue
                if part.name == "payload_json":
                    call.json = json.loads(await part.text())
                elif part.filename is not None:
                    data = await part.read()
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    call.files.append(Upload(part.filename, bytes(data), content_type))


def _json(status: int, body: Any, route: str) -> web.Response:
    headers: dict[str, str] = {}  # the X-RateLimit-* headers come from FakeDiscord._guard
    if status == 204:
        return web.Response(status=204, headers=headers)
    # Exactly "application/json": discord.py decodes nothing else (aiohttp would add a charset).
    headers["Content-Type"] = "application/json"
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)


def _close(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def _stall(request: web.Request, seconds: float | None) -> None:
    """Holds a request unanswered for ``seconds`` (None: forever) or until the client leaves."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while request.transport is not None and not request.transport.is_closing():
        if deadline is not None and time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.02)


async def _cut_short(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Sends the status, the headers and half the body, then closes the connection."""
    body = bytes(response.body)  # type: ignore[arg-type]  # _json's answers are bytes
    partial = web.StreamResponse(status=response.status, headers=response.headers)
    partial.content_length = len(body)
    await partial.prepare(request)
    await partial.write(body[: len(body) // 2])
    _close(request)
    return partial


def _rate_limited(fault: Fault) -> web.Response:
    headers = {
        "Content-Type": "application/json",
        "Retry-After": f"{max(1, round(fault.retry_after))}",
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
        "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
        "X-RateLimit-Bucket": f"{zlib.crc32(fault.route.encode()):08x}",
        "X-RateLimit-Scope": "global" if fault.is_global else "user",
        "Via": "1.1 google",  # without it discord.py takes a 429 for a Cloudflare ban
    }
    if fault.is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {
        "message": "You are being rate limited.",
        "retry_after": fault.retry_after,
        "global": fault.is_global,
        "code": 0,
    }
    return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)


__all__ = ["FakeDiscord", "Fault", "Interaction"]


def _check_option(option: dict[str, Any], value: Any) -> None:
    """What Discord's client checks before it sends an option (discord.py does not)."""
    name = option["name"]
    choices = [choice["value"] for choice in option.get("choices") or []]
    if choices and value not in choices:
        raise ValueError(f"Discord would not send {name}={value!r}: the choices are {choices}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = option.get("min_value"), option.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"Discord would not send {name}={value!r}: range {low}..{high}")
    if isinstance(value, str):
        low, high = option.get("min_length", 0), option.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise ValueError(f"Discord would not send {name} of {len(value)} characters")


def _option_schema(schema: dict[str, Any], path: list[str], name: str) -> dict[str, Any]:
    """The synced schema of option ``name`` of a (sub)command."""
    for step in path:
        schema = next(o for o in schema.get("options") or [] if o["name"] == step)
    return next(o for o in schema.get("options") or [] if o["name"] == name)
