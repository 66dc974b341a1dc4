"""The sync protocol over real WebSockets: hypercorn on a loopback port serving
wire/http.make_app on a real node, and trio-websocket as a raw client sending
JSON frames exactly as the npm client does. Live queries come from the
node's own SubscriptionActors (actors/subscriptions.py; one unless a test
asks for more, actors/subscription_pool.py).
"""

from __future__ import annotations

import contextlib
import json
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, open_websocket_url

from actors.node import open_node
from wire import codecs, session
from wire.http import make_app
from wire.sync import sync_message_bytes_max

APP = '''
from engine import AppError, action, internal_query, mutation, query, v


@internal_query(args={})
async def hidden(ctx):
    return "hidden"


@query(args={})
async def huge(ctx):
    count = len(await ctx.db.query("messages").collect())
    return "x" * 4_000_000 + str(count)


@query(args={})
async def list(ctx):
    return [doc["body"] for doc in await ctx.db.query("messages").collect()]


@query(args={"n": v.number()})
async def echo(ctx, n):
    return n


@query(args={})
async def write_in_query(ctx):
    await ctx.db.insert("messages", {"body": "from a query"})


@mutation(args={"body": v.string()})
async def send(ctx, body):
    await ctx.db.insert("messages", {"body": body})
    return body


@mutation(args={})
async def refuse(ctx):
    raise AppError({"code": 7})


@action(args={"x": v.number()})
async def double(ctx, x):
    return x * 2
'''

TIMEOUT_S = 20


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **server_options: Any):
    """A node on the test app behind hypercorn on a free loopback port; yields
    (node, ws base). `server_options` go to open_node (subscription_actors)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "messages.py").write_text(textwrap.dedent(APP))
    async with open_node(str(app_dir), str(tmp_path / "data"), **server_options) as node:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.websocket_max_message_size = sync_message_bytes_max + 4096
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, make_app(lambda: node), config))
            yield node, binds[0].replace("http://", "ws://")
            nursery.cancel_scope.cancel()


class RawClient:
    """A WebSocket speaking JSON frames like npm, with version bookkeeping checks."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.version = {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}
        self.query_set = 0

    async def send(self, obj: dict) -> None:
        await self.ws.send_message(json.dumps(obj))

    async def receive(self) -> dict:
        with trio.fail_after(TIMEOUT_S):
            message = json.loads(await self.ws.get_message())
        if message["type"] == "Transition":
            # The check npm makes (PROTOCOL.md 3.2): start equals our version.
            assert message["startVersion"] == self.version, (message, self.version)
            self.version = message["endVersion"]
        return message

    async def receive_type(self, kind: str) -> dict:
        while True:
            message = await self.receive()
            if message["type"] == kind:
                return message
            assert message["type"] in ("Transition", "Ping"), message

    async def connect(self, session_id: str = "s-1", **fields: Any) -> None:
        await self.send({"type": "Connect", "sessionId": session_id, "connectionCount": 0,
                         "lastCloseReason": "InitialConnect", "clientTs": 0, **fields})

    async def modify(self, *modifications: dict) -> dict:
        """Sends a ModifyQuerySet and returns the Transition that reflects it."""
        base = self.query_set
        self.query_set += 1
        await self.send({"type": "ModifyQuerySet", "baseVersion": base,
                         "newVersion": self.query_set, "modifications": list(modifications)})
        while True:
            message = await self.receive_type("Transition")
            if message["endVersion"]["querySet"] == self.query_set:
                return message

    async def wait_for_value(self, query_id: int, predicate) -> Any:
        while True:
            message = await self.receive_type("Transition")
            for item in message["modifications"]:
                if item.get("queryId") == query_id and item["type"] == "QueryUpdated" \
                        and predicate(item["value"]):
                    return item["value"]


def add(query_id: int, path: str, args: dict | None = None) -> dict:
    return {"type": "Add", "queryId": query_id, "udfPath": path, "args": [args or {}]}


@contextlib.asynccontextmanager
async def raw_client(base: str, path: str = "/api/1.48.0/sync", **options: Any):
    async with open_websocket_url(base + path, **options) as ws:
        yield RawClient(ws)


def run(tmp_path: Path, scenario, **server_options: Any) -> Any:
    async def main():
        async with serving(tmp_path, **server_options) as (node, base):
            with trio.fail_after(60):
                return await scenario(node, base)
    return trio.run(main)


def test_subscribe_mutate_and_versions_like_npm(tmp_path):
    """Connect, ModifyQuerySet, Mutation: Transitions chain from {0,0,0}, the
    MutationResponse precedes a Transition at or after its ts showing the write."""
    async def scenario(node, base):
        async with raw_client(base) as client:
            await client.connect()
            first = await client.modify(add(0, "messages:list"))
            assert first["startVersion"] == {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}
            assert first["modifications"] == [{"type": "QueryUpdated", "queryId": 0, "value": [],
                                               "logLines": [], "journal": None}]
            assert isinstance(first["serverTs"], int)
            await client.send({"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                               "args": [{"body": "hi"}]})
            response = await client.receive_type("MutationResponse")
            assert response["success"] and response["result"] == "hi"
            assert response["logLines"] == []
            mutation_ts = codecs.decode_ts(response["ts"])
            value = await client.wait_for_value(0, lambda v: v == ["hi"])
            assert codecs.decode_ts(client.version["ts"]) >= mutation_ts
            return value
    assert run(tmp_path, scenario) == ["hi"]


@pytest.mark.parametrize("actors", [1, 2])
def test_live_update_between_two_sockets(tmp_path, actors):
    """A mutation on one socket shows up in another socket's subscription
    (with two subscription actors, the sockets' sessions are on different ones)."""
    async def scenario(node, base):
        async with raw_client(base) as watcher, raw_client(base, "/api/sync") as writer:
            await watcher.connect("watcher")
            await watcher.modify(add(0, "messages:list"))
            await writer.connect("writer")
            await writer.send({"type": "Mutation", "requestId": 0, "udfPath": "messages.js:send",
                               "args": [{"body": "live"}]})
            assert (await writer.receive_type("MutationResponse"))["success"]
            return await watcher.wait_for_value(0, lambda v: v == ["live"])
    assert run(tmp_path, scenario, subscription_actors=actors) == ["live"]


def test_sockets_spread_over_two_subscription_actors_all_see_every_write(tmp_path):
    """With two subscription actors, four sockets' sessions go two to each;
    every socket's mutation shows up in every socket's subscription, each
    writer's Transitions reach its own MutationResponse's ts, and versions
    chain as npm checks (RawClient.receive)."""
    async def until(client, view, done):
        # Applies Transitions to the client's view of its queries until `done(view)`.
        while not done(view):
            for item in (await client.receive_type("Transition"))["modifications"]:
                if item["type"] == "QueryUpdated":
                    view[item["queryId"]] = item["value"]

    async def scenario(node, base):
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(raw_client(base)) for _ in range(4)]
            views = []
            for n, client in enumerate(clients):
                await client.connect(f"s-{n}")
                first = await client.modify(add(0, "messages:list"), add(1, "messages:echo", {"n": n}))
                views.append({m["queryId"]: m["value"] for m in first["modifications"]})
                assert views[n] == {0: [], 1: n}
            held = [actor.statistics().session_count for actor in node.subscriptions.actors]
            bodies = [f"from {n}" for n in range(4)]
            for n, client in enumerate(clients):
                await client.send({"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                                   "args": [{"body": bodies[n]}]})
                response = await client.receive_type("MutationResponse")
                assert response["success"]
                await until(client, views[n], lambda view, body=bodies[n]: body in view[0])
                assert codecs.decode_ts(client.version["ts"]) >= codecs.decode_ts(response["ts"])
            for n, client in enumerate(clients):
                await until(client, views[n], lambda view: sorted(view[0]) == bodies)
            return held, node.subscriptions.statistics()
    held, statistics = run(tmp_path, scenario, subscription_actors=2)
    assert held == [2, 2]
    assert statistics.session_count == 4
    # messages:list is one subscription per actor; each echo is its own.
    assert statistics.subscription_count == 2 + 4


def test_errors_queries_actions_and_python_numbers(tmp_path):
    """ConvexError data on a failed mutation, a failing query, an action, and
    ids sent as 1.0 the way the Python client does."""
    async def scenario(node, base):
        async with raw_client(base, "/api/sync",
                              extra_headers=[("Convex-Client", "python-0.8.1")]) as client:
            await client.connect()
            transition = await client.modify(add(0, "messages:echo", {"n": 2.0}),
                                             add(1, "messages:nope"))
            echo, missing = transition["modifications"]
            assert echo["value"] == 2.0 and missing["type"] == "QueryFailed"
            assert "errorData" not in missing
            # A live query's writes are refused as over HTTP, not an AttributeError.
            (writes,) = (await client.modify(add(2, "messages:write_in_query")))["modifications"]
            assert writes["type"] == "QueryFailed", writes
            assert "read-only" in writes["errorMessage"], writes
            assert "AttributeError" not in writes["errorMessage"]
            await client.send({"type": "Mutation", "requestId": 1.0, "udfPath": "messages:refuse",
                               "args": [{}]})
            refused = await client.receive_type("MutationResponse")
            assert not refused["success"] and refused["errorData"] == {"code": {"$integer": "BwAAAAAAAAA="}}
            assert refused["ts"] is None
            await client.receive_type("Transition")  # the Python client waits for one
            await client.send({"type": "Action", "requestId": 2, "udfPath": "messages:double",
                               "args": [{"x": 4}]})
            action = await client.receive_type("ActionResponse")
            assert action["success"] and action["result"] == 8.0
    run(tmp_path, scenario)


def test_reconnect_with_same_session_does_not_repeat_a_mutation(tmp_path):
    """npm re-sends an answered mutation on a new socket with the same
    (sessionId, requestId): the same result and ts come back and it ran once."""
    async def scenario(node, base):
        async with raw_client(base) as client:
            await client.connect("npm-session")
            await client.send({"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                               "args": [{"body": "once"}]})
            first = await client.receive_type("MutationResponse")
        async with raw_client(base) as client:
            await client.connect("npm-session", connectionCount=1,
                                 maxObservedTimestamp=first["ts"])
            await client.modify(add(0, "messages:list"))
            await client.send({"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                               "args": [{"body": "once"}]})
            again = await client.receive_type("MutationResponse")
        assert again == first
        return await node.query("messages:list")
    assert run(tmp_path, scenario) == ["once"]


async def expect_fatal_then_close(client: RawClient, words: str) -> None:
    message = await client.receive_type("FatalError")
    assert words in message["error"], message
    with pytest.raises(ConnectionClosed):
        with trio.fail_after(TIMEOUT_S):
            await client.ws.get_message()


@pytest.mark.parametrize("frame, words", [
    ("{not json", "not valid JSON"),
    ('{"type": "Teleport"}', "Unknown message type"),
    ('{"type": "ModifyQuerySet", "baseVersion": 5, "newVersion": 6, "modifications": []}',
     "BaseVersionMismatch"),
    ('{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
     '"modifications": [{"type": "Remove", "queryId": 9}]}', "QueryIdNotFound"),
])
def test_a_misbehaving_socket_does_not_disturb_another(tmp_path, frame, words):
    """A bad frame gets FatalError and a close; a second socket keeps getting live updates."""
    async def scenario(node, base):
        async with raw_client(base) as good, raw_client(base) as bad:
            await good.connect("good")
            await good.modify(add(0, "messages:list"))
            await bad.connect("bad")
            await bad.ws.send_message(frame)
            await expect_fatal_then_close(bad, words)
            await node.mutation("messages:send", {"body": "still here"})
            return await good.wait_for_value(0, lambda v: v == ["still here"])
    assert run(tmp_path, scenario) == ["still here"]


def test_duplicate_add_and_oversize_message(tmp_path):
    """A duplicate Add and an oversize frame each get FatalError and a close."""
    async def scenario(node, base):
        async with raw_client(base) as client:
            await client.connect()
            await client.modify(add(0, "messages:list"))
            await client.send({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2,
                               "modifications": [add(0, "messages:list")]})
            await expect_fatal_then_close(client, "DuplicateQueryId")
        async with raw_client(base, max_message_size=2**26) as client:
            await client.connect()
            await client.ws.send_message(json.dumps(
                {"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
                 "args": [{"body": "x" * (sync_message_bytes_max + 1)}]}))
            await expect_fatal_then_close(client, "MessageTooLarge")
    run(tmp_path, scenario)


def test_max_observed_timestamp_ahead_of_the_node_is_refused(tmp_path):
    """A client that saw a later ts than the node has is closed with a reason."""
    async def scenario(node, base):
        async with raw_client(base) as client:
            ahead = codecs.encode_ts(node.latest_ts + 10**12)
            await client.connect(maxObservedTimestamp=ahead)
            with pytest.raises(ConnectionClosed) as info:
                with trio.fail_after(TIMEOUT_S):
                    await client.ws.get_message()
            assert "InvalidMaxObservedTimestamp" in (info.value.reason.reason or "")
    run(tmp_path, scenario)


def test_ping_after_silence(tmp_path, monkeypatch):
    """A silent session gets a JSON Ping once the ping interval passes."""
    monkeypatch.setattr(session, "ping_interval_ms", 200)

    async def scenario(node, base):
        async with raw_client(base) as client:
            await client.connect()
            return await client.receive()
    assert run(tmp_path, scenario) == {"type": "Ping"}


@pytest.mark.slow
def test_ten_thousand_subscriptions_from_one_client(tmp_path):
    """One ModifyQuerySet adding 10,000 queries is answered with all of them,
    and another socket is served meanwhile."""
    count = 10_000

    async def scenario(node, base):
        async with raw_client(base, max_message_size=2**26) as many, raw_client(base) as other:
            await many.connect("many")
            transition = await many.modify(*[add(i, "messages:echo", {"n": i})
                                             for i in range(count)])
            values = {item["queryId"]: item["value"] for item in transition["modifications"]}
            await other.connect("other")
            await other.modify(add(0, "messages:list"))
            return len(values), values[count - 1]
    assert run(tmp_path, scenario) == (count, float(count - 1))


def test_admin_key_lets_live_queries_be_internal(tmp_path):
    """An Admin Authenticate makes internal queries subscribable on that socket only."""
    async def scenario(node, base):
        async with raw_client(base) as admin, raw_client(base) as outsider:
            await admin.connect("admin")
            await admin.send({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin",
                              "value": node.admin_key})
            transition = await admin.receive_type("Transition")
            assert transition["endVersion"]["identity"] == 1
            allowed = await admin.modify(add(0, "messages:hidden"))
            await outsider.connect("outsider")
            refused = await outsider.modify(add(0, "messages:hidden"))
            return allowed["modifications"][0], refused["modifications"][0]
    allowed, refused = run(tmp_path, scenario)
    assert allowed["type"] == "QueryUpdated" and allowed["value"] == "hidden"
    assert refused["type"] == "QueryFailed"


def test_token_expiring_mid_session_ends_it_with_auth_error(tmp_path, monkeypatch):
    """A user token that expires while connected gets AuthError{authUpdateAttempted: false}, then close."""
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    import actors.auth
    import wire.sync
    monkeypatch.setattr(actors.auth, "clock_skew_ms_max", 0)
    monkeypatch.setattr(wire.sync, "expiry_check_delay_ms", 0)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k", alg="RS256", use="sig")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "keys.json").write_text(json.dumps({"keys": [jwk]}))
    (app_dir / "auth_config.py").write_text(
        "providers = [{'type': 'custom_jwt', 'issuer': 'https://issuer.test', "
        "'application_id': 'app', 'jwks': 'file:keys.json', 'algorithm': 'RS256'}]\n")
    now = time.time()
    token = jwt.encode({"iss": "https://issuer.test", "sub": "u", "aud": "app", "iat": int(now),
                        "exp": int(now) + 2}, key, algorithm="RS256", headers={"kid": "k"})

    async def scenario(node, base):
        async with raw_client(base) as client:
            await client.connect()
            await client.send({"type": "Authenticate", "baseVersion": 0, "tokenType": "User",
                               "value": token})
            accepted = await client.receive_type("Transition")
            error = await client.receive_type("AuthError")
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.receive()
            return accepted["endVersion"]["identity"], error
    identity_version, error = run(tmp_path, scenario)
    assert identity_version == 1
    assert error["authUpdateAttempted"] is False and error["baseVersion"] == 1


def test_a_client_that_stops_reading_is_closed_and_others_carry_on(tmp_path, monkeypatch):
    """A socket that does not drain is closed as ClientTooSlow; another keeps being served."""
    import wire.http
    from wire.sync import SyncServer
    monkeypatch.setattr(wire.http, "SyncServer", partial(SyncServer, send_stall_s=1.0))

    async def scenario(node, base):
        async with raw_client(base, max_message_size=64 * 2**20, disconnect_timeout=2) as sleeper, \
                raw_client(base) as writer:
            await sleeper.connect("sleeper")
            await sleeper.modify(add(0, "messages:huge"))
            await writer.connect("writer")
            for i in range(12):  # each change is a 4 MB Transition the sleeper never reads
                await writer.send({"type": "Mutation", "requestId": i, "udfPath": "messages:send",
                                   "args": [{"body": str(i)}]})
                assert (await writer.receive_type("MutationResponse"))["success"]
            await trio.sleep(2.5)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await sleeper.ws.get_message()
            await writer.send({"type": "Mutation", "requestId": 99, "udfPath": "messages:send",
                               "args": [{"body": "after"}]})
            still_served = (await writer.receive_type("MutationResponse"))["success"]
            return closed.value.reason, still_served
    reason, still_served = run(tmp_path, scenario)
    # A client that reads nothing cannot be sent a close frame either: it sees
    # the connection drop (1006), or the 1013 ClientTooSlow frame if it drained.
    assert reason.code == 1006 or (reason.code == 1013 and "ClientTooSlow" in reason.reason)
    assert still_served


def test_a_mutation_resent_after_a_restart_is_not_run_twice(tmp_path):
    """(sessionId, requestId) is logged with the commit: a re-send to a restarted node gets the
    original result and ts, and the write is there once."""
    async def send_once(base):
        async with raw_client(base) as client:
            await client.connect("same-session")
            await client.send({"type": "Mutation", "requestId": 7, "udfPath": "messages:send",
                               "args": [{"body": "once"}]})
            return await client.receive_type("MutationResponse")

    async def main():
        async with serving(tmp_path) as (node, base):
            first = await send_once(base)
        async with serving(tmp_path) as (node, base):
            again = await send_once(base)
            listed = await node.query("messages:list")
        return first, again, listed
    first, again, listed = trio.run(main)
    assert first["success"] and again["success"]
    assert again["ts"] == first["ts"] and again["result"] == first["result"]
    assert listed == ["once"]
