"""The app-facing query builder: `ctx.db.query(table)` and everything chained on it.

    db.query("messages")                             # QueryBuilder
      .with_index("by_channel", lambda q: q.eq("channel", c))   # or .full_table_scan()
      .filter(lambda q: q.neq(q.field("hidden"), True))          # any number, ANDed
      .order("desc")                                             # at most once
      .take(50)          # or first / unique / collect / paginate / async for

Theory of operation:

1. Building is pure and immutable: every chained call returns a new
   `QueryBuilder` holding a `QueryPlan` (table, index, byte key range, order,
   filter expressions). The index range and the filters are checked when they
   are given, so a wrong query fails at the line that built it.
2. An index range compiles to one byte range `[lo, hi)` of index keys
   (docs/internals.md "Index keys"): the equalities form a key prefix P, and
   the bounds on the next field narrow it (`gte x` -> lo = P+enc(x), `gt x`
   -> lo = succ(P+enc(x)), `lt x` -> hi = P+enc(x), `lte x` -> hi =
   succ(P+enc(x)), no bound -> P or succ(P)). Values first pass through
   `reader.coerce_index_value`.
3. Each terminal makes exactly one `reader.scan(table, index, lo, hi,
   descending)` call (none when the range is empty or `take(0)`), reads no
   row past the last one it needs, and closes the iterator when it stops, so
   the read set covers exactly what was read.
4. Pages (PROTOCOL.md 10.3): a cursor names the index key of the last row a
   page covered, as `"k"` + unpadded urlsafe base64 of the key; `"end"` names
   the end of the query's range. The page after cursor k scans from
   `k + b"\\x00"` ascending (keys are prefix-free, so nothing sorts between k
   and that) or below k descending. A pinned page (`endCursor`) covers
   `(cursor, endCursor]` whatever `numItems` says, so it grows and shrinks
   with the rows inside it instead of shifting. A cursor carries no table
   or index: one made by another query decodes fine and simply names a
   position in this query's index.

Errors: a malformed index range is `INVALID_INDEX_RANGE`, a malformed filter
`INVALID_FILTER`, a malformed cursor `INVALID_CURSOR` (its message contains
"InvalidCursor", which Convex's clients look for), `.unique()` over several
rows `NOT_UNIQUE`, and any other misuse of the builder (an order other than
"asc"/"desc", a call out of order, bad `take` count or pagination options)
`BAD_REQUEST`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any, Callable, Iterator, NamedTuple, NoReturn, Protocol

from engine import keys, limits, values
from engine.errors import EddyError, ErrorCode
from engine.filters import Expression, compile_filter, matches

BY_CREATION_TIME = "by_creation_time"
END_CURSOR = "end"
_KEY_CURSOR_PREFIX = "k"
_KEY_AFTER = b"\x00"  # k + b"\x00" is the least key greater than k, keys being prefix-free.

# Convex recommends a split above 75% of the most items a page may hold
# (6,144 of 8,192), and near the per-call scan limit for the same reason.
_SPLIT_RECOMMENDED_ITEMS = limits.page_items_max * 3 // 4
_SPLIT_RECOMMENDED_ROWS = limits.documents_scanned_max * 3 // 4


class Reader(Protocol):
    """What a query needs from its transaction; see docs/internals.md."""

    def index_fields(self, table: str, index: str) -> list[str]: ...
    def coerce_index_value(self, table: str, field: str, value: Any) -> Any: ...
    def scan(self, table: str, index: str, lo: bytes, hi: bytes | None,
             descending: bool) -> Iterator[tuple[bytes, dict]]: ...
    def begin_paginate(self) -> None: ...

    # Set by `paginate` to its continueCursor: a live query's journal.
    page_end_cursor: str | None


class KeyRange(NamedTuple):
    """Index keys from `lo` (inclusive) to `hi` (exclusive; None is unbounded).

    A named tuple rather than a frozen dataclass: a query builds one per
    `with_index`, and a tuple is made in a fraction of the time.
    """

    lo: bytes = b""
    hi: bytes | None = None

    @property
    def is_empty(self) -> bool:
        return self.hi is not None and self.lo >= self.hi


_WHOLE_RANGE = KeyRange()


class QueryPlan(NamedTuple):
    """Everything a built query will read: the pure description behind a QueryBuilder.

    A named tuple (immutable, as rule 1 wants) rather than a frozen
    dataclass: each chained call makes a new one, and a small query's
    whole cost is a few tens of microseconds, of which a dataclass's
    `replace` took a tenth.
    """

    table: str
    index: str = BY_CREATION_TIME
    key_range: KeyRange = _WHOLE_RANGE
    descending: bool = False
    filters: tuple[Expression, ...] = ()
    index_chosen: bool = False
    order_chosen: bool = False

    def accepts(self, document: dict) -> bool:
        """Whether a document passes every filter of the query."""
        for expression in self.filters:
            if not matches(expression, document):
                return False
        return True


class IndexRangeBuilder:
    """The `q` handed to a `with_index` range function (Convex's rules).

    Equalities on a prefix of the index's fields, in order; then at most one
    lower bound (`gt`/`gte`) and at most one upper bound (`lt`/`lte`), both
    on the field after the equalities. Each call checks its own place in
    that shape and raises `INVALID_INDEX_RANGE` naming what was expected.
    """

    __slots__ = ("_reader", "_table", "_index", "_fields", "_equalities", "_bound_field",
                 "_lower", "_upper")

    def __init__(self, reader: Reader, table: str, index: str, fields: list[str]) -> None:
        self._reader = reader
        self._table = table
        self._index = index
        self._fields = fields
        self._equalities: list[Any] = []
        self._bound_field: str | None = None
        self._lower: tuple[Any, bool] | None = None  # (value, inclusive)
        self._upper: tuple[Any, bool] | None = None  # (value, inclusive)

    def eq(self, field: str, value: Any) -> IndexRangeBuilder:
        """Only index entries whose `field` equals `value`."""
        if self._bound_field is not None:
            self._refuse(f'eq("{field}") after a gt/gte/lt/lte bound; equalities come first')
        self._expect_next_field("eq", field)
        self._equalities.append(self._coerce(field, value))
        return self

    def gt(self, field: str, value: Any) -> IndexRangeBuilder:
        """Only entries whose `field` sorts after `value`."""
        return self._bound("gt", field, value, lower=True, inclusive=False)

    def gte(self, field: str, value: Any) -> IndexRangeBuilder:
        """Only entries whose `field` sorts after or equal to `value`."""
        return self._bound("gte", field, value, lower=True, inclusive=True)

    def lt(self, field: str, value: Any) -> IndexRangeBuilder:
        """Only entries whose `field` sorts before `value`."""
        return self._bound("lt", field, value, lower=False, inclusive=False)

    def lte(self, field: str, value: Any) -> IndexRangeBuilder:
        """Only entries whose `field` sorts before or equal to `value`."""
        return self._bound("lte", field, value, lower=False, inclusive=True)

    def key_range(self) -> KeyRange:
        """The byte range of index keys this range selects (theory rule 2)."""
        prefix = keys.encode_index_key(self._equalities)
        lo: bytes | None = prefix
        hi = keys.prefix_successor(prefix)
        if self._lower is not None:
            value, inclusive = self._lower
            bound = prefix + keys.encode_key(value)
            lo = bound if inclusive else keys.prefix_successor(bound)
        if self._upper is not None:
            value, inclusive = self._upper
            bound = prefix + keys.encode_key(value)
            hi = keys.prefix_successor(bound) if inclusive else bound
        if lo is None:  # Nothing sorts after the lower bound: an empty range.
            return KeyRange(b"", b"")
        return KeyRange(lo, hi)

    def _bound(self, name: str, field: str, value: Any, *, lower: bool, inclusive: bool) -> IndexRangeBuilder:
        if (self._lower if lower else self._upper) is not None:
            kind = "lower (gt/gte)" if lower else "upper (lt/lte)"
            self._refuse(f'{name}("{field}"): a range has at most one {kind} bound')
        if self._bound_field is None:
            self._expect_next_field(name, field)
        elif field != self._bound_field:
            self._refuse(f'{name}("{field}"): both bounds must be on the same field, "{self._bound_field}"')
        self._bound_field = field
        bound = (self._coerce(field, value), inclusive)
        if lower:
            self._lower = bound
        else:
            self._upper = bound
        return self

    def _expect_next_field(self, name: str, field: str) -> None:
        position = len(self._equalities)
        if position >= len(self._fields):
            self._refuse(f'{name}("{field}"): every field of the index is already fixed by eq')
        expected = self._fields[position]
        if field != expected:
            self._refuse(f'{name}("{field}"): the next field of the index is "{expected}"; '
                         "ranges go through the index's fields in order")

    def _coerce(self, field: str, value: Any) -> Any:
        return self._reader.coerce_index_value(self._table, field, value)

    def _refuse(self, problem: str) -> NoReturn:
        raise EddyError(
            ErrorCode.INVALID_INDEX_RANGE,
            f"invalid range for index {self._index} {self._fields} of table "
            f"{self._table}: {problem}",
        )


class QueryBuilder:
    """A query over one table; see the module docstring for the chain and rules.

    Args:
        reader: the transaction's reads (the `Reader` protocol).
        table: the table's name.
    """

    __slots__ = ("_reader", "plan")

    def __init__(self, reader: Reader, table: str, plan: QueryPlan | None = None) -> None:
        self._reader = reader
        self.plan = plan if plan is not None else QueryPlan(table)

    def with_index(self, name: str, range_fn: Callable[[IndexRangeBuilder], Any] | None = None) -> QueryBuilder:
        """Reads the index `name`, optionally only the range `range_fn` builds.

        Raises:
            EddyError(INDEX_NOT_FOUND): the table has no such index.
            EddyError(INVALID_INDEX_RANGE): the range breaks Convex's rules.
            EddyError(BAD_REQUEST): an index was already chosen, or filter or
                order came first.
        """
        self._check_index_not_chosen("with_index")
        fields = self._reader.index_fields(self.plan.table, name)
        builder = IndexRangeBuilder(self._reader, self.plan.table, name, fields)
        if range_fn is not None:
            returned = range_fn(builder)
            if returned is not None and not isinstance(returned, IndexRangeBuilder):
                builder._refuse("the range function must return q (or a chain of calls on it)")
        # Nothing else is chosen yet (checked above): the plan is made whole.
        return QueryBuilder(self._reader, "", QueryPlan(self.plan.table, name, builder.key_range(),
                                                         False, (), True, False))

    def full_table_scan(self) -> QueryBuilder:
        """Reads the whole table in creation order (the same as choosing no index)."""
        self._check_index_not_chosen("full_table_scan")
        return self._replace(index_chosen=True)

    def filter(self, predicate: Callable[[Any], Any]) -> QueryBuilder:
        """Keeps only documents for which `predicate(q)`'s expression is True.

        Raises:
            EddyError(INVALID_FILTER): the predicate did not build an expression.
        """
        expression = compile_filter(predicate)
        return self._replace(filters=self.plan.filters + (expression,))

    def order(self, order: str) -> QueryBuilder:
        """Reads in ascending ("asc", the default) or descending ("desc") index order.

        Raises:
            EddyError(BAD_REQUEST): another order, or order called twice.
        """
        if order not in ("asc", "desc"):
            raise EddyError(ErrorCode.BAD_REQUEST, f'order must be "asc" or "desc", got {order!r}')
        if self.plan.order_chosen:
            raise EddyError(ErrorCode.BAD_REQUEST, "order can be called only once on a query")
        return self._replace(descending=order == "desc", order_chosen=True)

    async def take(self, count: int) -> list[dict]:
        """The first `count` documents (fewer if the query has fewer).

        Not a checkpoint: it runs to completion without yielding to the
        scheduler. It reads rows only until it has `count` documents.

        Raises:
            EddyError(BAD_REQUEST): count is not an int >= 0.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise EddyError(ErrorCode.BAD_REQUEST, f"take needs an int >= 0, got {count!r}")
        if count == 0:
            return []
        return self._take(count)

    def _take(self, count: int) -> list[dict]:
        """`take` of a checked `count` > 0."""
        documents: list[dict] = []
        # `_documents` inlined: most queries end in a take (first, unique),
        # and a generator and a context manager per query cost more than
        # the few rows they read.
        plan = self.plan
        reader = self._reader
        lo, hi = plan.key_range
        if hi is None or lo < hi:
            scan = reader.scan(plan.table, plan.index, lo, hi, plan.descending)
            try:
                filters = plan.filters
                for _, document in scan:
                    if filters and not plan.accepts(document):
                        continue
                    documents.append(document)
                    if len(documents) == count:
                        break
            finally:
                _close(scan)
        _note_terminal(reader, plan, count, documents)
        return documents

    async def first(self) -> dict | None:
        """The first document, or None. Not a checkpoint; reads at most one match."""
        documents = self._take(1)
        return documents[0] if documents else None

    async def unique(self) -> dict | None:
        """The only document, or None. Not a checkpoint; reads at most two matches.

        Raises:
            EddyError(NOT_UNIQUE): the query has more than one document.
        """
        documents = self._take(2)
        if len(documents) > 1:
            raise EddyError(
                ErrorCode.NOT_UNIQUE,
                f"unique() found more than one document in table {self.plan.table} "
                f"(index {self.plan.index}): {documents[0].get('_id')}, {documents[1].get('_id')}",
            )
        return documents[0] if documents else None

    async def collect(self) -> list[dict]:
        """Every document of the query. Not a checkpoint."""
        rows = self._documents()
        try:
            documents = list(rows)
        finally:
            rows.close()
        _note_terminal(self._reader, self.plan, None, documents)
        return documents

    async def paginate(self, options: dict) -> dict:
        """One page of the query, as Convex's PaginationResult (PROTOCOL.md 10.3).

        Not a checkpoint. Calls `reader.begin_paginate()` first, so a second
        paginated query in one function fails there.

        Args:
            options: Convex's paginationOpts: `numItems`, `cursor` (str or
                None), and optionally `endCursor`, `maximumRowsRead`,
                `maximumBytesRead`, `id` (ignored).

        Returns:
            `{page, isDone, continueCursor, splitCursor, pageStatus}`.

        Raises:
            EddyError(BAD_REQUEST): malformed options.
            EddyError(INVALID_CURSOR): a cursor that this server did not make.
        """
        self._reader.begin_paginate()
        page_options = _PageOptions.parse(options)
        result = _read_page(self._reader, self.plan, page_options).result()
        # The live query's journal (PROTOCOL.md 10.3): its next run ends here.
        # A plain attribute on the reader, read back by actors/live.py.
        self._reader.page_end_cursor = result["continueCursor"]
        return result

    def __aiter__(self) -> _AsyncDocuments:
        """`async for document in query`: documents one at a time.

        Breaking out of the loop closes the scan when the loop drops its
        iterator (at once in CPython); `aclose()` closes it explicitly.
        """
        return _AsyncDocuments(self._documents())

    def _documents(self) -> Iterator[dict]:
        plan = self.plan
        if plan.key_range.is_empty:
            return
        scan = self._reader.scan(plan.table, plan.index, plan.key_range.lo, plan.key_range.hi, plan.descending)
        try:
            if plan.filters:
                for _, document in scan:
                    if plan.accepts(document):
                        yield document
            else:
                for _, document in scan:
                    yield document
        finally:
            _close(scan)

    def _check_index_not_chosen(self, method: str) -> None:
        if self.plan.index_chosen:
            raise EddyError(ErrorCode.BAD_REQUEST, f"{method}: this query already chose its index")
        if self.plan.filters or self.plan.order_chosen:
            raise EddyError(ErrorCode.BAD_REQUEST, f"{method} must come before filter and order")

    def _replace(self, **changes: Any) -> QueryBuilder:
        return QueryBuilder(self._reader, self.plan.table, self.plan._replace(**changes))


def _note_terminal(reader: Reader, plan: QueryPlan, count: int | None, documents: list) -> None:
    """Tells a live query's reader which list a take/collect returned, so it
    can tell whether the function returned it unchanged (engine/view_reads.py
    rule 4). A plain transaction has no such method and is not told."""
    note = getattr(reader, "note_terminal", None)
    if note is not None:
        note(plan, count, documents)


def _close(scan: Iterator[Any]) -> None:
    """Closes a scan (in a `finally`); a plain iterator (`iter(())`) has nothing to close."""
    close = getattr(scan, "close", None)
    if close is not None:
        close()


class _AsyncDocuments:
    """The async iterator behind `async for`; closing it closes the scan."""

    def __init__(self, rows: Iterator[dict]) -> None:
        self._rows = rows

    def __aiter__(self) -> _AsyncDocuments:
        return self

    async def __anext__(self) -> dict:
        try:
            return next(self._rows)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._rows.close()


class _EndOfRange:
    """The position after the last row of a query's range (cursor "end")."""

    def __repr__(self) -> str:
        return "END_OF_RANGE"


END_OF_RANGE = _EndOfRange()
Position = bytes | _EndOfRange  # an index key (a page ends at that row) or the end


def encode_cursor(position: Position) -> str:
    """The opaque cursor string for a position (theory rule 4)."""
    if position is END_OF_RANGE:
        return END_CURSOR
    return _KEY_CURSOR_PREFIX + base64.urlsafe_b64encode(position).decode("ascii").rstrip("=")


def decode_cursor(cursor: Any) -> Position:
    """The position a cursor string names.

    Raises:
        EddyError(INVALID_CURSOR): not a string `encode_cursor` could return.
    """
    if cursor == END_CURSOR:
        return END_OF_RANGE
    if isinstance(cursor, str) and cursor.startswith(_KEY_CURSOR_PREFIX):
        body = cursor[len(_KEY_CURSOR_PREFIX):]
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            key = None
        if key is not None and encode_cursor(key) == cursor:
            return key
    raise EddyError(ErrorCode.INVALID_CURSOR, f"InvalidCursor: {cursor!r} is not a cursor this server made")


@dataclasses.dataclass(frozen=True)
class _PageOptions:
    """Convex's paginationOpts, checked."""

    item_count: int
    cursor: Position | None  # None: the start of the range
    end_cursor: Position | None  # None: not pinned, read item_count items
    rows_read_max: int | None
    bytes_read_max: int | None

    @classmethod
    def parse(cls, options: Any) -> _PageOptions:
        if not isinstance(options, dict):
            raise EddyError(ErrorCode.BAD_REQUEST, f"paginate takes paginationOpts, a dict; got {options!r}")
        item_count = _positive_count(options, "numItems")
        if item_count is None:
            raise EddyError(ErrorCode.BAD_REQUEST, "paginationOpts.numItems is required")
        if item_count > limits.page_items_max:
            raise EddyError(ErrorCode.BAD_REQUEST,
                            f"paginationOpts.numItems is {item_count}; at most {limits.page_items_max}")
        cursor, end_cursor = options.get("cursor"), options.get("endCursor")
        return cls(
            item_count=item_count,
            cursor=None if cursor is None else decode_cursor(cursor),
            end_cursor=None if end_cursor is None else decode_cursor(end_cursor),
            rows_read_max=_positive_count(options, "maximumRowsRead"),
            bytes_read_max=_positive_count(options, "maximumBytesRead"),
        )


def _positive_count(options: dict, name: str) -> int | None:
    """An optional whole number > 0; JSON numbers arrive as floats, so 10.0 is 10."""
    value = options.get(name)
    if value is None:
        return None
    whole = isinstance(value, int) or isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not whole or value <= 0:
        raise EddyError(ErrorCode.BAD_REQUEST, f"paginationOpts.{name} must be a whole number > 0, got {value!r}")
    return int(value)


@dataclasses.dataclass
class _PageRead:
    """One page being read: the rows seen so far and why reading stopped."""

    options: _PageOptions
    page: list[dict] = dataclasses.field(default_factory=list)
    row_keys: list[bytes] = dataclasses.field(default_factory=list)  # every row read, filtered or not
    bytes_read: int = 0
    exhausted: bool = False  # the scan reached the end of the page's range
    limit_hit: bool = False  # maximumRowsRead or maximumBytesRead stopped the scan

    def add(self, key: bytes, document: dict, accepted: bool) -> None:
        self.row_keys.append(key)
        if self.options.bytes_read_max is not None:
            self.bytes_read += values.size_of(document)
        if accepted:
            self.page.append(document)

    def should_stop(self) -> bool:
        """Whether to stop before reading another row; sets `limit_hit`."""
        options = self.options
        if options.end_cursor is None and len(self.page) >= options.item_count:
            return True
        rows_full = options.rows_read_max is not None and len(self.row_keys) >= options.rows_read_max
        bytes_full = options.bytes_read_max is not None and self.bytes_read >= options.bytes_read_max
        self.limit_hit = rows_full or bytes_full
        return self.limit_hit

    def result(self) -> dict:
        """Convex's PaginationResult for what was read."""
        if self.options.end_cursor is not None:
            continue_position = self.options.end_cursor
        elif self.exhausted:
            continue_position = END_OF_RANGE
        else:
            continue_position = self.row_keys[-1]
        middle = self.row_keys[(len(self.row_keys) - 1) // 2] if self.row_keys else None
        return {
            "page": self.page,
            "isDone": continue_position is END_OF_RANGE,
            "continueCursor": encode_cursor(continue_position),
            "splitCursor": None if middle is None else encode_cursor(middle),
            "pageStatus": self._status(),
        }

    def _status(self) -> str | None:
        if self.limit_hit:
            return "SplitRequired"
        bytes_max = self.options.bytes_read_max
        if (len(self.page) > _SPLIT_RECOMMENDED_ITEMS or len(self.row_keys) > _SPLIT_RECOMMENDED_ROWS
                or bytes_max is not None and self.bytes_read > bytes_max * 3 // 4):
            return "SplitRecommended"
        return None


def _read_page(reader: Reader, plan: QueryPlan, options: _PageOptions) -> _PageRead:
    read = _PageRead(options)
    key_range = _page_range(plan, options.cursor, options.end_cursor)
    if not key_range.is_empty:
        scan = reader.scan(plan.table, plan.index, key_range.lo, key_range.hi, plan.descending)
        try:
            for key, document in scan:
                read.add(key, document, plan.accepts(document))
                if read.should_stop():
                    return read
        finally:
            _close(scan)
    read.exhausted = True
    return read


def _page_range(plan: QueryPlan, start: Position | None, end: Position | None) -> KeyRange:
    """The query's range narrowed to (start, end] in the query's order."""
    if start is END_OF_RANGE:
        return KeyRange(b"", b"")
    lo, hi = plan.key_range.lo, plan.key_range.hi
    # Ascending, the rows after key k start at k + b"\x00" and a page that
    # ends at k includes it; descending, the same rows lie below k and at k.
    after_start = start + _KEY_AFTER if isinstance(start, bytes) and not plan.descending else start
    through_end = end + _KEY_AFTER if isinstance(end, bytes) and not plan.descending else end
    low_position, high_position = (through_end, after_start) if plan.descending else (after_start, through_end)
    if isinstance(low_position, bytes):
        lo = max(lo, low_position)
    if isinstance(high_position, bytes):
        hi = high_position if hi is None else min(hi, high_position)
    return KeyRange(lo, hi)
