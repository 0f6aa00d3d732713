"""Requests and results as Redis holds them: JSON and raw bytes, never pickles (a Redis shared
by several machines must not be a way to run code on them).

The protocol's dataclasses are encoded generically, field by field from their type hints, so a
field added to ``generation.protocol`` travels without a line here: numbers, strings, bools,
``None``, str enums, tuples, lists, dicts with string keys, nested dataclasses and ``bytes`` (a
result's pictures, a request's pictures in: kept apart as raw hash fields, not base64). A stored
request that lacks a field this version needs (queued by an older bot) is
:class:`UnreadableRequest`: its job fails with the reason, the worker goes on.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import hashlib
import json
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from generation.protocol import WorkRequest, WorkResult

T = TypeVar("T")
_BLOB, _B64 = "$blob", "$b64"


class ForeignResult(ValueError):
    """A result that belongs to another job than the one read for."""


class Undecodable(ValueError):
    """Stored data that does not fit the type it is read as."""


class UnreadableRequest(Undecodable):
    """A queued request this version cannot run (an older bot queued it without a field that
    is required now): its job is failed with this reason instead of stopping the worker."""

    def __init__(self, uid: str, job_id: int | None, reason: str) -> None:
        super().__init__(reason)
        self.uid = uid
        self.job_id = job_id


def to_plain(value: Any, blobs: list[bytes] | None = None) -> Any:
    """``value`` as JSON-ready data; bytes go to ``blobs`` (by index) or, without, inline."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), blobs) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        if blobs is None:
            return {_B64: base64.b64encode(value).decode()}
        blobs.append(value)
        return {_BLOB: len(blobs) - 1}
    if isinstance(value, tuple | list):
        return [to_plain(item, blobs) for item in value]
    if isinstance(value, dict):
        return {str(key): to_plain(item, blobs) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot encode a {type(value).__name__} for Redis: {value!r}")


def from_plain(kind: Any, data: Any, blobs: list[bytes] | None = None) -> Any:
    """The value of type ``kind`` that :func:`to_plain` made ``data`` from."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        [inner] = [option for option in options if option is not type(None)]
        return from_plain(inner, data, blobs)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(data, dict):
            raise Undecodable(f"expected a stored {kind.__name__}, got {data!r}")
        hints = _hints(kind)
        fields = [f for f in dataclasses.fields(kind) if f.init]
        missing = [
            f.name
            for f in fields
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise Undecodable(f"a stored {kind.__name__} lacks {', '.join(missing)}")
        names = {f.name for f in fields}
        return kind(**{k: from_plain(hints[k], v, blobs) for k, v in data.items() if k in names})
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    if kind is bytes:
        return _bytes(data, blobs)
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], item, blobs) for item in data)
        return tuple(from_plain(arg, item, blobs) for arg, item in zip(args, data, strict=True))
    if origin is list:
        [inner] = typing.get_args(kind)
        return [from_plain(inner, item, blobs) for item in data]
    if origin is dict:
        _, inner = typing.get_args(kind)
        return {key: from_plain(inner, item, blobs) for key, item in data.items()}
    if kind is float and isinstance(data, int):
        return float(data)
    if kind in (int, float, str, bool) and not isinstance(data, kind):
        raise Undecodable(f"expected a {kind.__name__}, got {data!r}")
    return data


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _bytes(data: Any, blobs: list[bytes] | None) -> bytes:
    if _BLOB in data:
        index = int(data[_BLOB])
        if blobs is None or not 0 <= index < len(blobs):
            raise Undecodable(f"a stored blob ({index}) without the bytes it names")
        return bytes(blobs[index])
    return base64.b64decode(data[_B64])


def encode_request(request: WorkRequest, uid: str) -> str:
    """The request as one JSON text, with the job's uid. Its pictures (``inputs``' PNGs) are
    not in the text: each is named by its place in :func:`request_blobs`, which Redis keeps
    as raw fields of the job beside it."""
    return json.dumps({"uid": uid, **to_plain(request, [])})


def request_blobs(request: WorkRequest) -> list[bytes]:
    """The request's bytes (its pictures in), in the order :func:`encode_request` names them."""
    blobs: list[bytes] = []
    to_plain(request, blobs)
    return blobs


def batch_digest(request: WorkRequest) -> str:
    """A short digest of the request's batch key, stored with its job so that the claim script
    can find the jobs that may share its pipeline call: equal keys give equal digests in every
    process of one version (a version whose key differs gives other digests: its jobs do not
    mix with these)."""
    text = json.dumps(to_plain(list(request.batch_key)), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def batch_field(request: WorkRequest) -> str:
    """What a job's ``batch`` field holds in Redis: its image count and its key's digest."""
    return f"{len(request.options.seeds)} {batch_digest(request)}"


def decode_payload(payload: bytes | str, blobs: Sequence[bytes] = ()) -> tuple[WorkRequest, str]:
    """The request and the job's uid, its pictures taken from ``blobs`` (the raw fields stored
    with it). Raises UnreadableRequest (with the uid, so that the job can be failed) for a
    request this version cannot run."""
    data = json.loads(payload)
    uid = str(data.pop("uid"))
    try:
        return from_plain(WorkRequest, data, list(blobs)), uid
    except (Undecodable, KeyError, TypeError, ValueError) as error:
        job_id = data.get("job_id")
        raise UnreadableRequest(
            uid,
            job_id if isinstance(job_id, int) else None,
            f"cannot read the queued request ({error}): another version of sdbot queued it; "
            "ask again",
        ) from error


def decode_request(payload: bytes | str, blobs: Sequence[bytes] = ()) -> WorkRequest:
    return decode_payload(payload, blobs)[0]


def encode_result(result: WorkResult, uid: str) -> dict[str, bytes | str]:
    """The result as hash fields: ``meta`` (JSON, naming the job's uid) and one raw field per
    bytes value (``blob:N``)."""
    blobs: list[bytes] = []
    meta = {"uid": uid, "result": to_plain(result, blobs)}
    fields: dict[str, bytes | str] = {"meta": json.dumps(meta)}
    for index, blob in enumerate(blobs):
        fields[f"blob:{index}"] = blob
    return fields


def decode_result(fields: dict[bytes, bytes], uid: str) -> WorkResult:
    meta = json.loads(fields[b"meta"])
    if meta.get("uid") != uid:
        raise ForeignResult(f"the result belongs to job uid {meta.get('uid')!r}, not {uid!r}")
    count = sum(1 for key in fields if key.startswith(b"blob:"))
    blobs = [fields[f"blob:{index}".encode()] for index in range(count)]
    result: WorkResult = from_plain(WorkResult, meta["result"], blobs)
    return result
