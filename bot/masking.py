"""Secrets kept out of what sdbot prints: URLs with their passwords and secret-looking query
values masked, and pydantic's settings errors in one line that never shows a secret."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "secret", "key", "auth", "credential")
_URLS = ("database_url", "redis_url", "discord_api_url", "discord_gateway_url")
_CREDENTIALS = re.compile(r"([^/?#@:]*):[^/?#@]*@")  # user:password@, with a scheme or not
_SECRET_QUERY = re.compile(
    r"(?i)((?:^|[?&;])[^=&;#]*(?:" + "|".join(_SECRET_QUERY_KEYS) + r")[^=&;#]*=)[^&;#]*"
)


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_QUERY_KEYS)


def mask_text(text: str) -> str:
    """A URL that may not parse, its password and secret-looking query values replaced by ***."""
    return _SECRET_QUERY.sub(r"\1***", _CREDENTIALS.sub(r"\1:***@", text))


def mask_web_url(url: str) -> str:
    """An http(s) or ws(s) URL with its password and secret-looking query values masked."""
    import yarl

    try:
        parsed = yarl.URL(url)
        if parsed.password:
            parsed = parsed.with_password("***")
        if any(_is_secret(key) for key in parsed.query):
            masked = [(k, "***" if _is_secret(k) else v) for k, v in parsed.query.items()]
            parsed = parsed.with_query(masked)
        return mask_text(str(parsed).replace("%2A%2A%2A", "***"))  # text yarl took for a path
    except (ValueError, TypeError):
        return mask_text(url)


def mask_url(url: str) -> str:
    """The URL with its password, and any secret-looking query value, replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy raises several kinds for text that is no URL
        return mask_text(url)
    query = {key: "***" if _is_secret(key) else value for key, value in parsed.query.items()}
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", "***")  # the query is URL-encoded on the way out


def settings_error(error: ValidationError) -> str:
    """pydantic's report in one line, each bad value named and never a secret shown."""
    problems = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] != "value_error":  # sdbot's own messages name the value already
            value: Any = item.get("input")
            if name in _URLS and isinstance(value, str):
                value = mask_text(value)
            elif name == "discord_token":
                value = "****"
            message = f"{message}, got {value!r}"
        problems.append(f"SDBOT_{name.upper()}: {message}" if name else message)
    return "; ".join(problems)
