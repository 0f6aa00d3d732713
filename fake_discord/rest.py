"""The REST routes the fake answers, with Discord's rules and error codes.

Every handler gets the parsed request and returns ``(status, json)``; ``DiscordError`` is turned
into Discord's error body by the server. A route not listed here answers 404 and is recorded as
unhandled, so a test sees a call the fake does not know instead of a silent success.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from bot import discord_schema
from fake_discord.model import (
    Attachment,
    Channel,
    Message,
    Permission,
    Upload,
    User,
    snowflake,
)

if TYPE_CHECKING:
    from fake_discord.server import FakeDiscord, Interaction

EPHEMERAL = 1 << 6


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Any = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def unknown(kind: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {kind}")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def invalid_form(field_name: str, message: str, code: str = "BASE_TYPE_BAD_LENGTH") -> DiscordError:
    problem = discord_schema.Problem((field_name,), code, message)
    return DiscordError(400, 50035, "Invalid Form Body", discord_schema.errors_body([problem]))


def check_request(call: Call) -> None:
    """Every request against Discord's published schema of its route (lengths, counts, enums,
    required fields, types) and the limits its docs add: 400 / 50035 with the fields' paths,
    as Discord answers; a request's uploads over 25 MiB in all: 413 / 40005."""
    problems = discord_schema.problems(call.method, call.path, call.query, call.json)
    if problems:
        errors = discord_schema.errors_body(problems)
        raise DiscordError(400, 50035, "Invalid Form Body", errors)
    if len(call.files) > discord_schema.MAX_FILES:
        raise invalid_form("files", f"Must be {discord_schema.MAX_FILES} or fewer in length.")
    if sum(len(f.data) for f in call.files) > discord_schema.MAX_UPLOAD_BYTES:
        raise DiscordError(413, 40005, "Request entity too large")


@dataclass
class Call:
    """One REST request as the fake saw it, for tests to inspect (in order)."""

    method: str
    route: str  # the template: "POST /channels/{channel_id}/messages"
    path: str
    params: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: list[Upload] = field(default_factory=list)
    status: int = 0
    code: int | None = None  # Discord's error code when it failed
    error: dict[str, Any] | None = None  # the error body answered (message, code, errors)
    at: float = 0.0
    answered: bool = True  # False: a connection fault (drop, stall) kept the answer from the client

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Handler = Callable[["FakeDiscord", Call], Awaitable[tuple[int, Any]]]
ROUTES: list[
    tuple[str, re.Pattern[str], str, Handler, bool]
] = []  # method, regex, template, fn, auth


def route(method: str, template: str, *, auth: bool = True) -> Callable[[Handler], Handler]:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append((method, pattern, f"{method} {template}", handler, auth))
        return handler

    return register


def match(method: str, path: str) -> tuple[str, dict[str, str], Handler, bool] | None:
    for route_method, pattern, template, handler, auth in ROUTES:
        found = pattern.match(path)
        if route_method == method and found:
            return template, {k: unquote(v) for k, v in found.groupdict().items()}, handler, auth
    return None


# --- identity and commands ---------------------------------------------------------------------


@route("GET", "/users/@me")
async def get_me(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, fake.bot_user.to_json()


@route("GET", "/oauth2/applications/@me")
async def get_application(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, {
        "id": str(fake.application_id),
        "name": fake.bot_user.name,
        "description": "",
        "icon": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": fake.owner.to_json(),
        "verify_key": "0" * 64,
        "flags": 0,
    }


@route("GET", "/gateway")
@route("GET", "/gateway/bot")
async def get_gateway(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, {
        "url": fake.gateway_url,
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 999,
            "reset_after": 0,
            "max_concurrency": 1,
        },
    }


def _store_commands(fake: FakeDiscord, guild_id: int | None, body: Any) -> list[dict[str, Any]]:
    stored = []
    for command in body:
        existing = fake.commands.get((guild_id, command["name"]))
        command = {
            **command,
            "id": existing["id"] if existing else str(snowflake()),
            "application_id": str(fake.application_id),
            "version": str(snowflake()),
            "type": command.get("type", 1),
        }
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        stored.append(command)
    for key in [key for key in fake.commands if key[0] == guild_id]:
        del fake.commands[key]
    for command in stored:
        fake.commands[(guild_id, command["name"])] = command
    return stored


@route("PUT", "/applications/{application_id}/commands")
async def put_global_commands(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, _store_commands(fake, None, call.json)


@route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
async def put_guild_commands(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, _store_commands(fake, int(call.params["guild_id"]), call.json)


@route("GET", "/applications/{application_id}/commands")
async def get_global_commands(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, [c for (g, _), c in fake.commands.items() if g is None]


@route("GET", "/applications/{application_id}/guilds/{guild_id}/commands")
async def get_guild_commands(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    guild_id = int(call.params["guild_id"])
    return 200, [c for (g, _), c in fake.commands.items() if g == guild_id]


# --- messages ------------------------------------------------------------------------------------


def check_message(fake: FakeDiscord, body: dict[str, Any], files: list[Upload], limit: int) -> None:
    """What a message must be beyond its request's schema (``check_request``): not empty, and
    each file within the channel's or interaction's upload limit. An edit is checked as the
    message it would make."""
    content = body.get("content") or ""
    embeds = body.get("embeds") or []
    if any(len(f.data) > limit for f in files):  # the limit is per file
        raise DiscordError(413, 40005, "Request entity too large")
    kept = body.get("attachments") or []
    if not content and not embeds and not files and not kept and not body.get("components"):
        raise DiscordError(400, 50006, "Cannot send an empty message")


def new_message(
    fake: FakeDiscord,
    channel: Channel,
    author: User,
    body: dict[str, Any],
    files: list[Upload],
    **extra: Any,
) -> Message:
    message_id = snowflake(fake.now())
    attachments = [
        Attachment(
            snowflake(),
            upload.filename,
            upload.data,
            upload.content_type,
            f"{fake.url}/cdn/attachments/{channel.id}/{message_id}/{upload.filename}",
        )
        for upload in files
    ]
    message = Message(
        id=message_id,
        channel_id=channel.id,
        guild_id=channel.guild_id,
        author=author,
        content=body.get("content") or "",
        attachments=attachments,
        embeds=list(body.get("embeds") or []),
        flags=int(body.get("flags") or 0),
        components=list(body.get("components") or []),
        allowed_mentions=body.get("allowed_mentions"),
        message_reference=body.get("message_reference"),
        created=fake.now(),
        **extra,
    )
    fake.add_message(message)
    return message


def _channel(fake: FakeDiscord, call: Call) -> Channel:
    channel = fake.channels.get(int(call.params["channel_id"]))
    if channel is None:
        raise unknown("Channel", 10003)
    return channel


def _require(fake: FakeDiscord, channel: Channel, *bits: int) -> None:
    """The bot's permissions in a guild channel; DMs need none."""
    if channel.guild_id is None:
        return
    granted = fake.guilds[channel.guild_id].permissions(fake.bot_user.id, channel)
    if not granted & Permission.VIEW_CHANNEL:
        raise DiscordError(403, 50001, "Missing Access")
    for bit in bits:
        if not granted & bit:
            raise missing_permissions()


def _message(fake: FakeDiscord, channel: Channel, message_id: str) -> Message:
    """A message by its channel route; ephemeral ones exist only for their interaction."""
    message = fake.messages.get(int(message_id)) if message_id.isdigit() else None
    if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
        raise unknown("Message", 10008)
    return message


def _not_in_dm(channel: Channel) -> None:
    """In a DM a bot may not touch what others did: their reactions, their messages."""
    if channel.guild_id is None:
        raise DiscordError(403, 50003, "Cannot execute action on a DM channel")


def _still_editable(fake: FakeDiscord, message: Message) -> None:
    """Discord caps edits to messages older than an hour; modelled as: no edit after an hour
    (on the fake's clock)."""
    if fake.now() - message.created > fake.edit_age_limit_s:
        raise DiscordError(
            400, 30046, "Maximum number of edits to messages older than 1 hour reached."
        )


def _as_edited(message: Message, body: dict[str, Any]) -> dict[str, Any]:
    """The message as it would be after an edit: what the body changes, the rest kept."""
    kept = [{"id": str(a.id)} for a in message.attachments]
    return {
        "content": message.content,
        "embeds": message.embeds,
        "components": message.components,
        "attachments": kept,
        **{k: v for k, v in body.items() if v is not None or k == "content"},
    }


@route("GET", "/channels/{channel_id}")
async def get_channel(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    return 200, _channel(fake, call).to_json()


@route("POST", "/channels/{channel_id}/messages")
async def create_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    if channel.recipient is not None and not channel.recipient.dms_open:
        raise DiscordError(403, 50007, "Cannot send messages to this user")
    send = Permission.SEND_MESSAGES_IN_THREADS if channel.parent else Permission.SEND_MESSAGES
    _require(fake, channel, send, *([Permission.ATTACH_FILES] * bool(call.files)))
    body = call.json or {}
    check_message(fake, body, call.files, fake.attachment_size_limit)
    message = new_message(fake, channel, fake.bot_user, body, call.files)
    return 200, message.to_json(fake.bot_user.id)


@route("GET", "/channels/{channel_id}/messages/{message_id}")
async def get_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    _require(fake, channel, Permission.READ_MESSAGE_HISTORY)
    return 200, _message(fake, channel, call.params["message_id"]).to_json(fake.bot_user.id)


@route("PATCH", "/channels/{channel_id}/messages/{message_id}")
async def edit_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    message = _message(fake, channel, call.params["message_id"])
    if message.author.id != fake.bot_user.id:
        raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
    _still_editable(fake, message)
    check_message(
        fake, _as_edited(message, call.json or {}), call.files, fake.attachment_size_limit
    )
    fake.edit_message(message, call.json or {}, call.files)
    return 200, message.to_json(fake.bot_user.id)


@route("DELETE", "/channels/{channel_id}/messages/{message_id}")
async def delete_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    message = _message(fake, channel, call.params["message_id"])
    if message.author.id != fake.bot_user.id:
        _not_in_dm(channel)
        _require(fake, channel, Permission.MANAGE_MESSAGES)
    fake.delete_message(message)
    return 204, None


@route("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
async def add_reaction(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    _require(fake, channel, Permission.ADD_REACTIONS, Permission.READ_MESSAGE_HISTORY)
    message = _message(fake, channel, call.params["message_id"])
    fake.react(fake.bot_user.id, message, call.params["emoji"], dispatch=True)
    return 204, None


@route("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}")
async def remove_reaction(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    message = _message(fake, channel, call.params["message_id"])
    who = call.params["user_id"]
    user_id = fake.bot_user.id if who == "@me" else int(who)
    if user_id != fake.bot_user.id:
        _not_in_dm(channel)
        _require(fake, channel, Permission.MANAGE_MESSAGES)
    fake.unreact(user_id, message, call.params["emoji"])
    return 204, None


@route("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions")
async def clear_reactions(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    _not_in_dm(channel)
    _require(fake, channel, Permission.MANAGE_MESSAGES)
    message = _message(fake, channel, call.params["message_id"])
    for emoji, users in list(message.reactions.items()):
        for user_id in list(users):
            fake.unreact(user_id, message, emoji)
    return 204, None


@route("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}")
async def clear_emoji(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    _not_in_dm(channel)
    _require(fake, channel, Permission.MANAGE_MESSAGES)
    message = _message(fake, channel, call.params["message_id"])
    for user_id in list(message.reactions.get(call.params["emoji"], [])):
        fake.unreact(user_id, message, call.params["emoji"])
    return 204, None


@route("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}")
async def reaction_users(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    _require(fake, channel, Permission.READ_MESSAGE_HISTORY)
    message = _message(fake, channel, call.params["message_id"])
    users = message.reactions.get(call.params["emoji"], [])
    return 200, [fake.users[user_id].to_json() for user_id in users]


@route("GET", "/channels/{channel_id}/messages")
async def history(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    channel = _channel(fake, call)
    _require(fake, channel, Permission.READ_MESSAGE_HISTORY)
    limit = int(call.query.get("limit", "50"))
    shown = [m for m in fake.channel_messages(channel) if not m.ephemeral]
    return 200, [m.to_json(fake.bot_user.id) for m in reversed(shown[-limit:])]


@route("GET", "/users/{user_id}")
async def get_user(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    user = fake.users.get(int(call.params["user_id"])) if call.params["user_id"].isdigit() else None
    if user is None:
        raise unknown("User", 10013)
    return 200, user.to_json()


@route("POST", "/users/@me/channels")
async def open_dm(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    recipient = fake.users.get(int((call.json or {}).get("recipient_id", 0)))
    if recipient is None:
        raise unknown("User", 10013)
    return 200, fake.dm_channel(recipient).to_json()


@route("GET", "/guilds/{guild_id}/members/{user_id}")
async def get_member(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    guild = fake.guilds.get(int(call.params["guild_id"]))
    if guild is None:
        raise unknown("Guild", 10004)
    member = guild.members.get(int(call.params["user_id"]))
    if member is None:
        raise unknown("Member", 10007)
    return 200, member.to_json()


# --- interactions --------------------------------------------------------------------------------


def _interaction(fake: FakeDiscord, call: Call, *, id_key: str = "") -> Interaction:
    if id_key:
        interaction = fake.interactions.get(int(call.params[id_key]))
        if interaction is None or interaction.token != call.params["token"]:
            raise unknown("interaction", 10062)
        return interaction
    token = call.params["token"]
    for interaction in fake.interactions.values():
        if interaction.token == token:
            return interaction
    raise unknown("Webhook", 10015)


@route("POST", "/interactions/{interaction_id}/{token}/callback", auth=False)
async def interaction_callback(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    interaction = _interaction(fake, call, id_key="interaction_id")
    if interaction.responded:
        raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
    if fake.now() - interaction.created > fake.ack_deadline_s:
        interaction.expired_ack = True
        raise unknown("interaction", 10062)
    body = call.json or {}
    kind, data = int(body.get("type", 0)), body.get("data") or {}
    resource: dict[str, Any] = {"type": kind}
    if interaction.type == 4 or kind == 8:
        interaction.choices = _autocomplete_choices(interaction, kind, data)
    elif kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
        check_message(fake, data, call.files, interaction.attachment_size_limit)
        interaction.original = fake.interaction_message(interaction, data, call.files)
        resource["message"] = interaction.original.to_json(fake.bot_user.id)
    elif kind == 5:  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: "thinking…" (no message returned)
        flags = int(data.get("flags") or 0)
        interaction.original = fake.interaction_message(
            interaction, {"content": "", "flags": flags}, [], loading=True
        )
    elif kind != 9:  # 6 and 7 answer components; 9 opens a modal
        raise invalid_form(
            "type", f"Value {kind} is not a valid callback type for an application command"
        )
    fake.acknowledge(interaction, kind, ephemeral=bool(int(data.get("flags") or 0) & EPHEMERAL))
    original = interaction.original
    return 200, {
        "interaction": {
            "id": str(interaction.id),
            "type": interaction.type,
            "response_message_id": str(original.id) if original else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": interaction.ephemeral,
        },
        "resource": resource,
    }


MAX_CHOICE_VALUE = 100  # a string choice's value (the schema says 6000; the docs 100)
_CHOICE_TYPES: dict[int, tuple[type, ...]] = {3: (str,), 4: (int,), 10: (int, float)}


def _autocomplete_choices(
    interaction: Interaction, kind: int, data: dict[str, Any]
) -> list[dict[str, Any]]:
    """An autocomplete's answer as Discord takes it: type 8 only, and only to an autocomplete
    (type 4) interaction; at most 25 choices (the schema), each value of the focused option's
    type, a string one at most 100 characters."""
    if interaction.type != 4 or kind != 8:
        raise invalid_form(
            "type",
            f"Value {kind} is not a valid callback type for interaction type {interaction.type}",
        )
    focused = interaction.focused or {}
    allowed = _CHOICE_TYPES.get(int(focused.get("type", 3)), (str,))
    choices: list[dict[str, Any]] = list(data.get("choices") or [])
    for index, choice in enumerate(choices):
        value = choice.get("value")
        where = f"data.choices.{index}.value"
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise invalid_form(where, f"Value {value!r} is not of the option's type")
        if isinstance(value, str) and len(value) > MAX_CHOICE_VALUE:
            raise invalid_form(where, f"Must be {MAX_CHOICE_VALUE} or fewer in length.")
    return choices


def _live_token(fake: FakeDiscord, interaction: Interaction) -> None:
    if interaction.type == 4:  # an autocomplete's token answers once, with its choices
        raise unknown("Webhook", 10015)
    if fake.now() - interaction.created > fake.token_lifetime_s:
        raise DiscordError(401, 50027, "Invalid Webhook Token")
    if not interaction.responded:
        raise unknown("Webhook", 10015)


@route("POST", "/webhooks/{application_id}/{token}", auth=False)
async def followup(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    interaction = _interaction(fake, call)
    _live_token(fake, interaction)
    body = call.json or {}
    check_message(fake, body, call.files, interaction.attachment_size_limit)
    original = interaction.original
    if original is not None and not original.deleted and original.flags & Message.LOADING:
        # The first followup after a "thinking" defer replaces the loading message (once that
        # is deleted, a followup is a message of its own, ephemeral if it asks).
        message = original
        fake.edit_message(message, body, call.files, finish_loading=True)
    else:
        message = fake.interaction_message(interaction, body, call.files)
    interaction.followups.append(message)
    return 200, message.to_json(fake.bot_user.id)


def _webhook_message(fake: FakeDiscord, call: Call) -> tuple[Interaction, Message]:
    interaction = _interaction(fake, call)
    _live_token(fake, interaction)
    which = call.params["message_id"]
    if which == "@original":
        if interaction.original is None or interaction.original.deleted:
            raise unknown("Message", 10008)
        return interaction, interaction.original
    message = fake.messages.get(int(which))
    if message is None or message.deleted or message.interaction_id != interaction.id:
        raise unknown("Message", 10008)
    return interaction, message


@route("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", auth=False)
async def get_webhook_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    _, message = _webhook_message(fake, call)
    return 200, message.to_json(fake.bot_user.id)


@route("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", auth=False)
async def edit_webhook_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    interaction, message = _webhook_message(fake, call)
    _still_editable(fake, message)
    body = call.json or {}
    merged = _as_edited(message, body)
    check_message(fake, merged, call.files, interaction.attachment_size_limit)
    fake.edit_message(message, body, call.files, finish_loading=True)
    return 200, message.to_json(fake.bot_user.id)


@route("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", auth=False)
async def delete_webhook_message(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    _, message = _webhook_message(fake, call)
    fake.delete_message(message)
    return 204, None
