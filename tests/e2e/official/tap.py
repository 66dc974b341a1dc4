"""A recording TCP relay between a client and `eddy dev`: the frames of the
PyPI client, which offers no hook to see them.

The PyPI client runs Rust code that holds the GIL while it blocks, so the
relay must live in another process than the client: it runs in the test
process, in threads. Each connection's first bytes in each direction are an
HTTP head (its first line is recorded); after a `101` the bytes are parsed as
WebSocket frames (RFC 6455 section 5.2; client frames are masked; compressed
ones are inflated) and text frames are recorded, so a failure report shows the exact sync messages.
"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from tests.e2e.official.protocol import summarize

FRAMES_MAX = 400  # As lib.mjs: the report shows the tail.
FRAME_CHARS_MAX = 600
CHUNK_BYTES = 65536
OPCODE_NAMES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping",
                0xA: "pong"}


class FrameTap:
    """Relays 127.0.0.1:<port> to `upstream_port`, recording what passes.

    Use as a context manager; `url` is the address to give the client,
    `frames` the records in lib.mjs's shape (ms, socket, dir, data) and
    `messages` the protocol summaries. With `cut_before`, the first server
    message whose summary it accepts is not delivered: the tap drops that
    connection instead (both ways, no close frame), as a network failure at
    the worst moment would.
    """

    def __init__(self, upstream_port: int,
                 cut_before: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.upstream_port = upstream_port
        self.cut_before = cut_before
        self.cut_count = 0
        self.frames: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.connection_count = 0
        self.closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FrameTap:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.closed = True
        self.listener.close()
        for sock in list(self.sockets):
            close_quietly(sock)

    def record(self, connection: int, direction: str, data: str) -> None:
        if len(data) > FRAME_CHARS_MAX:
            data = data[:FRAME_CHARS_MAX] + "…"
        with self.lock:
            self.frames.append({"ms": int((time.monotonic() - self.started) * 1000),
                                "socket": connection, "dir": direction, "data": data})
            del self.frames[:-FRAMES_MAX]

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connection_count += 1
            connection = self.connection_count
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError as error:
                self.record(connection, "error", f"upstream refused: {error}")
                client.close()
                continue
            self.sockets += [client, upstream]
            for source, sink, direction in ((client, upstream, "out"), (upstream, client, "in")):
                threading.Thread(target=self._pump, args=(source, sink, connection, direction),
                                 daemon=True).start()

    def _should_cut(self, direction: str, summary: dict[str, Any] | None) -> bool:
        if direction != "in" or summary is None or self.cut_before is None:
            return False
        with self.lock:
            if self.cut_count or not self.cut_before(summary):
                return False
            self.cut_count += 1
            return True

    def _pump(self, source: socket.socket, sink: socket.socket, connection: int,
              direction: str) -> None:
        parser = StreamParser()
        try:
            while True:
                data = source.recv(CHUNK_BYTES)
                if not data:
                    break
                for raw, text, is_message in parser.feed(data):
                    summary = summarize(connection, direction, text) if is_message else None
                    if self._should_cut(direction, summary):
                        self.record(connection, "cut", f"dropped the connection instead of: {text}")
                        return
                    # Recorded before it is forwarded, so an answer (seen by the
                    # other direction's thread) never appears before its request.
                    self.record(connection, direction, text)
                    if summary is not None:
                        with self.lock:
                            self.messages.append(summary)
                    sink.sendall(raw)
        except OSError:
            pass
        finally:
            self.record(connection, "close", f"{direction} stream ended")
            with self.lock:
                self.messages.append({"socket": connection, "dir": "end", "type": "<end>"})
            for sock in (source, sink):
                close_quietly(sock)


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class StreamParser:
    """One direction of one connection: an HTTP head, then WebSocket frames.

    `feed` returns the complete units received so far as (raw bytes, text
    to record, whether the text is a sync message); a partial frame waits
    in the buffer until the rest arrives.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.in_head = True
        self.passthrough = False  # Plain HTTP (no upgrade): relayed as it comes.
        # permessage-deflate (RFC 7692), which the npm client offers: one
        # decompressor per direction, since each side may keep its window.
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[tuple[bytes, str, bool]]:
        if self.passthrough:
            return [(data, f"<{len(data)} bytes of HTTP>", False)]
        self.buffer += data
        units = []
        if self.in_head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return units
            head, self.buffer = self.buffer[:end + 4], self.buffer[end + 4:]
            units.append((head, "http " + head.split(b"\r\n", 1)[0].decode(errors="replace"),
                          False))
            self.in_head = False
            lowered = head.lower()
            if b"upgrade: websocket" not in lowered and not lowered.startswith(b"http/1.1 101"):
                self.passthrough = True
                if self.buffer:
                    units.append((self.buffer, f"<{len(self.buffer)} bytes of HTTP>", False))
                    self.buffer = b""
                return units
        while (unit := self._frame()) is not None:
            units.append(unit)
        return units

    def _frame(self) -> tuple[bytes, str, bool] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        compressed = data[0] & 0x40
        opcode, masked, length = data[0] & 0x0F, data[1] & 0x80, data[1] & 0x7F
        offset = 2
        if length == 126:
            if len(data) < 4:
                return None
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, offset = int.from_bytes(data[2:10], "big"), 10
        mask = b""
        if masked:
            mask, offset = data[offset:offset + 4], offset + 4
        if len(data) < offset + length:
            return None
        raw, payload = data[:offset + length], data[offset:offset + length]
        if masked:
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.buffer = data[offset + length:]
        if compressed:
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        if opcode in (0x0, 0x1):
            return raw, payload.decode(errors="replace"), True
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            return raw, f"<close frame code {code} {payload[2:].decode(errors='replace')!r}>", False
        return raw, f"<{OPCODE_NAMES.get(opcode, f'opcode {opcode}')} {len(payload)} bytes>", False
