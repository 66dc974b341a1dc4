"""The npm `ConvexHttpClient` (convex 1.48.0) against `eddy dev`'s HTTP API."""

from __future__ import annotations

import pytest

from tests.e2e.official.harness import requires_node, run_node

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires_node]


def test_http_client_calls_errors_and_bad_args(server):
    """ConvexHttpClient runs queries, mutations and actions, and surfaces ConvexError data, plain errors and bad arguments."""
    result = run_node("http_client.mjs", server, {"channel": "h1"})
    assert result["sent"]["ok"], result["sent"]
    message_id = result["sent"]["value"]
    assert [m["_id"] for m in result["listed"]["value"]] == [message_id]
    assert result["shouted"] == {"ok": True, "value": "HEY"}
    assert [m["body"] for m in result["listedAfter"]["value"]] == ["hello", "HEY"]
    # AppError -> ConvexError with `.data`; a Python int arrives as int64 (a BigInt).
    assert result["failed"]["error"]["name"] == "ConvexError"
    assert result["failed"]["error"]["data"] == {"code": "Refused", "body": "nope",
                                                 "limit": {"$bigint": "3"}}
    assert result["thrown"]["isConvexError"] and result["thrown"]["data"]["body"] == "again"
    # A failed mutation writes nothing: two messages, not three.
    assert result["count"] == {"ok": True, "value": {"$bigint": "2"}}
    assert result["crashed"]["error"] == {"name": "Error", "message": "Uncaught ValueError: boom"}
    assert result["badArgs"]["error"]["name"] == "Error"
    assert "body" in result["badArgs"]["error"]["message"]
    assert "messages:nowhere" in result["unknown"]["error"]["message"]
