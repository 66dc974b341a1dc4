"""Eddy's own WebSocket framing (wire/websocket.py) on a real socket: what it
took over from wsproto (fragments, control frames, the close handshake,
limits, invalid frames), driven byte by byte by a hand-written client, and
its frame parser on its own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
from functools import partial
from typing import Any

import pytest
import trio

import wire.http
from tests.actors.test_sync import TIMEOUT_S, add, raw_client, run
from wire import codecs, session, websocket
from wire.codecs import JSON_STYLE, NATIVE_STYLE
from wire.sync import SyncServer, sync_message_bytes_max
from wire.websocket import (OPCODE_BINARY, OPCODE_CLOSE, OPCODE_CONTINUATION, OPCODE_PING,
                            OPCODE_PONG, OPCODE_TEXT, FrameReader, ProtocolViolation)

# tests/actors/test_sync.py's server lets messages this long through.
LIMIT_BYTES = sync_message_bytes_max + 4096
CONNECT = {"type": "Connect", "sessionId": "s-1", "connectionCount": 0,
           "lastCloseReason": "InitialConnect", "clientTs": 0}
MODIFY = {"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
          "modifications": [add(0, "messages:list")]}


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0, length: int | None = None) -> bytes:
    """A client frame as RFC 6455 lays it out (`length` may lie about the payload)."""
    length = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawSocket:
    """A WebSocket client written out by hand over a TCP stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.response_head = b""

    async def handshake(self, path: str, extra: str = "") -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        await self.stream.send_all(
            (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.response_head, self.buffer = head, bytearray(rest)
        assert head.startswith(b"HTTP/1.1 101"), head

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_json(self, obj: dict) -> None:
        await self.send(client_frame(OPCODE_TEXT, json.dumps(obj).encode()))

    async def _fill(self) -> bool:
        with trio.fail_after(TIMEOUT_S):
            data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def receive_frame(self) -> tuple[bool, int, bytes]:
        """The next server frame: (fin, opcode, payload); server frames are unmasked."""
        while True:
            buffer = self.buffer
            if len(buffer) >= 2:
                assert not buffer[1] & 0x80, "a server frame must not be masked"
                length, offset = buffer[1] & 0x7F, 2
                if length == 126 and len(buffer) >= 4:
                    length, offset = struct.unpack("!H", buffer[2:4])[0], 4
                elif length == 127 and len(buffer) >= 10:
                    length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
                if length < 126 or offset > 2:
                    if len(buffer) >= offset + length:
                        frame = (bool(buffer[0] & 0x80), buffer[0] & 0x0F,
                                 bytes(buffer[offset:offset + length]))
                        del buffer[:offset + length]
                        return frame
            assert await self._fill(), "the server closed the connection"

    async def receive_json(self) -> dict:
        while True:
            fin, opcode, payload = await self.receive_frame()
            assert fin and opcode == OPCODE_TEXT, (opcode, payload)
            message = json.loads(payload)
            if message["type"] != "Ping":
                return message

    async def expect_close(self, code: int) -> str:
        """Skips server messages up to a close frame with `code`, then the
        connection must end; returns the reason."""
        while True:
            fin, opcode, payload = await self.receive_frame()
            if opcode == OPCODE_CLOSE:
                break
        assert struct.unpack("!H", payload[:2])[0] == code, payload
        while await self._fill():
            pass
        return payload[2:].decode()


@contextlib.asynccontextmanager
async def raw_socket(base: str, path: str = "/api/1.48.0/sync", extra: str = ""):
    host, port = base.removeprefix("ws://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        client = RawSocket(stream)
        await client.handshake(path, extra)
        yield client


def test_fragmented_message_with_a_ping_between_its_fragments(tmp_path):
    """A text message in three fragments, a ping between them: the ping is
    answered with its payload, then the message is read whole."""
    async def scenario(node, base):
        async with raw_socket(base) as client:
            text = json.dumps(CONNECT).encode()
            await client.send(client_frame(OPCODE_TEXT, text[:5], fin=False))
            await client.send(client_frame(OPCODE_PING, b"are you there"))
            assert await client.receive_frame() == (True, OPCODE_PONG, b"are you there")
            await client.send(client_frame(OPCODE_CONTINUATION, text[5:9], fin=False)
                              + client_frame(OPCODE_CONTINUATION, text[9:]))
            await client.send_json(MODIFY)
            transition = await client.receive_json()
            assert transition["type"] == "Transition"
            return transition["endVersion"]["querySet"]
    assert run(tmp_path, scenario) == 1


def test_many_messages_in_one_write_and_one_message_over_many_reads(tmp_path):
    """Frames that arrive together are each read; a message longer than one
    read (64 KiB) is put together from several."""
    async def scenario(node, base):
        async with raw_socket(base) as client:
            body = "y" * 300_000
            mutation = {"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                        "args": [{"body": body}]}
            await client.send(b"".join(client_frame(OPCODE_TEXT, json.dumps(m).encode())
                                       for m in (CONNECT, MODIFY, mutation)))
            while True:
                message = await client.receive_json()
                if message["type"] == "MutationResponse":
                    assert message["success"], message
                    return len(message["result"])
    assert run(tmp_path, scenario) == 300_000


async def connect_and_go_idle(client: "RawSocket") -> None:
    """Connects, adds a query and waits: the server's poller has the socket then."""
    await client.send_json(CONNECT)
    await client.send_json(MODIFY)
    assert (await client.receive_json())["type"] == "Transition"
    await trio.sleep(0.05)


def test_an_idle_socket_read_by_the_poller_hands_back_pings_and_authenticates(tmp_path):
    """Once a connection is idle its socket is read by the server's poller
    (websocket.ReadinessPoller). Arriving in one write: an Authenticate as
    admin and a ModifyQuerySet adding an internal query (which must run as
    the admin, after the token is resolved), a pong (ignored), a mutation
    and a ping (answered): each is handled, in order."""
    async def scenario(node, base):
        async with raw_socket(base) as client:
            await connect_and_go_idle(client)
            authenticate = {"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin",
                            "value": node.admin_key}
            hidden = {"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2,
                      "modifications": [add(1, "messages:hidden")]}
            mutation = {"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                        "args": [{"body": "after all that"}]}
            await client.send(client_frame(OPCODE_TEXT, json.dumps(authenticate).encode())
                              + client_frame(OPCODE_TEXT, json.dumps(hidden).encode())
                              + client_frame(OPCODE_PONG, b"unasked")
                              + client_frame(OPCODE_TEXT, json.dumps(mutation).encode())
                              + client_frame(OPCODE_PING, b"ping 1"))
            seen, ponged = [], False
            while not (ponged and seen and seen[-1]["type"] == "MutationResponse"):
                fin, opcode, payload = await client.receive_frame()
                if opcode == OPCODE_PONG:
                    assert payload == b"ping 1" and not ponged
                    ponged = True
                    continue
                assert fin and opcode == OPCODE_TEXT, (opcode, payload)
                message = json.loads(payload)
                if message["type"] != "Ping":
                    seen.append(message)
            updates = [modification for message in seen if message["type"] == "Transition"
                       for modification in message["modifications"]]
            hidden_update = next(item for item in updates if item["queryId"] == 1)
            assert hidden_update["type"] == "QueryUpdated", hidden_update
            assert hidden_update["value"] == "hidden"
            assert seen[-1]["success"], seen[-1]
            # And the socket goes back to the poller: another mutation is answered.
            await client.send_json({**mutation, "requestId": 1})
            while (message := await client.receive_json())["type"] != "MutationResponse":
                pass
            return message["result"]
    assert run(tmp_path, scenario) == "after all that"


def test_the_poller_puts_a_message_together_from_many_reads(tmp_path):
    """An idle socket's message that arrives in pieces, with pauses between
    them, is put together by the poller's reads and runs once whole; then a
    message cut inside its header does too."""
    async def scenario(node, base):
        async with raw_socket(base) as client:
            await connect_and_go_idle(client)
            body = "z" * 200_000
            frame = client_frame(OPCODE_TEXT, json.dumps(
                {"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                 "args": [{"body": body}]}).encode())
            second = client_frame(OPCODE_TEXT, json.dumps(
                {"type": "Mutation", "requestId": 1, "udfPath": "messages:send",
                 "args": [{"body": "short"}]}).encode())
            pieces = [frame[:1], frame[1:5000], frame[5000:90_000], frame[90_000:] + second[:3],
                      second[3:]]
            for piece in pieces:
                await client.send(piece)
                await trio.sleep(0.02)
            results = []
            while len(results) < 2:
                message = await client.receive_json()
                if message["type"] == "MutationResponse":
                    assert message["success"], message
                    results.append(message["result"])
            return [len(result) for result in results]
    assert run(tmp_path, scenario) == [200_000, 5]


def test_an_unexpected_error_feeding_a_message_ends_only_that_connection(tmp_path, monkeypatch):
    """A bug met while the poller feeds a message (here the runner raising
    what no function raises) closes that connection with 1011 and logs it;
    the next connection is served."""
    from actors.runner import FunctionRunner

    original = FunctionRunner.mutation_now

    def buggy(self, path, args, **options):
        if args == [{"body": "boom"}] or args == {"body": "boom"}:
            raise RuntimeError("a bug")
        return original(self, path, args, **options)

    monkeypatch.setattr(FunctionRunner, "mutation_now", buggy)

    async def scenario(node, base):
        async with raw_socket(base) as client:
            await connect_and_go_idle(client)
            await client.send_json({"type": "Mutation", "requestId": 0,
                                    "udfPath": "messages:send", "args": [{"body": "boom"}]})
            reason = await client.expect_close(session.CLOSE_INTERNAL)
            assert "InternalServerError" in reason, reason
        async with raw_socket(base) as client:
            await client.send_json({**CONNECT, "sessionId": "s-2"})
            await client.send_json({"type": "Mutation", "requestId": 0,
                                    "udfPath": "messages:send", "args": [{"body": "fine"}]})
            while (message := await client.receive_json())["type"] != "MutationResponse":
                pass
            return message["result"]
    assert run(tmp_path, scenario) == "fine"


def test_binary_frames_are_answered_in_binary(tmp_path):
    """Eddy's msgpack client still gets binary frames (the first frame picks)."""
    async def scenario(node, base):
        async with raw_socket(base) as client:
            for message in (CONNECT, MODIFY):
                native = codecs.decode_client_message(message, JSON_STYLE)
                frame = codecs.dump_msgpack_frame(
                    codecs.encode_client_message(native, NATIVE_STYLE))
                await client.send(client_frame(OPCODE_BINARY, frame))
            fin, opcode, payload = await client.receive_frame()
            return opcode, codecs.load_msgpack_frame(payload)["type"]
    assert run(tmp_path, scenario) == (OPCODE_BINARY, "Transition")


@pytest.mark.parametrize("payload, code, reason", [
    (struct.pack("!H", 1000) + b"bye", 1000, "bye"),
    (struct.pack("!H", 4001) + "ça va".encode(), 4001, "ça va"),
    (b"", 1000, ""),
])
def test_close_handshake(tmp_path, payload, code, reason):
    """The client's close is answered with its code and reason (1000 if it had
    none), then the server ends the connection."""
    async def scenario(node, base):
        async with raw_socket(base) as client:
            await client.send_json(CONNECT)
            await client.send(client_frame(OPCODE_CLOSE, payload))
            return await client.expect_close(code)
    assert run(tmp_path, scenario) == reason


@pytest.mark.parametrize("frame, code", [
    (client_frame(OPCODE_TEXT, b"{}", masked=False), 1002),
    (client_frame(OPCODE_TEXT, b"{}", rsv=4), 1002),
    (client_frame(0x3, b"{}"), 1002),
    (client_frame(OPCODE_CONTINUATION, b"{}"), 1002),
    (client_frame(OPCODE_TEXT, b"{", fin=False) + client_frame(OPCODE_TEXT, b"}"), 1002),
    (client_frame(OPCODE_PING, b"x", fin=False), 1002),
    (client_frame(OPCODE_PING, b"x" * 126), 1002),
    (client_frame(OPCODE_CLOSE, b"\x03"), 1002),
    (client_frame(OPCODE_CLOSE, struct.pack("!H", 1005)), 1002),
    (client_frame(OPCODE_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    (client_frame(OPCODE_TEXT, b'{"type": "\xff"}'), 1007),
    (client_frame(OPCODE_TEXT, b"\xe2\x82", fin=False)
     + client_frame(OPCODE_CONTINUATION, b"\xac!"), None),
    (client_frame(OPCODE_TEXT, b"", length=LIMIT_BYTES + 1), 1009),
    (client_frame(OPCODE_BINARY, b"x" * 70_000, fin=False)
     + client_frame(OPCODE_CONTINUATION, b"", length=LIMIT_BYTES - 69_999), 1009),
], ids=["unmasked", "reserved-bits", "unknown-opcode", "stray-continuation",
        "message-inside-message", "fragmented-ping", "long-ping", "one-byte-close",
        "close-code-1005", "close-reason-not-utf8", "text-not-utf8",
        "utf8-split-across-fragments", "oversize-frame", "oversize-message"])
def test_a_bad_frame_closes_only_its_connection(tmp_path, frame, code):
    """Each broken rule closes that connection with its code (a character
    split across fragments breaks none: that one gets FatalError for not
    being a message); another socket keeps getting live updates."""
    async def scenario(node, base):
        async with raw_client(base) as good, raw_socket(base) as bad:
            await good.connect("good")
            await good.modify(add(0, "messages:list"))
            await bad.send_json(CONNECT)
            await bad.send(frame)
            if code is None:
                message = await bad.receive_json()
                assert message["type"] == "FatalError", message
                assert "not valid JSON" in message["error"], message
                await bad.expect_close(session.CLOSE_PROTOCOL)
            else:
                await bad.expect_close(code)
            await node.mutation("messages:send", {"body": "still here"})
            return await good.wait_for_value(0, lambda v: v == ["still here"])
    assert run(tmp_path, scenario) == ["still here"]


def test_no_extension_is_negotiated(tmp_path):
    """A client offering permessage-deflate gets plain frames: the 101 names no extension."""
    async def scenario(node, base):
        async with raw_socket(base, extra="Sec-WebSocket-Extensions: permessage-deflate; "
                                          "client_max_window_bits\r\n") as client:
            await client.send_json(CONNECT)
            await client.send_json(MODIFY)
            assert (await client.receive_json())["type"] == "Transition"
            return client.response_head.lower()
    assert b"sec-websocket-extensions" not in run(tmp_path, scenario)


def test_hypercorn_path_still_serves_when_switched_off(tmp_path, monkeypatch):
    """With own_websocket=False every frame goes through hypercorn and wsproto, as before."""
    monkeypatch.setattr(wire.http, "SyncServer", partial(SyncServer, own_websocket=False))

    async def scenario(node, base):
        async with raw_client(base) as client:
            await client.connect()
            await client.modify(add(0, "messages:list"))
            await node.mutation("messages:send", {"body": "old path"})
            return await client.wait_for_value(0, lambda v: v == ["old path"])
    assert run(tmp_path, scenario) == ["old path"]


# ----- the parser alone

def parse_all(data: bytes, *, step: int, limit: int = 1 << 20) -> list[Any]:
    reader, events = FrameReader(limit), []
    for start in range(0, len(data), step):
        reader.receive_data(data[start:start + step])
        while (event := reader.next_event()) is not None:
            events.append(event)
    return events


@pytest.mark.parametrize("step", [1, 3, 7, 1 << 20])
def test_reader_gives_the_same_events_however_the_bytes_arrive(step):
    """Frames split at any byte, with 7-, 16- and 64-bit lengths, parse the same."""
    data = (client_frame(OPCODE_TEXT, "héllo".encode())
            + client_frame(OPCODE_BINARY, b"\x00" * 300)
            + client_frame(OPCODE_BINARY, b"\x01" * 70_000, fin=False)
            + client_frame(OPCODE_PONG, b"p")
            + client_frame(OPCODE_CONTINUATION, b"\x02")
            + client_frame(OPCODE_CLOSE, struct.pack("!H", 1001)))
    assert parse_all(data, step=step) == [
        ("text", "héllo"), ("bytes", b"\x00" * 300), ("pong", b"p"),
        ("bytes", b"\x01" * 70_000 + b"\x02"), ("close", 1001, "")]


def test_reader_refuses_a_long_message_from_its_header():
    """A frame whose header announces more than the limit is refused before its payload."""
    reader = FrameReader(100)
    reader.receive_data(client_frame(OPCODE_BINARY, b"", length=101)[:8])
    with pytest.raises(ProtocolViolation) as info:
        reader.next_event()
    assert info.value.code == websocket.CLOSE_MESSAGE_TOO_BIG


def test_server_frames_are_unmasked_with_the_shortest_length():
    """frame_bytes lays out 7-, 16- and 64-bit lengths as RFC 6455 5.2 says."""
    assert websocket.frame_bytes(OPCODE_TEXT, b"hi") == b"\x81\x02hi"
    assert websocket.frame_bytes(OPCODE_BINARY, b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert websocket.frame_bytes(OPCODE_BINARY, b"x" * 65536)[:10] == (
        b"\x82\x7f" + (65536).to_bytes(8, "big"))
