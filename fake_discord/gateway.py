"""The gateway side of the fake: HELLO, IDENTIFY/READY, RESUME with replay, heartbeats, dispatch,
and the faults a real gateway shows (dropped connections, invalid sessions, silent heartbeats,
refused connects)."""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

if TYPE_CHECKING:
    from fake_discord.server import FakeDiscord

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = (
    0, 1, 2, 6, 7, 9, 10, 11,
)  # fmt: skip

GUILDS, GUILD_MEMBERS, GUILD_MESSAGES, GUILD_MESSAGE_REACTIONS = 1 << 0, 1 << 1, 1 << 9, 1 << 10
DIRECT_MESSAGES, DIRECT_MESSAGE_REACTIONS = 1 << 12, 1 << 13
_INTENT_FOR = {
    ("MESSAGE_CREATE", True): GUILD_MESSAGES,
    ("MESSAGE_UPDATE", True): GUILD_MESSAGES,
    ("MESSAGE_DELETE", True): GUILD_MESSAGES,
    ("MESSAGE_CREATE", False): DIRECT_MESSAGES,
    ("MESSAGE_UPDATE", False): DIRECT_MESSAGES,
    ("MESSAGE_DELETE", False): DIRECT_MESSAGES,
    ("MESSAGE_REACTION_ADD", True): GUILD_MESSAGE_REACTIONS,
    ("MESSAGE_REACTION_REMOVE", True): GUILD_MESSAGE_REACTIONS,
    ("MESSAGE_REACTION_ADD", False): DIRECT_MESSAGE_REACTIONS,
    ("MESSAGE_REACTION_REMOVE", False): DIRECT_MESSAGE_REACTIONS,
    ("GUILD_MEMBER_ADD", True): GUILD_MEMBERS,
    ("GUILD_MEMBER_UPDATE", True): GUILD_MEMBERS,
}


class Frames:
    """How one connection's payloads go out: JSON text frames, or with ``compress=zlib-stream``
    in the URL (discord.py always asks for it) one zlib stream for the whole connection, each
    payload flushed with Z_SYNC_FLUSH into a binary frame ending in 00 00 ff ff, as Discord
    sends them."""

    SUFFIX = b"\x00\x00\xff\xff"

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress if compress == "zlib-stream" else None
        self._zlib = zlib.compressobj() if self.compress else None
        self._in_order = asyncio.Lock()  # the stream's bytes must leave in the order made
        self.sent = 0

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        async with self._in_order:
            if self.ws.closed:
                return
            if self._zlib is None:
                await self.ws.send_str(text)
            else:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            self.sent += 1


@dataclass
class GatewaySession:
    """One session: every event it dispatched (for RESUME), and while a socket is attached, one
    queue and one writer that send them in order."""

    id: str
    intents: int
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    frames: Frames | None = None
    identifies: int = 1
    resumes: int = 0
    invalid: bool = False
    _outbox: asyncio.Queue[dict[str, Any]] | None = None
    _writer: asyncio.Task[None] | None = None

    def attach(self, frames: Frames, backlog: list[dict[str, Any]]) -> None:
        """Sends ``backlog`` first, then whatever is dispatched from now on, in order."""
        self.detach()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for payload in backlog:
            outbox.put_nowait(payload)
        self.ws, self.frames, self._outbox = frames.ws, frames, outbox
        self._writer = asyncio.create_task(self._write(frames, outbox))

    def detach(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        self.ws = self.frames = self._outbox = self._writer = None

    def send(self, payload: dict[str, Any]) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(payload)

    @staticmethod
    async def _write(frames: Frames, outbox: asyncio.Queue[dict[str, Any]]) -> None:
        while not frames.ws.closed:
            payload = await outbox.get()
            try:
                await frames.send(payload)
            except ConnectionError:
                return


class Gateway:
    """One bot connection at a time (what a plain discord.py Client opens)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.session: GatewaySession | None = None
        self.heartbeat_interval_ms = 41_250
        self.ack_heartbeats = True
        self.refuse_connects = 0  # the next N connects fail the websocket handshake
        self.connects = 0
        self.connected = asyncio.Event()
        self.sockets: set[web.WebSocketResponse] = set()
        self.compression: list[str | None] = []  # what each accepted connection asked for

    # --- the websocket endpoint --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.connects += 1
        if self.refuse_connects > 0:
            self.refuse_connects -= 1
            return web.Response(status=503, text="gateway unavailable (fault injected)")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.sockets.add(ws)
        frames = Frames(ws, request.query.get("compress"))
        self.compression.append(frames.compress)
        await frames.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                await self._received(frames, json.loads(message.data))
        finally:
            self.sockets.discard(ws)
            if self.session is not None and self.session.ws is ws:
                self.session.detach()
                self.connected.clear()
                self.fake.changed()
        return ws

    async def _received(self, frames: Frames, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == HEARTBEAT:
            if not self.ack_heartbeats:
                return
            if self.session is not None and self.session.frames is frames:
                self.session.send({"op": HEARTBEAT_ACK})  # through the writer: frames stay whole
            else:
                await frames.send({"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(frames, data)
        elif op == RESUME:
            await self._resume(frames, data)
        # Presence updates, member chunk requests and the like are accepted and ignored.

    async def _identify(self, frames: Frames, data: dict[str, Any]) -> None:
        if data.get("token") != self.fake.token:
            await frames.ws.close(code=4004, message=b"Authentication failed.")
            return
        previous = self.session.identifies if self.session else 0
        if self.session is not None:
            self.session.detach()
        self.session = GatewaySession(
            secrets.token_hex(16), int(data.get("intents", 0)), identifies=previous + 1
        )
        self.session.attach(frames, [])
        fake = self.fake
        ready = {
            "v": 10,
            "user": fake.bot_user.to_json(),
            "guilds": [{"id": str(g), "unavailable": True} for g in fake.guilds],
            "session_id": self.session.id,
            "resume_gateway_url": fake.gateway_url,
            "application": {"id": str(fake.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if data.get("shard"):  # AutoShardedClient reads it back; one shard is all the fake has
            ready["shard"] = data["shard"]
        self.dispatch("READY", ready)
        for guild in fake.guilds.values():
            self.dispatch("GUILD_CREATE", self.guild_json(guild.id))
        self.connected.set()
        fake.changed()

    def guild_json(self, guild_id: int) -> dict[str, Any]:
        """GUILD_CREATE's data: the member list only for a bot with the members intent (the bot
        itself always), as Discord does."""
        data = self.fake.guilds[guild_id].to_json()
        if self.session is None or not self.session.intents & GUILD_MEMBERS:
            me = str(self.fake.bot_user.id)
            data["members"] = [m for m in data["members"] if m["user"]["id"] == me]
        return data

    async def _resume(self, frames: Frames, data: dict[str, Any]) -> None:
        session = self.session
        if (
            session is None
            or session.invalid
            or data.get("session_id") != session.id
            or data.get("token") != self.fake.token
        ):
            await frames.send({"op": INVALID_SESSION, "d": False})
            return
        session.resumes += 1
        seq = int(data.get("seq") or 0)
        # What the client missed, then RESUMED, then what comes next: one queue keeps the order.
        backlog = [event for event in session.events if event["s"] > seq]
        session.attach(frames, backlog)
        self.dispatch("RESUMED", {})
        self.connected.set()
        self.fake.changed()

    # --- sending -----------------------------------------------------------------------------

    def dispatch(self, event: str, data: dict[str, Any], *, in_guild: bool | None = None) -> bool:
        """Sends an event (or keeps it for RESUME while the bot is away); False when no bot has
        connected yet or its intents do not cover the event."""
        session = self.session
        if session is None:
            return False
        intent = _INTENT_FOR.get((event, bool(in_guild)))
        if intent is not None and not session.intents & intent:
            return False
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        session.send(payload)
        return True

    # --- faults ------------------------------------------------------------------------------

    def _detached(self) -> Frames | None:
        session = self.session
        if session is None or session.frames is None:
            return None
        frames = session.frames
        session.detach()
        self.connected.clear()
        return frames

    async def drop(self, code: int = 4000) -> None:
        """Closes the connection as a failing gateway does; the client reconnects and RESUMEs.

        Events dispatched from now until then are kept and replayed."""
        frames = self._detached()
        if frames is not None:
            await frames.ws.close(code=code, message=b"dropped (fault injected)")

    async def invalidate(self) -> None:
        """op 9 with d=false: the session is gone, the client must IDENTIFY again."""
        frames = self._detached()
        if frames is not None and self.session is not None:
            self.session.invalid = True
            await frames.send({"op": INVALID_SESSION, "d": False})

    async def request_reconnect(self) -> None:
        """op 7: the client closes and RESUMEs."""
        frames = self._detached()
        if frames is not None:
            await frames.send({"op": RECONNECT, "d": None})

    async def close_all(self) -> None:
        if self.session is not None:
            self.session.detach()
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY)
