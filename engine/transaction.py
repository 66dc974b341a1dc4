"""A transaction: one function's view of the database and its buffered writes.

Theory of operation. A transaction reads at one snapshot ts S and sees the
database as of S plus its own earlier writes (DESIGN.md section 3). Rules:

1. Every read records an index key range in the read set: `get` the one key of
   the id in `by_id`, a scan the range from its start to the last key the
   caller consumed (all of it if the scan ran to the end).
2. Writes are checked (schema, value limits) when made and buffered in
   `writes`, one entry per document holding its final state; later reads
   merge them over the snapshot in key order.
3. New ids and `_creationTime` come from the transaction's seed and "now", so
   re-running a logged commit with its seed reproduces its writes exactly.
4. Limits (documents scanned, bytes read and written, ranges) are counted as
   the function goes and raise `LIMIT_EXCEEDED` at the step that crosses them.

Tables are created on first insert; a read of a table that does not exist yet
records a read of its name in the catalog's `tables` pseudo-index, so a
concurrent commit that creates it conflicts.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from typing import Callable, Iterator

from engine import ids, keys, limits, values
from engine.catalog import Catalog
from engine.errors import EddyError, ErrorCode
from engine.readsets import ReadSet
from engine.shard import BUILTIN_INDEXES, ShardState, index_fields as full_index_fields, index_key
from engine.world import split_seed

# An id's counter as the ids' hash takes it: 4 bytes, big-endian.
_ID_COUNTER = struct.Struct(">I")

# The pseudo-index that records reads and creations of table names.
TABLES_INDEX = (0, "tables")

SYSTEM_FIELDS = ("_id", "_creationTime")


def _after(key: bytes) -> bytes:
    """The smallest key above `key` (keys are prefix-free)."""
    return key + b"\x00"


class Transaction:
    """A function's snapshot, read set and buffered writes.

    Fields:
        snapshot_ts: fixed at creation.
        read_set: appended by every read.
        writes: (table number, internal id) -> final document or None
            (deleted), in the order first written.
        created_tables: names of tables this transaction created.
        scanned_count, read_bytes, written_bytes: limit counters.
    """

    def __init__(self, catalog: Catalog, snapshot_ts: int, *, schema=None, writable: bool = False,
                 seed: int = 0, now_ms: float = 0.0,
                 create_table: Callable[[str], ShardState] | None = None,
                 check_deadline: Callable[[], None] | None = None) -> None:
        self.catalog = catalog
        self.snapshot_ts = snapshot_ts
        self.schema = schema
        self.writable = writable
        self.seed = seed
        self.now_ms = now_ms
        self._create_table = create_table or catalog.create
        # Raises EddyError(TIMEOUT) once the function has run too long; called
        # at every database call, but inserts (see `insert`). The runner
        # supplies it; it reads the World's clock.
        self.check_deadline = check_deadline or (lambda: None)
        self._inserts_unchecked = 0  # inserts before `insert` next calls it
        # Separate streams, so that app code drawing from ctx.random does not
        # change the ids a re-run generates.
        # Both are made on first use: seeding a generator costs more than a
        # small mutation's whole write path.
        self._id_hasher = None  # blake2b holding the ids' prefix; made by the second insert
        self._id_count = 0  # internal ids drawn so far
        # Internal ids drawn ahead and their texts in table `_texts_table`,
        # next one last; see `_new_id`.
        self._ids_ahead: list[bytes] | tuple = ()
        self._texts_ahead: list[str] | tuple = ()
        self._texts_table = 0
        self._random_state: random.Random | None = None
        self._next_creation_ms = now_ms
        self.read_set = ReadSet()
        # What the function printed, as Convex log lines; filled by the runner.
        self.log_lines: list[str] = []
        self.writes: dict[tuple[int, bytes], dict | None] = {}
        self.created_tables: list[str] = []
        self.scanned_count = 0
        self.read_bytes = 0
        self.written_bytes = 0
        self.paginated = False
        # table name -> (its number, its schema's `flat_check` or None), set
        # by the first insert into the table (see `insert`).
        self._insert_plans: dict[str, tuple[int, Callable | None]] = {}

    def _next_internal_id(self) -> bytes:
        """The next new document's internal id: 16 bytes from the ids' stream of
        the seed (a hash of seed and counter: no generator to seed per call)."""
        self._id_count += 1
        hasher = self._id_hasher
        if hasher is None:
            if self._id_count == 1:
                # Most transactions insert one document: hash it directly.
                return hashlib.blake2b(_ids_prefix(self.seed) + b"\x00\x00\x00\x01",
                                       digest_size=16).digest()
            # blake2b(prefix + counter) is blake2b(prefix) fed the counter:
            # absorb the prefix once and copy that state per id.
            hasher = self._id_hasher = hashlib.blake2b(_ids_prefix(self.seed), digest_size=16)
        hasher = hasher.copy()
        hasher.update(_ID_COUNTER.pack(self._id_count))
        return hasher.digest()

    def _new_id(self, number: int) -> tuple[bytes, str]:
        """The next new document's internal id and its id text in table `number`.

        A transaction that inserts many documents draws its ids ahead in
        blocks (1, 1, 2, 4, ... up to `ids.ids_per_encode_max`: never more
        than it has used so far, so at most half of what it draws goes
        unused) and encodes each block at once
        (`ids.encode_ids`). Drawing ahead does not change which insert gets
        which id: they are used in order, and only by inserts that passed
        their checks (rule 3).
        """
        ahead = self._ids_ahead
        if ahead:
            if self._texts_table != number:
                self._texts_ahead = ids.encode_ids(number, ahead[::-1])[::-1]
                self._texts_table = number
            return ahead.pop(), self._texts_ahead.pop()
        if self._id_count < 2:
            internal_id = self._next_internal_id()
            return internal_id, ids.encode_id(number, internal_id)
        block = self._next_internal_ids_reversed(min(self._id_count, ids.ids_per_encode_max))
        texts = ids.encode_ids(number, block)
        self._ids_ahead, self._texts_ahead, self._texts_table = block, texts, number
        return block.pop(), texts.pop()

    def _next_internal_ids_reversed(self, count: int) -> list[bytes]:
        """The next `count` internal ids (`_next_internal_id`), the last first."""
        hasher = self._id_hasher
        if hasher is None:
            hasher = self._id_hasher = hashlib.blake2b(_ids_prefix(self.seed), digest_size=16)
        first = self._id_count + 1
        self._id_count += count
        block = []
        for counter in map(_ID_COUNTER.pack, range(first + count - 1, first - 1, -1)):
            state = hasher.copy()
            state.update(counter)
            block.append(state.digest())
        return block

    @property
    def random(self) -> random.Random:
        """`ctx.random`: seeded from the transaction's seed, apart from the ids' stream."""
        if self._random_state is None:
            self._random_state = random.Random(split_seed(self.seed, "random"))
        return self._random_state

    # ----- reads -----------------------------------------------------------

    def resolve_table(self, number: int) -> str | None:
        return self.catalog.table_name(number)

    def _shard_for_read(self, table: str) -> ShardState | None:
        shard = self.catalog.shard(table)
        if shard is None:
            key = keys.encode_key(table)
            self.read_set.add(TABLES_INDEX, key, _after(key))
        return shard

    def get(self, document_id: str) -> dict | None:
        """The document with this id as of the snapshot plus own writes."""
        return self._get(document_id)[2]

    def _get(self, document_id: str) -> tuple[int, bytes, dict | None]:
        """`get`, with the id decoded: (table number, internal id, document or None)."""
        if not isinstance(document_id, str):
            raise EddyError(ErrorCode.INVALID_ID,
                            f"Expected an id string, got {values.type_name(document_id)}.")
        self.check_deadline()
        number, internal_id = ids.decode_id(document_id)
        shard = self.catalog.shards.get(number)
        if shard is None:
            return number, internal_id, None
        key = keys.encode_key(document_id)
        self._add_range((number, "by_id"), key, key + b"\x00")  # _after(key)
        self._count_scanned(0)
        writes = self.writes
        if writes and (number, internal_id) in writes:
            document = writes[(number, internal_id)]
            return number, internal_id, (None if document is None
                                         else values.unpack(values.pack(document)))
        packed = shard.get(internal_id, self.snapshot_ts)
        if packed is None:
            return number, internal_id, None
        self.read_bytes += len(packed)
        return number, internal_id, values.unpack(packed)

    def index_fields(self, table: str, index: str) -> list[str]:
        shard = self.catalog.shard(table)
        if shard is not None:
            fields = shard.index_fields(index)
        else:
            fields = _declared_index_fields(self.catalog, table, index)
        if fields is None:
            raise EddyError(ErrorCode.INDEX_NOT_FOUND,
                            f"Index {table}.{index} not found.", table=table, index=index)
        return list(fields)

    def coerce_index_value(self, table: str, field: str, value):
        if self.schema is None:
            return value
        return self.schema.coerce_index_value(table, field, value)

    def begin_paginate(self) -> None:
        if self.paginated:
            raise EddyError(ErrorCode.BAD_REQUEST,
                            "MultiplePaginatedDatabaseQueries: a function may run only one "
                            "paginated query.")
        self.paginated = True

    def scan(self, table: str, index: str, lo: bytes, hi: bytes | None,
             descending: bool) -> Iterator[tuple[bytes, dict]]:
        """Documents of `index` in [lo, hi), merged with own writes; see rule 1."""
        self.check_deadline()
        shard = self.catalog.shard(table)
        if shard is not None:
            state = shard.indexes.get(index)
            if state is not None:
                return self._scan(shard, index, state.fields, lo, hi, descending)
        self.index_fields(table, index)  # raises INDEX_NOT_FOUND for an undeclared index
        self._shard_for_read(table)  # records the read of a table that does not exist yet
        return iter(())

    def _scan(self, shard: ShardState, index: str, fields: list[str], lo: bytes,
              hi: bytes | None, descending: bool) -> Iterator[tuple[bytes, dict]]:
        number = shard.table_number
        overlay: list[tuple[bytes, dict]] = []
        written: set[bytes] = set()
        for (table_number, internal_id), document in self.writes.items():
            if table_number != number:
                continue
            written.add(internal_id)
            if document is not None:
                key = index_key(document, fields)
                if lo <= key and (hi is None or key < hi):
                    overlay.append((key, document))
        if overlay:
            overlay.sort(key=lambda item: item[0], reverse=descending)
        snapshot_ts = self.snapshot_ts
        base = shard.indexes[index].scan(lo, hi, snapshot_ts, descending)
        last_key = None
        exhausted = False
        try:
            if not written:
                # No own writes in this table (most reads): the snapshot's rows as they are.
                for key, internal_id in base:
                    packed = shard.get(internal_id, snapshot_ts)
                    last_key = key
                    self._count_scanned(len(packed))
                    yield key, values.unpack(packed)
                exhausted = True
                return
            position = 0
            for key, internal_id in base:
                if internal_id in written:
                    continue
                while position < len(overlay) and (
                        (overlay[position][0] > key) if descending else (overlay[position][0] < key)):
                    last_key, document = overlay[position]
                    position += 1
                    self._count_scanned(0)
                    yield last_key, values.unpack(values.pack(document))
                packed = shard.get(internal_id, snapshot_ts)
                last_key = key
                self._count_scanned(len(packed))
                yield key, values.unpack(packed)
            while position < len(overlay):
                last_key, document = overlay[position]
                position += 1
                self._count_scanned(0)
                yield last_key, values.unpack(values.pack(document))
            exhausted = True
        finally:
            # A generator only stops at a yield or by raising: if it yielded
            # nothing and did not finish, a limit error cut it short and the
            # function is failing anyway.
            index_name = (number, index)
            if exhausted:
                self._add_range(index_name, lo, hi)
            elif last_key is not None and descending:
                self._add_range(index_name, last_key, hi)
            elif last_key is not None:
                self._add_range(index_name, lo, _after(last_key))

    def _add_range(self, index_name: tuple[int, str], lo: bytes, hi: bytes | None) -> None:
        self.read_set.add(index_name, lo, hi)
        if len(self.read_set.ranges.get(index_name, ())) > limits.index_ranges_max:
            raise EddyError(ErrorCode.LIMIT_EXCEEDED,
                            f"Too many index ranges read in one function (limit "
                            f"{limits.index_ranges_max}).", limit="index_ranges_max")

    def _count_scanned(self, size: int) -> None:
        self.scanned_count += 1
        self.read_bytes += size
        if self.scanned_count > limits.documents_scanned_max:
            raise EddyError(ErrorCode.LIMIT_EXCEEDED,
                            f"Too many documents read in one function (limit "
                            f"{limits.documents_scanned_max}).", limit="documents_scanned_max")
        if self.read_bytes > limits.read_bytes_max:
            raise EddyError(ErrorCode.LIMIT_EXCEEDED,
                            f"Too many bytes read in one function (limit "
                            f"{limits.read_bytes_max}).", limit="read_bytes_max")

    # ----- writes ----------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.writable:
            raise EddyError(ErrorCode.READ_ONLY,
                            "Queries are read-only: call ctx.db writes from a mutation.")

    def _check_fields(self, table: str, fields) -> tuple[dict, int]:
        """The schema-normalized fields and their size (the fields may be
        `fields` itself: callers copy them into the new document)."""
        if not isinstance(fields, dict):
            raise EddyError(ErrorCode.INVALID_VALUE,
                            f"A document must be an object, got {values.type_name(fields)}.")
        if self.schema is None:
            return fields, values.check_document_fields(fields)
        return self.schema.check_document(table, fields, self.resolve_table)

    def _record_write(self, number: int, internal_id: bytes, document: dict | None,
                      size: int = 0) -> None:
        writes = self.writes
        if len(writes) >= limits.documents_written_max and (number, internal_id) not in writes:
            raise EddyError(ErrorCode.LIMIT_EXCEEDED,
                            f"Too many documents written in one function (limit "
                            f"{limits.documents_written_max}).", limit="documents_written_max")
        if document is not None:
            self.written_bytes += size
            if self.written_bytes > limits.write_bytes_max:
                raise EddyError(ErrorCode.LIMIT_EXCEEDED,
                                f"Too many bytes written in one function (limit "
                                f"{limits.write_bytes_max}).", limit="write_bytes_max")
        writes[(number, internal_id)] = document

    def insert(self, table: str, fields: dict) -> str:
        """Buffers a new document and returns its id.

        After the first insert into a table, the transaction remembers the
        table's number and its schema's flat check (`_insert_plans`), so a
        flat document (most inserts) costs one pass and a few lookups; any
        other document, and every failure, takes the full checks.
        """
        if not self.writable:
            self._require_writable()
        # The clock is read at the first insert and every
        # `inserts_per_deadline_check`th after it: a run of inserts costs a
        # few microseconds each, so the limit is still caught within a
        # fraction of a millisecond.
        self._inserts_unchecked -= 1
        if self._inserts_unchecked < 0:
            self._inserts_unchecked = inserts_per_deadline_check - 1
            self.check_deadline()
        plan = self._insert_plans.get(table) if type(table) is str else None
        if plan is None:
            fields, size, number = self._first_insert_checks(table, fields)
        else:
            number, check = plan
            size = check(fields) if check is not None and type(fields) is dict else None
            if size is None:
                fields, size = self._check_fields(table, fields)
        # Ids come after the checks, so a failed insert the function catches
        # does not move the ids' stream (rule 3).
        ids_ahead = self._ids_ahead
        if ids_ahead and self._texts_table == number:
            internal_id, document_id = ids_ahead.pop(), self._texts_ahead.pop()
        else:
            internal_id, document_id = self._new_id(number)
        creation_ms = self._next_creation_ms
        self._next_creation_ms = math.nextafter(creation_ms, math.inf)
        document = {"_id": document_id, "_creationTime": creation_ms, **fields}
        writes = self.writes
        if len(writes) < limits.documents_written_max and \
                self.written_bytes + size <= limits.write_bytes_max:
            self.written_bytes += size
            writes[number, internal_id] = document
        else:
            self._record_write(number, internal_id, document, size)  # raises its limit's error
        return document_id

    def _first_insert_checks(self, table: str, fields) -> tuple[dict, int, int]:
        """`insert`'s checks of its first document in `table`, the table made
        if new: (the fields, their size, the table number). Remembers the
        table's plan for the next inserts, unless this is the transaction's
        first write."""
        if type(table) is not str or table not in _valid_table_names:
            _check_table_name(table)
        check = None if self.schema is None else self.schema.flat_check(table)
        size = check(fields) if check is not None and type(fields) is dict else None
        if size is None:
            fields, size = self._check_fields(table, fields)
        number = self.catalog.numbers.get(table)
        if number is None:
            number = self._create_table(table).table_number
            self.created_tables.append(table)
        if type(table) is str and self.writes:  # most transactions write one document
            self._insert_plans[table] = (number, check)
        return fields, size, number

    def _existing(self, document_id: str, verb: str) -> tuple[int, bytes, dict]:
        if not self.writable:
            self._require_writable()
        number, internal_id, document = self._get(document_id)
        if document is None:
            raise EddyError(ErrorCode.DOCUMENT_NOT_FOUND,
                            f"Cannot {verb} document with id {document_id!r}: it does not exist.",
                            id=document_id)
        return number, internal_id, document

    def patch(self, document_id: str, changes: dict) -> None:
        """Shallow-merges `changes` into a document; a value of keys.UNDEFINED removes a field."""
        number, internal_id, document = self._existing(document_id, "patch")
        if not isinstance(changes, dict):
            raise EddyError(ErrorCode.INVALID_VALUE,
                            f"patch takes an object, got {values.type_name(changes)}.")
        fields = {k: v for k, v in document.items() if k not in SYSTEM_FIELDS}
        for name, value in changes.items():
            if name in SYSTEM_FIELDS:
                _check_system_field(document, name, value)
            elif value is keys.UNDEFINED:
                fields.pop(name, None)
            else:
                fields[name] = value
        self._replace_fields(number, internal_id, document, fields)

    def replace(self, document_id: str, value: dict) -> None:
        """Replaces every user field of a document."""
        number, internal_id, document = self._existing(document_id, "replace")
        if not isinstance(value, dict):
            raise EddyError(ErrorCode.INVALID_VALUE,
                            f"replace takes an object, got {values.type_name(value)}.")
        fields = {}
        for name, field in value.items():
            if name in SYSTEM_FIELDS:
                _check_system_field(document, name, field)
            else:
                fields[name] = field
        self._replace_fields(number, internal_id, document, fields)

    def _replace_fields(self, number: int, internal_id: bytes, document: dict, fields: dict) -> None:
        table = self.catalog.shards[number].name
        fields, size = self._check_fields(table, fields)
        new_document = {"_id": document["_id"], "_creationTime": document["_creationTime"], **fields}
        self._record_write(number, internal_id, new_document, size)

    def delete(self, document_id: str) -> None:
        number, internal_id, _ = self._existing(document_id, "delete")
        self._record_write(number, internal_id, None)

    def normalize_id(self, table: str, text) -> str | None:
        """`text` if it is an id of `table`, else None."""
        if not isinstance(text, str):
            return None
        try:
            number, _ = ids.decode_id(text)
        except EddyError:
            return None
        return text if self.catalog.table_name(number) == table else None


def _declared_index_fields(catalog: Catalog, table: str, index: str) -> list[str] | None:
    if index in BUILTIN_INDEXES:
        return BUILTIN_INDEXES[index]
    user = catalog.index_definitions.get(table, {}).get(index)
    return None if user is None else full_index_fields(user)


def _check_table_name(table) -> None:
    """Raises unless `table` is a valid table name; remembers it if so."""
    if not isinstance(table, str) or not table or table.startswith("_") or \
            not table.replace("_", "a").isalnum() or not table.isascii() or \
            len(table) > limits.path_component_chars_max or table[0].isdigit():
        raise EddyError(ErrorCode.INVALID_VALUE,
                        f"Invalid table name {table!r}: use letters, digits and _, "
                        f"not starting with _ or a digit.")
    if type(table) is str and len(_valid_table_names) < valid_table_names_max:
        _valid_table_names.add(table)


# Inserts per `check_deadline` call in a run of inserts: reading the clock
# costs about 0.15 us, a twentieth of an insert; 16 inserts take well under
# a millisecond against a limit of `limits.query_user_ms_max`.
inserts_per_deadline_check = 16

# Table names `_check_table_name` has passed. An app writes to a few tables
# over and over, and a set lookup is cheaper than the checks; the bound keeps
# a stream of made-up names from growing it without end (past it, names are
# still checked, just not remembered).
_valid_table_names: set[str] = set()
valid_table_names_max = 1024


def _ids_prefix(seed: int) -> bytes:
    """`split_seed(seed, "ids")` as 8 bytes: the prefix every new id's hash starts with.

    The same digest of the same text (`repr((seed, ("ids",)))`), formatted
    directly for an int seed: half the cost, once per writing transaction.
    """
    if type(seed) is not int:
        return split_seed(seed, "ids").to_bytes(8, "big")
    return hashlib.blake2b(b"(%d, ('ids',))" % seed, digest_size=8).digest()


def _check_system_field(document: dict, name: str, value) -> None:
    if document.get(name) != value:
        raise EddyError(ErrorCode.INVALID_VALUE,
                        f"System field {name} cannot be changed.", field=name)
