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
