"""The npm `ConvexClient` and `BaseConvexClient` (convex 1.48.0) over the sync
protocol: live updates between clients, errors, optimistic updates."""

from __future__ import annotations

import pytest

from tests.e2e.official.harness import requires_node, run_node
from tests.e2e.official.tap import FrameTap

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires_node]


def test_live_updates_between_two_clients(server):
    """Client A's subscription shows client B's mutations live, and ConvexError data reaches both mutations and queries."""
    result = run_node("live_updates.mjs", server, {"channel": "live"})
    assert result["initial"] == []
    final = result["updates"][-1]
    assert final == ["one", "two", "three", "LOUD"]
    # Every update extends the previous one: no write lost, none out of order.
    for earlier, later in zip(result["updates"], result["updates"][1:]):
        assert later[:len(earlier)] == earlier
    # (No bound on result["liveMs"]: the script's wait for the update fails
    # after 10 s, and a tighter timed assertion would only measure the machine.)
    # A's own mutation resolved only once its subscription showed it.
    assert "three" in result["afterOwn"]
    assert not result["listErrors"]
    assert result["failed"]["error"]["name"] == "ConvexError"
    assert result["failed"]["error"]["data"] == {"code": "Refused", "body": "refused",
                                                 "limit": {"$bigint": "3"}}
    assert "refused" not in final  # the failed mutation's write did not stay
    assert result["crashed"]["error"]["name"] == "Error"
    assert "boom" in result["crashed"]["error"]["message"]
    assert "data" not in result["crashed"]["error"]
    assert result["shouted"] == {"ok": True, "value": "LOUD"}
    assert result["oneShot"] == {"ok": True, "value": {"$bigint": "4"}}
    assert result["queryFailure"]["name"] == "ConvexError"
    assert result["queryFailure"]["data"] == {"code": "QueryRefused"}


def test_optimistic_update_rolled_back_when_mutation_fails(server):
    """An optimistic update shows at once, disappears when its mutation fails, and is replaced (not doubled) when one succeeds."""
    server.call("mutation", "messages:send", {"channel": "opt", "author": "seed", "body": "seed"})
    result = run_node("optimistic.mjs", server, {"channel": "opt"})
    seed_only = ["seed@server"]
    with_doomed = ["seed@server", "doomed@optimistic"]
    assert result["rightAfterFailingCall"] == with_doomed
    assert result["failed"]["ok"] is False
    assert result["failed"]["error"]["name"] == "ConvexError"
    assert result["failed"]["error"]["data"]["code"] == "Refused"
    assert result["afterFailure"] == seed_only
    # The local results the client reported, up to the failure: the list,
    # then the optimistic value, then the list again; never the failed write.
    sequence = result["sequence"][:result["failureMark"]]
    assert sequence[0] == seed_only
    assert with_doomed in sequence
    assert sequence[-1] == seed_only
    assert sequence.index(with_doomed) < len(sequence) - 1
    assert not any("doomed@server" in entry for entry in result["sequence"] if entry)
    # The succeeding mutation: optimistic first, then the server's row, once.
    assert result["rightAfterSendCall"] == ["seed@server", "kept@optimistic"]
    assert result["sent"]["ok"], result["sent"]
    assert result["afterSend"] == ["seed@server", "kept@server"]


def test_mutation_with_lost_response_is_applied_once(server):
    """A mutation whose response is lost to a dropped connection is re-sent on reconnect and applied exactly once."""
    cut_before = (lambda message: message.get("type") == "MutationResponse")
    with FrameTap(server.port, cut_before=cut_before) as tap:
        result = run_node("dedupe.mjs", server, {"channel": "once"}, tap=tap)
        assert tap.cut_count == 1
    assert result["sent"]["ok"], result["sent"]
    assert [m["body"] for m in result["final"]] == ["once"]
    assert result["final"][0]["id"] == result["sent"]["value"]
    assert result["connectionCount"] >= 2
