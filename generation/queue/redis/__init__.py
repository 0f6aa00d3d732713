"""The queue on Redis: the same fair order, limits and events as the in-process queue, for
``sdbot worker`` processes on other machines. ``client.RedisQueue`` is the bot's side,
``consumer.RedisWorker`` the worker's; ``scripts`` holds the Lua and the key layout, ``claims``
the batch claims, ``codec`` how requests and results are stored."""

from __future__ import annotations

from generation.queue.redis.client import RedisQueue
from generation.queue.redis.codec import (
    ForeignResult,
    batch_digest,
    batch_field,
    decode_payload,
    decode_request,
    decode_result,
    encode_request,
    encode_result,
    request_blobs,
)
from generation.queue.redis.consumer import Claimed, RedisWorker, batches_of
from generation.queue.redis.scripts import GROUP, KEEP_S, Scripts

__all__ = [
    "GROUP",
    "KEEP_S",
    "Claimed",
    "ForeignResult",
    "RedisQueue",
    "RedisWorker",
    "Scripts",
    "batch_digest",
    "batch_field",
    "batches_of",
    "decode_payload",
    "decode_request",
    "decode_result",
    "encode_request",
    "encode_result",
    "request_blobs",
]
