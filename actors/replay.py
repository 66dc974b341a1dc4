"""Rebuilding from the log: verification, replay into a new folder, compaction.

- `rebuild_catalog` builds every shard's derived state (versions, every index,
  counts) from the log by a path independent of `Node.recover`: it walks the
  `commits` records in ts order, fetches each log entry they name, and checks
  the two agree. `verify_catalog` compares that rebuild with a live catalog
  and reports each mismatch; derived state lives only in memory (see
  docs/internals.md "Storage layout"), so the scratch area is a fresh
  in-memory catalog.
- `replay_into` writes a new data folder holding the records up to a ts: a
  node opening it rebuilds the state as it stood then.
- `compact` drops document versions that no read at or after the retention
  start can see, keeping every commit record and the latest state.
- `TimeTravel` answers queries at many past timestamps, in rising order,
  replaying the log once as it goes (the simulator's oracles use it).
"""

from __future__ import annotations

import dataclasses
import heapq
import os
from typing import Any, Iterator

import msgpack

from engine.catalog import Catalog
from engine.commits import (RETAINED_SINCE_KEY, log_entry, log_key, parse_catalog_record,
                            parse_log_columns, parse_log_entry, parse_log_key, ts_key)
from engine import values
from engine.errors import EddyError, ErrorCode
from engine.sequencing import SequencerState
from engine.shard import LIVE

from actors.node import CallResult, Node, collector_paused
from actors.sequencer import SequencerActor
from actors.storage import RocksStore, corrupt

# Mismatches listed before the rest are summed up: a wholly broken state
# would otherwise print millions of lines.
mismatches_listed_max = 1000

# Storage operations per write batch when copying or rewriting the log: big
# enough to amortize a batch, small enough to bound memory (~10 MB of records).
replay_batch_ops_max = 10_000


@dataclasses.dataclass
class Mismatch:
    """One disagreement: `where` names the record or table and index, `message` says what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclasses.dataclass
class ReplayReport:
    commit_count: int
    document_count: int
    table_count: int


@dataclasses.dataclass
class CompactReport:
    retained_since_ts: int
    versions_dropped: int
    entries_rewritten: int


class _Mismatches(list):
    def add(self, where: str, message: str) -> None:
        if len(self) < mismatches_listed_max:
            self.append(Mismatch(where, message))
        elif len(self) == mismatches_listed_max:
            self.append(Mismatch("...", "more mismatches not listed"))


def rebuild_catalog(store, index_definitions: dict, mismatches: list | None = None) -> Catalog:
    """Derived state rebuilt from `store`'s log, commit record by commit record."""
    found = mismatches if mismatches is not None else _Mismatches()
    retained = store.get("meta", RETAINED_SINCE_KEY)
    retained_since_ts = 0 if retained is None else int.from_bytes(retained, "big")
    catalog = Catalog()
    catalog.set_index_definitions(index_definitions)
    named: set[tuple[int, int]] = set()
    with collector_paused():
        _load_commits(store, catalog, retained_since_ts, named, found)
    for key, _ in store.scan("log"):
        number, ts = parse_log_key(key)
        if (number, ts) not in named:
            found.add(f"log/{number}/{ts}", "a log entry no commit record names")
    return catalog


def _load_commits(store, catalog: Catalog, retained_since_ts: int, named: set, found) -> None:
    """Loads every log entry the commit records name into `catalog`, in ts order."""
    for key, payload in store.scan("commits"):
        ts = int.from_bytes(key, "big")
        try:
            record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            created, writes = record["tables"], record["writes"]
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as error:
            raise corrupt("commits", key, f"does not parse ({error})") from None
        for name, number in created:
            catalog.create(name, number).begin_bulk_load()
        for number, written in writes:
            named.add((number, ts))
            entry = store.get("log", log_key(number, ts))
            where = f"log/{number}/{ts}"
            if entry is None:
                if ts > retained_since_ts:
                    found.add(where, "the commit record names this entry but the log lacks it")
                continue
            internal_ids, packed_documents, _, _ = parse_log_columns(entry)
            logged_ids = list(internal_ids)
            if ts > retained_since_ts and logged_ids != written:
                found.add(where, f"the log entry holds {len(logged_ids)} document(s), the commit "
                                 f"record names {len(written)} different ones")
            shard = catalog.shards.get(number)
            if shard is None:
                found.add(where, f"table {number} was never created by a commit")
                continue
            # The key parts the entry may hold are left aside: the keys come
            # from the documents, so comparing this state with one a node
            # built (from the key parts) checks the parts too.
            shard.load_logged(ts, internal_ids, packed_documents)
    for shard in catalog.shards.values():
        shard.end_bulk_load()


def verify_catalog(live: Catalog, store) -> list[Mismatch]:
    """Rebuilds the derived state from `store` and compares it with `live`.

    For a running node, call it while no commit is admitted but not yet
    durable (the rebuild sees only durable ones).
    """
    found = _Mismatches()
    rebuilt = rebuild_catalog(store, live.index_definitions, found)
    meta = store.get("meta", b"catalog")
    stored = dict(parse_catalog_record(meta)) if meta else {}
    if stored != rebuilt.numbers:
        found.add("meta/catalog", f"names tables {sorted(stored.items())}, the commit records "
                                  f"create {sorted(rebuilt.numbers.items())}")
    if live.numbers != rebuilt.numbers:
        found.add("catalog", f"live tables {sorted(live.numbers.items())}, rebuilt "
                             f"{sorted(rebuilt.numbers.items())}")
    for number, shard in sorted(rebuilt.shards.items()):
        other = live.shards.get(number)
        if other is not None:
            _compare_shards(other, shard, found)
    return list(found)


def _compare_shards(live, rebuilt, found: _Mismatches) -> None:
    table = rebuilt.name
    if live.last_ts != rebuilt.last_ts:
        found.add(table, f"last ts {live.last_ts} live, {rebuilt.last_ts} rebuilt")
    if live.live_count != rebuilt.live_count:
        found.add(table, f"{live.live_count} live documents counted, {rebuilt.live_count} rebuilt")
    # Whole-dict comparisons first (in C): the per-entry walks below only
    # name what differs, and a healthy state never needs them.
    if live.versions != rebuilt.versions:
        for internal_id in sorted(live.versions.keys() | rebuilt.versions.keys()):
            mine, theirs = live.versions.get(internal_id), rebuilt.versions.get(internal_id)
            if mine != theirs:
                found.add(f"{table} document {internal_id.hex()}",
                          f"versions differ: live has {_versions(mine)}, the log gives "
                          f"{_versions(theirs)}")
    if live.indexes.keys() != rebuilt.indexes.keys():
        found.add(table, f"indexes {sorted(live.indexes)} live, {sorted(rebuilt.indexes)} rebuilt")
    for name in sorted(live.indexes.keys() & rebuilt.indexes.keys()):
        mine, theirs = live.indexes[name], rebuilt.indexes[name]
        where = f"{table}.{name}"
        if mine.fields != theirs.fields:
            found.add(where, f"fields {mine.fields} live, {theirs.fields} rebuilt")
            continue
        # Every key and life, wherever each index holds them (its base of
        # sorted arrays or its dict: engine/shard.py), so that two equal
        # states compare equal however they were built.
        my_keys, their_keys = mine.all_keys(), theirs.all_keys()
        my_lives, their_lives = mine.all_lives(), theirs.all_lives()
        if my_keys != their_keys or my_lives.keys() != set(my_keys):
            extra = set(my_keys) - set(their_keys)
            missing = set(their_keys) - set(my_keys)
            found.add(where, f"{len(extra)} key(s) only in the live index, {len(missing)} only in "
                             f"the rebuilt one (first: {sorted(extra or missing)[:1]})")
        if my_lives == their_lives:
            continue
        for key in sorted(my_lives.keys() & their_lives.keys()):
            if my_lives[key] != their_lives[key]:
                found.add(f"{where} key {key.hex()}",
                          f"live intervals {_intervals(my_lives[key])}, rebuilt "
                          f"{_intervals(their_lives[key])}")


def _versions(versions) -> str:
    if versions is None:
        return "no versions"
    return "[" + ", ".join(f"{ts}: {'deleted' if packed is None else f'{len(packed)} bytes'}"
                           for ts, packed in versions) + "]"


def _intervals(life: tuple) -> str:
    pairs = zip(life[1::2], life[2::2])
    return " ".join(f"[{begin}, {'live' if end == LIVE else end})" for begin, end in pairs)


def replay_into(store, until_ts: int, new_dir: str) -> ReplayReport:
    """Writes a new data folder at `new_dir` with every record up to `until_ts`.

    Raises:
        EddyError(BAD_REQUEST): `new_dir` exists and is not empty.
    """
    if os.path.exists(new_dir) and os.listdir(new_dir):
        raise EddyError(ErrorCode.BAD_REQUEST,
                        f"{new_dir} is not empty: replay writes a new data folder and never "
                        f"overwrites one.", path=new_dir)
    target = RocksStore(new_dir)
    try:
        ops: list = []
        tables: dict[str, int] = {}
        commit_count = document_count = 0

        def put(cf: str, key: bytes, value: bytes) -> None:
            ops.append((cf, key, value))
            if len(ops) >= replay_batch_ops_max:
                target.write_nowait(ops, sync=False)
                ops.clear()

        for key, payload in store.scan("commits", b"", ts_key(until_ts + 1)):
            record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            tables.update((name, number) for name, number in record["tables"])
            commit_count += 1
            put("commits", key, payload)
        for number in sorted(tables.values()):
            lo, hi = log_key(number, 0), log_key(number, until_ts + 1)
            for key, entry in store.scan("log", lo, hi):
                document_count += len(parse_log_entry(entry))
                put("log", key, entry)
        if tables:
            put("meta", b"catalog", msgpack.packb(sorted(tables.items()), use_bin_type=True))
        retained = store.get("meta", RETAINED_SINCE_KEY)
        if retained is not None:
            put("meta", RETAINED_SINCE_KEY, retained)
        target.write_nowait(ops, sync=True)
    finally:
        target.close()
    return ReplayReport(commit_count, document_count, len(tables))


def compact(store, before_ts: int) -> CompactReport:
    """Keeps, of the versions before `before_ts`, only each document's version
    as of `before_ts`; every commit record stays.

    The retention start is recorded first, so reads before it are refused even
    if compaction stops half-way; entries are rewritten in ts order, so a
    document's older versions go before the deletion that ends it, and the
    state at and after `before_ts` is the same at every step.
    """
    if store.read_only:
        raise EddyError(ErrorCode.BAD_REQUEST, "compact needs the data folder writable.")
    store.write_nowait([("meta", RETAINED_SINCE_KEY, ts_key(before_ts))], sync=True)
    # Pass 1: each document's last write at or before before_ts.
    last: dict[tuple[int, bytes], int] = {}
    entries: list[tuple[int, int]] = []
    for key, entry in store.scan("log"):
        number, ts = parse_log_key(key)
        if ts <= before_ts:
            entries.append((ts, number))
            for internal_id, _ in parse_log_entry(entry):
                last[(number, internal_id)] = ts
    # Pass 2: rewrite old entries in ts order, keeping those last writes
    # (deletions too are dropped: a document absent at before_ts needs nothing).
    dropped = rewritten = 0
    ops: list = []
    for ts, number in sorted(entries):
        key = log_key(number, ts)
        internal_ids, packed_documents, key_digest, key_parts = \
            parse_log_columns(store.get("log", key))
        kept = [n for n, (i, p) in enumerate(zip(internal_ids, packed_documents))
                if p is not None and last[(number, i)] == ts]
        if len(kept) == len(internal_ids):
            continue
        dropped += len(internal_ids) - len(kept)
        rewritten += 1
        if key_parts is not None:  # the kept documents' parts, as logged
            key_parts = [[column[n] for n in kept] for column in key_parts]
        rewritten_entry = log_entry([(internal_ids[n], packed_documents[n]) for n in kept],
                                    key_digest, key_parts)
        ops.append(("log", key, rewritten_entry if kept else None))
        if len(ops) >= replay_batch_ops_max:
            store.write_nowait(ops, sync=False)
            ops.clear()
    store.write_nowait(ops, sync=True)
    return CompactReport(before_ts, dropped, rewritten)


class TimeTravel:
    """Queries at past timestamps, asked in rising ts order, over a log replayed as they go.

    A node opened on a data folder (`open_node`, a History) holds every
    shard rebuilt to the newest commit, and an index keeps every key that
    was ever live (engine/shard.py), so a read at an old ts also steps over
    the keys of every later commit. Here a node's shards start empty and
    are brought forward log entry by log entry, in ts order, only as far as
    the ts asked for, so such a read has no later key in its way. Each
    query then runs as a time-travel query on the whole node runs
    (`Node.call(..., at_ts=ts)`: the same shards, the same read path), and
    gives what it gives there, because a read at ts sees no commit after ts.

    Followers. Objects with `tables` (names) and `write(table, internal_id,
    document or None)` see every write to those tables, in ts order, as
    `follow` passes it (a model of the data kept beside the shards). The
    shards take what was passed only when a query needs them.

    Reads must come in rising ts order: the shards cannot go back. Nothing is
    written to the store, so a read-only store will do.

    Args:
        world, store, app, data_dir: as `Node` takes them; the world gives
            each query's transaction its clock and seed, as a node's does.
        followers: see above.
    """

    def __init__(self, world, store, app, data_dir: str, followers=()) -> None:
        node = Node(world, store, app, data_dir)
        node.restore_catalog()
        node.sequencer = SequencerActor(store, node.catalog, SequencerState(0), world.clock)
        self.node = node
        self.ts = 0
        self._entries = heapq.merge(*(_logged(store, number) for number in node.catalog.shards))
        self._next = next(self._entries, None)
        self._unapplied: list[tuple[int, int, list]] = []  # followed, not yet in the shards
        self._followers: dict[int, list] = {}  # table number -> its followers
        for follower in followers:
            for name in follower.tables:
                number = node.catalog.numbers.get(name)
                if number is not None:
                    self._followers.setdefault(number, []).append(follower)

    def follow(self, ts: int) -> None:
        """Passes every write at or before `ts` to the followers."""
        assert ts >= self.ts, "time travel replays forwards only"
        shards = self.node.catalog.shards
        while self._next is not None and self._next[0] <= ts:
            entry_ts, number, entry = self._next
            columns = parse_log_columns(entry)
            self._unapplied.append((entry_ts, number, columns))
            for follower in self._followers.get(number, ()):
                name = shards[number].name
                for internal_id, packed in zip(columns[0], columns[1]):
                    follower.write(name, internal_id, None if packed is None else values.unpack(packed))
            self._next = next(self._entries, None)
        self.ts = ts

    def advance(self, ts: int) -> None:
        """Applies every log entry at or before `ts`; later reads are at `ts` or after."""
        self.follow(ts)
        shards = self.node.catalog.shards
        loading: dict[int, Any] = {}  # the shards in a bulk load (no reads until it ends)
        for entry_ts, number, columns in self._unapplied:
            shard = loading.get(number)
            if shard is None:
                shard = loading[number] = shards[number]
                shard.begin_bulk_load()
            shard.load_logged(entry_ts, *columns)
        self._unapplied.clear()
        for shard in loading.values():
            shard.end_bulk_load()
        self.node.sequencer.durable_ts = ts

    async def query(self, path: str, args: Any, ts: int, *, identity: Any = None,
                    admin: bool = True) -> CallResult:
        """`Node.call("query", path, args, at_ts=ts)` on the folder's history.

        A checkpoint only if the query awaits something that yields. Raises
        what that call raises (an INVALID_TIMESTAMP before the retention start).
        """
        self.advance(ts)
        return await self.node.call("query", path, args, identity=identity, admin=admin, at_ts=ts)


def _logged(store, number: int) -> Iterator[tuple[int, int, bytes]]:
    """(ts, table number, entry) of one table's log, in ts order."""
    for key, entry in store.scan("log", number.to_bytes(4, "big"), (number + 1).to_bytes(4, "big")):
        yield parse_log_key(key)[1], number, entry


__all__ = ["CompactReport", "Mismatch", "ReplayReport", "TimeTravel", "compact",
           "rebuild_catalog", "replay_into", "verify_catalog"]
