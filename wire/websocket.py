"""Eddy's own WebSocket framing for `/api/sync`, after hypercorn's handshake.

Hypercorn parses the HTTP upgrade request and sends the 101 response; from
then on a plain-TCP sync connection's bytes are Eddy's (wire/hypercorn_patch.py
`take_over`). Through hypercorn every frame in went through its read loop
under a cancel scope of its own, h11's pass-through, wsproto and an ASGI
queue to another task, and every frame out through wsproto and hypercorn's
send lock (docs/performance.md section 5). Here a frame in is parsed where
it is read, by the connection's own reader, and frames out are framed by
hand: a server frame is unmasked, a 2-10 byte header before the payload.

`FrameReader` is the sans-I/O core (client frames in, events out);
`SocketWebSocket` is the trio shell that reads and writes the socket, with
the ASGI-shaped `receive` and `send` that `wire.sync.Connection` calls.

Rules (RFC 6455), each closing the connection with the code given:

1. A client frame must be masked; reserved bits must be clear (no
   extension is negotiated: the handshake offers none); the opcode must be
   one of the six defined. Otherwise 1002 (protocol error).
2. Control frames (close, ping, pong) are not fragmented and carry at most
   125 bytes (1002); they may arrive between the fragments of a message.
3. A message is a text or binary frame followed by continuation frames up
   to one with FIN set; a continuation with no message open, or a new
   message inside one, is 1002.
4. A message longer than `message_bytes_max` is 1009 (message too big),
   decided from the frame headers before its payload is buffered.
5. A text message must be UTF-8 (1007, invalid data), as must a close
   reason; a close code must be one a peer may send (1002).
6. A ping is answered with a pong carrying its payload; a pong is ignored;
   a close is answered with a close carrying its code (1000 when it had
   none), and the connection ends.
"""

from __future__ import annotations

import logging
import select
import struct
from typing import Any, Callable

import trio

logger = logging.getLogger("eddy.websocket")

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
_DATA_OPCODES = (OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY)
_CONTROL_OPCODES = (OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG)

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005  # the peer's close had no code (never sent on the wire)
CLOSE_INVALID_DATA = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

# One read takes what the kernel holds, up to this (hypercorn's MAX_RECV).
receive_bytes_max = 2 ** 16
# RFC 6455 5.5: a control frame's payload is at most 125 bytes.
control_payload_bytes_max = 125
# A close reason fits a control frame after its 2-byte code.
close_reason_bytes_max = control_payload_bytes_max - 2

# Server frames are unmasked: FIN and opcode, then the length in 7, 7+16
# or 7+64 bits (RFC 6455 5.2).
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame_bytes(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return _SHORT.pack(first, length) + payload
    if length < 65536:
        return _MEDIUM.pack(first, 126, length) + payload
    return _LONG.pack(first, 127, length) + payload


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload: the code and the reason, cut to fit."""
    reason_bytes = reason.encode("utf-8")[:close_reason_bytes_max]
    reason_bytes = reason_bytes.decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + reason_bytes


def _close_code_allowed(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 are never sent; 1016-2999 are
    # reserved for the protocol; 3000-4999 are for libraries and apps.
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


class ProtocolViolation(Exception):
    """The client broke RFC 6455: close with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _unmask(mask: bytes, payload: bytes) -> bytes:
    length = len(payload)
    if not length:
        return b""
    # XOR as one big integer: a loop in C, whatever the length.
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(length, "little")


class FrameReader:
    """Frames in, events out; no I/O (the module docstring's rules).

    Events from `next_event`: `("text", str)`, `("bytes", bytes)`,
    `("ping", bytes)`, `("pong", bytes)`, `("close", code, reason)`, or None
    when more bytes are needed.

    Args:
        message_bytes_max: the longest message accepted (rule 4).
        masked: whether frames must be masked (a server reading its
            clients) or must not be (a client reading its server,
            wire/client_ws.py); the other kind is a protocol error.
    """

    def __init__(self, message_bytes_max: int, *, masked: bool = True) -> None:
        self.message_bytes_max = message_bytes_max
        self._masked = masked
        # Bytes received and not yet parsed; consumed from the front.
        self._buffer = bytearray()
        # The opcode of the message whose fragments are arriving (text or
        # binary), or None between messages; its payloads so far.
        self._message_opcode: int | None = None
        self._fragments: list[bytes] = []
        self._fragments_bytes = 0

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_event(self) -> tuple | None:
        """The next complete event, or None. Raises ProtocolViolation."""
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode in _CONTROL_OPCODES:
                return self._control_event(opcode, payload)
            event = self._data_event(fin, opcode, payload)
            if event is not None:
                return event

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        opcode = first & 0x0F
        if first & 0x70:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        masked = self._masked
        if bool(second & 0x80) is not masked:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR,
                                    "client frames must be masked" if masked
                                    else "server frames must not be masked")
        fin = bool(first & 0x80)
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            offset = 10
        self._check_header(fin, opcode, length)
        if not masked:
            end = offset + length
            if len(buffer) < end:
                return None
            payload = bytes(buffer[offset:end])
        else:
            end = offset + 4 + length
            if len(buffer) < end:
                return None
            payload = _unmask(bytes(buffer[offset:offset + 4]), bytes(buffer[offset + 4:end]))
        del buffer[:end]
        return fin, opcode, payload

    def _check_header(self, fin: bool, opcode: int, length: int) -> None:
        if opcode in _CONTROL_OPCODES:
            if not fin:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if length > control_payload_bytes_max:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "control frame too long")
            return
        if opcode not in _DATA_OPCODES:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if opcode == OPCODE_CONTINUATION:
            if self._message_opcode is None:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "continuation with no message")
        elif self._message_opcode is not None:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        if self._fragments_bytes + length > self.message_bytes_max:
            raise ProtocolViolation(CLOSE_MESSAGE_TOO_BIG,
                                    f"a message is at most {self.message_bytes_max} bytes")

    def _data_event(self, fin: bool, opcode: int, payload: bytes) -> tuple | None:
        if opcode == OPCODE_CONTINUATION:
            opcode = self._message_opcode
        if not fin or self._fragments:
            self._fragments.append(payload)
            self._fragments_bytes += len(payload)
            if not fin:
                self._message_opcode = opcode
                return None
            payload = b"".join(self._fragments)
            self._fragments, self._fragments_bytes, self._message_opcode = [], 0, None
        if opcode == OPCODE_BINARY:
            return ("bytes", payload)
        try:
            return ("text", payload.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolViolation(CLOSE_INVALID_DATA, "text message is not UTF-8") from None

    def _control_event(self, opcode: int, payload: bytes) -> tuple:
        if opcode == OPCODE_PING:
            return ("ping", payload)
        if opcode == OPCODE_PONG:
            return ("pong", payload)
        if not payload:
            return ("close", CLOSE_NO_STATUS, "")
        if len(payload) == 1:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "close payload of one byte")
        code = int.from_bytes(payload[:2], "big")
        if not _close_code_allowed(code):
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"close code {code} not allowed")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
        return ("close", code, reason)


_DISCONNECT = {"type": "websocket.disconnect"}


def _data_message(event: tuple) -> dict[str, Any] | None:
    """A FrameReader event as `receive`'s message if it is a data message, else None."""
    kind = event[0]
    if kind == "bytes":
        return {"type": "websocket.receive", "bytes": event[1], "text": None}
    if kind == "text":
        return {"type": "websocket.receive", "bytes": None, "text": event[1]}
    return None

# What `send_frames` reports.
SENT = "sent"
STALLED = "stalled"  # the stall deadline passed; the stream is closed
BROKEN = "broken"  # the peer is gone or the stream was closed


class SocketWebSocket:
    """One taken-over WebSocket on a plain TCP `trio.SocketStream`.

    `receive()` and `send(message)` speak the ASGI WebSocket messages that
    `wire.sync.Connection` uses (`websocket.receive`, `websocket.disconnect`;
    `websocket.send`, `websocket.close`), and `send_frames` writes a batch of
    already-encoded messages at once for the connection's writer.

    Args:
        handover: from `wire.hypercorn_patch.take_over`: the socket stream,
            and the bytes hypercorn read before it let the socket go (the
            first `receive` waits until it has).
        message_bytes_max: the longest message a client may send (rule 4).
    """

    def __init__(self, handover: Any, *, message_bytes_max: int) -> None:
        self.handover = handover
        self.stream = handover.stream
        self.socket = self.stream.socket
        self._raw = self.socket._sock  # non-blocking (trio is pinned)
        # trio waits on a file number as on the socket, less a call to find it.
        self._fileno = self._raw.fileno()
        self.reader = FrameReader(message_bytes_max)
        # Until the first read: hypercorn may still hold the socket.
        self.taken = False
        # What `next_message_nowait` met and left for `receive`: an event (a
        # ping to answer, a close) or a ProtocolViolation.
        self._left: Any = None
        # One sender at a time: the writer's frames, the reader's pongs and
        # close replies. Taken without a checkpoint when free.
        self.send_lock = trio.Lock()
        # Set once a close frame was sent, or the stream is unusable: no
        # frame may follow.
        self.closed = False
        # Set when the peer's bytes ended (EOF, reset, or its close).
        self.ended = False

    # ----- reading

    async def receive(self) -> dict[str, Any]:
        """The next message, or `websocket.disconnect` once the connection ends.

        A checkpoint when it reads the socket; a message already parsed from
        an earlier read is returned without one. Answers pings and the
        peer's close itself. Cancelling it loses nothing: bytes read are
        kept in the reader.
        """
        reader = self.reader
        while True:
            if self.ended:
                return _DISCONNECT
            event = None
            try:
                if self._left is not None:
                    event, self._left = self._left, None
                    if isinstance(event, ProtocolViolation):
                        raise event
                elif reader._buffer:  # most reads end the buffer with a whole message
                    event = reader.next_event()
            except ProtocolViolation as error:
                await self._end_with_close(error.code, error.reason)
                return _DISCONNECT
            if event is None:
                data = await (receive_when_readable(self._fileno, self._raw) if self.taken
                              else self._receive_some())
                if not data:
                    self.ended = True
                    return _DISCONNECT
                reader.receive_data(data)
                continue
            message = _data_message(event)
            if message is not None:
                return message
            kind = event[0]
            if kind == "ping":
                await self._send_control(frame_bytes(OPCODE_PONG, event[1]))
            elif kind == "close":
                code = CLOSE_NORMAL if event[1] == CLOSE_NO_STATUS else event[1]
                await self._end_with_close(code, event[2])
                return _DISCONNECT
            # A pong answers nothing we asked; ignored.

    # ----- reading without a task (ReadinessPoller)

    def read_nowait(self) -> bool:
        """Reads what the kernel holds now into the reader, without waiting.
        False if nothing was there; at the end of the stream (EOF, reset),
        sets `ended` and returns True: `receive` reports the disconnect."""
        try:
            data = self._raw.recv(receive_bytes_max)
        except BlockingIOError:
            return False
        except OSError:  # reset: the same as the peer going away
            data = b""
        if not data:
            self.ended = True
        else:
            self.reader.receive_data(data)
        return True

    def next_message_nowait(self) -> dict[str, Any] | None:
        """The next whole data message from bytes already read, as `receive`
        gives it; None when there is none, or when what comes next is for
        `receive` to deal with (`needs_receive`): a ping to answer, a close,
        a protocol violation, the end of the stream. Pongs are skipped."""
        if self.ended or self._left is not None:
            return None
        while self.reader._buffer:
            try:
                event = self.reader.next_event()
            except ProtocolViolation as error:
                self._left = error
                return None
            if event is None:
                return None
            message = _data_message(event)
            if message is not None:
                return message
            if event[0] != "pong":
                self._left = event
                return None
        return None

    @property
    def needs_receive(self) -> bool:
        """Whether `receive` has something to deal with before more is read
        without it (see `next_message_nowait`)."""
        return self.ended or self._left is not None

    @property
    def pollable(self) -> bool:
        """Whether the socket may be read without a task now: hypercorn has
        let it go, no bytes wait to be parsed, and nothing waits for `receive`."""
        return self.taken and not self.reader._buffer and not self.needs_receive

    @property
    def fileno(self) -> int:
        return self._fileno

    async def _receive_some(self) -> bytes:
        if not self.taken:
            handover = self.handover
            await handover.released.wait()
            self.taken = True
            data, handover.handed_over = handover.handed_over, b""
            if data:
                return data
        return await receive_when_readable(self._fileno, self._raw)

    async def _end_with_close(self, code: int, reason: str) -> None:
        self.ended = True
        await self._send_control(frame_bytes(OPCODE_CLOSE, close_payload(code, reason)))
        self.closed = True

    async def _send_control(self, frame: bytes) -> None:
        if not self.closed:
            await self.send_frames([frame], None)

    # ----- writing

    async def send(self, message: dict[str, Any]) -> None:
        """Sends one ASGI `websocket.send` or `websocket.close` message.

        A checkpoint only when the kernel does not take the frame at once.
        Nothing is sent after a close. No stall deadline (the caller's).
        """
        if message["type"] == "websocket.close":
            if not self.closed:
                payload = close_payload(message.get("code", CLOSE_NORMAL),
                                        message.get("reason") or "")
                await self.send_frames([frame_bytes(OPCODE_CLOSE, payload)], None)
                self.closed = True
            return
        await self.send_frames([encode_frame(message.get("text") or message.get("bytes"))],
                               None)

    def send_nowait(self, data: Any) -> int | None:
        """Hands whole frames to the kernel without waiting: how many bytes it
        took (0 while another send holds the socket; the caller sends the
        rest later, in order), or None when the stream is closed or broken."""
        if self.closed:
            return None
        if self.send_lock.locked():
            return 0
        try:
            return self._raw.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self.closed = True
            return None

    async def send_frames(self, frames: list[bytes], stall_s: float | None) -> str:
        """Writes whole frames (`frame_bytes`, `encode_frame`), in order, in one go.

        Not a checkpoint when the lock is free and the kernel takes every
        byte at once (the usual case); otherwise waits, at most `stall_s`
        (None: no limit): the kernel's buffer is the backpressure. Returns
        SENT, STALLED (the stream is then closed: a frame cut short leaves it
        unusable) or BROKEN. Cancelled while waiting, it closes the stream
        for the same reason, and nothing more is sent.
        """
        if self.closed:
            return BROKEN
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        lock = self.send_lock
        if lock.locked():
            async with lock:
                return await self._send_rest(data, stall_s)
        lock.acquire_nowait()
        try:
            try:
                sent = self._raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.closed = True
                return BROKEN
            if sent == len(data):
                return SENT
            return await self._send_rest(memoryview(data)[sent:], stall_s)
        finally:
            lock.release()

    async def _send_rest(self, data: Any, stall_s: float | None) -> str:
        if self.closed:
            return BROKEN
        with trio.move_on_after(stall_s if stall_s is not None else float("inf")) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = True
                return BROKEN
            except trio.Cancelled:
                # A frame cut short leaves the stream unusable: close it, so
                # no later frame (a close) lands in the middle of this one.
                self.closed = True
                with trio.CancelScope(shield=True):
                    await self.stream.aclose()
                raise
            return SENT
        self.closed = True
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
        assert scope.cancelled_caught
        return STALLED


async def receive_when_readable(waitable: Any, raw: Any) -> bytes:
    """Up to `receive_bytes_max` bytes from the non-blocking socket `raw`
    once `waitable` (it, or its trio socket or file number) is readable;
    b"" when the connection ended, was reset or closed under us.

    One wake-up per read, and a fair one: even when bytes are waiting, the
    task goes round trio's scheduler first."""
    while True:
        try:
            await trio.lowlevel.wait_readable(waitable)
        except (trio.ClosedResourceError, trio.BusyResourceError):
            return b""
        try:
            return raw.recv(receive_bytes_max)
        except BlockingIOError:
            continue
        except OSError:  # reset: the same as the peer going away
            return b""


class ReadinessPoller:
    """One task that waits for many sockets at once and calls each one's
    `on_readable()` when it has bytes (a node's own-WebSocket connections,
    wire/sync.py).

    Waiting in each connection's task cost, per message read, a system call
    to re-arm trio's registration of the socket, a dozen Python calls in
    trio's I/O manager and a task switch. Here the sockets stay registered
    in an epoll of their own, level-triggered, and one trio wait on that
    epoll covers every socket ready at once: a busy node reads each message
    for the price of its `recv`. The task is a system task of the trio run
    that first watches a socket, and stops with it.

    `on_readable` runs in the poller's task: it must not await, and should
    not raise (an exception is logged and the socket unwatched).
    """

    def __init__(self) -> None:
        self._epoll: Any = None
        self._handlers: dict[int, Callable[[], None]] = {}

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        if self._epoll is None:
            self._epoll = select.epoll()
            trio.lowlevel.spawn_system_task(self._run, self._epoll,
                                            name="eddy websocket readiness poller")
        self._handlers[fd] = on_readable
        self._epoll.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None and self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):  # closed under us: gone from the epoll already
                pass

    async def _run(self, epoll: Any) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _ in epoll.poll(0):
                    on_readable = self._handlers.get(fd)
                    if on_readable is None:
                        continue
                    try:
                        on_readable()
                    except Exception:
                        logger.exception("reading socket %d failed", fd)
                        self.unwatch(fd)
        finally:
            if self._epoll is epoll:
                self._epoll = None
                self._handlers.clear()
            epoll.close()


def encode_frame(message: str | bytes) -> bytes:
    """A whole server message as one frame: text for a str, binary for bytes."""
    if isinstance(message, str):
        return frame_bytes(OPCODE_TEXT, message.encode("utf-8"))
    return frame_bytes(OPCODE_BINARY, bytes(message))
