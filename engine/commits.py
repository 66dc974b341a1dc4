"""Admitting a transaction's writes as a commit, and the commit's log records.

`admit` is the whole decision (DESIGN.md section 3, steps 3-4) as one call
that never awaits: conflict check, timestamp, apply to the shards' derived
state, record in the conflict window. The sequencer actor calls it and then
makes the returned `Commit` durable.

Records. A commit is stored as
- `commits/<ts>`: the call that produced it (function path, args, identity,
  snapshot ts, seed, "now"), its read set, the tables it created and the ids it
  wrote: everything `eddy rerun` needs;
- `log/<table number><ts>` for each table it wrote: the shard's append-only
  log entry, the new state of each document it wrote (None for a deletion)
  and, for a batch insert, the parts of the documents' index keys
  (`LOG_ENTRY_VERSION`, docs/internals.md);
- `meta/catalog` when it created a table.
All go in one write batch, so a crash keeps all of a commit or none of it.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import msgpack

from engine import keys, values
from engine.catalog import Catalog
from engine.readsets import ReadSet, WriteKeys
from engine.sequencing import SequencerState
from engine.transaction import TABLES_INDEX, Transaction
from engine.world import WriteOp

RECORD_VERSION = 1

# The first element of a log entry that carries index key parts (a batch
# insert's): [2, internal ids, packed documents, key digest, key parts] (see
# `ShardState.apply_columns` for the parts, `ShardState.load_logged` for
# their use). Every other entry is an array of (internal id, packed
# document or None) pairs, as all entries were before (`log_entry`).
LOG_ENTRY_VERSION = 2

# meta key of the retention start (8-byte big-endian ts), written by
# compaction: reads before it are refused; absent means all history is kept.
RETAINED_SINCE_KEY = b"retained_since"


@dataclasses.dataclass
class CallInfo:
    """What produced a commit; logged so the commit can be re-run."""

    path: str
    args: Any
    identity: Any = None
    kind: str = "mutation"
    # The sync protocol's (sessionId, requestId), when a client sent it, and
    # the mutation's result: logged with the commit, so a client re-sending
    # the mutation after a node restart gets this result instead of a second
    # run (PROTOCOL.md 5.1, as Convex's backend does).
    request: tuple[str, int] | None = None
    result: Any = None


@dataclasses.dataclass
class Commit:
    ts: int
    snapshot_ts: int
    call: CallInfo
    seed: int
    now_ms: float
    read_set: ReadSet
    # table number -> [(internal id, packed document or None)]
    writes: dict[int, list[tuple[bytes, bytes | None]]]
    created_tables: list[tuple[str, int]]
    # The index keys the commit removed or added, as `admit` computed them
    # for the conflict window; None for a Commit not made by `admit`. Kept
    # so that later readers (subscription invalidation) need not unpack
    # every document again to recompute them. Never changed after admit.
    write_keys: WriteKeys | None = None
    # table number -> (key digest, key parts) of its documents, for each
    # table the commit batch-inserted into (what `ShardState.apply_columns`
    # returned); logged with the writes.
    key_parts: dict[int, tuple[bytes, list[list[bytes]]]] | None = None


def admit(sequencer: SequencerState, catalog: Catalog, txn: Transaction, call: CallInfo,
          now_ns: int) -> Commit | int:
    """Decides one commit. Returns the Commit, or the ts of a conflicting commit."""
    conflict_ts = sequencer.conflicts(txn.snapshot_ts, txn.read_set)
    if conflict_ts is not None:
        return conflict_ts
    ts = sequencer.next_ts(now_ns)
    write_keys: WriteKeys = {}
    writes = txn.writes
    # Each document is packed once, here: the shard keeps these bytes and
    # the log entry carries them.
    if len(writes) == 1:  # most mutations: no columns to build
        ((number, internal_id), document), = writes.items()
        packed = None if document is None else values.pack(document)
        by_table = {number: ((internal_id,), (document,), (packed,))}
        logged = {number: [(internal_id, packed)]}
    else:
        by_table = _columns_by_table(writes)
        logged = {number: list(zip(internal_ids, packed_documents))
                  for number, (internal_ids, _, packed_documents) in by_table.items()}
    created: list[tuple[str, int]] = []
    key_parts = {}
    shards = catalog.shards
    for number, (internal_ids, documents, packed_documents) in by_table.items():
        shard = shards[number]
        if shard.last_ts == 0:
            # The first commit into a table is what makes it exist for readers
            # that found no table (engine/transaction.py).
            created.append((shard.name, number))
        parts = shard.apply_columns(ts, internal_ids, documents, packed_documents, write_keys)
        if parts is not None:
            key_parts[number] = (shard.key_digest, parts)
    if created:
        write_keys[TABLES_INDEX] = [keys.encode_key(name) for name, _ in created]
    sequencer.record(ts, write_keys)
    return Commit(ts, txn.snapshot_ts, call, txn.seed, txn.now_ms, txn.read_set, logged,
                  created, write_keys, key_parts)


def _columns_by_table(writes: dict[tuple[int, bytes], dict | None]) -> dict[int, tuple]:
    """A transaction's writes by table, as the columns `ShardState.apply_columns`
    takes: (internal ids, documents, documents packed once, here), in the
    order written. A batch of one table's documents is split into columns in C."""
    keys = list(writes)
    documents = list(writes.values())
    packed_documents = _pack_documents(documents)
    numbers = set(map(_FIRST, keys))
    if len(numbers) == 1:
        return {numbers.pop(): (list(map(_SECOND, keys)), documents, packed_documents)}
    by_table: dict[int, tuple[list, list, list]] = {}
    for (number, internal_id), document, packed in zip(keys, documents, packed_documents):
        columns = by_table.get(number)
        if columns is None:
            columns = by_table[number] = ([], [], [])
        columns[0].append(internal_id)
        columns[1].append(document)
        columns[2].append(packed)
    return by_table


def _pack_documents(documents: list[dict | None]) -> list[bytes | None]:
    """`values.pack` of each document (None stays None), in one C-level pass
    when none is None; a document msgpack refuses gets `values.pack`'s error."""
    if None not in documents:
        try:
            return list(map(_PACKER.pack, documents))
        except (TypeError, ValueError, OverflowError):
            pass  # values.pack below raises it, as an EddyError
    return [None if document is None else values.pack(document) for document in documents]


def ts_key(ts: int) -> bytes:
    return ts.to_bytes(8, "big")


def log_key(table_number: int, ts: int) -> bytes:
    return table_number.to_bytes(4, "big") + ts.to_bytes(8, "big")


def parse_log_key(key: bytes) -> tuple[int, int]:
    return int.from_bytes(key[:4], "big"), int.from_bytes(key[4:12], "big")


def commit_ops(commit: Commit, catalog: Catalog) -> list[WriteOp]:
    """The storage operations that make `commit` durable."""
    call = commit.call
    read_set = commit.read_set
    record = {
        "v": RECORD_VERSION, "ts": commit.ts, "kind": call.kind, "path": call.path,
        "args": values.pack(call.args), "identity": call.identity,
        "snapshot_ts": commit.snapshot_ts, "seed": commit.seed, "now_ms": commit.now_ms,
        "reads": read_set.to_record() if read_set.ranges else [],
        "tables": commit.created_tables,
        "writes": [[n, list(map(_FIRST, w))] for n, w in commit.writes.items()],
    }
    if call.request is not None:
        record["request"] = list(call.request)
        record["result"] = values.pack(call.result)
    ops: list[WriteOp] = [("commits", ts_key(commit.ts), _PACKER.pack(record))]
    key_parts = commit.key_parts or {}
    for number, writes in commit.writes.items():
        ops.append(("log", log_key(number, commit.ts),
                    log_entry(writes, *key_parts.get(number, (None, None)))))
    if commit.created_tables:
        ops.append(("meta", b"catalog", catalog_record(catalog)))
    return ops


# One Packer for every record (see engine/values.py `_PACKER`: a Packer made
# per call costs as much as packing a small record).
_PACKER = msgpack.Packer(use_bin_type=True)
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)


def catalog_record(catalog: Catalog) -> bytes:
    return msgpack.packb(sorted(catalog.numbers.items()), use_bin_type=True)


def parse_catalog_record(data: bytes) -> list[tuple[str, int]]:
    return [(name, number) for name, number in msgpack.unpackb(data, raw=False)]


def log_entry(writes: list[tuple[bytes, bytes | None]], key_digest: bytes | None = None,
              key_parts: list[list[bytes]] | None = None) -> bytes:
    """A `log` entry: with key parts (a batch insert's, with their digest),
    `LOG_ENTRY_VERSION`'s columns; without, the (internal id, packed document
    or None) pairs, byte for byte as entries were written before key parts.

    Entries without parts keep the old layout: it is as compact (key parts
    pay off per document, so only batches carry them), a data folder an
    older Eddy opened again still reads most of its log, and the
    simulator's disks, which run out of space by the byte (sim/disk.py),
    see the same bytes as before for the small commits its workloads make.
    """
    if key_parts is None:
        return _PACKER.pack(writes)  # tuples pack as arrays
    return _PACKER.pack([LOG_ENTRY_VERSION, list(map(_FIRST, writes)), list(map(_SECOND, writes)),
                         key_digest, key_parts])


def parse_log_columns(data: bytes) -> tuple[tuple, tuple, bytes | None, tuple | None]:
    """A `log` entry as (internal ids, packed documents or None, key digest,
    key parts): the last two None for an entry without key parts, and for
    every entry written before they were logged (a sequence of pairs).

    msgpack's tuples are returned as they come (`use_list=False`): a node's
    start-up parses every entry of the log. Their shape is checked in C-level
    passes, so an entry of anything else raises here.

    Raises:
        ValueError, TypeError, msgpack.UnpackException: `data` is not such an entry.
    """
    entry = msgpack.unpackb(data, raw=False, use_list=False)
    if type(entry) is not tuple:
        raise ValueError("a log entry is not an array")
    if entry and type(entry[0]) is int:
        if entry[0] != LOG_ENTRY_VERSION or len(entry) != 5:
            raise ValueError(f"a log entry of unknown version {entry[0]}")
        _, internal_ids, packed_documents, key_digest, key_parts = entry
        if type(internal_ids) is not tuple or type(packed_documents) is not tuple or \
                len(internal_ids) != len(packed_documents) or \
                (key_parts is not None and type(key_parts) is not tuple):
            raise ValueError("a log entry's columns do not match")
        return internal_ids, packed_documents, key_digest, key_parts
    # Written before key parts were logged: (internal id, packed document) pairs.
    if not entry:
        return (), (), None, None
    if set(map(len, entry)) != _PAIR_LENGTH:
        raise ValueError("a log entry is not a sequence of (internal id, document) pairs")
    internal_ids, packed_documents = zip(*entry)
    return internal_ids, packed_documents, None, None


def parse_log_entry(data: bytes) -> tuple[tuple[bytes, bytes | None], ...]:
    """A `log` entry's writes: (internal id, packed document or None) pairs.

    Raises:
        ValueError, TypeError, msgpack.UnpackException: `data` is not a log entry.
    """
    internal_ids, packed_documents, _, _ = parse_log_columns(data)
    return tuple(zip(internal_ids, packed_documents))


_PAIR_LENGTH = {2}


def parse_commit_record(data: bytes) -> dict:
    record = msgpack.unpackb(data, raw=False, strict_map_key=False)
    record["args"] = values.unpack(record["args"])
    record["reads"] = ReadSet.from_record(record["reads"])
    return record
