"""Log entries with and without index key parts (engine/commits.py
`LOG_ENTRY_VERSION`, logged for batch inserts): a data folder written
before key parts were logged still opens, verifies and takes new commits;
damaged entries and key parts that disagree with their documents are
caught."""

from __future__ import annotations

from pathlib import Path

import textwrap

import msgpack
import pytest
import trio

from actors.history import open_history
from actors.node import open_node
from actors.storage import RocksStore, seal
from engine.commits import parse_log_columns
from engine.errors import EddyError, ErrorCode

REPO = Path(__file__).resolve().parents[2]
LIVE_APP = REPO / "tests" / "fixtures" / "apps" / "live"

# The live-query fixture app, with a batch insert (what logs key parts).
BATCH = """
from engine import mutation, v


@mutation(args={"channel": v.string(), "start": v.int64(), "count": v.int64()})
async def send_many(ctx, channel, start, count):
    return [await ctx.db.insert("messages", {"channel": channel, "n": start + n})
            for n in range(count)]
"""


@pytest.fixture
def app(tmp_path) -> Path:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for name in ("schema.py", "messages.py"):
        (app_dir / name).write_text((LIVE_APP / name).read_text())
    (app_dir / "batch.py").write_text(textwrap.dedent(BATCH))
    return app_dir


async def _workload(node, start: int) -> list:
    """Batch and single inserts, edits and removals in two channels; returns
    the message ids."""
    ids = []
    for n in range(3):
        ids += await node.mutation("batch:send_many", {"channel": f"c{n % 2}",
                                                       "start": start + 10 * n, "count": 10})
    ids += [await node.mutation("messages:send", {"channel": f"c{n % 2}", "n": start + n})
            for n in range(30, 36)]
    for message_id in ids[::5]:
        await node.mutation("messages:edit", {"id": message_id, "n": -start})
    for message_id in ids[1::7]:
        await node.mutation("messages:remove", {"id": message_id})
    await node.mutation("messages:flag", {"name": f"f{start}"})
    return ids


async def _reads(node) -> dict:
    return {channel: (await node.query("messages:list", {"channel": channel}),
                      await node.query("messages:latest", {"channel": channel, "count": 5}))
            for channel in ("c0", "c1")} | {"flags": await node.query("messages:flag_count")}


def _run(app: Path, data: Path, fn):
    async def main():
        async with open_node(str(app), str(data)) as node:
            return await fn(node)
    return trio.run(main)


def _rewrite_log(data: Path, rewrite) -> int:
    """Replaces each log entry's payload with `rewrite(key, payload)`; returns
    how many entries carried key parts before."""
    store = RocksStore(str(data))
    with_parts = 0
    try:
        for key, payload in list(store.scan("log")):
            with_parts += parse_log_columns(payload)[3] is not None
            store._cfs["log"][key] = seal("log", key, rewrite(key, payload))
    finally:
        store.close()
    return with_parts


def _as_written_before_key_parts(key: bytes, payload: bytes) -> bytes:
    """The entry exactly as commit_ops wrote it before key parts: msgpack
    (use_bin_type) of the list of (internal id, packed document) pairs."""
    internal_ids, packed_documents, _, _ = parse_log_columns(payload)
    return msgpack.packb(list(zip(internal_ids, packed_documents)), use_bin_type=True)


def test_a_folder_written_before_key_parts_opens_verifies_and_takes_new_commits(app, tmp_path):
    """A log of pairs (the format before key parts) rebuilds the same state,
    verifies clean, and keeps working once new-format entries follow it."""
    data = tmp_path / "data"

    async def first(node):
        await _workload(node, 0)
        return await _reads(node)
    expected = _run(app, data, first)
    assert _rewrite_log(data, _as_written_before_key_parts) == 3  # the batches logged parts
    assert _rewrite_log(data, lambda key, payload: payload) == 0  # all old-format now

    async def second(node):
        assert await _reads(node) == expected
        await _workload(node, 100)
        return await _reads(node)
    expected = _run(app, data, second)
    with open_history(app, data) as history:
        assert history.verify() == []

    async def third(node):
        return await _reads(node)
    assert _run(app, data, third) == expected


def test_a_damaged_entry_with_key_parts_is_reported_by_key(app, tmp_path):
    """A flipped byte in an entry carrying key parts stops the node with
    CORRUPT_RECORD naming the entry's key."""
    data = tmp_path / "data"
    _run(app, data, lambda node: _workload(node, 0))
    store = RocksStore(str(data))
    key, payload = next((k, p) for k, p in store.scan("log") if parse_log_columns(p)[3])
    damaged = bytearray(seal("log", key, payload))
    damaged[-3] ^= 0x40
    store._cfs["log"][key] = bytes(damaged)
    store.close()
    with pytest.raises(EddyError) as raised:
        _run(app, data, lambda node: node.query("messages:flag_count"))
    assert raised.value.code is ErrorCode.CORRUPT_RECORD and key.hex() in raised.value.message


def test_verify_catches_key_parts_that_disagree_with_their_documents(app, tmp_path):
    """verify rebuilds the indexes from the documents, not from the logged key
    parts, so parts that name other keys show up as a mismatch."""
    data = tmp_path / "data"
    _run(app, data, lambda node: _workload(node, 0))
    store = RocksStore(str(data))
    key, payload = next((k, p) for k, p in store.scan("log") if parse_log_columns(p)[3])
    store.close()
    entry = list(msgpack.unpackb(payload, raw=False))
    # by_channel's part of the batch's third document (never edited after).
    entry[4][2][2] = b"\x07wrong channel\x00\x00"
    _rewrite_log(data, lambda k, p: msgpack.packb(entry, use_bin_type=True) if k == key else p)
    with open_history(app, data) as history:
        mismatches = [str(m) for m in history.verify()]
    assert any("messages.by_channel" in m for m in mismatches)


def test_time_travel_and_rerun_over_entries_with_key_parts(app, tmp_path):
    """At every commit's ts, History.query_at (the whole log rebuilt) and
    TimeTravel (the log replayed up to that ts) give the same answers over a
    log of batch inserts with key parts; re-running a batch insert writes
    the logged bytes."""
    from actors.replay import TimeTravel
    from actors.world import RealWorld

    data = tmp_path / "data"
    _run(app, data, lambda node: _workload(node, 0))
    questions = [("messages:list", {"channel": "c0"}),
                 ("messages:latest", {"channel": "c1", "count": 4})]
    with open_history(app, data) as history:
        timestamps = history.commit_timestamps()
        expected = {(ts, path): history.query_at(path, args, ts)
                    for ts in timestamps for path, args in questions}
        batch_ts = [ts for ts in timestamps if history.commit(ts).path == "batch:send_many"]
        assert len(batch_ts) == 3
        for ts in batch_ts:
            assert history.rerun(ts).same
        time_travel = TimeTravel(RealWorld(), history.store, history.node().app, str(data))

        async def replayed():
            return {(ts, path): (await time_travel.query(path, args, ts)).value
                    for ts in timestamps for path, args in questions}
        assert trio.run(replayed) == expected
