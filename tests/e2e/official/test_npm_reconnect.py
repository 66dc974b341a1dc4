"""The npm ConvexClient across a `kill -9` and restart of the server."""

from __future__ import annotations

import pytest

from tests.e2e.official.harness import requires_node, run_node_interactive

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires_node]


def test_subscription_survives_kill_9_and_restart(server):
    """A subscribed ConvexClient reconnects after kill -9 and a restart on the same port, sends the mutation queued meanwhile, and sees later mutations."""
    server.call("mutation", "messages:send", {"channel": "r", "author": "seed", "body": "seed"})
    port = server.port

    def kill() -> str:
        server.kill()
        return "killed"

    def restart() -> str:
        server.start()
        assert server.port == port
        return "restarted"

    result = run_node_interactive("reconnect.mjs", server, {"channel": "r"},
                                  {"subscribed": kill, "queued": restart}, timeout_s=90)
    assert result["queuedResult"]["ok"], result["queuedResult"]
    assert result["fromB"]["ok"] and result["fromA"]["ok"]
    # The mutation queued while the server was down is applied exactly once.
    assert result["final"] == ["seed", "while-down", "after-restart", "a-after-restart"]
    assert result["after"]["isWebSocketConnected"]
    assert result["after"]["connectionCount"] >= 2
    assert not result["errors"]
