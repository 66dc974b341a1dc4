"""Serving a live query's re-evaluation from its views, and its fast path.

Theory of operation. A `ViewReader` is the `Reader` (docs/internals.md) a
live query runs against. It wraps the query's read-only `Transaction` (which
keeps the limits, the read set and everything else a function touches) and
replaces its two reads. Rules:

1. A scan of a range the query scanned before, or any live query scans now,
   is served from that range's view (engine/views.py): rows come from the
   view and no shard is touched. If the function consumes more rows than the
   view holds and the view does not cover its whole range, the rest comes
   from the shard at the same ts. A read of a range no view holds (a first
   run, or the function's control flow changed) reads the shard: a fallback.
   A `get` is the same with a point view of one `by_id` key.
2. The read set is recorded exactly as `Transaction` records it, from what
   the function consumed (the start of the range to the last row taken, or the
   whole range when it ran to the end), so invalidation and the read sets a
   from-scratch run records stay identical. Each read is also kept as a `Read`
   (its view key and the rows consumed), which becomes the query's view.
3. Documents handed to the function are unpacked from the view's packed rows:
   fresh copies, so app code may mutate them without touching a view.
4. The fast path. A run whose only read was one scan and whose value is the
   very list the `take` or `collect` of that scan returned (same object, rows
   unmodified) records a `FastPath`: its later results are that terminal
   applied to the view, with no function run (`fast_result`). Likewise a run
   whose only read was one `get` and whose value is the very document (or
   None) the get returned: its later results are the point view's document
   (`FastPath.is_get`). This assumes the function's control flow does not
   depend on the rows it read; a function that returns the terminal's list
   only for some rows must not rely on it (docs/internals.md "Views").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator

from engine import ids, keys, limits, values
from engine.errors import EddyError, ErrorCode
from engine.transaction import Transaction
from engine.views import RangeKey, Row, View, ViewKey, ViewSet, after


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ = _NotRead()  # ViewReader.got before any get

# Document ids decoded by `ViewReader.get`, most recently used kept. Decoding
# (base32 and a checksum, in Python) costs more than serving the read from a
# view, and live queries re-read the same documents on every change; 4,096
# covers the documents read by thousands of subscriptions at about 200 bytes
# an entry.
decoded_ids_max = 4096


@functools.lru_cache(maxsize=decoded_ids_max)
def _decode_id(text: str) -> tuple[int, bytes]:
    return ids.decode_id(text)


@dataclasses.dataclass
class Read:
    """One read a run made (rule 2): the view it becomes, and its rows."""

    key: ViewKey
    rows: list[Row]
    exhausted: bool
    is_scan: bool


@dataclasses.dataclass(frozen=True, eq=False)
class FastPath:
    """A query whose result is its one scan's terminal (rule 4).

    `plan` is the engine.queries.QueryPlan (its filters), `count` the take
    count or None for collect; `is_get` marks the fast path of a `get`
    (plan None, count None), whose result is its point view's document.
    `share` is what `cache_key` adds to the view key (computed once: the
    actor groups by it on every change).
    """

    plan: Any
    count: int | None
    is_get: bool = False
    share: tuple = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Filter expressions compare only by identity: share only plain
        # terminals (a filtered one carries a marker unique to this path).
        filtered = self.plan is not None and bool(self.plan.filters)
        object.__setattr__(self, "share", (self.count, self.is_get, filtered))

    @property
    def filtered(self) -> bool:
        return self.share[2]

    def cache_key(self, view_key: ViewKey, owner: int) -> tuple:
        """Equal for two fast paths that compute the same result from one view."""
        return (view_key, self.share, owner if self.filtered else None)


class ViewReader:
    """The Reader of a live query's run; see the module docstring.

    Fields:
        reads: every read made, in order (rule 2); appended as scans close.
        other_read_count: reads that are not views (a table that does not
            exist, read through the tables pseudo-index).
        served_count, fallback_count: reads served from a view / from a shard.
        terminals: (plan, count, documents) for each take/collect the
            function ran (engine/queries.py notes them).
        page_end_cursor: set by `paginate` (engine/queries.py).
        got: the document (or None) the last `get` returned, as handed out;
            NOT_READ until a get.
        fast: the run's FastPath or None; set by actors/live.py when the run ends.
    """

    def __init__(self, txn: Transaction, views: ViewSet,
                 previous: dict[RangeKey, View] | None = None) -> None:
        self.txn = txn
        self.views = views
        self.previous = previous or {}
        self.reads: list[Read] = []
        self.other_read_count = 0
        self.served_count = 0
        self.fallback_count = 0
        self.terminals: list[tuple[Any, int | None, list]] = []
        self.page_end_cursor: str | None = None
        self.got: Any = NOT_READ
        self.fast: FastPath | None = None
        # What the function's ctx reads from its transaction.
        self.now_ms = txn.now_ms
        self.read_set = txn.read_set
        # What the function prints (the runner captures it into this list);
        # the transaction's own list where it has one, so both see the lines.
        self.log_lines: list[str] = getattr(txn, "log_lines", None)
        if self.log_lines is None:
            self.log_lines = txn.log_lines = []

    @property
    def random(self):
        return self.txn.random

    # ----- the Reader protocol, forwarded -----------------------------------

    def index_fields(self, table: str, index: str) -> list[str]:
        return self.txn.index_fields(table, index)

    def coerce_index_value(self, table: str, field: str, value):
        return self.txn.coerce_index_value(table, field, value)

    def begin_paginate(self) -> None:
        self.txn.begin_paginate()

    def normalize_id(self, table: str, text) -> str | None:
        return self.txn.normalize_id(table, text)

    def resolve_table(self, number: int) -> str | None:
        return self.txn.resolve_table(number)

    def note_terminal(self, plan, count: int | None, documents: list) -> None:
        self.terminals.append((plan, count, documents))

    # A live query's transaction is read-only: its writes raise
    # ReadOnlyTransaction there, as a query's do over HTTP.

    def insert(self, table: str, fields: dict) -> str:
        return self.txn.insert(table, fields)

    def patch(self, document_id: str, changes: dict) -> None:
        self.txn.patch(document_id, changes)

    def replace(self, document_id: str, value: dict) -> None:
        self.txn.replace(document_id, value)

    def delete(self, document_id: str) -> None:
        self.txn.delete(document_id)

    # ----- reads -----------------------------------------------------------

    def _view_for(self, range_key: RangeKey) -> View | None:
        view = self.previous.get(range_key)
        return view if view is not None else self.views.find(range_key)

    def get(self, document_id: str) -> dict | None:
        """As Transaction.get (read-only), served from a point view if one exists."""
        txn = self.txn
        if not isinstance(document_id, str):
            raise EddyError(ErrorCode.INVALID_ID,
                            f"Expected an id string, got {values.type_name(document_id)}.")
        txn.check_deadline()
        number, internal_id = _decode_id(document_id)
        shard = txn.catalog.shards.get(number)
        if shard is None:
            return None
        key = keys.encode_key(document_id)
        range_key = ((number, "by_id"), key, after(key), False)
        txn._add_range(range_key[0], key, range_key[2])
        txn._count_scanned(0)
        view = self._view_for(range_key)
        if view is not None:
            self.served_count += 1
            row = view.rows.get(key)
            packed = None if row is None else row[1]
        else:
            self._fallback()
            packed = shard.get(internal_id, txn.snapshot_ts)
        rows = [] if packed is None else [(key, internal_id, packed)]
        self.reads.append(Read(range_key + (None,), rows, True, False))
        if packed is None:
            self.got = None
            return None
        txn.read_bytes += len(packed)
        self.got = values.unpack(packed)
        return self.got

    def scan(self, table: str, index: str, lo: bytes, hi: bytes | None,
             descending: bool) -> Iterator[tuple[bytes, dict]]:
        """As Transaction.scan (read-only), served from a view where one exists."""
        txn = self.txn
        txn.check_deadline()
        txn.index_fields(table, index)
        shard = txn._shard_for_read(table)
        if shard is None:
            self.other_read_count += 1
            return iter(())
        return self._scan(shard, index, lo, hi, descending)

    def _fallback(self) -> None:
        self.fallback_count += 1

    def _scan(self, shard, index: str, lo: bytes, hi: bytes | None,
              descending: bool) -> Iterator[tuple[bytes, dict]]:
        txn = self.txn
        index_name = (shard.table_number, index)
        range_key = (index_name, lo, hi, descending)
        view = self._view_for(range_key)
        consumed: list[Row] = []
        exhausted = False
        try:
            if view is not None:
                self.served_count += 1
                for row in view.scan_rows():
                    consumed.append(row)
                    txn._count_scanned(len(row[2]))
                    yield row[0], values.unpack(row[2])
                rest_lo, rest_hi = view.rest_range()
            else:
                self._fallback()
                rest_lo, rest_hi = lo, hi
            if rest_hi is None or rest_lo < rest_hi:
                ts = txn.snapshot_ts
                for key, internal_id in shard.indexes[index].scan(rest_lo, rest_hi, ts, descending):
                    packed = shard.get(internal_id, ts)
                    consumed.append((key, internal_id, packed))
                    txn._count_scanned(len(packed))
                    yield key, values.unpack(packed)
            exhausted = True
        finally:
            # Rule 2: what Transaction._scan records (its `last_key` is the
            # last row counted, yielded or not).
            if exhausted:
                txn._add_range(index_name, lo, hi)
            elif consumed and descending:
                txn._add_range(index_name, consumed[-1][0], hi)
            elif consumed:
                txn._add_range(index_name, lo, after(consumed[-1][0]))
            if exhausted or consumed:
                limit = None if exhausted else len(consumed)
                self.reads.append(Read(range_key + (limit,), consumed, exhausted, True))


def fast_path_of(reader: ViewReader, value: Any, returns_checked: bool) -> FastPath | None:
    """The run's FastPath (rule 4), or None if its result is not its one
    scan's terminal or its one get's document."""
    if (returns_checked or reader.other_read_count or len(reader.reads) != 1
            or reader.page_end_cursor is not None):
        return None
    if not reader.reads[0].is_scan:
        return _get_fast_path_of(reader, value)
    if len(reader.terminals) != 1:
        return None
    plan, count, documents = reader.terminals[0]
    if documents is not value or not isinstance(value, list):
        return None
    read = reader.reads[0]
    fast = FastPath(plan, count)
    again = fast_result(fast, read.rows, read.exhausted)
    # The rows must be unmodified: the list the function returned equals the
    # terminal applied afresh to what it read.
    if again is None or values.pack(again[0]) != values.pack(value):
        return None
    return fast


def _get_fast_path_of(reader: ViewReader, value: Any) -> FastPath | None:
    read = reader.reads[0]
    if reader.terminals or value is not reader.got:
        return None
    # The document must be unmodified: the value equals the row as stored.
    if (values.pack(None) if not read.rows else read.rows[0][2]) != values.pack(value):
        return None
    return FastPath(None, None, is_get=True)


def get_result(view: View) -> tuple[Any, Row | None]:
    """A get fast path's result over its point view: (the document or None, its row)."""
    found = view.rows.get(view.lo)
    if found is None:
        return None, None
    internal_id, packed = found
    return values.unpack(packed), (view.lo, internal_id, packed)


def fast_result(fast: FastPath, rows, complete: bool, documents_of: dict | None = None,
                written: dict | None = None) -> tuple[list, int | None, bytes | None] | None:
    """The fast path's terminal over `rows` (scan order, all `complete` says
    the range holds, or its first ones): (documents, rows consumed or None
    when it read to the end, key of the last row consumed). None if it needs
    rows beyond `rows` or crosses a read limit: then the function runs and
    reports it. `documents_of` (a View's `documents`), if given, holds
    documents unpacked before by row key and receives those unpacked now;
    `written` (packed -> document, from `commit_changes`) holds the group's
    new documents, already unpacked."""
    plan, count = fast.plan, fast.count
    filters = plan.filters
    documents: list = []
    scanned = 0
    read_bytes = 0
    last_key = None
    exhausted = True
    for key, _, packed in rows:
        scanned += 1
        read_bytes += len(packed)
        last_key = key
        if documents_of is None:
            document = values.unpack(packed)
        else:
            known = documents_of.get(key)
            if known is not None and known[0] is packed:
                document = known[1]
            else:
                document = written.get(packed) if written else None
                if document is None:
                    document = values.unpack(packed)
                documents_of[key] = (packed, document)
        if not filters or plan.accepts(document):
            documents.append(document)
            if count is not None and len(documents) == count:
                exhausted = False
                break
    if exhausted and not complete:
        return None
    if scanned > limits.documents_scanned_max or read_bytes > limits.read_bytes_max:
        return None
    return documents, None if exhausted else scanned, last_key
