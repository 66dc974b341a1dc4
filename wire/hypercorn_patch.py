"""Two fixes to hypercorn 0.18's trio TCP server, applied once at import.

Hypercorn is pinned to the version these were written against
(pyproject.toml); `tests/actors/test_hypercorn_patch.py` fails if the code
they replace changes.

1. A send racing the close of a connection (the peer's Close frame answered
   by hypercorn's protocol task while the app's task sends its own close,
   as after an AuthError) raised `trio.BusyResourceError` out of
   `protocol_send`; nothing caught it, and it ended the whole server, not
   just that connection. Here a busy, broken or closed stream ends only its
   own connection, like a broken one already did.
2. `protocol_send` shielded `send_all` from cancellation, so a client that
   stopped reading pinned the sending task forever and the sync layer's
   stall timeout (`wire.sync.send_stall_s_max`) could never fire. Here a
   cancelled send closes the stream instead (a send cut short leaves the
   stream unusable anyway), so a stalled client is dropped and everyone
   else keeps being served.
3. A frame whose bytes the kernel takes at once costs no trip through
   trio's scheduler: when no other send holds the lock, `protocol_send`
   takes it without a checkpoint and hands the bytes to the socket
   directly; only what the kernel did not take goes through trio's
   `send_all` (and its waiting, with fix 2). A Transition is one such
   frame per connection per change, and the two checkpoints (the lock's
   and the socket send's) were half the task switches of a change fanned
   out to 10 connections (docs/performance.md section 8). Plain TCP only
   (`trio.SocketStream`); a TLS stream takes the general path.
4. A sync WebSocket may leave hypercorn once the handshake is done
   (`take_over`): hypercorn's read loop (`_read_data`, replaced here) stops
   reading that connection's socket and waits until Eddy's own WebSocket
   (wire/websocket.py) is finished with it, then closes the connection as
   it would have. The loop reads under a cancel scope `take_over` can
   cancel, so a read already waiting gives the socket up at once and no
   byte is read twice or lost; bytes read before it saw the take-over are
   handed over. Plain TCP over HTTP/1.1 only; anything else keeps
   hypercorn's WSStream and wsproto.
"""

from __future__ import annotations

from math import inf
from typing import Any

import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol, H11WSConnection
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio import tcp_server

_original_protocol_send = tcp_server.TCPServer.protocol_send
_original_read_data = tcp_server.TCPServer._read_data


async def protocol_send(self, event) -> None:
    if isinstance(event, RawData):
        if not self.send_lock.locked() and type(self.stream) is trio.SocketStream:
            await _send_at_once(self, event.data)
            return
        async with self.send_lock:
            await _send_all(self, event.data)
    elif isinstance(event, Closed):
        await self._close()
        await self.protocol.handle(Closed())
    elif isinstance(event, Updated):
        if event.idle:
            await self.idle_task.restart(self._task_group, self._idle_timeout)
        else:
            await self.idle_task.stop()


async def _send_all(self, data) -> None:
    """Fixes 1 and 2: trio's send_all, a broken stream ending its connection."""
    try:
        await self.stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
        await self.protocol.handle(Closed())
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
        raise


async def _send_at_once(self, data) -> None:
    """Fix 3: the free lock taken and the bytes sent without a checkpoint;
    the rest, if the kernel's buffer was full, sent as `_send_all` does."""
    self.send_lock.acquire_nowait()
    try:
        # trio's socket wraps a non-blocking stdlib socket (trio is pinned).
        sent = self.stream.socket._sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Reset, closed or broken: what trio's send_all would turn into
        # BrokenResourceError or ClosedResourceError.
        self.send_lock.release()
        await self.protocol.handle(Closed())
        return
    try:
        if sent < len(data):
            await _send_all(self, memoryview(data)[sent:])
    finally:
        self.send_lock.release()


class TakeOver:
    """A connection leaving hypercorn (fix 4): what its read loop hands over.

    `released` is set once the loop no longer reads the socket, with any
    bytes it read first in `handed_over`; `finished` is set by the new
    owner when it is done, and the loop then closes the connection.
    """

    __slots__ = ("stream", "message_bytes_max", "released", "handed_over", "finished")

    def __init__(self, stream: trio.SocketStream, message_bytes_max: int, pending: bytes) -> None:
        self.stream = stream
        # hypercorn's own limit for this connection (its config).
        self.message_bytes_max = message_bytes_max
        self.released = trio.Event()
        # Bytes that arrived with the upgrade request, then whatever the
        # read loop read before it noticed the take-over.
        self.handed_over = pending
        self.finished = trio.Event()


def take_over(asgi_send: Any) -> TakeOver | None:
    """Takes a WebSocket out of hypercorn before it is accepted (fix 4).

    `asgi_send` is the `send` callable hypercorn gave the app for this
    WebSocket. Returns None (nothing changed; hypercorn keeps the
    connection) unless it is hypercorn's HTTP/1.1 WSStream on a plain TCP
    stream. Otherwise: no extension will be negotiated (the 101 offers no
    permessage-deflate), and once the caller has sent `websocket.accept`
    and called `accepted`, hypercorn ignores the app's messages and the
    socket's bytes are the caller's. Not a checkpoint.
    """
    ws_stream = getattr(asgi_send, "__self__", None)
    if type(ws_stream) is not WSStream:
        return None
    protocol = getattr(ws_stream.send, "__self__", None)
    if type(protocol) is not H11Protocol or type(protocol.connection) is not H11WSConnection:
        return None
    server = getattr(protocol.send, "__self__", None)
    if type(server) is not tcp_server.TCPServer or type(server.stream) is not trio.SocketStream:
        return None
    if ws_stream.state is not ASGIWebsocketState.HANDSHAKE or ws_stream.closed:
        return None
    ws_stream.handshake.extensions = None
    pending = bytes(protocol.connection.buffer)
    protocol.connection.buffer = bytearray()
    handover = TakeOver(server.stream, server.config.websocket_max_message_size, pending)
    server.eddy_take_over = handover
    scope = getattr(server, "eddy_read_scope", None)
    if scope is not None:
        scope.cancel()  # a read already waiting gives the socket up
    return handover


def accepted(asgi_send: Any) -> None:
    """After `websocket.accept`: hypercorn's WSStream ignores the app from now
    on (no close frame of its own when the app returns). Not a checkpoint."""
    asgi_send.__self__.closed = True


async def _read_data(self) -> None:
    """hypercorn's read loop, giving the socket up when taken over (fix 4)."""
    while True:
        handover = getattr(self, "eddy_take_over", None)
        if handover is not None:
            handover.released.set()
            await handover.finished.wait()
            break
        timeout_s = self.config.read_timeout
        deadline = inf if not timeout_s else trio.current_time() + timeout_s
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                self.eddy_read_scope = scope
                data = await self.stream.receive_some(tcp_server.MAX_RECV)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            if getattr(self, "eddy_take_over", None) is not None:
                continue  # the new owner reads the same end
            break
        finally:
            self.eddy_read_scope = None
        handover = getattr(self, "eddy_take_over", None)
        if handover is not None:
            if not scope.cancelled_caught:
                handover.handed_over += data
            continue
        if scope.cancelled_caught:
            break  # read_timeout
        await self.protocol.handle(RawData(bytes(data)))
        if data == b"":
            break
    await self.protocol.handle(Closed())


def apply() -> None:
    """Installs the fixes (idempotent)."""
    tcp_server.TCPServer.protocol_send = protocol_send
    tcp_server.TCPServer._read_data = _read_data


apply()
