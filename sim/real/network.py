"""Real WebSockets behind the endpoint interface of the simulated network.

The simulator's protocol clients (`sim.clients.ProtocolClient`) talk to
`network.connect(client_id)`, which returns an endpoint with `send`,
`receive` and `close`, and raise `sim.net`'s ConnectionRefused,
ConnectionBroken and ConnectionClosed. `RealNetwork` gives them the same
interface over trio-websocket connections to a real `eddy dev` process, so
the same client state machine, its reconnect rules and everything it records
for the subscription oracle run unchanged against real sockets.

Each connection is held open by a task of its own in the network's nursery
(`_hold`), so closing one never waits for a peer that was SIGSTOPped: `close`
only tells that task to leave, and a close handshake that gets no answer is
abandoned after `disconnect_timeout_s`.
"""

from __future__ import annotations

from typing import Any

import trio
from trio_websocket import (ConnectionClosed as WebSocketClosed, ConnectionRejected,
                            ConnectionTimeout, DisconnectionTimeout, HandshakeError,
                            open_websocket_url)

from wire.client import sync_url
from wire.sync import sync_message_bytes_max

from sim.net import ConnectionBroken, ConnectionClosed, ConnectionRefused

# A paused (SIGSTOPped) process accepts TCP connections in its kernel backlog
# but never answers the handshake: a connect gives up after this long and the
# client backs off and tries again, as it does when the port is closed.
connect_timeout_s = 3.0
# How long a closing client waits for the server's close frame.
disconnect_timeout_s = 1.0
# WebSocket close code of a connection that ended without a close frame.
ABNORMAL_CLOSURE = 1006

_CONNECT_ERRORS = (OSError, HandshakeError, ConnectionRejected, ConnectionTimeout,
                   WebSocketClosed, trio.BrokenResourceError)


class RealNetwork:
    """Connects protocol clients to the node at `url` (an http URL)."""

    def __init__(self, url: str, nursery: trio.Nursery) -> None:
        self.url = sync_url(url)
        self.nursery = nursery
        self.counts: dict[str, int] = {}

    async def connect(self, client_id: int) -> WebSocketEndpoint:
        """Opens one connection. A checkpoint.

        Raises:
            ConnectionRefused: nothing answered in time (down or paused node).
        """
        try:
            endpoint = await self.nursery.start(self._hold)
        except _CONNECT_ERRORS as error:
            self.counts["refused"] = self.counts.get("refused", 0) + 1
            raise ConnectionRefused(f"{type(error).__name__}: {error}") from None
        self.counts["opened"] = self.counts.get("opened", 0) + 1
        return endpoint

    async def _hold(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with open_websocket_url(
                    self.url, max_message_size=sync_message_bytes_max,
                    connect_timeout=connect_timeout_s, disconnect_timeout=disconnect_timeout_s,
                    extra_headers=[("Convex-Client", "eddy-sim-real-0.1.0")]) as ws:
                endpoint = WebSocketEndpoint(ws)
                task_status.started(endpoint)
                started = True
                await endpoint.closing.wait()
        except (*_CONNECT_ERRORS, DisconnectionTimeout):
            if not started:
                raise
            # The connection was already handed over and is being left: how
            # it ended is the client's business (it saw it on send/receive).


class WebSocketEndpoint:
    """One client connection: `send`, `receive`, `close`, as `sim.net.Endpoint`."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.closing = trio.Event()

    async def send(self, frame: bytes | str) -> None:
        """Sends one frame (bytes: msgpack, str: Convex JSON). A checkpoint.

        Raises:
            ConnectionBroken, ConnectionClosed: the connection ended.
        """
        try:
            await self.ws.send_message(frame)
        except (WebSocketClosed, trio.BrokenResourceError, trio.ClosedResourceError,
                OSError) as error:
            raise _ended(error) from None

    async def receive(self) -> bytes | str:
        """The next frame. A checkpoint.

        Raises:
            ConnectionBroken, ConnectionClosed: the connection ended.
        """
        try:
            return await self.ws.get_message()
        except (WebSocketClosed, trio.BrokenResourceError, trio.ClosedResourceError,
                OSError) as error:
            raise _ended(error) from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Leaves the connection (its holder sends the close frame)."""
        self.closing.set()

    def abort(self, reason: str) -> None:
        self.closing.set()


def _ended(error: BaseException) -> Exception:
    """The simulated network's exception for a real connection's end."""
    reason = getattr(error, "reason", None)
    code = getattr(reason, "code", ABNORMAL_CLOSURE)
    if code == ABNORMAL_CLOSURE:
        return ConnectionBroken(f"{type(error).__name__}: {error}")
    return ConnectionClosed(code, getattr(reason, "reason", "") or "")
