"""A recording TCP relay between a client and `eddy dev`: the frames of the
PyPI client, which offers no hook to see them.

The PyPI client runs Rust code that holds the GIL while it blocks, so the
relay must live in another process than the client: it runs in the test
process, in threads. Each connection's first bytes in each direction are an
HTTP head (its first line is recorded); after a `101` the bytes are parsed as
WebSocket frames (RFC 6455 section 5.2; client frames are masked) and text
frames are recorded, so a failure report shows the exact sync messages.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

FRAMES_MAX = 400  # As lib.mjs: the report shows the tail.
FRAME_CHARS_MAX = 600
CHUNK_BYTES = 65536
OPCODE_NAMES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping",
                0xA: "pong"}


class FrameTap:
    """Relays 127.0.0.1:<port> to `upstream_port`, recording what passes.

    Use as a context manager; `url` is the address to give the client and
    `frames` the records in lib.mjs's shape (ms, socket, dir, data).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frames: list[dict[str, Any]] = []
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
            try:
                sock.close()
            except OSError:
                pass

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

    def _pump(self, source: socket.socket, sink: socket.socket, connection: int,
              direction: str) -> None:
        parser = StreamParser(lambda data: self.record(connection, direction, data))
        try:
            while True:
                data = source.recv(CHUNK_BYTES)
                if not data:
                    break
                sink.sendall(data)
                parser.feed(data)
        except OSError:
            pass
        finally:
            self.record(connection, "close", f"{direction} stream ended")
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class StreamParser:
    """One direction of one connection: an HTTP head, then WebSocket frames."""

    def __init__(self, emit) -> None:
        self.emit = emit
        self.buffer = b""
        self.in_head = True

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.in_head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            self.emit("http " + head.split(b"\r\n", 1)[0].decode(errors="replace"))
            self.in_head = False
        while self._frame():
            pass

    def _frame(self) -> bool:
        data = self.buffer
        if len(data) < 2:
            return False
        opcode, masked, length = data[0] & 0x0F, data[1] & 0x80, data[1] & 0x7F
        offset = 2
        if length == 126:
            if len(data) < 4:
                return False
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            if len(data) < 10:
                return False
            length, offset = int.from_bytes(data[2:10], "big"), 10
        mask = b""
        if masked:
            mask, offset = data[offset:offset + 4], offset + 4
        if len(data) < offset + length:
            return False
        payload = data[offset:offset + length]
        if masked:
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.buffer = data[offset + length:]
        name = OPCODE_NAMES.get(opcode, f"opcode {opcode}")
        if opcode in (0x0, 0x1):
            self.emit(payload.decode(errors="replace"))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.emit(f"<close frame code {code} {payload[2:].decode(errors='replace')!r}>")
        elif opcode != 0x9 and opcode != 0xA:
            self.emit(f"<{name} {len(payload)} bytes>")
        return True
