"""Checks a request against the table made from Discord's OpenAPI description: lengths, item
counts, enums, required fields, types, ranges, as Discord checks them.

A problem carries the field's path as Discord reports it (``("0", "options", "3",
"description")``) and Discord's own error code and wording, so the fake Discord can answer
400 / 50035 exactly as Discord does, and ``sdbot discord check`` can say which field is wrong.
Properties the schema does not know are ignored, as Discord ignores them. Where Discord coerces
(a snowflake or an integer sent as a string of digits, an integer sent as a JSON string), so
does this.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import regex

TABLE = Path(__file__).with_name("routes.json")


@dataclass(frozen=True)
class Problem:
    """One field Discord would refuse: where, Discord's code, and its message."""

    path: tuple[str, ...]
    code: str
    message: str

    def __str__(self) -> str:
        where = ".".join(self.path) or "(body)"
        return f"{where}: {self.message} ({self.code})"


@cache
def table() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TABLE.read_text(encoding="utf-8"))
    return loaded


@cache
def _route_patterns() -> list[tuple[str, re.Pattern[str], int]]:
    """Each route with a regex for its concrete paths and how many literal segments it has
    (``/messages/@original`` wins over ``/messages/{message_id}``)."""
    out = []
    for key in table()["routes"]:
        method, template = key.split(" ", 1)
        parts = template.strip("/").split("/")
        body = "/".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        literal = sum(not p.startswith("{") for p in parts)
        out.append((key, re.compile(f"^{method} /{body}$"), literal))
    return out


def route_for(method: str, path: str) -> str | None:
    """The table's route for a concrete request (``"PATCH /webhooks/1/tok/messages/@original"``),
    or None when sdbot's table does not know it."""
    found = [
        (literal, key)
        for key, pattern, literal in _route_patterns()
        if pattern.match(f"{method} /{path.strip('/')}")
    ]
    return max(found)[1] if found else None


def request_problems(
    method: str, path: str, query: dict[str, str] | None = None, body: Any = None
) -> list[Problem]:
    """What Discord's schema refuses in this request's query and JSON body (the ``payload_json``
    of a multipart request)."""
    route = route_for(method, path)
    if route is None:
        return []
    entry = table()["routes"][route]
    problems: list[Problem] = []
    for name, value in (query or {}).items():
        schema = (entry.get("query") or {}).get(name)
        if schema is not None:
            problems += check(schema, _from_query(value, schema), (name,))
    if body is not None and "json" in entry:
        problems += check(entry["json"], body, ())
    return problems


def _from_query(value: str, schema: dict[str, Any]) -> Any:
    """A query string's value as Discord reads it for its parameter's type."""
    kinds = schema.get("type") or []
    if "boolean" in kinds and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if "integer" in kinds and value.lstrip("-").isdigit():
        return int(value)
    return value


def check(schema: dict[str, Any], value: Any, path: tuple[str, ...]) -> list[Problem]:
    """The problems of ``value`` against ``schema`` (a node of the table)."""
    if "$ref" in schema:
        schema = {**table()["schemas"][schema["$ref"]], **_without(schema, "$ref")}
        return check(schema, value, path)
    problems: list[Problem] = []
    for sub in schema.get("allOf", []):
        problems += check(sub, value, path)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            problems += _one_of(schema[key], value, path)
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        value, kind = _typed(value, kinds, schema.get("format"))
        if kind is None:
            return [*problems, _type_problem(kinds, value, path)]
    else:
        kind = _kind_of(value)
    if "enum" in schema and value not in schema["enum"]:
        problems.append(_choices(schema["enum"], path))
    if "const" in schema and value != schema["const"]:
        problems.append(_choices([schema["const"]], path))
    if kind == "string":
        problems += _length(len(value), schema, path, "")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            problems.append(
                Problem(path, "STRING_TYPE_REGEX", "String value did not match validation regex.")
            )
    elif kind in ("integer", "number"):
        problems += _range(value, schema, path)
    elif kind == "array":
        problems += _length(len(value), schema, path, "Items")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) < len(value):
            problems.append(Problem(path, "LIST_ITEM_VALUE_DUPLICATE", "Items must be unique."))
        if "items" in schema:
            for index, item in enumerate(value):
                problems += check(schema["items"], item, (*path, str(index)))
    elif kind == "object":
        problems += _object(schema, value, path)
    return problems


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _typed(value: Any, kinds: list[str], fmt: str | None) -> tuple[Any, str | None]:
    """``value`` as Discord reads it for one of ``kinds``, and which; None when it cannot."""
    kind = _kind_of(value)
    if kind in kinds or (kind == "integer" and "number" in kinds):
        return value, kind
    if kind == "integer" and "string" in kinds and fmt == "snowflake" and value >= 0:
        return str(value), "string"  # discord.py sends some ids as numbers
    if kind == "string" and ("integer" in kinds or "number" in kinds):
        try:
            return (int(value), "integer") if "integer" in kinds else (float(value), "number")
        except ValueError:
            return value, None
    return value, None


def _type_problem(kinds: list[str], value: Any, path: tuple[str, ...]) -> Problem:
    wanted = [k for k in kinds if k != "null"]
    if value is None:
        return Problem(path, "BASE_TYPE_REQUIRED", "This field is required")
    if wanted and wanted[0] in ("integer", "number"):
        return Problem(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not {wanted[0]}.')
    if wanted and wanted[0] == "object":
        return Problem(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
    if wanted and wanted[0] == "array":
        return Problem(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if wanted and wanted[0] == "boolean":
        return Problem(path, "BOOLEAN_TYPE_CONVERT", f'Value "{value}" is not a boolean.')
    return Problem(path, "STRING_TYPE_CONVERT", f'Could not interpret "{value}" as string.')


def _choices(allowed: list[Any], path: tuple[str, ...]) -> Problem:
    shown = ", ".join(json.dumps(v) for v in allowed)
    return Problem(path, "BASE_TYPE_CHOICES", f"Value must be one of {{{shown}}}.")


def _length(size: int, schema: dict[str, Any], path: tuple[str, ...], what: str) -> list[Problem]:
    """Discord's length messages: between, or fewer, or more."""
    key = "Items" if what else "Length"
    low = schema.get(f"min{key}")
    high = schema.get(f"max{key}")
    if (low is None or size >= low) and (high is None or size <= high):
        return []
    if low is not None and high is not None and low > 0:
        return [
            Problem(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
        ]
    if high is not None and size > high:
        return [Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")]
    return [Problem(path, "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length.")]


def _range(value: float, schema: dict[str, Any], path: tuple[str, ...]) -> list[Problem]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if high is not None and value > high:
        return [
            Problem(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")
        ]
    if low is not None and value < low:
        return [
            Problem(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}.")
        ]
    return []


def _object(schema: dict[str, Any], value: dict[str, Any], path: tuple[str, ...]) -> list[Problem]:
    problems: list[Problem] = []
    properties = schema.get("properties") or {}
    for name in schema.get("required", []):
        if name not in value:
            problems.append(Problem((*path, name), "BASE_TYPE_REQUIRED", "This field is required"))
    for name, item in value.items():
        if name in properties:
            problems += check(properties[name], item, (*path, name))
        elif isinstance(schema.get("additionalProperties"), dict):
            problems += check(schema["additionalProperties"], item, (*path, name))
    high = schema.get("maxProperties")
    if high is not None and len(value) > high:
        problems.append(
            Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
        )
    return problems


def _one_of(branches: list[dict[str, Any]], value: Any, path: tuple[str, ...]) -> list[Problem]:
    """Fine when a branch takes the value; otherwise the problems of the branch the value
    means (the one whose ``type`` discriminator or JSON type it matches), as Discord reports
    the model it chose."""
    results = [(branch, check(branch, value, path)) for branch in branches]
    if any(not problems for _, problems in results):
        return []
    meant = [problems for branch, problems in results if _discriminated(branch, value)]
    if len(meant) == 1:
        return meant[0]
    kind = _kind_of(value)
    typed = [problems for branch, problems in results if _takes_kind(branch, kind)]
    return min(typed or [problems for _, problems in results], key=len)


def _takes_kind(branch: dict[str, Any], kind: str) -> bool:
    """Whether a branch is for values of this JSON type (a null branch is not for a dict)."""
    if "$ref" in branch:
        branch = table()["schemas"][branch["$ref"]]
    kinds = branch.get("type")
    if kinds is None:
        return True
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return kind in kinds or (kind == "integer" and "number" in kinds)


def _discriminated(branch: dict[str, Any], value: Any) -> bool:
    if "$ref" in branch:
        branch = table()["schemas"][branch["$ref"]]
    if not isinstance(value, dict) or "type" not in value:
        return False
    tag = (branch.get("properties") or {}).get("type") or {}
    return value["type"] in tag.get("enum", []) or value["type"] == tag.get("const", object())


@cache
def _pattern(source: str) -> regex.Pattern[str]:
    return regex.compile(source)


def errors_body(problems: list[Problem]) -> dict[str, Any]:
    """Discord's ``errors`` object: the problems nested by field path, ``_errors`` at each."""
    out: dict[str, Any] = {}
    for problem in problems:
        node = out
        for part in problem.path:
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return out
