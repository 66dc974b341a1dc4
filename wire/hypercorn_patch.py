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
"""

from __future__ import annotations

import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.trio import tcp_server

_original_protocol_send = tcp_server.TCPServer.protocol_send


async def protocol_send(self, event) -> None:
    if isinstance(event, RawData):
        async with self.send_lock:
            try:
                await self.stream.send_all(event.data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                await self.protocol.handle(Closed())
            except trio.Cancelled:
                with trio.CancelScope(shield=True):
                    await self.stream.aclose()
                raise
    elif isinstance(event, Closed):
        await self._close()
        await self.protocol.handle(Closed())
    elif isinstance(event, Updated):
        if event.idle:
            await self.idle_task.restart(self._task_group, self._idle_timeout)
        else:
            await self.idle_task.stop()


def apply() -> None:
    """Installs the fixes (idempotent)."""
    tcp_server.TCPServer.protocol_send = protocol_send


apply()
