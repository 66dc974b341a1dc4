"""JWT authentication (actors/auth.py, actors/jwks.py) and its HTTP wiring.

Keys are generated here with `cryptography`; tokens are signed with PyJWT.
Most tests drive an `AuthConfig` directly with a hand-moved clock; the ones
that need a node open it on a fresh folder, and the HTTP ones call the ASGI
app in-process. JWKS URLs are served by a tiny `http.server` on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.server
import json
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from actors.app import AppLoadError, load_app
from actors.auth import (clock_skew_ms_max, identity_from_claims,
                         identity_from_impersonation, load_auth_config)
from actors.node import open_node
from engine.errors import EddyError, ErrorCode
from wire.http import make_app

ISSUER = "https://auth.example.test"
AUDIENCE = "eddy-app"

USERS = '''
from engine import action, internal_query, mutation, query


@query
async def whoami(ctx):
    return await ctx.auth.get_user_identity()


@mutation
async def whoami_mutation(ctx):
    return await ctx.auth.get_user_identity()


@action
async def whoami_action(ctx):
    return await ctx.auth.get_user_identity()


@internal_query
async def secret(ctx):
    return "hidden"
'''


# Keys, tokens and clocks.

@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "RS256"
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "ES256"
    jwk.update(kid=kid, use="sig")
    return jwk


def make_token(key: Any, kid: str | None = "key-1", *, algorithm: str = "RS256",
               lifetime_s: float = 600, now_s: float | None = None, **claims: Any) -> str:
    now_s = time.time() if now_s is None else now_s
    payload = {"iss": ISSUER, "sub": "user-1", "aud": AUDIENCE,
               "iat": int(now_s), "exp": int(now_s + lifetime_s), **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


class ManualClock:
    """A World clock the test moves by hand."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def now_ns(self) -> int:
        return int(self.now_s * 1e9)


def write_app(app_dir: Path, providers: str, jwks: dict | None = None) -> Path:
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "users.py").write_text(textwrap.dedent(USERS))
    (app_dir / "auth_config.py").write_text(f"providers = {providers}\n")
    if jwks is not None:
        (app_dir / "keys.json").write_text(json.dumps(jwks))
    return app_dir


def custom_jwt(jwks: str = "file:keys.json", algorithm: str = "RS256", **fields: Any) -> str:
    provider = {"type": "custom_jwt", "issuer": ISSUER, "application_id": AUDIENCE,
                "jwks": jwks, "algorithm": algorithm, **fields}
    return repr([provider])


@pytest.fixture
def file_app(tmp_path: Path, rsa_key) -> Path:
    return write_app(tmp_path / "app", custom_jwt(), {"keys": [public_jwk(rsa_key, "key-1")]})


def expect_refused(config: Any, token: Any, reason: str) -> EddyError:
    with pytest.raises(EddyError) as info:
        config.verify(token)
    assert info.value.code is ErrorCode.UNAUTHENTICATED
    assert info.value.details["reason"] == reason, info.value
    assert info.value.message
    return info.value


# A JWKS server on 127.0.0.1.

class JwksServer:
    """Serves `documents` (path -> JSON) and counts requests per path."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                document = server.documents.get(self.path)
                body = json.dumps(document).encode()
                self.send_response(200 if document is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server():
    server = JwksServer()
    yield server
    server.close()


# Verifying tokens.

def test_valid_token_gives_convex_identity(file_app, rsa_key):
    """A valid token yields Convex's UserIdentity in snake_case: token_identifier
    is iss|sub, OIDC claims renamed, custom claims kept, registered claims left out."""
    config = load_auth_config(file_app)
    token = make_token(rsa_key, name="Ann Lee", email="ann@example.test", email_verified=True,
                       picture="https://img.test/ann.png", locale="en", role="admin",
                       properties={"team": "blue"})
    identity = config.verify(token)
    assert identity == {
        "token_identifier": f"{ISSUER}|user-1", "subject": "user-1", "issuer": ISSUER,
        "name": "Ann Lee", "email": "ann@example.test", "email_verified": True,
        "picture_url": "https://img.test/ann.png", "language": "en",
        "role": "admin", "properties.team": "blue",
    }


def test_identity_from_claims_maps_every_standard_claim():
    """Each OIDC standard claim gets Convex's field name, and numbers become floats."""
    claims = {"iss": "i", "sub": "s", "given_name": "A", "family_name": "L", "nickname": "al",
              "preferred_username": "ann", "profile": "p", "website": "w", "gender": "g",
              "birthdate": "2000-01-01", "zoneinfo": "Europe/Paris", "phone_number": "+1",
              "phone_number_verified": False, "address": {"country": "FR"}, "updated_at": 17,
              "token_identifier": "forged"}
    identity = identity_from_claims(claims)
    assert identity == {
        "token_identifier": "i|s", "subject": "s", "issuer": "i", "given_name": "A",
        "family_name": "L", "nickname": "al", "preferred_username": "ann", "profile_url": "p",
        "website_url": "w", "gender": "g", "birthday": "2000-01-01", "timezone": "Europe/Paris",
        "phone_number": "+1", "phone_number_verified": False, "address": {"country": "FR"},
        "updated_at": 17.0,
    }


def test_verified_token_keeps_its_expiry(file_app, rsa_key):
    """verify_token keeps exp (in ms) so a session can notice mid-session expiry."""
    clock = ManualClock(1_000_000.0)
    config = load_auth_config(file_app, clock=clock)
    verified = config.verify_token(make_token(rsa_key, now_s=clock.now_s, lifetime_s=60))
    assert verified.expires_at_ms == (1_000_000 + 60) * 1000
    assert not config.is_expired(verified.expires_at_ms)
    clock.now_s += 60 + clock_skew_ms_max / 1000
    assert config.is_expired(verified.expires_at_ms)


def test_expired_token_is_refused(file_app, rsa_key):
    """A token past its exp (beyond the clock-skew leeway) is refused as expired."""
    config = load_auth_config(file_app)
    error = expect_refused(config, make_token(rsa_key, now_s=time.time() - 3600), "expired")
    assert "expired" in error.message


def test_expiry_follows_the_world_clock_with_leeway(file_app, rsa_key):
    """Expiry is judged by the injected clock: valid within the leeway, refused after."""
    clock = ManualClock(2_000_000.0)
    config = load_auth_config(file_app, clock=clock)
    token = make_token(rsa_key, now_s=clock.now_s, lifetime_s=10)
    clock.now_s += 10 + clock_skew_ms_max / 1000 - 0.5
    assert config.verify(token)["subject"] == "user-1"
    clock.now_s += 1
    expect_refused(config, token, "expired")


def test_token_not_yet_valid_is_refused(file_app, rsa_key):
    """A token whose nbf lies beyond the leeway in the future is refused."""
    clock = ManualClock(3_000_000.0)
    config = load_auth_config(file_app, clock=clock)
    expect_refused(config, make_token(rsa_key, now_s=clock.now_s, nbf=int(clock.now_s) + 60),
                   "not_yet_valid")


def test_forged_token_is_refused(file_app, other_rsa_key):
    """A token signed by another key under the trusted kid fails the signature check."""
    config = load_auth_config(file_app)
    expect_refused(config, make_token(other_rsa_key), "bad_signature")


def test_altered_token_is_refused(file_app, rsa_key):
    """Changing the payload of a signed token breaks its signature."""
    header, _, signature = make_token(rsa_key).split(".")
    claims = {"iss": ISSUER, "sub": "admin", "aud": AUDIENCE, "exp": int(time.time()) + 600}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    expect_refused(load_auth_config(file_app), f"{header}.{payload}.{signature}", "bad_signature")


def test_wrong_issuer_is_refused(file_app, rsa_key):
    """A token from an issuer no provider names is refused, naming the trusted ones."""
    error = expect_refused(load_auth_config(file_app),
                           make_token(rsa_key, iss="https://evil.test"), "unknown_issuer")
    assert ISSUER in error.message


def test_wrong_audience_is_refused(file_app, rsa_key):
    """A token for another application id is refused."""
    expect_refused(load_auth_config(file_app), make_token(rsa_key, aud="other-app"),
                   "wrong_audience")


def test_audience_list_containing_the_application_id_is_accepted(file_app, rsa_key):
    """`aud` may be a list; it must contain the application id."""
    token = make_token(rsa_key, aud=["other", AUDIENCE])
    assert load_auth_config(file_app).verify(token)["subject"] == "user-1"


@pytest.mark.parametrize("token", [
    "", "not-a-jwt", "a.b.c", "e30.e30.", 12345, None, "x" * 70_000,
], ids=["empty", "one-part", "garbage", "empty-header", "int", "none", "huge"])
def test_malformed_token_is_refused(file_app, token):
    """Anything that is not a compact JWT is refused as malformed."""
    expect_refused(load_auth_config(file_app), token, "malformed")


@pytest.mark.parametrize("missing", ["sub", "exp", "iss"])
def test_token_missing_a_required_claim_is_refused(file_app, rsa_key, missing):
    """iss, sub and exp are required, as Convex requires them."""
    error = expect_refused(load_auth_config(file_app), make_token(rsa_key, **{missing: None}),
                           "malformed")
    assert missing in error.message


@pytest.mark.parametrize("kid", [["key-1"], {"k": 1}, 7])
def test_token_with_a_non_string_kid_is_refused(file_app, rsa_key, kid):
    """A kid header that is not a string is malformed, not a server error."""
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    signature = make_token(rsa_key).split(".")[2]
    claims = {"iss": ISSUER, "sub": "u", "aud": AUDIENCE, "exp": int(time.time()) + 600}
    token = f"{part({'alg': 'RS256', 'kid': kid})}.{part(claims)}.{signature}"
    expect_refused(load_auth_config(file_app), token, "malformed")


def test_unsigned_and_hmac_tokens_are_refused(file_app, rsa_key):
    """alg none and HMAC tokens (even keyed with the public key) never pass."""
    config = load_auth_config(file_app)
    unsigned = make_token(None, algorithm="none")
    expect_refused(config, unsigned, "bad_algorithm")
    public_pem = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())
    hmac_token = make_token(public_pem.encode() * 2, algorithm="HS256")
    expect_refused(config, hmac_token, "bad_algorithm")


def test_unknown_kid_is_refused(file_app, rsa_key):
    """A kid the JWKS does not hold is refused with unknown_key."""
    expect_refused(load_auth_config(file_app), make_token(rsa_key, kid="key-9"), "unknown_key")


def test_es256_provider(tmp_path):
    """An ES256 custom_jwt provider verifies ES256 tokens and refuses RS256 ones."""
    key = ec.generate_private_key(ec.SECP256R1())
    app = write_app(tmp_path / "app", custom_jwt(algorithm="ES256"),
                    {"keys": [public_jwk(key, "ec-1")]})
    config = load_auth_config(app)
    assert config.verify(make_token(key, "ec-1", algorithm="ES256"))["subject"] == "user-1"
    rsa_token = make_token(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                           "ec-1")
    expect_refused(config, rsa_token, "bad_algorithm")


def test_inline_jwks_and_token_without_kid(tmp_path, rsa_key):
    """A JWKS given inline as a dict works, and a token with no kid tries its keys."""
    inline = repr({"keys": [public_jwk(rsa_key, "key-1")]})
    app = write_app(tmp_path / "app", custom_jwt(jwks="JWKS").replace("'JWKS'", inline))
    assert load_auth_config(app).verify(make_token(rsa_key, kid=None))["subject"] == "user-1"


# Key sets from URLs.

def test_jwks_url_is_fetched_cached_and_refreshed_on_unknown_kid(tmp_path, jwks_server,
                                                                 rsa_key, other_rsa_key):
    """A URL JWKS is fetched on first use, then cached; a new kid reloads it, at
    most once per refresh interval."""
    jwks_server.documents["/jwks.json"] = {"keys": [public_jwk(rsa_key, "key-1")]}
    app = write_app(tmp_path / "app", custom_jwt(jwks=f"{jwks_server.url}/jwks.json"))
    clock = ManualClock(time.time())
    config = load_auth_config(app, clock=clock, refresh_interval_ms_min=10_000)
    assert jwks_server.hits == {}
    assert config.verify(make_token(rsa_key, now_s=clock.now_s))["subject"] == "user-1"
    assert config.verify(make_token(rsa_key, now_s=clock.now_s))["subject"] == "user-1"
    assert jwks_server.hits == {"/jwks.json": 1}

    # The provider rotates to a new key.
    jwks_server.documents["/jwks.json"] = {"keys": [public_jwk(other_rsa_key, "key-2")]}
    rotated = make_token(other_rsa_key, "key-2", now_s=clock.now_s)
    expect_refused(config, rotated, "unknown_key")  # Within the interval: no refetch.
    assert jwks_server.hits == {"/jwks.json": 1}
    clock.now_s += 11
    assert config.verify(rotated)["subject"] == "user-1"
    assert jwks_server.hits == {"/jwks.json": 2}


def test_verify_async_fetches_in_a_worker_thread(tmp_path, jwks_server, rsa_key):
    """verify_async fetches a URL JWKS off the trio loop and returns the identity."""
    jwks_server.documents["/keys"] = {"keys": [public_jwk(rsa_key, "key-1")]}
    app = write_app(tmp_path / "app", custom_jwt(jwks=f"{jwks_server.url}/keys"))
    config = load_auth_config(app)
    identity = trio.run(config.verify_async, make_token(rsa_key))
    assert identity["token_identifier"] == f"{ISSUER}|user-1"


def test_oidc_provider_discovers_its_jwks(tmp_path, jwks_server, rsa_key):
    """An OIDC provider (domain + application_id) finds its keys through
    /.well-known/openid-configuration -> jwks_uri."""
    jwks_server.documents["/.well-known/openid-configuration"] = {
        "issuer": jwks_server.url, "jwks_uri": f"{jwks_server.url}/oidc/jwks"}
    jwks_server.documents["/oidc/jwks"] = {"keys": [public_jwk(rsa_key, "key-1")]}
    providers = repr([{"domain": jwks_server.url, "application_id": AUDIENCE}])
    config = load_auth_config(write_app(tmp_path / "app", providers))
    identity = config.verify(make_token(rsa_key, iss=jwks_server.url))
    assert identity["token_identifier"] == f"{jwks_server.url}|user-1"
    assert jwks_server.hits == {"/.well-known/openid-configuration": 1, "/oidc/jwks": 1}


def test_unreachable_jwks_url_gives_a_clear_error(tmp_path, rsa_key):
    """A JWKS URL that does not answer makes verification fail naming the URL."""
    server = JwksServer()
    url = f"{server.url}/jwks.json"
    server.close()  # Nothing listens on that port any more.
    config = load_auth_config(write_app(tmp_path / "app", custom_jwt(jwks=url)))
    error = expect_refused(config, make_token(rsa_key), "jwks_unavailable")
    assert url in error.message


# Loading auth_config.py.

@pytest.mark.parametrize("providers, message", [
    ("{'domain': 'x'}", "must define `providers = [...]`"),
    ("[{'domain': 'https://a.test'}]", "application_id"),
    ("[{'domain': 'https://a.test', 'applicationID': 'x'}]", "unknown field 'applicationID'"),
    ("[{'type': 'customJwt', 'issuer': 'i'}]", "type must be one of"),
    ("[{'type': 'custom_jwt', 'issuer': 'i', 'algorithm': 'RS256'}]", "needs `jwks`"),
    ("[{'type': 'custom_jwt', 'issuer': 'i', 'jwks': 'file:keys.json'}]", "needs `algorithm`"),
    ("[{'type': 'custom_jwt', 'issuer': 'i', 'jwks': 'file:keys.json', 'algorithm': 'HS256'}]",
     "algorithm must be one of"),
    ("[{'type': 'custom_jwt', 'issuer': 'i', 'jwks': 'file:nope.json', 'algorithm': 'RS256'}]",
     "Could not load the JWKS"),
    ("[{'type': 'custom_jwt', 'issuer': 'i', 'jwks': 'keys.json', 'algorithm': 'RS256'}]",
     '"file:<path>"'),
    ("1 / 0", "ZeroDivisionError"),
])
def test_bad_auth_config_fails_to_load(tmp_path, providers, message):
    """A broken auth_config.py is an AppLoadError that says what is wrong."""
    app = write_app(tmp_path / "app", providers, {"keys": []})
    with pytest.raises(AppLoadError) as info:
        load_auth_config(app)
    assert message in str(info.value)
    assert info.value.file.endswith("auth_config.py")


def test_app_without_auth_config_refuses_every_token(tmp_path, rsa_key):
    """No auth_config.py: load_auth_config gives None and the node's auth refuses tokens."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "users.py").write_text(textwrap.dedent(USERS))
    assert load_auth_config(app) is None

    async def main():
        async with open_node(str(app), str(tmp_path / "data")) as node:
            expect_refused(node.auth, make_token(rsa_key), "no_providers")
            return await node.query("users:whoami")
    assert trio.run(main) is None


# Identities inside functions.

def test_identity_reaches_queries_mutations_and_actions(file_app, tmp_path, rsa_key):
    """ctx.auth.get_user_identity() returns the verified identity in every kind of
    function, and None without one."""
    async def main():
        async with open_node(str(file_app), str(tmp_path / "data")) as node:
            identity = await node.auth.verify_async(make_token(rsa_key, name="Ann"))
            seen = [await node.call(kind, f"users:{name}", identity=identity)
                    for kind, name in [("query", "whoami"), ("mutation", "whoami_mutation"),
                                       ("action", "whoami_action")]]
            anonymous = await node.query("users:whoami")
            return [result.value for result in seen], anonymous
    seen, anonymous = trio.run(main)
    for value in seen:
        assert value["token_identifier"] == f"{ISSUER}|user-1"
        assert value["name"] == "Ann"
    assert anonymous is None


def test_reload_picks_up_a_new_auth_config(tmp_path, rsa_key):
    """node.reload loads auth_config.py again: a provider added later is trusted."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "users.py").write_text(textwrap.dedent(USERS))

    async def main():
        async with open_node(str(app), str(tmp_path / "data")) as node:
            expect_refused(node.auth, make_token(rsa_key), "no_providers")
            write_app(app, custom_jwt(), {"keys": [public_jwk(rsa_key, "key-1")]})
            node.reload(load_app(app))
            return node.auth.verify(make_token(rsa_key))["subject"]
    assert trio.run(main) == "user-1"


# Admin impersonation.

def test_impersonation_maps_camel_case_attributes():
    """UserIdentityAttributes (camelCase) become our snake_case identity; custom
    claims stay; tokenIdentifier defaults to issuer|subject."""
    identity = identity_from_impersonation({
        "subject": "u1", "issuer": "https://i.test", "givenName": "Ann",
        "pictureUrl": "https://p.test", "emailVerified": True, "phoneNumber": "+1",
        "updatedAt": "2024-01-01", "team": "blue"})
    assert identity == {
        "token_identifier": "https://i.test|u1", "subject": "u1", "issuer": "https://i.test",
        "given_name": "Ann", "picture_url": "https://p.test", "email_verified": True,
        "phone_number": "+1", "updated_at": "2024-01-01", "team": "blue"}
    assert identity_from_impersonation({"tokenIdentifier": "x|y"})["token_identifier"] == "x|y"


@pytest.mark.parametrize("attributes", [None, [], "u1", {"subject": "u1"}, {"tokenIdentifier": 3}])
def test_impersonation_needs_an_identifier(attributes):
    """An impersonated identity without tokenIdentifier or issuer+subject is refused."""
    with pytest.raises(EddyError) as info:
        identity_from_impersonation(attributes)
    assert info.value.code is ErrorCode.UNAUTHENTICATED


# The HTTP API.

async def http_call(node: Any, path: str, authorization: str | None,
                    kind: str = "query") -> tuple[int, dict[str, Any]]:
    """POSTs /api/<kind> to the ASGI app in-process; returns (status, JSON body)."""
    headers = [(b"content-type", b"application/json")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": f"/api/{kind}",
             "raw_path": f"/api/{kind}".encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 3210)}
    body = json.dumps({"path": path, "args": {}, "format": "json"}).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await make_app(lambda: node)(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_http_bearer_tokens(file_app, tmp_path, rsa_key, other_rsa_key):
    """Over HTTP a valid Bearer token reaches ctx.auth; an expired, forged or
    malformed one gets 401 Unauthenticated; no header means no identity."""
    async def main():
        async with open_node(str(file_app), str(tmp_path / "data")) as node:
            good = make_token(rsa_key, email="ann@example.test")
            results = {
                "good": await http_call(node, "users:whoami", f"Bearer {good}"),
                "mutation": await http_call(node, "users:whoami_mutation", f"Bearer {good}",
                                            kind="mutation"),
                "expired": await http_call(node, "users:whoami", "Bearer " + make_token(
                    rsa_key, now_s=time.time() - 3600)),
                "forged": await http_call(node, "users:whoami",
                                          f"Bearer {make_token(other_rsa_key)}"),
                "malformed": await http_call(node, "users:whoami", "Bearer nonsense"),
                "none": await http_call(node, "users:whoami", None),
                "internal": await http_call(node, "users:secret", f"Bearer {good}"),
            }
            return results
    results = trio.run(main)
    for name in ("good", "mutation"):
        status, body = results[name]
        assert status == 200 and body["status"] == "success", body
        assert body["value"]["token_identifier"] == f"{ISSUER}|user-1"
        assert body["value"]["email"] == "ann@example.test"
    for name in ("expired", "forged", "malformed"):
        status, body = results[name]
        assert status == 401, body
        assert body["code"] == "Unauthenticated" and body["message"]
    assert "expired" in results["expired"][1]["message"]
    assert results["none"][0] == 200 and results["none"][1]["value"] is None
    status, body = results["internal"]  # A user token never grants admin.
    assert status == 200 and body["status"] == "error"


def test_http_admin_impersonation(file_app, tmp_path):
    """`Convex <admin key>:<base64 JSON identity>` acts as that user, as the admin."""
    attributes = {"subject": "u9", "issuer": "https://i.test", "name": "Imp"}
    encoded = base64.b64encode(json.dumps(attributes).encode()).decode()

    async def main():
        async with open_node(str(file_app), str(tmp_path / "data")) as node:
            auth = f"Convex {node.admin_key}:{encoded}"
            return (await http_call(node, "users:whoami", auth),
                    await http_call(node, "users:secret", auth),
                    await http_call(node, "users:whoami", f"Convex {node.admin_key}"))
    acting, secret, plain_admin = trio.run(main)
    assert acting[1]["value"] == {"token_identifier": "https://i.test|u9", "subject": "u9",
                                  "issuer": "https://i.test", "name": "Imp"}
    assert secret[1]["value"] == "hidden"
    assert plain_admin[1]["value"] is None
