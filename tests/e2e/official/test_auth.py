"""JWT auth with the official clients: a valid, an expired and a forged token
(RS256 keys made here; the app trusts them through auth_config.py and a JWKS
file, docs/auth.md)."""

from __future__ import annotations

import pytest

from tests.e2e.official.harness import requires_node, run_node, run_python
from tests.e2e.official.tokens import ISSUER, SUBJECT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The storm test guards a crash seen before wire/hypercorn_patch.py: a
# client's Close frame crossing the server's close after an AuthError made
# hypercorn raise trio.BusyResourceError and end the whole `eddy dev` process.
IDENTITY = {"subject": SUBJECT, "issuer": ISSUER, "tokenIdentifier": f"{ISSUER}|{SUBJECT}",
            "name": "Ada Lovelace"}


@requires_node
def test_npm_clients_valid_expired_and_forged_tokens(auth_server):
    """With setAuth a valid token gives the identity everywhere; an expired or forged one ends in onChange(false) and a null identity."""
    server, tokens = auth_server
    result = run_node("auth.mjs", server, {"tokens": tokens.as_params(), "subject": SUBJECT},
                      timeout_s=90)
    valid = result["valid"]
    assert valid["changes"] == [True]
    assert IDENTITY in valid["who"]
    assert valid["mutation"] == {"ok": True, "value": IDENTITY}
    assert valid["action"] == {"ok": True, "value": IDENTITY}
    assert valid["afterClear"] is None and valid["final"] is None
    for name in ("expired", "forged"):
        outcome = result[name]
        assert outcome["changes"] == [False], name
        assert outcome["final"] is None, name
        assert IDENTITY not in outcome["who"], name
        assert outcome["mutation"] == {"ok": True, "value": None}, name
    assert result["http"]["valid"] == {"ok": True, "value": IDENTITY}
    for name in ("expired", "forged"):
        assert not result["http"][name]["ok"], name
        assert "Unauthenticated" in result["http"][name]["error"]["message"], name


def test_pypi_client_set_auth_and_clear_auth(auth_server):
    """The PyPI ConvexClient's set_auth gives functions the identity, and clear_auth takes it away, also from a live subscription."""
    server, tokens = auth_server
    result = run_python("pypi_client.py", server,
                        {"scenario": "auth", "tokens": tokens.as_params()})
    assert result["anonymous"] == {"ok": True, "value": None}
    assert result["query"] == {"ok": True, "value": IDENTITY}
    assert result["mutation"] == {"ok": True, "value": IDENTITY}
    assert result["action"] == {"ok": True, "value": IDENTITY}
    assert result["subscribed"] == IDENTITY
    assert result["after_clear_values"][-1] is None
    assert result["after_clear"] == {"ok": True, "value": None}


def test_legacy_http_client_bearer_tokens(auth_server):
    """The legacy ConvexHttpClient's set_auth sends a Bearer token: valid gives the identity, forged is refused."""
    server, tokens = auth_server
    result = run_python("pypi_client.py", server,
                        {"scenario": "http", "channel": "a", "tokens": tokens.as_params()})
    assert result["auth_valid"] == {"ok": True, "value": IDENTITY}
    assert not result["auth_forged"]["ok"]
    assert "Unauthenticated" in result["auth_forged"]["error"]["message"]
    assert result["auth_cleared"] == {"ok": True, "value": None}


@requires_node
def test_server_survives_many_refused_tokens_at_once(auth_server):
    """Twenty clients refused with AuthError at the same moment all end unauthenticated, and the server keeps serving."""
    server, tokens = auth_server
    result = run_node("auth_storm.mjs", server, {"token": tokens.forged, "clients": 20},
                      timeout_s=90)
    assert all(changes == [False] for changes in result["outcomes"])
    assert result["alive"]["ok"], result["alive"]
    assert server.process.poll() is None, server.stderr()[-3000:]
