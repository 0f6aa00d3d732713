"""Writes ``routes.json``, the project's own table of what Discord accepts on the routes sdbot
calls, from Discord's OpenAPI description of API v10.

    python -m bot.discord_schema.generate ../shared/discord-api-spec/openapi.json

The table keeps, for each route below, its query parameters and its JSON body schema, and every
component schema they reach, with only the keywords the validator reads. It is committed, so the
bot's check and the fake Discord work for someone who has only the project;
``tests/test_discord_schema.py`` regenerates it from the spec when the spec is there and fails
when the two differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("routes.json")

# The routes sdbot calls (and the fake Discord answers), as the spec names them.
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/users/@me"),
    ("GET", "/oauth2/applications/@me"),
    ("GET", "/gateway/bot"),
    ("GET", "/applications/{application_id}/commands"),
    ("PUT", "/applications/{application_id}/commands"),
    ("GET", "/applications/{application_id}/guilds/{guild_id}/commands"),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"),
    ("GET", "/channels/{channel_id}"),
    ("GET", "/channels/{channel_id}/messages"),
    ("POST", "/channels/{channel_id}/messages"),
    ("GET", "/channels/{channel_id}/messages/{message_id}"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/{user_id}"),
    ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions"),
    ("GET", "/users/{user_id}"),
    ("POST", "/users/@me/channels"),
    ("GET", "/guilds/{guild_id}/members/{user_id}"),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
    ("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
    ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
)

# What the validator reads; everything else (descriptions, titles, examples) is left out.
_KEYWORDS = frozenset(
    {
        "$ref", "type", "properties", "required", "items", "additionalProperties",
        "enum", "const", "oneOf", "anyOf", "allOf", "minLength", "maxLength", "minItems",
        "maxItems", "maxProperties", "uniqueItems", "minimum", "maximum", "pattern", "format",
    }
)  # fmt: skip
_REF = "#/components/schemas/"


def _prune(node: Any, reached: set[str]) -> Any:
    """``node`` with only the validator's keywords; the schema names it refers to go into
    ``reached``."""
    if isinstance(node, list):
        return [_prune(item, reached) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _prune(sub, reached) for name, sub in value.items()}
        elif key == "$ref":
            if not value.startswith(_REF):
                raise ValueError(f"unexpected reference {value!r}")
            reached.add(value.removeprefix(_REF))
            out[key] = value.removeprefix(_REF)
        elif key in _KEYWORDS:
            out[key] = _prune(value, reached)
    return out


def _parameters(spec: dict[str, Any], path: str, method: str, reached: set[str]) -> Any:
    entries = [*spec["paths"][path].get("parameters", []), *spec["paths"][path][method].get(
        "parameters", []
    )]  # fmt: skip
    query = {p["name"]: _prune(p["schema"], reached) for p in entries if p["in"] == "query"}
    return query or None


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """The table: ``routes`` by ``"METHOD /path"`` with ``query`` and ``json`` schemas, and the
    component ``schemas`` they reach."""
    reached: set[str] = set()
    routes: dict[str, Any] = {}
    for method, path in ROUTES:
        operation = spec["paths"][path][method.lower()]
        entry: dict[str, Any] = {}
        query = _parameters(spec, path, method.lower(), reached)
        if query:
            entry["query"] = query
        content = (operation.get("requestBody") or {}).get("content") or {}
        if "application/json" in content:
            entry["json"] = _prune(content["application/json"]["schema"], reached)
        routes[f"{method} {path}"] = entry
    schemas: dict[str, Any] = {}
    pending = sorted(reached)
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        found: set[str] = set()
        schemas[name] = _prune(spec["components"]["schemas"][name], found)
        pending += sorted(found - schemas.keys())
    info = spec.get("info", {})
    return {
        "source": f"Discord's OpenAPI description, version {info.get('version', '?')}",
        "routes": routes,
        "schemas": dict(sorted(schemas.items())),
    }


def render(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="openapi.json from discord/discord-api-spec")
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args(argv)
    table = build(json.loads(args.spec.read_text(encoding="utf-8")))
    args.out.write_text(render(table), encoding="utf-8")
    print(f"{args.out}: {len(table['routes'])} routes, {len(table['schemas'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
