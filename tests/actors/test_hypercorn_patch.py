"""The hypercorn fixes in wire/hypercorn_patch.py are installed and still fit hypercorn."""

import inspect

from hypercorn.trio import tcp_server

import wire.http  # noqa: F401  (installs the fixes)
from wire import hypercorn_patch


def test_fixes_are_installed():
    """protocol_send is ours once wire.http is imported."""
    assert tcp_server.TCPServer.protocol_send is hypercorn_patch.protocol_send


def test_replaced_code_is_what_the_fix_was_written_for():
    """If hypercorn's protocol_send changes, re-check the fix (and the pin) by hand."""
    source = inspect.getsource(hypercorn_patch._original_protocol_send)
    assert "cancel_scope.shield = True" in source
    assert "except (trio.BrokenResourceError, trio.ClosedResourceError):" in source


def test_take_over_fits_hypercorn():
    """If what fix 4 (taking a WebSocket out of hypercorn) relies on changes,
    re-check it by hand: the read loop it replaces, the trailing bytes of the
    upgrade request, a closed WSStream ignoring the app, and the handshake
    offering only the extensions it was asked for."""
    from hypercorn.protocol.h11 import H11WSConnection
    from hypercorn.protocol.ws_stream import Handshake, WSStream

    assert tcp_server.TCPServer._read_data is hypercorn_patch._read_data
    read_data = inspect.getsource(hypercorn_patch._original_read_data)
    assert "with trio.fail_after(self.config.read_timeout or inf):" in read_data
    assert "await self.protocol.handle(RawData(bytes(data)))" in read_data
    assert "self.buffer = bytearray(h11_connection.trailing_data[0])" in inspect.getsource(
        H11WSConnection.__init__)
    assert inspect.getsource(WSStream.app_send).count("if self.closed:") == 1
    assert "if self.extensions is not None:" in inspect.getsource(Handshake.accept)
