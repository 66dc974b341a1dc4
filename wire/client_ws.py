"""The client side of a WebSocket (RFC 6455) for Eddy's Python client.

Through trio-websocket every frame in went through its reader task, wsproto
and a memory channel to the client's own reader, and every frame out through
a lock, wsproto and trio's `send_all` with checkpoints of its own: about ten
task steps and 150-190 us of client CPU per mutation (docs/performance.md
section 5). Here the client's reader parses frames where it reads them, and a
frame out goes to the kernel from the task that made it, without waiting,
when the kernel takes it whole (the usual case).

Parts:

- `ServerFrameReader`, the sans-I/O core: server frames in, events out. The
  message layer's rules are wire/websocket.py's `FrameReader` (fragments,
  control frames between them, sizes, UTF-8, close codes), inherited; only
  the masking rule is the other way round: a server frame must not be
  masked (RFC 6455 5.1; 1002 otherwise).
- `client_frame`: a final client frame, masked with a fresh key from the
  OS's randomness (RFC 6455 5.3, 10.3).
- `handshake_request` and `check_handshake_response`: the opening handshake
  (RFC 6455 4.1): `Sec-WebSocket-Key` in, `Sec-WebSocket-Accept` checked; no
  extension and no subprotocol is offered, so the server may name none.
- `ClientWebSocket`, the trio shell, and `open_websocket`, which connects
  (TCP, or TLS for wss) and does the handshake.

Closing: a close frame from the server is answered with one carrying its code
and ends the connection (`WebSocketClosed`); a server that breaks the rules
is sent a close with the code of the broken rule; leaving `open_websocket`
sends a 1000 close without waiting for the answer, and closes the socket.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import ssl
import struct
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import trio

from wire.websocket import (CLOSE_NO_STATUS, CLOSE_NORMAL, OPCODE_BINARY,
                            OPCODE_CLOSE, OPCODE_PONG, FrameReader, ProtocolViolation,
                            close_payload, receive_bytes_max, receive_when_readable)

__all__ = ["ClientWebSocket", "FairSlots", "HandshakeError", "ServerFrameReader", "WebSocketClosed",
           "client_frame", "open_websocket"]

# RFC 6455 7.4.1: the code of a connection that ended without a close frame
# (never sent on the wire; WebSocketClosed reports it).
CLOSE_ABNORMAL = 1006
# An answer to the upgrade request longer than this is not a WebSocket server.
handshake_head_bytes_max = 16 * 1024
# Masking keys are cut from one OS read of this many bytes: one read per 1,024
# frames instead of a system call per frame.
mask_pool_bytes = 4096

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Client frames: FIN and opcode, the mask bit with the length in 7, 7+16 or
# 7+64 bits, then the 4-byte key (RFC 6455 5.2).
_SHORT = struct.Struct("!BB4s")
_MEDIUM = struct.Struct("!BBH4s")
_LONG = struct.Struct("!BBQ4s")


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade. `status` is the HTTP
    status it answered with (None when the answer was not HTTP at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WebSocketClosed(Exception):
    """The connection ended: the close `code` (CLOSE_ABNORMAL when no close
    frame came) and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed with code {code}: {reason}".strip().rstrip(":"))
        self.code = code
        self.reason = reason


# ----- the core


class ServerFrameReader(FrameReader):
    """Server frames in, events out; no I/O. Events and rules as
    `wire.websocket.FrameReader`'s, except that frames must be unmasked."""

    def __init__(self, message_bytes_max: int) -> None:
        super().__init__(message_bytes_max, masked=False)

    def take_plain_messages(self, messages: list[bytes]) -> bool:
        """Appends to `messages` the payload of each next frame that is a
        whole binary message in one frame with a 7- or 16-bit length (nearly
        every server frame), up to the first that is not; returns whether
        bytes remain (then `next_event` decides what they are).

        For such frames, the same outcome as `next_event` in one call for
        all of them instead of four calls each.
        """
        buffer = self._buffer
        if self._message_opcode is None and buffer:
            del buffer[:self._take_plain(buffer, messages)]
        return bool(buffer)

    def receive_plain_messages(self, data: bytes, messages: list[bytes]) -> bool:
        """`receive_data(data)`, then `take_plain_messages(messages)`; when
        nothing was buffered, frames are cut from `data` itself, one copy
        each, and only what is left over is buffered."""
        buffer = self._buffer
        if buffer or self._message_opcode is not None:
            buffer += data
            return self.take_plain_messages(messages)
        taken = self._take_plain(data, messages)
        if taken < len(data):
            buffer += data[taken:]
            return True
        return False

    def _take_plain(self, data: bytes | bytearray, messages: list[bytes]) -> int:
        """Appends the payloads of the plain frames at the start of `data`;
        returns how many bytes they took."""
        limit = self.message_bytes_max
        size = len(data)
        position = 0
        while size - position >= 2 and data[position] == 0x80 | OPCODE_BINARY:
            length = data[position + 1]  # over 126: masked (next_event refuses it)
            offset = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = data[position + 2] << 8 | data[position + 3]
                offset = position + 4
            elif length > 126:
                break
            end = offset + length
            if end > size or length > limit:
                break
            payload = data[offset:end]
            messages.append(payload if type(payload) is bytes else bytes(payload))
            position = end
        return position


class _MaskKeys:
    """Fresh 4-byte masking keys, cut from a pool of OS randomness."""

    def __init__(self) -> None:
        self._pool = b""
        self._offset = 0

    def take(self) -> bytes:
        offset = self._offset
        if offset >= len(self._pool):
            self._pool, offset = os.urandom(mask_pool_bytes), 0
        self._offset = offset + 4
        return self._pool[offset:offset + 4]


_mask_keys = _MaskKeys()


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final client frame, its payload masked with `key` (a fresh one if None)."""
    if key is None:
        key = _mask_keys.take()
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        head = _SHORT.pack(first, 0x80 | length, key)
    elif length < 65536:
        head = _MEDIUM.pack(first, 0x80 | 126, length, key)
    else:
        head = _LONG.pack(first, 0x80 | 127, length, key)
    if not length:
        return head
    # XOR as one big integer: a loop in C, whatever the length.
    repeated = int.from_bytes((key * (length // 4 + 1))[:length], "little")
    return head + (int.from_bytes(payload, "little") ^ repeated).to_bytes(length, "little")


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` a server must answer `key` with (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode()


def handshake_request(host: str, path: str, key: str,
                      headers: list[tuple[str, str]]) -> bytes:
    """The upgrade request (RFC 6455 4.1), with `headers` added."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def check_handshake_response(head: bytes, key: str) -> None:
    """Raises HandshakeError unless `head` (the answer up to its blank line)
    accepts the upgrade that `key` asked for."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HandshakeError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    if status != 101:
        reason = parts[2] if len(parts) > 2 else ""
        raise HandshakeError(f"the server answered {status} {reason}".strip(), status)
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            value = value.strip()
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
    if fields.get("upgrade", "").lower() != "websocket":
        raise HandshakeError("the 101 answer does not upgrade to websocket", status)
    connection_tokens = [token.strip().lower() for token in fields.get("connection", "").split(",")]
    if "upgrade" not in connection_tokens:
        raise HandshakeError("the 101 answer has no Connection: Upgrade", status)
    if fields.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError("wrong Sec-WebSocket-Accept", status)
    for offered_none in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if fields.get(offered_none):
            raise HandshakeError(f"the server chose {offered_none}, none was offered", status)


# ----- the shell


class FairSlots:
    """`count` slots, handed out in the order they were asked for.

    What trio's Semaphore (and, with one slot, Lock) does, but a free slot
    is taken and given back without a call into trio: theirs cost some six
    Python calls per take and give-back, on a path every mutation crosses
    twice (its in-flight slot and the socket's send lock).
    """

    def __init__(self, count: int) -> None:
        self.free_count = count
        # Tasks parked in `_lot`, waiting for a slot; a slot given back goes
        # straight to the first of them.
        self._waiting_count = 0
        self._lot = trio.lowlevel.ParkingLot()

    def busy(self) -> bool:
        """Whether a take now would wait."""
        return not self.free_count or self._waiting_count > 0

    def take_nowait(self) -> bool:
        """Takes a slot if one is free and nobody waits for one."""
        if self.free_count and not self._waiting_count:
            self.free_count -= 1
            return True
        return False

    async def take(self) -> None:
        """Takes a slot, waiting for one in turn. A checkpoint only when it
        waits; cancelled while waiting, it takes nothing."""
        if self.free_count and not self._waiting_count:
            self.free_count -= 1
            return
        self._waiting_count += 1
        try:
            await self._lot.park()
        except BaseException:
            self._waiting_count -= 1  # never handed a slot: `give` unparks only
            raise

    def give(self) -> None:
        """Gives a slot back: to the first waiting task, if any."""
        if self._waiting_count:
            self._waiting_count -= 1
            self._lot.unpark()
        else:
            self.free_count += 1


class ClientWebSocket:
    """One open client WebSocket on a trio stream (made by `open_websocket`).

    On a plain `trio.SocketStream` it reads and writes the socket itself
    (trio is pinned; the socket is non-blocking); on TLS it goes through the
    stream.

    Args:
        stream: the connected stream, after the handshake.
        message_bytes_max: the longest message accepted from the server
            (1009 past it).
        buffered: bytes read after the handshake's answer.
    """

    def __init__(self, stream: Any, *, message_bytes_max: int, buffered: bytes = b"") -> None:
        self.stream = stream
        socket_stream = stream if isinstance(stream, trio.SocketStream) else None
        # The non-blocking socket itself, or None on TLS.
        self._raw = None if socket_stream is None else socket_stream.socket._sock
        self._fileno = None if socket_stream is None else socket_stream.socket.fileno()
        self.reader = ServerFrameReader(message_bytes_max)
        self.reader.receive_data(buffered)
        # One sender at a time, in arrival order (it orders the client's
        # frames, pongs and close replies). Taken without a checkpoint when free.
        self.send_lock = FairSlots(1)
        # Set once a close frame was sent or the stream is unusable: no frame
        # may follow.
        self.closed = False

    # ----- reading

    async def receive(self) -> bytes | str:
        """The next message: bytes for binary, str for text.

        A checkpoint when it reads the socket; a message already parsed from
        an earlier read is returned without one. Answers pings and the
        server's close itself. Cancelling it loses nothing: bytes read stay
        in the reader.

        Raises:
            WebSocketClosed: the server closed, broke the protocol (it was
                sent a close with the code of the broken rule), or the
                connection ended.
        """
        reader = self.reader
        while True:
            try:
                event = reader.next_event()
            except ProtocolViolation as error:
                await self._send_close(error.code, error.reason)
                raise WebSocketClosed(error.code, error.reason) from None
            if event is None:
                data = await self._receive_some()
                if not data:
                    self.closed = True
                    raise WebSocketClosed(CLOSE_ABNORMAL, "the connection ended")
                reader.receive_data(data)
                continue
            kind = event[0]
            if kind == "bytes" or kind == "text":
                return event[1]
            if kind == "ping":
                if not self.closed:
                    await self.send_frame(client_frame(OPCODE_PONG, event[1]))
            elif kind == "close":
                code = CLOSE_NORMAL if event[1] == CLOSE_NO_STATUS else event[1]
                await self._send_close(code, event[2])
                raise WebSocketClosed(event[1], event[2])
            # A pong answers nothing we asked; ignored.

    async def receive_messages(self) -> list[bytes | str]:
        """The messages the bytes read so far complete, at least one: binary
        messages in one frame each, taken together, or else the next message
        of any kind (`receive`).

        A checkpoint when it reads the socket. Cancelling it loses nothing:
        it waits only while it holds no message, and bytes read stay in the
        reader. Raises as `receive`.
        """
        reader = self.reader
        messages: list[bytes | str] = []
        left = reader.take_plain_messages(messages)
        while not messages:
            if left:
                return [await self.receive()]  # a control frame, fragments, a long frame
            data = await self._receive_some()
            if not data:
                self.closed = True
                raise WebSocketClosed(CLOSE_ABNORMAL, "the connection ended")
            left = reader.receive_plain_messages(data, messages)
        return messages

    async def _receive_some(self) -> bytes:
        if self._raw is None:
            try:
                return await self.stream.receive_some(receive_bytes_max)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        return await receive_when_readable(self._fileno, self._raw)

    # ----- writing

    async def send_message(self, message: bytes) -> None:
        """Sends one binary message: `send_frame` of its frame (checkpoints,
        backpressure and cancellation as there)."""
        await self.send_frame(client_frame(OPCODE_BINARY, message))

    async def send_frame(self, frame: bytes) -> None:
        """Writes whole frames (`client_frame`), after any frame already being written.

        Not a checkpoint when the lock is free and the kernel takes every
        byte at once (the usual case); otherwise waits: the kernel's buffer
        is the backpressure. Cancelled while waiting, it closes the stream (a
        frame cut short leaves it unusable) and nothing more is sent.

        Raises:
            trio.BrokenResourceError: the connection is closed or broken.
        """
        if self.closed:
            raise trio.BrokenResourceError("the WebSocket is closed")
        lock = self.send_lock
        raw = self._raw
        if raw is None or not lock.take_nowait():
            await lock.take()
            try:
                return await self._send_all(frame)
            finally:
                lock.give()
        try:
            try:
                sent = raw.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self.closed = True
                raise trio.BrokenResourceError(str(error)) from None
            if sent < len(frame):
                await self._send_all(memoryview(frame)[sent:])
        finally:
            lock.give()

    async def _send_all(self, data: Any) -> None:
        if self.closed:
            raise trio.BrokenResourceError("the WebSocket is closed")
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            self.closed = True
            raise trio.BrokenResourceError(str(error)) from None
        except trio.Cancelled:
            # A frame cut short leaves the stream unusable: close it, so no
            # later frame (a close) lands in the middle of this one.
            self.closed = True
            await trio.aclose_forcefully(self.stream)
            raise

    async def _send_close(self, code: int, reason: str) -> None:
        if not self.closed:
            with contextlib.suppress(trio.BrokenResourceError):
                await self.send_frame(client_frame(OPCODE_CLOSE, close_payload(code, reason)))
        self.closed = True

    async def aclose(self) -> None:
        """Sends a 1000 close if no frame is being written (without waiting
        for the answer), then closes the stream. A checkpoint."""
        if not self.closed and not self.send_lock.busy() and self._raw is not None:
            self.closed = True
            with contextlib.suppress(OSError):
                self._raw.send(client_frame(OPCODE_CLOSE, close_payload(CLOSE_NORMAL, "")))
        self.closed = True
        # Forcefully: a TLS close_notify could wait forever on a paused server.
        await trio.aclose_forcefully(self.stream)


async def _connect_stream(url: str, ssl_context: ssl.SSLContext | None
                          ) -> tuple[Any, str, str]:
    """The connected stream for a ws(s) URL, its Host header and its path."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws(s) URL: {url!r}")
    port = parts.port or (443 if scheme == "wss" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if scheme == "wss":
        stream = await trio.open_ssl_over_tcp_stream(
            parts.hostname, port, ssl_context=ssl_context or ssl.create_default_context())
    else:
        stream = await trio.open_tcp_stream(parts.hostname, port)
    return stream, parts.netloc.rpartition("@")[2], path


async def _handshake(stream: Any, host: str, path: str,
                     headers: list[tuple[str, str]]) -> bytes:
    """Sends the upgrade request and checks the answer; returns the bytes read past it."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    received = b""
    try:
        await stream.send_all(handshake_request(host, path, key, headers))
        while b"\r\n\r\n" not in received:
            if len(received) > handshake_head_bytes_max:
                raise HandshakeError("the answer to the upgrade request is too long")
            data = await stream.receive_some(receive_bytes_max)
            if not data:
                raise HandshakeError("the server closed the connection during the handshake")
            received += data
    except trio.BrokenResourceError as error:  # a reset, or TLS refused
        raise HandshakeError(f"the connection broke during the handshake: {error}") from error
    head, _, rest = received.partition(b"\r\n\r\n")
    check_handshake_response(head, key)
    return rest


@contextlib.asynccontextmanager
async def open_websocket(url: str, *, headers: list[tuple[str, str]] | None = None,
                         message_bytes_max: int, handshake_s_max: float,
                         ssl_context: ssl.SSLContext | None = None
                         ) -> AsyncIterator[ClientWebSocket]:
    """A WebSocket to `url` (ws:// or wss://) for the duration of the block.

    A checkpoint. Leaving the block sends a 1000 close (module docstring)
    and closes the socket, also when cancelled.

    Args:
        headers: added to the upgrade request.
        message_bytes_max: the longest message accepted from the server.
        handshake_s_max: how long the connect and handshake may take.
        ssl_context: for wss:// (the system's trusted CAs when None).

    Raises:
        OSError: the server could not be reached.
        HandshakeError: it did not accept the upgrade in time or at all.
    """
    with trio.move_on_after(handshake_s_max) as scope:
        stream, host, path = await _connect_stream(url, ssl_context)
        try:
            buffered = await _handshake(stream, host, path, headers or [])
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    if scope.cancelled_caught:
        raise HandshakeError(f"no WebSocket handshake within {handshake_s_max:g} s")
    ws = ClientWebSocket(stream, message_bytes_max=message_bytes_max, buffered=buffered)
    try:
        yield ws
    finally:
        with trio.CancelScope(shield=True):
            await ws.aclose()
