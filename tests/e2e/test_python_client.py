"""Eddy's Python client (wire/client.py) against a real `eddy dev` process:
calls, live subscriptions, mutation batches, errors, and reconnecting after
the server is killed with SIGKILL and restarted."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.e2e import server as server_module
from tests.e2e.conftest import write_app
from tests.e2e.server import EddyServer
from wire import connect
from wire.client import ClientError

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APP = '''
from engine import AppError, action, mutation, query, v


@query(args={})
async def list(ctx):
    return [doc["body"] for doc in await ctx.db.query("messages").collect()]


@query(args={})
async def count(ctx):
    return len(await ctx.db.query("messages").collect())


@mutation(args={"body": v.string()})
async def send(ctx, body):
    await ctx.db.insert("messages", {"body": body})
    return body


@mutation(args={"n": v.int64()})
async def numbered(ctx, n):
    await ctx.db.insert("messages", {"body": str(n)})
    return n


@mutation(args={})
async def refuse(ctx):
    raise AppError({"code": 7, "raw": b"\\x01"})


@action(args={"x": v.int64()})
async def double(ctx, x):
    return x * 2
'''

TIMEOUT_S = 30


@pytest.fixture
def server(tmp_path: Path):
    app_dir = write_app(tmp_path / "app", {"messages.py": APP})
    eddy = EddyServer(app_dir, tmp_path / "data", tmp_path / "logs")
    eddy.start()
    yield eddy
    eddy.kill()


def run(scenario) -> object:
    async def main():
        with trio.fail_after(TIMEOUT_S * 2):
            return await scenario()
    return trio.run(main)


def test_query_mutation_action_and_live_subscription(server):
    """query/mutation/action work with native values, a subscription sees a
    mutation from another client, and an AppError arrives with its data."""
    async def scenario():
        async with connect(server.url) as reader, connect(server.url) as writer:
            assert await reader.query("messages:list") == []
            assert await writer.action("messages:double", {"x": 21}) == 42
            async with reader.subscribe("messages:list") as sub:
                assert await sub.next() == []
                assert await writer.mutation("messages:send", {"body": "hi"}) == "hi"
                with trio.fail_after(TIMEOUT_S):
                    assert await sub.next() == ["hi"]
            with pytest.raises(ClientError) as info:
                await writer.mutation("messages:refuse")
            assert info.value.has_data and info.value.data == {"code": 7, "raw": b"\x01"}
            with pytest.raises(ClientError) as info:
                await writer.query("messages:missing")
            assert not info.value.has_data
    run(scenario)


def test_refused_calls_carry_eddys_stable_code(server):
    """A call Eddy refuses raises ClientError with the stable code HTTP gives;
    the app's own AppError and a crash in app code have none."""
    async def scenario():
        async with connect(server.url) as client:
            with pytest.raises(ClientError) as info:
                await client.mutation("messages:nope", {})
            assert info.value.code == "FunctionNotFound", info.value
            with pytest.raises(ClientError) as info:
                await client.mutation("messages:send", {"body": 5})
            assert info.value.code == "ArgumentValidationError", info.value
            with pytest.raises(ClientError) as info:
                await client.action("messages:double", {"x": "two"})
            assert info.value.code == "ArgumentValidationError", info.value
            with pytest.raises(ClientError) as info:
                await client.mutation("messages:refuse")
            assert info.value.code is None and info.value.has_data
            # The connection carries on.
            assert await client.mutation("messages:send", {"body": "after"}) == "after"
    run(scenario)


def test_own_mutation_is_visible_when_it_resolves(server):
    """Once a mutation resolves, the client's own subscription already shows it."""
    async def scenario():
        async with connect(server.url) as client:
            async with client.subscribe("messages:count") as sub:
                await sub.next()
                for expected in range(1, 6):
                    await client.mutation("messages:send", {"body": str(expected)})
                    assert sub.value == expected
    run(scenario)


def test_mutation_batch_returns_results_in_order(server):
    """client.mutations sends many mutations in one frame; results keep order."""
    count = 500

    async def scenario():
        async with connect(server.url) as client:
            results = await client.mutations([("messages:numbered", {"n": n})
                                              for n in range(count)])
            failures = await client.mutations([("messages:refuse", {}),
                                               ("messages:numbered", {"n": -1})],
                                              return_exceptions=True)
            return results, failures, await client.query("messages:count")
    results, failures, total = run(scenario)
    assert results == list(range(count))
    assert isinstance(failures[0], ClientError) and failures[1] == -1
    assert total == count + 1


def test_more_concurrent_mutations_than_the_server_queues_all_succeed(server):
    """1,500 concurrent mutations on one connection (the server queues 1,000) all
    complete: the client holds back rather than overflowing the queue."""
    count = 1500

    async def scenario():
        async with connect(server.url) as client:
            results = [None] * count

            async def one(n):
                results[n] = await client.mutation("messages:numbered", {"n": n})
            async with trio.open_nursery() as nursery:
                for n in range(count):
                    nursery.start_soon(one, n)
            return results, client.reconnect_count, await client.query("messages:count")
    results, reconnects, total = run(scenario)
    assert results == list(range(count))
    assert reconnects == 0 and total == count


def test_reconnect_after_kill_restores_subscriptions(server, monkeypatch):
    """After kill -9 and a restart on the same port, the client reconnects by
    itself, its subscription resumes with the acknowledged data, and calls work."""
    async def scenario():
        async with connect(server.url) as client:
            async with client.subscribe("messages:list") as sub:
                assert await sub.next() == []
                await client.mutation("messages:send", {"body": "before"})
                assert await sub.next() == ["before"]
                port = server.port
                await trio.to_thread.run_sync(server.kill)
                monkeypatch.setattr(server_module, "free_port", lambda: port)
                await trio.to_thread.run_sync(server.start)
                with trio.fail_after(TIMEOUT_S):
                    assert await client.mutation("messages:send", {"body": "after"}) == "after"
                    while sub.value != ["before", "after"]:
                        await sub.next()
            assert client.reconnect_count >= 1
    run(scenario)
