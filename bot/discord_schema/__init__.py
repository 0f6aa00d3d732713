"""What Discord accepts on the routes sdbot calls: its published schema (``routes.json``, made
from Discord's OpenAPI description by ``generate.py``) and the documented limits the schema
leaves out (``rules.py``). The fake Discord refuses with it; ``sdbot discord check`` checks the
bot's own payloads with it before Discord sees them.
"""

from __future__ import annotations

from typing import Any

from bot.discord_schema.rules import MAX_CONTENT, MAX_FILES, MAX_UPLOAD_BYTES, route_problems
from bot.discord_schema.validate import Problem, errors_body, request_problems, route_for


def problems(
    method: str, path: str, query: dict[str, str] | None = None, body: Any = None
) -> list[Problem]:
    """Everything Discord would refuse in this request with 400 / 50035."""
    found = request_problems(method, path, query, body)
    route = route_for(method, path)
    if route is not None and body is not None:
        found += route_problems(route, body)
    return list(dict.fromkeys(found))  # the schema and the docs may both say it


__all__ = [
    "MAX_CONTENT",
    "MAX_FILES",
    "MAX_UPLOAD_BYTES",
    "Problem",
    "errors_body",
    "problems",
    "route_for",
]
