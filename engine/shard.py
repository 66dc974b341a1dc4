"""A table shard's derived state: document versions and index entries, with MVCC.

Theory of operation. A shard is rebuilt from its table's append-only log by
applying each commit's writes in ts order; nothing here is stored on its
own. State, per table:

- `versions`: internal id -> its versions (ts, packed document or None) in
  ts order: a one-element tuple until the document is written again, a
  list from then on (most documents are written once, and the garbage
  collector stops tracking a tuple of ints and bytes, while it tracks a
  list for as long as it lives). None is a deletion. The document as of
  ts S is the last version with ts <= S.
- one `IndexState` per index, built-ins included (`by_id` on [_id],
  `by_creation_time` on [_creationTime, _id], then each schema index with
  _creationTime and _id appended). Each holds every key that was ever live,
  and for each key the document it belongs to and the ts intervals
  [begin, end) during which it was live (end is LIVE while it still is);
  see engine/index_state.py.

Rules:
1. Applying a write at ts T moves each index from the document's previous key
   to its new key: the old interval ends at T, a new one begins at T. A key
   that does not change is left alone.
2. A read at snapshot S sees exactly the versions and keys whose interval
   holds S, so reads at any retained S are immutable and need no locks.
3. `apply` is only called with T above every ts already applied.

Bulk load (a node's start-up, history commands, `eddy replay --verify`).
Between `begin_bulk_load` and `end_bulk_load` no read happens, so shortcuts
are safe. `load_logged` takes log entries as stored (packed documents) and
keeps a run of inserts of new documents aside, then indexes them together
(`bulk_insert_batch_max`): with the key parts the entry logged
(`apply_columns`), or else by decoding them and encoding each field for all
at once. Into an empty index the keys go to its base of sorted arrays, made
at the end; into one that held keys, to its dict, sorted once at the end. A
write that is not such an insert first indexes the run, then goes through
`apply`'s own path, so the state is exactly what `apply` would have built.

`apply` indexes a commit of at least `bulk_apply_min` inserts of new
documents (a batch insert) together too, one pass per field, and returns
the documents' key parts for the log entry.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
from itertools import repeat
from typing import Iterable, Sequence

from engine import keys, values
from engine.errors import EddyError, ErrorCode
# IndexState and LIVE are part of this module's interface (engine/views.py, actors/replay.py).
from engine.index_state import LIVE, IndexState, block_births  # noqa: F401

BUILTIN_INDEXES = {"by_id": ["_id"], "by_creation_time": ["_creationTime", "_id"]}

# Inserts decoded and indexed together during a bulk load: enough that each
# batch's per-field passes cost little per document, few enough that the
# decoded documents of one batch (a few hundred bytes to a few KB each) stay
# a few MB, whatever the size of the log.
bulk_insert_batch_max = 2048

# Inserts of new documents in one commit from which `apply` indexes them
# together, one pass per field, as a bulk load does. Below it the per-column
# set-up costs more than the per-document path it replaces (measured on a
# 60,000-document table: 9.5 against 8.1 µs per document for commits of 4,
# 6.5 against 7.6 for commits of 8).
bulk_apply_min = 8

def field_value(document: dict, path: str):
    """The value at a dotted field path, or keys.UNDEFINED."""
    if "." not in path:
        return document.get(path, keys.UNDEFINED)
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return keys.UNDEFINED
        value = value[part]
    return value


def index_fields(user_fields: Sequence[str]) -> list[str]:
    """The full key fields of a schema index: its fields, then _creationTime, _id."""
    return [*user_fields, "_creationTime", "_id"]


def index_key(document: dict, fields: Sequence[str]) -> bytes:
    """The key of `document` in an index on `fields` (keys.encode_index_key, inlined)."""
    return b"".join([keys.encode_key(field_value(document, field)) for field in fields])


def field_values(documents: list[dict], path: str) -> list:
    """`field_value` of each document (one C-level pass for a top-level field)."""
    if "." not in path:
        return list(map(dict.get, documents, repeat(path), repeat(keys.UNDEFINED)))
    return [field_value(document, path) for document in documents]


def _field_keys(documents: list[dict], path: str) -> list[bytes]:
    return keys.encode_keys(field_values(documents, path))


# Part of every key-definitions digest (`key_definitions_digest`): raised if
# `keys.encode_key`'s bytes ever change, so that key parts logged by an
# older encoding are recomputed rather than trusted.
KEY_ENCODING_VERSION = 1


def key_definitions_digest(user_key_fields: Sequence[Sequence[str]]) -> bytes:
    """8 bytes naming what a log entry's key parts were computed for: the
    fields of each schema index, in order, and the key encoding. A bulk load
    uses logged key parts only under the same digest (a schema change since
    the entry was written makes it decode the documents instead)."""
    definition = repr((KEY_ENCODING_VERSION, [list(fields) for fields in user_key_fields]))
    return hashlib.blake2b(definition.encode(), digest_size=8).digest()


def keys_from_parts(parts: Sequence[Sequence[bytes]]) -> list[list[bytes]]:
    """Each index's keys, in index order, from key parts as `ShardState`
    logs them: the _id keys, the _creationTime keys, then for each schema
    index its own fields' part (every key but by_id's ends with
    _creationTime's and _id's)."""
    id_keys, creation_keys, *user_parts = parts
    suffixes = list(map(operator.add, creation_keys, id_keys))
    return [list(id_keys), suffixes,
            *[list(map(operator.add, part, suffixes)) for part in user_parts]]


_ARRAY32 = b"\xdd"  # msgpack's header of an array with a 4-byte big-endian length


def _unpack_all(packed_documents: Sequence[bytes]) -> list:
    """`values.unpack` of each packed document, in one call.

    Behind an array header the documents decode as one list: per document,
    msgpack's per-call set-up and the wrapper's frame cost about a sixth of what
    decoding a small document does. Anything unexpected (a document that
    is not exactly one msgpack object) decodes one by one instead, which
    raises the error `values.unpack` raises.
    """
    count = len(packed_documents)
    try:
        documents = values.unpack(b"".join([_ARRAY32, count.to_bytes(4, "big"),
                                            *packed_documents]))
    except EddyError:
        documents = None
    if type(documents) is not list or len(documents) != count:
        return list(map(values.unpack, packed_documents))
    return documents


def _version_ts(version: tuple[int, bytes | None]) -> int:
    return version[0]


class ShardState:
    """The derived state of one table.

    Fields:
        table_number, name: fixed at creation.
        versions: see the module docstring; appended by `apply`.
        indexes: index name -> IndexState; replaced whole by `set_indexes`.
        _index_states, _user_key_fields: the IndexStates in order and each
            schema index's own fields, for `_keys_of`; replaced with `indexes`.
        last_ts: ts of the newest commit applied.
        live_count: number of documents live at `last_ts`.
        _run, _run_write_count: during a bulk load, the log entries
            `load_logged` set aside, as (ts, writes), and their write count;
            emptied by `_load_run`. None outside a bulk load.
    """

    def __init__(self, table_number: int, name: str,
                 user_indexes: dict[str, Sequence[str]] | None = None) -> None:
        self.table_number = table_number
        self.name = name
        self.versions: dict[bytes, Sequence[tuple[int, bytes | None]]] = {}
        self.indexes: dict[str, IndexState] = {}
        self.last_ts = 0
        self.live_count = 0
        self._run: list[tuple[int, Sequence]] | None = None
        self._run_write_count = 0
        self.set_indexes(user_indexes or {})

    def validate(self) -> None:
        for versions in self.versions.values():
            assert all(a[0] < b[0] for a, b in zip(versions, versions[1:]))
        live = sum(1 for v in self.versions.values() if v[-1][1] is not None)
        assert live == self.live_count
        for index in self.indexes.values():
            lives = index.all_lives()
            live_keys = sum(1 for life in lives.values() if life[-1] == LIVE)
            assert live_keys == self.live_count, "index out of step with documents"
            held_count = len(index._sorted) + len(index.unplaced) + len(index.pending or ())
            assert held_count == len(index.life), "a key missing from the sorted keys"
            base = index.base_keys
            assert len(base) == len(index.base_lives)
            assert index.moved_count == sum(key in index.life for key in base)
            assert all(map(operator.lt, base, base[1:])), "the base is not sorted"
            firsts = [life[1] for life in index.base_lives]
            assert index.base_newest_birth == max(firsts, default=0)
            if index.base_births is not None:
                assert index.base_births == block_births(firsts)
        for versions in self.versions.values():
            if versions[-1][1] is not None:
                document = values.unpack(versions[-1][1])
                assert self._keys_of(document) == [
                    index_key(document, index.fields) for index in self._index_states]

    def set_indexes(self, user_indexes: dict[str, Sequence[str]]) -> None:
        """Defines the indexes and (re)builds them from every retained version."""
        assert self._run is None, "indexes redefined during a bulk load"
        definitions = {**BUILTIN_INDEXES,
                       **{name: index_fields(f) for name, f in user_indexes.items()}}
        self.indexes = {name: IndexState(fields) for name, fields in definitions.items()}
        self._index_states = list(self.indexes.values())
        # What `_keys_of` needs: the fields of each schema index before the
        # _creationTime, _id that every index ends with.
        assert not BUILTIN_INDEXES.keys() & user_indexes.keys(), "schema index with a built-in name"
        self._user_key_fields = [list(fields) for fields in user_indexes.values()]
        self.key_digest = key_definitions_digest(self._user_key_fields)
        self._key_part_count = 2 + len(self._user_key_fields)
        for internal_id, versions in self.versions.items():
            previous = None
            for ts, packed in versions:
                document = None if packed is None else values.unpack(packed)
                self._move_keys(internal_id, previous, document, ts, None)
                previous = document

    def begin_bulk_load(self) -> None:
        """Starts a bulk load (see the module docstring): no reads until `end_bulk_load`."""
        for index in self.indexes.values():
            index.begin_bulk_load()
        if self._run is None:
            self._run = []
            self._run_write_count = 0

    def end_bulk_load(self) -> None:
        """Ends a bulk load.

        Raises:
            EddyError(CORRUPT_RECORD): two documents logged as new have
                one _id (found here when by_id's keys became its base).
        """
        if self._run is not None:
            self._load_run()
            self._run = None
        by_id = self._index_states[0]
        for index in self._index_states:
            index.end_bulk_load(check_repeats=index is by_id)
        if by_id.repeated:
            raise EddyError(ErrorCode.CORRUPT_RECORD,
                            f"Table {self.name}: two documents logged as new have one _id; "
                            f"the log is damaged.", table=self.name)

    def load_logged(self, ts: int, internal_ids: Sequence[bytes],
                    packed_documents: Sequence[bytes | None], key_digest: bytes | None = None,
                    key_parts: Sequence[Sequence[bytes]] | None = None) -> None:
        """`apply` of one log entry during a bulk load, its documents still packed.

        Args:
            ts: the entry's ts, above every ts applied before.
            internal_ids, packed_documents: the writes, as logged (None for a
                deletion), as `engine.commits.parse_log_columns` returns them.
            key_digest, key_parts: the key parts the entry logged for its
                documents (see `apply_columns`) and what they were computed
                for, or None. Used only if `key_digest` is this shard's: the
                documents' keys then come from them, not from decoding.

        Raises:
            EddyError(CORRUPT_RECORD): key parts of the wrong shape, or
                (possibly later, when the run is indexed) a document logged as
                new with the _id of another.
        """
        assert self._run is not None, "load_logged outside a bulk load"
        assert ts > self.last_ts, "commits applied out of order"
        self.last_ts = ts
        if key_parts is not None and key_digest == self.key_digest:
            # Logged only when every write inserted a new document (see
            # `apply_columns`): no write here needs `apply`'s path.
            if len(key_parts) != self._key_part_count or \
                    set(map(len, key_parts)) != {len(internal_ids)}:
                raise EddyError(ErrorCode.CORRUPT_RECORD,
                                f"Table {self.name}: the log entry at {ts} holds key parts that "
                                f"do not match its documents; the log is damaged.",
                                table=self.name)
        else:
            key_parts = None  # none logged, or for other index definitions
            if internal_ids and (packed_documents[0] is None or
                                 internal_ids[0] in self.versions):
                # Plainly an update or a deletion (a log of them would only pay
                # for the run): the run so far, then this entry as `apply` does.
                if self._run:
                    self._load_run()
                self._apply_logged(ts, internal_ids, packed_documents)
                return
        self._run.append((ts, internal_ids, packed_documents, key_parts))
        self._run_write_count += len(internal_ids)
        if self._run_write_count >= bulk_insert_batch_max:
            self._load_run()

    def _load_run(self) -> None:
        """Applies the entries `load_logged` set aside, in ts order."""
        run = self._run
        internal_ids = tuple(itertools.chain.from_iterable(entry[1] for entry in run))
        packed_documents = tuple(itertools.chain.from_iterable(entry[2] for entry in run))
        stamps = list(itertools.chain.from_iterable(repeat(entry[0], len(entry[1]))
                                                    for entry in run))
        if all(entry[3] is not None for entry in run):
            # Every entry logged key parts, so each inserted new documents
            # when it was written: no check before, no decoding.
            parts = [list(itertools.chain.from_iterable(entry[3][column] for entry in run))
                     for column in range(self._key_part_count)]
            self._load_new(internal_ids, packed_documents, stamps, keys_from_parts(parts))
        elif self._all_new_columns(internal_ids, packed_documents):
            self._load_new(internal_ids, packed_documents, stamps,
                           self._keys_of_many(_unpack_all(packed_documents)))
        else:  # not only inserts of new documents: entry by entry
            for ts, entry_ids, entry_packed, key_parts in run:
                if key_parts is not None:
                    self._load_new(entry_ids, entry_packed, [ts] * len(entry_ids),
                                   keys_from_parts(key_parts))
                elif self._all_new_columns(entry_ids, entry_packed):
                    self._load_new(entry_ids, entry_packed, [ts] * len(entry_ids),
                                   self._keys_of_many(_unpack_all(entry_packed)))
                else:
                    self._apply_logged(ts, entry_ids, entry_packed)
        run.clear()
        self._run_write_count = 0

    def _load_new(self, internal_ids: Sequence[bytes], packed_documents: Sequence[bytes],
                  stamps: list[int], new_keys: list[list[bytes]]) -> None:
        """`_insert_new` of logged inserts, `new_keys` holding each index's keys.

        Raises:
            EddyError(CORRUPT_RECORD): an internal id or an _id was already
                held (the state is then damaged, but the load stops here).
        """
        if not internal_ids:
            return
        # Whether the documents are new is checked after the fact, from the
        # sizes of versions and by_id, rather than before (a set of the ids,
        # then a look-up of each: 5-10% of a start-up): a repeated internal
        # id or _id leaves fewer new entries than documents. Keys set aside
        # for by_id's base are checked for repeats when it is made; a base
        # made by an earlier bulk load (TimeTravel's), before.
        by_id = self._index_states[0]
        collecting = by_id.loaded_keys is not None
        if by_id.base_holds_any(new_keys[0]):
            raise EddyError(ErrorCode.CORRUPT_RECORD,
                            f"Table {self.name}: a document logged as new has the _id of "
                            f"another document; the log is damaged.", table=self.name)
        counts = len(self.versions), len(by_id.life)
        self._index_new(internal_ids, packed_documents, stamps, new_keys, None, loading=True)
        if len(self.versions) != counts[0] + len(internal_ids) or \
                (not collecting and len(by_id.life) != counts[1] + len(internal_ids)):
            raise EddyError(ErrorCode.CORRUPT_RECORD,
                            f"Table {self.name}: a document logged as new has the id of "
                            f"another document; the log is damaged.", table=self.name)

    def _apply_logged(self, ts: int, internal_ids: Sequence[bytes],
                      packed_documents: Sequence[bytes | None]) -> None:
        self._apply_writes(ts, [(i, None if p is None else values.unpack(p), p)
                                for i, p in zip(internal_ids, packed_documents)], None)

    def _all_new_columns(self, internal_ids: Sequence[bytes], documents: Sequence) -> bool:
        """Whether every write, given as columns (internal ids, documents or
        packed documents), inserts a document, each with an id neither seen
        before nor repeated."""
        # Cheapest refusals first: an update or a deletion fails at once.
        # (dict_keys.isdisjoint walks its argument, set.isdisjoint would walk
        # the whole dict.)
        if None in documents or not self.versions.keys().isdisjoint(internal_ids):
            return False
        return len(internal_ids) < 2 or len(set(internal_ids)) == len(internal_ids)

    def _insert_new(self, internal_ids: Sequence[bytes], documents: Sequence[dict],
                    packed_documents: Sequence[bytes], stamps: Sequence[int],
                    touched: list[list[bytes]] | None) -> list[list[bytes]] | None:
        """`_apply_writes` of inserts for which `_all_new_columns` holds,
        `stamps` holding each one's ts: each field is encoded for all at once.

        Returns the documents' key parts (see `apply_columns`), or None,
        having changed nothing, if two of the documents, or
        one of them and a document indexed before, have the same _id.
        Otherwise every key is new to its index: every key ends with its
        document's encoded _id and keys are prefix-free, so a key held before
        would share its _id with another document, which by_id would hold.
        (A document's _id names its internal id (engine/ids.py), which
        `_all_new_columns` found new: only a damaged log or a bug gets None.)
        """
        parts = self._key_parts_of_many(documents)
        id_keys = parts[0]
        by_id = self._index_states[0]
        if len(set(id_keys)) < len(id_keys) or by_id.holds_any(id_keys):
            return None
        self._index_new(internal_ids, packed_documents, stamps, keys_from_parts(parts), touched)
        return parts

    def _index_new(self, internal_ids: Sequence[bytes], packed_documents: Sequence[bytes],
                   stamps: Sequence[int], new_keys: list[list[bytes]],
                   touched: list[list[bytes]] | None, loading: bool = False) -> None:
        """The changes `_insert_new` makes, `new_keys` holding each index's
        keys; `loading` during a bulk load (`_load_new`)."""
        self.versions.update(zip(internal_ids, zip(zip(stamps, packed_documents))))
        self.live_count += len(internal_ids)
        # One life tuple per document, shared by its keys in every index.
        lives = list(zip(internal_ids, stamps, repeat(LIVE)))
        for index, index_keys in zip(self._index_states, new_keys):
            if loading:
                index.load_new(index_keys, lives)
            else:
                index.add_new(index_keys, lives)
        if touched is not None:
            for written, index_keys in zip(touched, new_keys):
                written.extend(index_keys)

    def index_fields(self, index: str) -> list[str] | None:
        state = self.indexes.get(index)
        return None if state is None else state.fields

    def latest(self, internal_id: bytes) -> dict | None:
        versions = self.versions.get(internal_id)
        if not versions or versions[-1][1] is None:
            return None
        return values.unpack(versions[-1][1])

    def get(self, internal_id: bytes, at_ts: int) -> bytes | None:
        """The packed document as of `at_ts`, or None."""
        versions = self.versions.get(internal_id)
        if not versions:
            return None
        ts, packed = versions[-1]
        if ts <= at_ts:  # the common case: a read at or near the head
            return packed
        # A read in the past (time travel): bisect, so a document with a long
        # history costs O(log versions), not a walk back through all of them.
        i = bisect.bisect_right(versions, at_ts, key=_version_ts)
        return versions[i - 1][1] if i else None

    def apply(self, ts: int, writes: Sequence[tuple[bytes, dict | None, bytes | None]],
              write_keys: dict | None = None) -> list[list[bytes]] | None:
        """Applies one commit's writes to this table at `ts`.

        Args:
            ts: the commit's ts, above every ts applied before.
            writes: (internal id, new document or None, packed new document or None).
            write_keys: if given, filled with (table_number, index) -> keys
                removed or added, for the sequencer's conflict window.

        Returns:
            What `apply_columns` returns.
        """
        return self.apply_columns(ts, *(zip(*writes) if writes else ((), (), ())), write_keys)

    def apply_columns(self, ts: int, internal_ids: Sequence[bytes],
                      documents: Sequence[dict | None], packed_documents: Sequence[bytes | None],
                      write_keys: dict | None = None) -> list[list[bytes]] | None:
        """`apply` of writes given as three columns of the same length: the
        internal ids, the new documents (or None) and the packed new documents
        (or None). What `engine.commits.admit` calls: a batch insert's
        columns need not be zipped into rows and back.

        Returns:
            For a batch insert (at least `bulk_apply_min` writes, each
            inserting a new document: they are indexed together, one pass
            per field), the documents' key parts, which the log entry
            carries so that a bulk load need not decode and encode them
            (`load_logged`): one list per column, each with one part per
            document: the encoded _id (by_id's key), the encoded
            _creationTime, then for each schema index the encoding of its
            own fields (its key without the _creationTime and _id that end
            it). Otherwise None: a commit of a few documents is logged as
            before (engine/commits.py `log_entry`).
        """
        assert ts > self.last_ts, "commits applied out of order"
        self.last_ts = ts
        touched = None
        if write_keys is not None and internal_ids:
            touched = [write_keys.setdefault((self.table_number, name), [])
                       for name in self.indexes]
        if self._run:
            self._load_run()
        count = len(internal_ids)
        if count >= bulk_apply_min and self._all_new_columns(internal_ids, documents):
            parts = self._insert_new(internal_ids, documents, packed_documents, [ts] * count,
                                     touched)
            if parts is not None:
                return parts
        self._apply_writes(ts, zip(internal_ids, documents, packed_documents), touched)
        return None

    def _apply_writes(self, ts: int, writes: Iterable[tuple[bytes, dict | None, bytes | None]],
                      touched: list[list[bytes]] | None) -> None:
        for internal_id, document, packed in writes:
            versions = self.versions.get(internal_id)
            if versions is None:
                self.versions[internal_id] = ((ts, packed),)
                if document is not None:
                    self.live_count += 1
                    self._add_keys(internal_id, document, ts, touched)
                continue
            previous_packed = versions[-1][1]
            previous = None if previous_packed is None else values.unpack(previous_packed)
            if type(versions) is tuple:  # written again: from now on a list
                versions = self.versions[internal_id] = list(versions)
            versions.append((ts, packed))
            self.live_count += (document is not None) - (previous is not None)
            self._move_keys(internal_id, previous, document, ts, touched)

    def _keys_of(self, document: dict | None) -> list[bytes | None]:
        """Each index's key for `document` (all None for no document), in index order."""
        if document is None:
            return [None] * len(self._index_states)
        # by_id's key is the encoded _id, by_creation_time's the encoded
        # _creationTime before it, and every schema index's key ends with
        # by_creation_time's: encode each once and concatenate.
        id_key = keys.encode_key(document.get("_id", keys.UNDEFINED))
        suffix = keys.encode_key(document.get("_creationTime", keys.UNDEFINED)) + id_key
        result = [id_key, suffix]
        for fields in self._user_key_fields:
            if len(fields) == 1:
                result.append(keys.encode_key(field_value(document, fields[0])) + suffix)
            else:
                result.append(b"".join([keys.encode_key(field_value(document, field))
                                        for field in fields]) + suffix)
        return result

    def _keys_of_many(self, documents: list[dict]) -> list[list[bytes]]:
        """`_keys_of` of many documents, transposed: one list of keys per
        index, each field encoded for all documents at once."""
        return keys_from_parts(self._key_parts_of_many(documents))

    def _key_parts_of_many(self, documents: list[dict]) -> list[list[bytes]]:
        """The key parts of many documents (see `apply_columns`), each field
        encoded for all documents at once."""
        parts = [_field_keys(documents, "_id"), _field_keys(documents, "_creationTime")]
        for fields in self._user_key_fields:
            if len(fields) == 1:
                parts.append(_field_keys(documents, fields[0]))
            else:
                parts.append(list(map(b"".join, zip(*[_field_keys(documents, field)
                                                       for field in fields]))))
        return parts

    def _add_keys(self, internal_id: bytes, document: dict, ts: int,
                  touched: list[list[bytes]] | None) -> None:
        """`_move_keys` for a new document (an insert), which has no old keys."""
        new_keys = self._keys_of(document)
        if touched is not None:
            for written, new_key in zip(touched, new_keys):
                written.append(new_key)
        for index, new_key in zip(self._index_states, new_keys):
            index.add(new_key, internal_id, ts)

    def _move_keys(self, internal_id: bytes, previous: dict | None, document: dict | None,
                   ts: int, touched: list[list[bytes]] | None) -> None:
        """Rule 1 for every index; `touched`, if given, holds one list per
        index that receives the keys written (see `apply`)."""
        for index, old_key, new_key, written in zip(
                self._index_states, self._keys_of(previous), self._keys_of(document),
                touched or itertools.repeat(None)):
            if written is not None:
                # A document changed under a key that stayed put still changes
                # what a read of that key saw, so both keys count as written.
                if old_key is not None:
                    written.append(old_key)
                if new_key is not None and new_key != old_key:
                    written.append(new_key)
            if old_key == new_key:
                if old_key is not None:
                    index.touch(old_key)
                continue
            if old_key is not None:
                index.remove(old_key, ts)
            if new_key is not None:
                index.add(new_key, internal_id, ts)
