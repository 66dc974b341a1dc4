"""The Python client's WebSocket (wire/client_ws.py): its frame parser and
handshake checks on their own, then on a real loopback socket against a
hand-written server (fragmented reads, large frames, pings, the server's
close, a dropped connection, refused and silent handshakes), then Eddy's
client (wire/client.py) over it against a real SyncServer: a connection the
server closes is reopened with the subscription restored and no mutation
run twice.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import struct
import tempfile
from pathlib import Path
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from tests.actors.test_auth import file_app, make_token, rsa_key  # noqa: F401 (fixtures)
from tests.actors.test_sync import run as run_served
from wire import codecs, messages as m
from wire.client import Client, ClientError, _frame, connect
from wire.client_ws import (CLOSE_ABNORMAL, FairSlots, HandshakeError, ServerFrameReader,
                            WebSocketClosed, accept_key, check_handshake_response, client_frame,
                            open_websocket)
from wire.codecs import NATIVE_STYLE
from wire.websocket import (OPCODE_BINARY, OPCODE_CLOSE, OPCODE_CONTINUATION, OPCODE_PING,
                            OPCODE_TEXT, FrameReader, ProtocolViolation)

TIMEOUT_S = 20
MESSAGE_BYTES_MAX = 64 * 1024 * 1024


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    """A server frame laid out by hand (RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", len(payload))
    return head + (b"\0\0\0\0" if masked else b"") + payload


def events(reader: FrameReader) -> list[tuple]:
    found = []
    while (event := reader.next_event()) is not None:
        found.append(event)
    return found


def events_plain_first(reader: ServerFrameReader, data: bytes = b"") -> list[tuple]:
    """`events`, taking plain binary frames first, as
    ClientWebSocket.receive_messages does: received with
    receive_plain_messages, then take_plain_messages and next_event."""
    plain: list[bytes] = []
    reader.receive_plain_messages(data, plain)
    found: list[tuple] = [("bytes", payload) for payload in plain]
    while True:
        plain: list[bytes] = []
        leftover = reader.take_plain_messages(plain)
        found += [("bytes", payload) for payload in plain]
        event = reader.next_event() if leftover else None
        if event is None:
            return found
        found.append(event)


# ----- the core

LARGE = bytes(range(256)) * 400  # 102,400 bytes: a 64-bit length
MEDIUM = b"m" * 300  # a 16-bit length
STREAM = (server_frame(OPCODE_BINARY, b"small")
          + server_frame(OPCODE_BINARY, b"")
          + server_frame(OPCODE_BINARY, MEDIUM)
          + server_frame(OPCODE_TEXT, "h\u00e9".encode()[:2], fin=False)
          + server_frame(OPCODE_PING, b"are you there")
          + server_frame(OPCODE_CONTINUATION, "h\u00e9".encode()[2:] + b"llo", fin=True)
          + server_frame(OPCODE_BINARY, LARGE)
          + server_frame(OPCODE_CLOSE, struct.pack("!H", 4000) + b"bye"))
EXPECTED = [("bytes", b"small"), ("bytes", b""), ("bytes", MEDIUM), ("ping", b"are you there"),
            ("text", "h\u00e9llo"), ("bytes", LARGE), ("close", 4000, "bye")]


@pytest.mark.parametrize("drain", [events, events_plain_first])
@pytest.mark.parametrize("step", [1, 7, 4096, len(STREAM)])
def test_reader_gives_the_same_events_however_the_bytes_arrive(step, drain):
    """Server frames split anywhere (one byte at a time up to all at once)
    give the same events, including a ping between two fragments, whether
    plain binary frames are taken by take_plain_messages or not."""
    reader = ServerFrameReader(MESSAGE_BYTES_MAX)
    found = []
    for start in range(0, len(STREAM), step):
        if drain is events:
            reader.receive_data(STREAM[start:start + step])
            found += events(reader)
        else:
            found += events_plain_first(reader, STREAM[start:start + step])
    assert found == EXPECTED


def test_a_masked_server_frame_is_a_protocol_error():
    """RFC 6455 5.1: a client must close when a server frame is masked."""
    reader = ServerFrameReader(MESSAGE_BYTES_MAX)
    reader.receive_data(server_frame(OPCODE_BINARY, b"x", masked=True))
    with pytest.raises(ProtocolViolation) as info:
        reader.next_event()
    assert info.value.code == 1002


def test_a_message_over_the_limit_is_refused_from_its_header():
    """A frame longer than message_bytes_max is 1009 before its payload arrives."""
    reader = ServerFrameReader(1000)
    reader.receive_data(server_frame(OPCODE_BINARY, b"x" * 2000)[:10])
    assert reader.take_plain_messages([])  # left for next_event
    with pytest.raises(ProtocolViolation) as info:
        reader.next_event()
    assert info.value.code == 1009


@pytest.mark.parametrize("length", [0, 5, 125, 126, 300, 65535, 65536, 100_000])
def test_client_frames_are_masked_and_the_servers_parser_reads_them_back(length):
    """client_frame masks with a fresh key (the server's FrameReader, which
    refuses unmasked frames, reads the payload back) at every length form."""
    payload = bytes(i % 251 for i in range(length))
    first, second = client_frame(OPCODE_BINARY, payload), client_frame(OPCODE_BINARY, payload)
    assert first[1] & 0x80
    if length >= 8:
        assert first != second  # a fresh key per frame
    reader = FrameReader(MESSAGE_BYTES_MAX)
    reader.receive_data(first + second)
    assert events(reader) == [("bytes", payload), ("bytes", payload)]


def test_accept_key_is_the_rfcs_example():
    """RFC 6455 1.3's worked example."""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")


@pytest.mark.parametrize("head, words", [
    ("HTTP/1.1 403 Forbidden\r\nContent-Length: 0", "403 Forbidden"),
    ("SSH-2.0-OpenSSH", "not an HTTP answer"),
    (GOOD.replace("s3pPLM", "AAAAAA"), "Sec-WebSocket-Accept"),
    (GOOD.replace("Upgrade: websocket", "Upgrade: h2c"), "upgrade to websocket"),
    (GOOD.replace("Connection: Upgrade", "Connection: close"), "Connection: Upgrade"),
    (GOOD + "\r\nSec-WebSocket-Extensions: permessage-deflate", "none was offered"),
])
def test_a_handshake_answer_that_does_not_accept_is_refused(head, words):
    """Anything but a 101 with the right accept key, and no extension or
    subprotocol we did not offer, is a HandshakeError."""
    check_handshake_response(GOOD.encode(), KEY)
    with pytest.raises(HandshakeError, match=words):
        check_handshake_response(head.encode(), KEY)


# ----- on a real socket, against a hand-written server


class HandWrittenServer:
    """The server side of one connection, written out by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = FrameReader(MESSAGE_BYTES_MAX)  # client frames must be masked
        self.request = b""

    async def handshake(self, status: str = "101 Switching Protocols") -> None:
        while b"\r\n\r\n" not in self.request:
            self.request += await self.stream.receive_some(4096)
        key = next(line.split(b":", 1)[1].strip() for line in self.request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        await self.stream.send_all(
            (f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())

    async def send_in_pieces(self, data: bytes, piece_bytes: int) -> None:
        """Writes `data` in pieces with a checkpoint between, so the client
        reads it over many receives."""
        for start in range(0, len(data), piece_bytes):
            await self.stream.send_all(data[start:start + piece_bytes])
            await trio.sleep(0)

    async def next_event(self) -> tuple | None:
        """The client's next event, or None once its bytes end."""
        while (event := self.reader.next_event()) is None:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.reader.receive_data(data)
        return event


@contextlib.asynccontextmanager
async def hand_written_server(handler: Any):
    """A loopback listener that runs `handler(HandWrittenServer)` on each
    connection; yields its ws:// URL."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def serve_one(stream: trio.SocketStream) -> None:
        async with stream:
            await handler(HandWrittenServer(stream))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve_one, listeners)
        yield f"ws://127.0.0.1:{port}/api/sync"
        nursery.cancel_scope.cancel()


def run(scenario: Any) -> Any:
    async def main():
        with trio.fail_after(TIMEOUT_S * 2):
            return await scenario()
    return trio.run(main)


def open_client(url: str, **options: Any):
    options.setdefault("handshake_s_max", TIMEOUT_S)
    return open_websocket(url, headers=[("Convex-Client", "test")],
                          message_bytes_max=MESSAGE_BYTES_MAX, **options)


def test_large_fragmented_messages_over_many_reads_and_a_ping_between():
    """A 1 MB message in three fragments written in 1,000-byte pieces, with a
    ping between fragments, arrives whole; the ping is answered with a pong
    carrying its payload; the upgrade request carries the extra header."""
    big = bytes(i % 253 for i in range(1_000_000))
    seen: dict[str, Any] = {}

    async def handler(server: HandWrittenServer) -> None:
        await server.handshake()
        seen["request"] = server.request
        stream = (server_frame(OPCODE_BINARY, big[:400_000], fin=False)
                  + server_frame(OPCODE_PING, b"p1")
                  + server_frame(OPCODE_CONTINUATION, big[400_000:900_000], fin=False)
                  + server_frame(OPCODE_CONTINUATION, big[900_000:], fin=True)
                  + server_frame(OPCODE_BINARY, b"after"))
        await server.send_in_pieces(stream, 1000)
        seen["pong"] = await server.next_event()
        seen["echo"] = await server.next_event()

    async def scenario():
        async with hand_written_server(handler) as url:
            async with open_client(url) as ws:
                assert await ws.receive() == big
                assert await ws.receive() == b"after"
                await ws.send_message(b"thanks")
                with pytest.raises(WebSocketClosed):
                    await ws.receive()  # the handler returned: the socket closed
    run(scenario)
    assert b"Convex-Client: test\r\n" in seen["request"]
    assert b"GET /api/sync HTTP/1.1\r\n" in seen["request"]
    assert seen["pong"] == ("pong", b"p1")
    assert seen["echo"] == ("bytes", b"thanks")


def test_a_frame_the_kernel_takes_in_parts_goes_out_whole_and_in_order():
    """A 4 MB message the kernel cannot take at once is finished under the
    send lock, and a frame sent meanwhile by another task follows it whole."""
    big = bytes(i % 249 for i in range(4_000_000))
    seen: list[tuple] = []
    done = trio.Event()

    async def handler(server: HandWrittenServer) -> None:
        await server.handshake()
        await trio.sleep(0.05)  # let the kernel's buffers fill
        seen.append(await server.next_event())
        seen.append(await server.next_event())
        done.set()

    async def scenario():
        async with hand_written_server(handler) as url:
            async with open_client(url) as ws:
                ws.stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ws.send_message, big)
                    while not ws.send_lock.busy():  # the big frame holds the lock, part-sent
                        await trio.sleep(0)
                    nursery.start_soon(ws.send_message, b"after")
                await done.wait()
    run(scenario)
    assert seen == [("bytes", big), ("bytes", b"after")]


def test_server_close_is_answered_with_its_code():
    """A close frame from the server ends the connection with its code and
    reason, and the client answers with a close carrying the same."""
    seen: dict[str, Any] = {}
    done = trio.Event()

    async def handler(server: HandWrittenServer) -> None:
        await server.handshake()
        await server.stream.send_all(server_frame(OPCODE_CLOSE,
                                                  struct.pack("!H", 4040) + b"gone"))
        seen["reply"] = await server.next_event()
        done.set()

    async def scenario():
        async with hand_written_server(handler) as url:
            async with open_client(url) as ws:
                with pytest.raises(WebSocketClosed) as info:
                    await ws.receive()
                assert (info.value.code, info.value.reason) == (4040, "gone")
                assert str(info.value) == "closed with code 4040: gone"
                with pytest.raises(trio.BrokenResourceError):
                    await ws.send_message(b"too late")
            await done.wait()
    run(scenario)
    assert seen["reply"] == ("close", 4040, "gone")


def test_a_dropped_connection_and_a_broken_rule_end_the_websocket():
    """EOF without a close frame is code 1006; a masked server frame is
    answered with a 1002 close and ends the connection."""
    seen: dict[str, Any] = {}
    done = trio.Event()

    async def handler(server: HandWrittenServer) -> None:
        await server.handshake()
        if b"broken" in server.request:
            await server.stream.send_all(server_frame(OPCODE_BINARY, b"x", masked=True))
            seen["reply"] = await server.next_event()
            done.set()

    async def scenario():
        async with hand_written_server(handler) as url:
            async with open_client(url) as ws:
                with pytest.raises(WebSocketClosed) as info:
                    await ws.receive()
                assert info.value.code == CLOSE_ABNORMAL
            async with open_websocket(url, headers=[("X-Case", "broken")],
                                      message_bytes_max=10, handshake_s_max=TIMEOUT_S) as ws:
                with pytest.raises(WebSocketClosed) as info:
                    await ws.receive()
                assert info.value.code == 1002
            await done.wait()
    run(scenario)
    assert seen["reply"][:2] == ("close", 1002)


def test_leaving_the_block_sends_a_normal_close():
    """Leaving open_websocket sends a 1000 close frame, then closes the socket."""
    seen: dict[str, Any] = {}
    done = trio.Event()

    async def handler(server: HandWrittenServer) -> None:
        await server.handshake()
        seen["close"] = await server.next_event()
        seen["after"] = await server.next_event()
        done.set()

    async def scenario():
        async with hand_written_server(handler) as url:
            async with open_client(url):
                pass
            await done.wait()
    run(scenario)
    assert seen == {"close": ("close", 1000, ""), "after": None}


def test_refused_and_silent_handshakes_raise_handshake_error():
    """A 403 answer is a HandshakeError with its status; a server that never
    answers is one once handshake_s_max has passed; a closed port is OSError."""
    async def handler(server: HandWrittenServer) -> None:
        if b"silent" in (await server.stream.receive_some(4096)):
            await trio.sleep_forever()
        await server.stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    async def scenario():
        async with hand_written_server(handler) as url:
            with pytest.raises(HandshakeError) as info:
                async with open_client(url):
                    pass
            assert info.value.status == 403
            with pytest.raises(HandshakeError, match="no WebSocket handshake within"):
                async with open_websocket(url, headers=[("X-Case", "silent")],
                                          message_bytes_max=10, handshake_s_max=0.2):
                    pass
        with pytest.raises(OSError):
            async with open_client(url):
                pass
    run(scenario)


# ----- Eddy's client over it, against a real SyncServer


async def break_connection(client: Client) -> None:
    """Sends a frame the server cannot parse: it answers FatalError and closes."""
    await client._ws.send_frame(client_frame(OPCODE_BINARY, b"\xc1"))


def test_a_connection_the_server_closes_is_reopened_with_subscriptions_and_no_mutation_twice(
        tmp_path):
    """After the server closes the connection (a bad frame), the client
    reconnects by itself: its subscription resumes, and mutations unanswered
    when it broke are re-sent and run once each (the session id is kept)."""
    count = 50

    async def scenario(node, base):
        async with connect(base.replace("ws://", "http://")) as client:
            async with client.subscribe("messages:list") as sub:
                assert await sub.next() == []
                results = [None] * count

                async def one(n: int) -> None:
                    results[n] = await client.mutation("messages:send", {"body": str(n)})

                async with trio.open_nursery() as nursery:
                    for n in range(count):
                        nursery.start_soon(one, n)
                    await trio.sleep(0)  # break the connection with mutations in flight
                    await break_connection(client)
                assert results == [str(n) for n in range(count)]
                while len(sub.value) < count:
                    await sub.next()
                assert sorted(sub.value, key=int) == [str(n) for n in range(count)]
            assert client.reconnect_count >= 1
            # The next Connect's lastCloseReason says why (PROTOCOL.md 3.1).
            assert client._last_close_reason.startswith(("FatalError", "closed with code 1008")), \
                client._last_close_reason
            assert len(await client.query("messages:list")) == count

    run_served(tmp_path, scenario)


def test_a_token_reaches_functions_and_is_kept_across_a_reconnect(tmp_path, file_app, rsa_key):
    """connect(token=...) authenticates; clear_auth and set_auth change the
    identity in order with calls; after the server closes the connection the
    reconnect burst authenticates again."""
    token = make_token(rsa_key, name="Ann")

    async def scenario(node, base):
        async with connect(base.replace("ws://", "http://"), token=token) as client:
            assert (await client.query("users:whoami"))["name"] == "Ann"
            await client.clear_auth()
            assert await client.query("users:whoami") is None
            await client.set_auth(token)
            assert (await client.mutation("users:whoami_mutation"))["name"] == "Ann"
            await break_connection(client)
            while client.reconnect_count == 0:
                await trio.sleep(0.01)
            assert (await client.action("users:whoami_action"))["name"] == "Ann"

    run_served(tmp_path, scenario)


def test_a_failing_batch_raises_its_first_failure_after_every_item_is_done(tmp_path):
    """client.mutations without return_exceptions raises the first failure,
    once every mutation of the batch has its answer (a later one's write is
    there when the error arrives)."""
    async def scenario(node, base):
        async with connect(base.replace("ws://", "http://")) as client:
            with pytest.raises(ClientError) as info:
                await client.mutations([("messages:refuse", {}), ("messages:send", {"body": "a"}),
                                        ("messages:refuse", {})])
            assert info.value.data == {"code": 7}
            assert await client.query("messages:list") == ["a"]

    run_served(tmp_path, scenario)


def test_errors_keep_their_data_and_code_attribute(tmp_path):
    """A failed mutation raises ClientError with the app's data, and `code`
    is the server's stable code when it names one (None for an AppError)."""
    async def scenario(node, base):
        async with connect(base.replace("ws://", "http://")) as client:
            with pytest.raises(ClientError) as info:
                await client.mutation("messages:refuse")
            assert info.value.has_data and info.value.code is None
            assert await client.action("messages:double", {"x": 2}) == 4

    run_served(tmp_path, scenario)


@pytest.mark.parametrize("message", [
    m.Mutation(3, "messages:send", [{"body": "x", "n": 2**40, "raw": b"\x00"}]),
    m.Action(4, "messages:double", [{"x": 1}]),
    m.MutationBatch([m.Mutation(5, "messages:send", [{"body": "y"}])]),
])
def test_the_client_frames_what_the_codec_encodes(message):
    """A client frame's payload is the codec's msgpack for the message (a
    Mutation's is written without the codec's dispatch), and the server
    decodes it back to the message."""
    reader = FrameReader(MESSAGE_BYTES_MAX)
    reader.receive_data(_frame(message))
    kind, payload = reader.next_event()
    assert kind == "bytes"
    assert payload == codecs.dump_msgpack_frame(codecs.encode_client_message(message, NATIVE_STYLE))
    assert codecs.decode_client_message(codecs.load_msgpack_frame(payload), NATIVE_STYLE) \
        == message


def test_a_failure_carries_the_code_the_server_names():
    """ClientError.code is the response's error code when it has one, and
    None when it has none."""
    client = Client("http://127.0.0.1:1")
    coded = client._request(m.Mutation(0, "messages:nope", [{}]))
    plain = client._request(m.Mutation(1, "messages:nope", [{}]))
    client._response(m.MutationResponse(0, False, "Could not find public function",
                                        None, [], error_code="FunctionNotFound"))
    client._response(m.MutationResponse(1, False, "Uncaught ValueError: boom", None, []))
    assert coded.outcome[0] == "error" and coded.outcome[1].code == "FunctionNotFound"
    assert coded.outcome[1].message == "Could not find public function"
    assert plain.outcome[1].code is None



def self_signed_context() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 127.0.0.1, and a client
    context that trusts only it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "cert.pem").write_bytes(certificate_pem)
        (Path(folder) / "key.pem").write_bytes(key_pem)
        server.load_cert_chain(Path(folder) / "cert.pem", Path(folder) / "key.pem")
    client = ssl.create_default_context(cadata=certificate_pem.decode())
    return server, client


def test_wss_goes_over_tls():
    """A wss:// URL opens TLS (the server's certificate checked against the
    given context) and frames go through the TLS stream both ways."""
    server_context, client_context = self_signed_context()
    seen: dict[str, Any] = {}
    done = trio.Event()

    async def handler(server: HandWrittenServer) -> None:
        server.stream = trio.SSLStream(server.stream, server_context, server_side=True)
        await server.handshake()
        await server.stream.send_all(server_frame(OPCODE_BINARY, b"over tls"))
        seen["echo"] = await server.next_event()
        done.set()

    async def scenario():
        async with hand_written_server(handler) as url:
            async with open_client(url.replace("ws://", "wss://"),
                                   ssl_context=client_context) as ws:
                assert await ws.receive() == b"over tls"
                await ws.send_message(b"back")
                await done.wait()
    run(scenario)
    assert seen["echo"] == ("bytes", b"back")


def test_a_server_certificate_not_trusted_is_a_handshake_error():
    """TLS that fails (here: a certificate the client's context does not
    trust) is a HandshakeError, not a connection to retry silently."""
    server_context, _ = self_signed_context()

    async def handler(server: HandWrittenServer) -> None:
        server.stream = trio.SSLStream(server.stream, server_context, server_side=True)
        with contextlib.suppress(trio.BrokenResourceError):
            await server.handshake()

    async def scenario():
        async with hand_written_server(handler) as url:
            with pytest.raises(HandshakeError, match="broke during the handshake"):
                async with open_client(url.replace("ws://", "wss://"),
                                       ssl_context=ssl.create_default_context()):
                    pass
    run(scenario)


def test_connect_fails_fast_when_nothing_answers_or_the_upgrade_is_refused():
    """connect() raises OSError for a closed port and HandshakeError (with
    the status) for a server that refuses the upgrade; it does not retry."""
    async def handler(server: HandWrittenServer) -> None:
        await server.stream.receive_some(4096)
        await server.stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    async def scenario():
        async with hand_written_server(handler) as url:
            http_url = url.replace("ws://", "http://").removesuffix("/api/sync")
            with pytest.raises(HandshakeError) as info:
                async with connect(http_url):
                    pass
            assert info.value.status == 404
        with pytest.raises(OSError):
            async with connect(http_url):
                pass
    run(scenario)


def test_fair_slots_hand_out_in_order_and_a_cancelled_wait_takes_nothing():
    """FairSlots: a free slot is taken at once; waiters get slots in the
    order they asked; a waiter cancelled while waiting takes none."""
    async def scenario():
        slots = FairSlots(1)
        assert slots.take_nowait() and slots.busy() and not slots.take_nowait()
        order: list[str] = []
        quitter = trio.CancelScope()

        async def waiter(name: str) -> None:
            await slots.take()
            order.append(name)
            slots.give()

        async def quit_waiting() -> None:
            with quitter:
                await slots.take()
                order.append("quitter")

        async with trio.open_nursery() as nursery:
            for task in (partial(waiter, "a"), quit_waiting, partial(waiter, "b")):
                nursery.start_soon(task)
                await trio.testing.wait_all_tasks_blocked()
            quitter.cancel()
            await trio.testing.wait_all_tasks_blocked()
            slots.give()
        assert order == ["a", "b"]
        assert slots.take_nowait() and not slots.take_nowait()  # the one slot, given back

    trio.run(scenario)
