"""Moved to ``generation.queue.redis`` (``client``, ``consumer``, ``codec``, ``scripts``); kept
for the redesign's second round."""

from __future__ import annotations

from generation.queue.redis.client import RedisQueue as RedisQueue
from generation.queue.redis.codec import ForeignResult as ForeignResult
from generation.queue.redis.codec import decode_payload as decode_payload
from generation.queue.redis.codec import decode_request as decode_request
from generation.queue.redis.codec import decode_result as decode_result
from generation.queue.redis.codec import encode_request as encode_request
from generation.queue.redis.codec import encode_result as encode_result
from generation.queue.redis.consumer import Claimed as Claimed
from generation.queue.redis.consumer import RedisWorker as RedisWorker
from generation.queue.redis.scripts import ADMIT as ADMIT
from generation.queue.redis.scripts import CANCEL as CANCEL
from generation.queue.redis.scripts import CLAIM as CLAIM
from generation.queue.redis.scripts import FINISH as FINISH
from generation.queue.redis.scripts import GROUP as GROUP
from generation.queue.redis.scripts import HEARTBEAT as HEARTBEAT
from generation.queue.redis.scripts import KEEP_S as KEEP_S
from generation.queue.redis.scripts import PUSH as PUSH
from generation.queue.redis.scripts import READMIT as READMIT
from generation.queue.redis.scripts import RECLAIM as RECLAIM
from generation.queue.redis.scripts import RELEASE as RELEASE
from generation.queue.redis.scripts import SNAPSHOT as SNAPSHOT
