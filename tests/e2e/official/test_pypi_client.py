"""The PyPI `convex` 0.8.1 client: `ConvexClient` over WebSocket (/api/sync)
and the legacy `convex.http_client.ConvexHttpClient`."""

from __future__ import annotations

import pytest

from tests.e2e.official.harness import run_python, run_python_interactive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

pytest.importorskip("convex", reason="needs PyPI convex==0.8.1 (`make e2e-deps`)")


def test_legacy_http_client(server):
    """The legacy ConvexHttpClient runs query, mutation and action and raises ConvexError with data."""
    result = run_python("pypi_client.py", server, {"scenario": "http", "channel": "l1"})
    assert result["sent"]["ok"], result["sent"]
    assert [m["body"] for m in result["listed"]["value"]] == ["hello"]
    assert result["shouted"] == {"ok": True, "value": "HEY"}
    assert result["failed"]["error"]["name"] == "ConvexError"
    assert result["failed"]["error"]["data"]["code"] == "Refused"
    assert result["crashed"]["error"]["name"] == "ConvexExecutionError"
    assert "boom" in result["crashed"]["error"]["message"]
    assert result["unknown"]["error"]["name"] == "ConvexExecutionError"
    # The legacy client decodes `$integer` into a ConvexInt64 (shown by its repr).
    assert result["count"]["ok"]


def test_websocket_client_calls_and_errors(server):
    """ConvexClient runs query, mutation and action over /api/sync and raises ConvexError with data."""
    result = run_python("pypi_client.py", server, {"scenario": "websocket", "channel": "p1"})
    assert result["sent"]["ok"], result["sent"]
    assert [m["body"] for m in result["listed"]["value"]] == ["hello"]
    assert result["default_path"]["ok"], result["default_path"]
    assert result["shouted"] == {"ok": True, "value": "HEY"}
    assert [m["body"] for m in result["listed_after"]["value"]] == ["hello", "HEY"]
    assert result["failed"]["error"]["name"] == "ConvexError"
    assert result["failed"]["error"]["data"] == {"code": "Refused", "body": "no",
                                                 "limit": {"$int64": 3}}
    assert not result["crashed"]["ok"] and "boom" in result["crashed"]["error"]["message"]
    assert "data" not in result["crashed"]["error"]
    assert not result["bad_args"]["ok"] and "body" in result["bad_args"]["error"]["message"]
    assert result["query_failed"]["error"]["name"] == "ConvexError"
    assert result["query_failed"]["error"]["data"] == {"code": "QueryRefused"}
    assert result["count"] == {"ok": True, "value": {"$int64": 2}}


def test_websocket_subscription_sees_other_clients_writes(server):
    """A subscription iterated with the PyPI client yields each state while another client mutates, ending with every write."""
    writes = 5
    result = run_python("pypi_client.py", server,
                        {"scenario": "subscribe", "channel": "s1", "writes": writes})
    updates = result["updates"]
    assert updates[0] == []
    assert updates[-1] == [f"w{i}" for i in range(writes)]
    # Each update is a prefix-extension of the previous one: no write lost or reordered.
    for earlier, later in zip(updates, updates[1:]):
        assert later[:len(earlier)] == earlier
    assert not result["writer_errors"]


def test_websocket_subscription_survives_kill_9_and_restart(server):
    """A PyPI client's subscription carries on after kill -9 and a restart on the same port, and shows later writes."""
    server.call("mutation", "messages:send", {"channel": "pr", "author": "seed", "body": "seed"})

    def kill() -> str:
        server.kill()
        return "killed"

    def restart() -> str:
        server.start()
        return "restarted"

    result = run_python_interactive("pypi_client.py", server,
                                    {"scenario": "reconnect", "channel": "pr"},
                                    {"subscribed": kill, "down": restart})
    assert result["from_other"]["ok"] and result["own"]["ok"]
    assert result["updates"][-1] == ["seed", "after-restart", "own"]
    # The client re-subscribed on a new socket after the restart.
    sockets = {message["socket"] for message in result["messages"]
               if message.get("type") == "Connect"}
    assert len(sockets) >= 2
