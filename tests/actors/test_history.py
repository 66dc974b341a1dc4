"""The history API (actors/history.py): time travel, re-runs, bisection,
verification, replay, compaction and bad input, against real data folders."""

from __future__ import annotations

import hashlib
import os
import random
import textwrap
from pathlib import Path

import pytest
import trio

from actors.history import open_history
from actors.node import open_node
from actors.replay import verify_catalog
from actors.storage import RocksStore, seal
from engine import values
from engine.commits import log_key, ts_key
from engine.errors import EddyError, ErrorCode

REPO = Path(__file__).resolve().parents[2]
LIVE_APP = REPO / "tests" / "fixtures" / "apps" / "live"
CHAT_APP = REPO / "examples" / "chat"

COUNTERS = '''
import random, time
from engine import mutation, query, v


@mutation(args={"name": v.string()})
async def add(ctx, name):
    return await ctx.db.insert("counters", {"name": name, "value": ctx.random.random(), "at": ctx.now})


@mutation(args={"names": v.array(v.string())})
async def add_many(ctx, names):
    for name in names:
        await ctx.db.insert("counters", {"name": name, "value": 0})


@mutation(args={"name": v.string()})
async def add_random(ctx, name):
    return await ctx.db.insert("counters", {"name": name, "value": random.random()})


@mutation(args={"name": v.string()})
async def add_clock(ctx, name):
    return await ctx.db.insert("counters", {"name": name, "value": time.time()})


@query(args={})
async def none_bad(ctx):
    return await ctx.db.query("counters").filter(lambda q: q.eq(q.field("name"), "bad")).first() is None


@query(args={})
async def count(ctx):
    return len(await ctx.db.query("counters").collect())
'''


def counters_app(tmp_path: Path, source: str = COUNTERS, name: str = "app") -> Path:
    app = tmp_path / name
    app.mkdir()
    (app / "counters.py").write_text(textwrap.dedent(source))
    return app


def run_node(app, data, fn):
    async def main():
        async with open_node(str(app), str(data)) as node:
            return await fn(node)
    return trio.run(main)


def folder_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


async def chat_workload(node, rng: random.Random, commit_count: int) -> None:
    """Random chat traffic: channels, sends, clears; some callers run concurrently."""
    channels = [await node.mutation("channels:create", {"name": f"c{i}"}) for i in range(3)]

    async def one(i: int) -> None:
        channel = rng.choice(channels)
        if rng.random() < 0.05:
            await node.mutation("messages:clear", {"channel": channel})
        else:
            await node.mutation("messages:send", {"channel": channel, "author": f"a{i % 4}",
                                                  "body": "x" * rng.randint(1, 40)})

    for start in range(0, commit_count, 8):
        async with trio.open_nursery() as nursery:
            for i in range(start, min(start + 8, commit_count)):
                nursery.start_soon(one, i)


# ----- time travel ---------------------------------------------------------------


def test_a_time_travel_query_returns_what_a_subscriber_was_sent(tmp_path):
    """query_at(ts) equals every value a live subscription was sent at ts, over a random workload."""
    rng = random.Random(5)
    queries = {0: ("messages:list", {"channel": "a"}), 1: ("messages:total", {"channel": "b"}),
               2: ("messages:latest", {"channel": "a", "count": 3})}
    seen: list[tuple[int, int, object]] = []

    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(q, path, args, None) for q, (path, args) in queries.items()])
        ids: list[str] = []

        async def watch():
            while True:
                update = await session.wait_update()
                for query_id, outcome in update.results.items():
                    seen.append((update.ts, query_id, outcome.value))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            for n in range(200):
                roll = rng.random()
                if ids and roll < 0.2:
                    await node.mutation("messages:edit", {"id": rng.choice(ids), "n": n})
                elif ids and roll < 0.3:
                    await node.mutation("messages:remove", {"id": ids.pop(rng.randrange(len(ids)))})
                else:
                    ids.append(await node.mutation("messages:send",
                                                   {"channel": rng.choice("ab"), "n": n}))
                if rng.random() < 0.3:
                    await trio.sleep(0)
            probe = node.subscriptions.open_session()
            probe.request_update(node.latest_ts)
            await probe.wait_update()
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    run_node(LIVE_APP, tmp_path / "data", fn)
    assert len(seen) > 100
    with open_history(LIVE_APP, tmp_path / "data") as history:
        for ts, query_id, value in seen:
            path, args = queries[query_id]
            assert history.query_at(path, args, ts) == value, (ts, query_id)


def test_history_reads_a_running_nodes_folder_and_follows_it(tmp_path):
    """A read-only History opens a folder a node holds, and a following one sees later commits."""
    app = counters_app(tmp_path)

    async def fn(node):
        await node.mutation("counters:add", {"name": "a"})
        # The history API runs functions with trio.run: from inside trio, in a thread.
        in_thread = trio.to_thread.run_sync
        with open_history(app, tmp_path / "data", follow=True) as history:
            assert await in_thread(history.query_at, "counters:count", {}, history.head_ts) == 1
            await node.mutation("counters:add", {"name": "b"})
            history.refresh()
            assert [c.args["name"] for c in history.commits()] == ["a", "b"]
            assert await in_thread(history.query_at, "counters:count", {}) == 2

    run_node(app, tmp_path / "data", fn)


# ----- re-running ------------------------------------------------------------------


def test_rerunning_every_commit_of_a_random_workload_reproduces_its_writes(tmp_path):
    """Every commit of a random chat workload re-runs to the same writes, byte for byte."""
    run_node(CHAT_APP, tmp_path / "data",
             lambda node: chat_workload(node, random.Random(11), 400))
    with open_history(CHAT_APP, tmp_path / "data") as history:
        commits = list(history.commits())
        assert len(commits) > 380  # a clear of an empty channel writes nothing: no commit
        for commit in commits:
            report = history.rerun(commit.ts)
            assert report.same, report.describe()
            assert report.logged_count == commit.write_count


def test_random_and_the_wall_clock_are_caught_by_rerun(tmp_path):
    """random.random() and time.time() in a mutation give a reported difference naming the write."""
    app = counters_app(tmp_path)

    async def fn(node):
        for path in ("counters:add", "counters:add_random", "counters:add_clock"):
            await node.mutation(path, {"name": path})
    run_node(app, tmp_path / "data", fn)
    with open_history(app, tmp_path / "data") as history:
        good, with_random, with_clock = (history.rerun(c.ts) for c in history.commits())
    assert good.same
    for report in (with_random, with_clock):
        assert not report.same and report.first_difference.position == 0
        assert report.first_difference.table == "counters"
        assert "value: logged" in report.describe() and "non-deterministic" in report.describe()


def test_rerun_with_other_code_shows_what_a_fix_would_write(tmp_path):
    """`rerun(ts, other_app_dir)` runs the other code: a fixed function matches, a missing one errors."""
    app = counters_app(tmp_path)
    run_node(app, tmp_path / "data", lambda node: node.mutation("counters:add", {"name": "x"}))
    changed = counters_app(tmp_path, COUNTERS.replace('"at": ctx.now', '"at": 0'), "changed")
    empty = counters_app(tmp_path, "from engine import query\n", "empty")
    with open_history(app, tmp_path / "data") as history:
        ts = history.head_ts
        report = history.rerun(ts, str(changed))
        assert not report.same and "at: logged" in report.describe()
        assert "other code" in report.describe()
        with pytest.raises(EddyError) as error:
            history.rerun(ts, str(empty))
        assert error.value.code is ErrorCode.FUNCTION_NOT_FOUND


# ----- bisect -----------------------------------------------------------------------


@pytest.mark.slow
def test_bisect_finds_a_planted_bad_commit_among_10000(tmp_path):
    """bisect names the one commit that broke the invariant among 10,000, in O(log n) evaluations."""
    app = counters_app(tmp_path)
    bad_at = 7_321

    async def fn(node):
        async def write(i: int) -> None:
            await node.mutation("counters:add_many",
                                {"names": ["bad" if i == bad_at else f"n{i}"]})
        # Callers in waves of 200: one group commit (one fsync) per wave, so
        # the 10,000 commits take seconds; `bad_at` lands alone in its wave's order.
        for start in range(0, 10_000, 200):
            async with trio.open_nursery() as nursery:
                for i in range(start, start + 200):
                    nursery.start_soon(write, i)
    run_node(app, tmp_path / "data", fn)
    with open_history(app, tmp_path / "data") as history:
        report = history.bisect("counters:none_bad")
    assert report.commit_count == 10_000
    assert report.first_bad.args == {"names": ["bad"]}
    assert report.evaluations <= 16 and not report.fails_at_start
    assert report.failure == "returned False"


def test_bisect_reports_a_check_that_holds_or_already_fails(tmp_path):
    """A check true at the head finds nothing; one false from the start says so."""
    app = counters_app(tmp_path)

    async def fn(node):
        await node.mutation("counters:add", {"name": "bad"})
        await node.mutation("counters:add", {"name": "ok"})
    run_node(app, tmp_path / "data", fn)
    with open_history(app, tmp_path / "data") as history:
        first = history.commit_timestamps()[0]
        assert history.bisect("counters:none_bad").first_bad.ts == first
        assert history.bisect("counters:count").first_bad is not None  # returns an int, not True
        with pytest.raises(EddyError) as error:
            history.bisect("counters:nope")
        assert error.value.code is ErrorCode.FUNCTION_NOT_FOUND


# ----- verify, replay, compact --------------------------------------------------------


def test_verify_reports_a_planted_mismatch_in_derived_state(tmp_path):
    """verify() is clean on a good folder and names each planted corruption of derived state."""
    run_node(CHAT_APP, tmp_path / "data", lambda node: chat_workload(node, random.Random(3), 60))
    with open_history(CHAT_APP, tmp_path / "data") as history:
        assert history.verify() == []
        shard = history.node().catalog.shard("messages")
        internal_id, versions = next((i, v) for i, v in shard.versions.items() if v[-1][1])
        ts, packed = versions[-1]
        document = values.unpack(packed)
        shard.versions[internal_id] = [*versions[:-1],
                                       (ts, values.pack({**document, "body": "tampered"}))]
        index = shard.indexes["by_channel"]
        lost = index.keys[0]
        index.keys.remove(lost)
        mismatches = [str(m) for m in history.verify()]
    assert any(internal_id.hex() in m and "versions differ" in m for m in mismatches)
    assert any("messages.by_channel" in m and "only in the rebuilt one" in m for m in mismatches)


def test_verify_a_running_nodes_derived_state(tmp_path):
    """verify_catalog on a live node agrees with its log, and catches a tampered live index."""
    async def fn(node):
        await chat_workload(node, random.Random(4), 30)
        clean = verify_catalog(node.catalog, node.store)
        shard = node.catalog.shard("channels")
        key = shard.indexes["by_name"].keys[0]
        life = shard.indexes["by_name"].life
        life[key] = life[key][:-1] + (1,)
        return clean, verify_catalog(node.catalog, node.store)
    clean, tampered = run_node(CHAT_APP, tmp_path / "data", fn)
    assert clean == []
    assert len(tampered) == 1 and "channels.by_name key" in str(tampered[0])


def test_verify_reports_a_log_entry_the_commit_record_does_not_name(tmp_path):
    """A log entry without a commit record (or the reverse) is a mismatch."""
    app = counters_app(tmp_path)
    run_node(app, tmp_path / "data", lambda node: node.mutation("counters:add", {"name": "a"}))
    with open_history(app, tmp_path / "data") as history:
        number = history.table_number("counters")
    store = RocksStore(str(tmp_path / "data"))
    store.write_nowait([("log", log_key(number, 5), b"\x90")], sync=True)
    store.close()
    with open_history(app, tmp_path / "data") as history:
        mismatches = [str(m) for m in history.verify()]
    assert any(f"log/{number}/5" in m and "no commit record" in m for m in mismatches)


def test_replay_into_rebuilds_the_state_as_of_a_ts(tmp_path):
    """replay_into(ts) gives a folder a node opens with exactly the state at ts."""
    run_node(CHAT_APP, tmp_path / "data", lambda node: chat_workload(node, random.Random(8), 40))
    with open_history(CHAT_APP, tmp_path / "data") as history:
        middle = history.commit_timestamps()[20]
        channels = history.query_at("channels:list", {}, middle)
        expected = {c["_id"]: history.query_at("messages:list", {"channel": c["_id"]}, middle)
                    for c in channels}
        report = history.replay_into(middle, str(tmp_path / "then"))
        with pytest.raises(EddyError):
            history.replay_into(middle, str(tmp_path / "then"))  # never overwrites
    assert report.commit_count == 21

    async def read(node):
        assert node.latest_ts == middle
        return {c["_id"]: await node.query("messages:list", {"channel": c["_id"]})
                for c in await node.query("channels:list")}
    assert run_node(CHAT_APP, tmp_path / "then", read) == expected


def test_compact_keeps_the_latest_state_and_refuses_older_reads(tmp_path):
    """After compact(R): reads at and after R are unchanged, reads before fail clearly, every record stays."""
    run_node(CHAT_APP, tmp_path / "data", lambda node: chat_workload(node, random.Random(9), 80))
    with open_history(CHAT_APP, tmp_path / "data") as history:
        timestamps = history.commit_timestamps()
        cut = timestamps[50]
        channels = history.query_at("channels:list", {})
        before = {ts: [history.query_at("messages:list", {"channel": c["_id"]}, ts) for c in channels]
                  for ts in (cut, timestamps[60], timestamps[-1])}
    with open_history(CHAT_APP, tmp_path / "data", writable=True) as history:
        report = history.compact(cut)
    assert report.versions_dropped > 0
    with open_history(CHAT_APP, tmp_path / "data") as history:
        assert history.commit_timestamps() == timestamps
        assert history.verify() == []
        for ts, lists in before.items():
            assert [history.query_at("messages:list", {"channel": c["_id"]}, ts)
                    for c in channels] == lists
        with pytest.raises(EddyError) as error:
            history.query_at("channels:list", {}, timestamps[10])
        assert error.value.code is ErrorCode.INVALID_TIMESTAMP and "retention" in error.value.message
        assert history.show(timestamps[10]).changes is None

    async def old_read(node):
        assert node.retained_since_ts == cut
        with pytest.raises(EddyError, match="retention"):
            await node.query("channels:list", at_ts=timestamps[10])
    run_node(CHAT_APP, tmp_path / "data", old_read)


# ----- bad input ------------------------------------------------------------------


def test_bad_input_gets_clear_errors(tmp_path):
    """Out-of-range ts, unknown commit, function, table or folder: each a clear EddyError."""
    app = counters_app(tmp_path)
    run_node(app, tmp_path / "data", lambda node: node.mutation("counters:add", {"name": "a"}))
    with open_history(app, tmp_path / "data") as history:
        head = history.head_ts
        for call, code in [
            (lambda: history.query_at("counters:count", {}, head + 1), ErrorCode.INVALID_TIMESTAMP),
            (lambda: history.diff(0, head + 1), ErrorCode.INVALID_TIMESTAMP),
            (lambda: history.query_at("counters:nope", {}, head), ErrorCode.FUNCTION_NOT_FOUND),
            (lambda: history.show(head - 1), ErrorCode.NOT_FOUND),
            (lambda: history.rerun(head + 1), ErrorCode.NOT_FOUND),
            (lambda: list(history.commits(table="nope")), ErrorCode.TABLE_NOT_FOUND),
            (lambda: list(history.commits(document_id="zzz")), ErrorCode.INVALID_ID),
        ]:
            with pytest.raises(EddyError) as error:
                call()
            assert error.value.code is code
    with pytest.raises(EddyError) as error:
        open_history(app, tmp_path / "missing")
    assert error.value.code is ErrorCode.NOT_FOUND and not (tmp_path / "missing").exists()
    with pytest.raises(EddyError) as error:
        open_history(app, tmp_path)  # a folder, but not a data folder
    assert error.value.code is ErrorCode.BAD_REQUEST and "not an Eddy data folder" in error.value.message


def test_a_corrupt_record_is_reported_by_key(tmp_path):
    """A commit record that fails its checksum, or does not parse, is CORRUPT_RECORD naming its key."""
    app = counters_app(tmp_path)

    async def fn(node):
        await node.mutation("counters:add", {"name": "a"})
        await node.mutation("counters:add", {"name": "b"})
        return node.latest_ts
    head = run_node(app, tmp_path / "data", fn)
    store = RocksStore(str(tmp_path / "data"))
    store._cfs["commits"][ts_key(head)] = b"\0\0\0\0garbage"  # a wrong checksum
    store.close()
    with pytest.raises(EddyError) as error:
        with open_history(app, tmp_path / "data") as history:  # the head record is read at open
            list(history.commits())
    assert error.value.code is ErrorCode.CORRUPT_RECORD and ts_key(head).hex() in error.value.message
    store = RocksStore(str(tmp_path / "data"))
    store._cfs["commits"][ts_key(head)] = seal("commits", ts_key(head), b"\xc1")  # sealed, not msgpack
    store.close()
    with open_history(app, tmp_path / "data") as history:
        with pytest.raises(EddyError) as error:
            history.commit(head)
        assert error.value.code is ErrorCode.CORRUPT_RECORD and "does not parse" in error.value.message


def test_read_only_operations_leave_the_folder_byte_identical(tmp_path):
    """log, show, diff, query_at, rerun, bisect, verify and replay_into change no byte of the folder."""
    run_node(CHAT_APP, tmp_path / "data", lambda node: chat_workload(node, random.Random(2), 30))
    data = tmp_path / "data"
    digest = folder_digest(data)
    with open_history(CHAT_APP, data) as history:
        timestamps = history.commit_timestamps()
        list(history.commits())
        history.show(timestamps[5])
        history.diff(timestamps[1], timestamps[-1])
        history.query_at("channels:list", {}, timestamps[3])
        history.rerun(timestamps[7])
        history.bisect("channels:list")
        assert history.verify() == []
        history.replay_into(timestamps[9], str(tmp_path / "copy"))
    assert folder_digest(data) == digest
    assert os.listdir(tmp_path / "copy")
