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
"""

from __future__ import annotations

import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.trio import tcp_server

_original_protocol_send = tcp_server.TCPServer.protocol_send


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


def apply() -> None:
    """Installs the fixes (idempotent)."""
    tcp_server.TCPServer.protocol_send = protocol_send


apply()
