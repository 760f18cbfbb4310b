"""A real WebSocket server on 127.0.0.1 playing the Kite ticker's side of a session, for tests."""

from __future__ import annotations

import http
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass
class Session:
    """What one client connection sent: the request path and its first text messages."""

    number: int
    path: str
    subscribe: dict[str, Any] | None = None
    mode: dict[str, Any] | None = None


@dataclass
class KiteServer:
    server: Server
    sessions: list[Session] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


# The server stands in for Kite: its handshake debug lines (the request path, with the token)
# are not the feed's output, so they stay out of the records that the secrets tests inspect.
_SERVER_LOGGER = logging.getLogger("kite_test_server")
_SERVER_LOGGER.setLevel(logging.WARNING)

Script = Callable[[ServerConnection, Session], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


@asynccontextmanager
async def kite_server(
    script: Script, *, reject_status: int | None = None, before_handshake: Hook | None = None
) -> AsyncIterator[KiteServer]:
    """Serve on a free port. Each connection's subscribe and mode messages are read into its
    :class:`Session`, then ``script`` plays the rest of the session. ``before_handshake`` is
    awaited before the server answers each opening handshake (to hold it up). A client that
    closes before subscribing leaves ``subscribe`` and ``mode`` as ``None``."""
    holder: list[KiteServer] = []

    async def handler(ws: ServerConnection) -> None:
        kite = holder[0]
        session = Session(number=len(kite.sessions) + 1, path=ws.request.path if ws.request else "")
        kite.sessions.append(session)
        try:
            session.subscribe = json.loads(await ws.recv())
            session.mode = json.loads(await ws.recv())
        except ConnectionClosed:
            return
        await script(ws, session)

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        if before_handshake is not None:
            await before_handshake()
        if reject_status is not None:
            return ws.respond(http.HTTPStatus(reject_status), "Invalid access token\n")
        return None

    async with serve(
        handler, "127.0.0.1", 0, process_request=process_request, logger=_SERVER_LOGGER
    ) as server:
        holder.append(KiteServer(server))
        yield holder[0]


@dataclass
class MuteServer:
    url: str
    connections: int = 0
    asked: anyio.Event = field(default_factory=anyio.Event)
    """Set once a connection has sent its opening handshake request (left unanswered)."""


@asynccontextmanager
async def mute_server(*, hang_up_first: int = 0) -> AsyncIterator[MuteServer]:
    """A TCP server on a free port that reads each opening handshake request and never answers
    it. The first ``hang_up_first`` connections are closed at once instead (a lost connection)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = MuteServer(url=f"ws://127.0.0.1:{listener.extra(SocketAttribute.local_port)}")

    async def handle(stream: SocketStream) -> None:
        async with stream:
            server.connections += 1
            if server.connections <= hang_up_first:
                return
            try:
                await stream.receive()  # the HTTP upgrade request
                server.asked.set()
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass  # the client went away

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, handle)
        yield server
        tasks.cancel_scope.cancel()


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
