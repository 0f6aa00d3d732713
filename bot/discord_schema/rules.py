"""Discord's limits that its OpenAPI description does not state, from its documentation:
message content (the schema allows 4000 on channel routes; bots get 2000), the 6000 characters
of a message's embeds, a request's total upload, and what an application command must be
(lower-case names, a description, required options first, 4000 characters in all).
"""

from __future__ import annotations

from typing import Any

import regex

from bot.discord_schema.validate import Problem

MAX_CONTENT = 2000
MAX_EMBED_CHARS = 6000
MAX_FILES = 10
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # a whole request; each file has its own, smaller limit
MAX_COMMAND_CHARS = 4000
CHAT_INPUT = 1
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2
# Discord's pattern for command and option names; CHAT_INPUT names must also be lower case.
_NAME = regex.compile(r"^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$")

_MESSAGE_ROUTES = (
    "POST /channels/{channel_id}/messages",
    "PATCH /channels/{channel_id}/messages/{message_id}",
    "POST /webhooks/{webhook_id}/{webhook_token}",
    "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/",
    "POST /interactions/{interaction_id}/{interaction_token}/callback",
)
_COMMAND_ROUTES = (
    "PUT /applications/{application_id}/commands",
    "PUT /applications/{application_id}/guilds/{guild_id}/commands",
)


def route_problems(route: str, body: Any) -> list[Problem]:
    """The documented rules of one route (a template from the table) for this body."""
    if route.startswith(_COMMAND_ROUTES) and isinstance(body, list):
        problems = []
        for index, command in enumerate(body):
            if isinstance(command, dict):
                problems += command_problems(command, (str(index),))
        names = [c.get("name") for c in body if isinstance(c, dict)]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append(
                    Problem(
                        (str(index), "name"),
                        "APPLICATION_COMMANDS_DUPLICATE_NAME",
                        f"Application command names must be unique ({name})",
                    )
                )
        return problems
    if route.startswith(_MESSAGE_ROUTES) and isinstance(body, dict):
        if route.endswith("/callback"):  # the message of a type 4 answer
            data = body.get("data")
            return message_problems(data, ("data",)) if isinstance(data, dict) else []
        return message_problems(body, ())
    return []


def message_problems(body: dict[str, Any], path: tuple[str, ...]) -> list[Problem]:
    problems = []
    content = body.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        problems.append(
            Problem(
                (*path, "content"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_CONTENT} or fewer in length.",
            )
        )
    embeds = body.get("embeds")
    if isinstance(embeds, list) and sum(_embed_chars(e) for e in embeds) > MAX_EMBED_CHARS:
        problems.append(
            Problem(
                (*path, "embeds"),
                "BASE_TYPE_MAX_LENGTH",
                f"Embed size exceeds maximum size of {MAX_EMBED_CHARS}",
            )
        )
    return problems


def _embed_chars(embed: Any) -> int:
    """What Discord counts: title, description, field names and values, footer text, author
    name."""
    if not isinstance(embed, dict):
        return 0
    fields = embed.get("fields") or []
    return sum(
        len(str(text or ""))
        for text in (
            embed.get("title"),
            embed.get("description"),
            (embed.get("footer") or {}).get("text"),
            (embed.get("author") or {}).get("name"),
            *(f.get("name") for f in fields if isinstance(f, dict)),
            *(f.get("value") for f in fields if isinstance(f, dict)),
        )
    )


def command_problems(command: dict[str, Any], path: tuple[str, ...] = ()) -> list[Problem]:
    """A command's documented rules beyond the schema."""
    problems: list[Problem] = []
    chat_input = int(command.get("type") or CHAT_INPUT) == CHAT_INPUT
    problems += _named(command, path, chat_input)
    if chat_input and not command.get("description"):
        problems.append(
            Problem((*path, "description"), "BASE_TYPE_REQUIRED", "This field is required")
        )
    problems += _options(command.get("options") or [], (*path, "options"))
    size = _characters(command)
    if size > MAX_COMMAND_CHARS:
        problems.append(
            Problem(
                path,
                "APPLICATION_COMMAND_TOO_LARGE",
                f"Command exceeds maximum size ({MAX_COMMAND_CHARS}): {size} characters",
            )
        )
    return problems


def _named(item: dict[str, Any], path: tuple[str, ...], lower: bool) -> list[Problem]:
    name = item.get("name")
    if not isinstance(name, str):
        return []
    if not _NAME.match(name) or (lower and name != name.lower()):
        return [
            Problem(
                (*path, "name"),
                "APPLICATION_COMMAND_INVALID_NAME",
                f"Command name is invalid: {name!r}",
            )
        ]
    return []


def _options(options: list[Any], path: tuple[str, ...]) -> list[Problem]:
    problems: list[Problem] = []
    seen_optional = False
    names: set[str] = set()
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        where = (*path, str(index))
        problems += _named(option, where, True)
        name = option.get("name")
        if name in names:
            problems.append(
                Problem(
                    (*where, "name"),
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    f"Option names must be unique ({name})",
                )
            )
        names.add(str(name))
        if option.get("type") in (SUBCOMMAND, SUBCOMMAND_GROUP):
            problems += _options(option.get("options") or [], (*where, "options"))
        elif option.get("required"):
            if seen_optional:
                problems.append(
                    Problem(
                        (*where, "required"),
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
                )
        else:
            seen_optional = True
    return problems


def _characters(item: dict[str, Any]) -> int:
    """Discord's 4000: names, descriptions and choice names and values, all levels."""
    size = len(str(item.get("name") or "")) + len(str(item.get("description") or ""))
    for choice in item.get("choices") or []:
        size += len(str(choice.get("name") or "")) + len(str(choice.get("value") or ""))
    return size + sum(_characters(o) for o in item.get("options") or [] if isinstance(o, dict))
