"""Incrementally maintained read views: each read of a live query, kept current.

Theory of operation. A live query's reads are index ranges (DESIGN.md
sections 2 and 4). Each read becomes a `View`: the rows (index key, internal
id, packed document) of one scan `(index, lo, hi, descending, limit)` as of
the views' ts, where `limit` is how many rows the query consumed before it
closed the scan, or None when it read the range to its end. A view means
"the first `limit` rows of the range in scan order" (all rows when None) and
is kept meaning that, at every ts, from the commits' deltas alone. Rules:

1. A view covers a part of its range: ascending `[lo, edge)`, descending
   `[edge, hi)`; `edge` None covers all of it. Its rows are exactly the live
   rows in its coverage. This is the range a from-scratch scan that consumed
   the same rows records in its read set (engine/transaction.py rule 1), so a
   commit changes a view only if one of its write keys falls in that range,
   which is how the interval index finds it.
2. A change is (internal id, new key or None, packed document or None). It
   removes the document's old row, found by id (no old key is needed), and
   inserts its new row if the new key is in the coverage. The coverage does not
   move while a group of changes is applied.
3. `settle` then restores "first `limit` rows": extra rows fall out at the far
   end (a new row landed before the limit) and the edge follows the last row
   kept; missing rows (one was deleted, or moved out) are read from the shard
   at the new ts beyond the edge, only as many as are missing (`refill`). If
   fewer exist, the view now covers the whole range (`edge` None).
4. Views are shared: a `ViewSet` holds one view per key for every
   subscription whose read it is (counted in `users`), so a commit updates
   each distinct read once however many subscriptions made it. All views of a
   set are current at `ViewSet.ts`.
5. Packed documents are immutable bytes, so app code never holds a view's
   row: readers unpack a fresh copy for each row they hand out.
"""

from __future__ import annotations

import bisect
from typing import Callable, Iterable, Iterator

from engine import keys, values
from engine.readsets import IndexName
from engine.shard import IndexState, ShardState, index_key

# (index, lo, hi, descending, limit): one read of a query.
ViewKey = tuple[IndexName, bytes, "bytes | None", bool, "int | None"]
# (index, lo, hi, descending): the range of a read, whatever it consumed.
RangeKey = tuple[IndexName, bytes, "bytes | None", bool]
# (internal id, new index key or None, packed new document or None)
Change = tuple[bytes, "bytes | None", "bytes | None"]
# (index key, internal id, packed document)
Row = tuple[bytes, bytes, bytes]


def after(key: bytes) -> bytes:
    """The smallest key above `key` (keys are prefix-free)."""
    return key + b"\x00"


class View:
    """One read of one or more live queries (rules 1-3).

    Fields:
        key, index, lo, hi, descending, limit: fixed at creation.
        keys: the row keys, ascending; changed by apply, settle and refill.
        rows: key -> (internal id, packed document), the same rows.
        key_of: internal id -> key, so a change finds a document's old row.
        edge: the end of the coverage (rule 1); None covers the whole range.
        users: subscriptions holding this view; the ViewSet drops it at 0.
        version: raised on every change of the rows, so results computed
            from them can be cached per version.
        documents: key -> (packed, unpacked document) of rows a fast result
            unpacked (engine/view_reads.py `fast_result`), so the next one
            unpacks only the rows that changed; an entry goes with its row.
            The documents are shared by the results made from them, which
            nobody mutates (one result already serves many sessions).
    """

    __slots__ = ("key", "index", "lo", "hi", "descending", "limit", "keys", "rows", "key_of",
                 "edge", "users", "version", "documents")

    def __init__(self, key: ViewKey, rows: Iterable[Row], exhausted: bool) -> None:
        self.key = key
        self.index, self.lo, self.hi, self.descending, self.limit = key
        self.keys: list[bytes] = []
        self.rows: dict[bytes, tuple[bytes, bytes]] = {}
        self.key_of: dict[bytes, bytes] = {}
        for row_key, internal_id, packed in rows:
            self.keys.append(row_key)
            self.rows[row_key] = (internal_id, packed)
            self.key_of[internal_id] = row_key
        self.keys.sort()
        self.edge: bytes | None = None
        self.users = 0
        self.version = 0
        self.documents: dict[bytes, tuple[bytes, object]] = {}
        if not exhausted:
            assert self.limit is not None and len(self.keys) == self.limit, \
                "a view that stopped early holds exactly `limit` rows"
            self._set_edge()

    def validate(self) -> None:
        assert self.keys == sorted(self.rows) and len(self.keys) == len(self.key_of)
        assert all(self.key_of[i] == k for k, (i, _) in self.rows.items())
        assert all(self._in_range(k) for k in self.keys)
        assert all(self.rows[k][1] is packed for k, (packed, _) in self.documents.items())
        if self.limit is None:
            assert self.edge is None
        else:
            assert len(self.keys) <= self.limit
            assert self.edge is None or len(self.keys) == self.limit
        if self.edge is not None:
            assert all(self.covers(k) for k in self.keys)

    # ----- reading ---------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether the view covers its whole range (nothing lies beyond it)."""
        return self.edge is None

    def scan_rows(self) -> Iterator[Row]:
        """The rows in scan order."""
        rows = self.rows
        ordered = reversed(self.keys) if self.descending else self.keys
        for key in ordered:
            internal_id, packed = rows[key]
            yield key, internal_id, packed

    def rest_range(self) -> tuple[bytes, bytes | None]:
        """The part of the range beyond the coverage (empty when complete)."""
        if self.edge is None:
            return self.lo, self.lo
        return (self.edge, self.hi) if not self.descending else (self.lo, self.edge)

    def coverage(self) -> tuple[bytes, bytes | None]:
        """The covered part of the range (rule 1) as [lo, hi)."""
        edge = self.edge
        if edge is None:
            return self.lo, self.hi
        return (self.lo, edge) if not self.descending else (edge, self.hi)

    def covers(self, key: bytes) -> bool:
        if not self._in_range(key):
            return False
        edge = self.edge
        if edge is None:
            return True
        return key < edge if not self.descending else key >= edge

    def _in_range(self, key: bytes) -> bool:
        return self.lo <= key and (self.hi is None or key < self.hi)

    # ----- maintenance -----------------------------------------------------

    def apply(self, changes: Iterable[Change]) -> bool:
        """Rule 2: applies one group's changes in this view's index. Returns
        whether a row changed; call `settle` after the whole group."""
        changed = False
        key_of, rows, keys = self.key_of, self.rows, self.keys
        # `covers`, inlined: every view of an index sees every change of the
        # group, most of them outside it. The coverage does not move meanwhile.
        lo, hi, edge, descending = self.lo, self.hi, self.edge, self.descending
        for internal_id, new_key, packed in changes:
            old_key = key_of.pop(internal_id, None)
            if old_key is not None:
                del rows[old_key]
                del keys[bisect.bisect_left(keys, old_key)]
                self.documents.pop(old_key, None)
                changed = True
            if new_key is None or new_key < lo or (hi is not None and new_key >= hi):
                continue
            if edge is not None and (new_key < edge if descending else new_key >= edge):
                continue
            rows[new_key] = (internal_id, packed)
            key_of[internal_id] = new_key
            bisect.insort(keys, new_key)
            changed = True
        if changed:
            self.version += 1
        return changed

    def settle(self) -> int:
        """Rule 3, first half: drops rows past the limit. Returns how many rows
        are missing below the limit (0: none, or the view is complete)."""
        limit = self.limit
        if limit is None:
            return 0
        extra = len(self.keys) - limit
        if extra > 0:
            dropped = self.keys[limit:] if not self.descending else self.keys[:extra]
            for key in dropped:
                internal_id, _ = self.rows.pop(key)
                del self.key_of[internal_id]
                self.documents.pop(key, None)
            self.keys = self.keys[:limit] if not self.descending else self.keys[extra:]
            self._set_edge()
            return 0
        if extra < 0 and self.edge is not None:
            return -extra
        if extra == 0:
            self._set_edge()  # rows that landed inside may have moved the edge in
        return 0

    def refill(self, index: IndexState, ts: int, shard: ShardState) -> int:
        """Rule 3, second half: reads the missing rows beyond the edge at `ts`.
        Returns how many rows it read."""
        missing = self.limit - len(self.keys)
        lo, hi = self.rest_range()
        found = 0
        for key, internal_id in index.scan(lo, hi, ts, self.descending):
            self.rows[key] = (internal_id, shard.get(internal_id, ts))
            self.key_of[internal_id] = key
            bisect.insort(self.keys, key)
            found += 1
            if found == missing:
                break
        if found < missing:
            self.edge = None
        else:
            self._set_edge()
        self.version += 1
        return found

    def _set_edge(self) -> None:
        if self.limit is None or len(self.keys) < self.limit:
            self.edge = None
        else:
            self.edge = after(self.keys[-1]) if not self.descending else self.keys[0]


class ViewSet:
    """Every view of a node's live queries (rule 4).

    Fields:
        ts: the ts every view is current at; raised by `advance`.
        views: key -> View; changed by acquire/release.
        by_range: range key -> {limit: View}, to serve a read of a range
            whatever it consumes.
        refill_count: rows read from shards by `refill` (rule 3).
    """

    def __init__(self, ts: int) -> None:
        self.ts = ts
        self.views: dict[ViewKey, View] = {}
        self.by_range: dict[RangeKey, dict[int | None, View]] = {}
        self.refill_count = 0

    def __len__(self) -> int:
        return len(self.views)

    def validate(self) -> None:
        for key, view in self.views.items():
            assert view.key == key and view.users > 0, "a view no one holds"
            assert self.by_range[key[:4]][key[4]] is view
            view.validate()
        assert sum(len(v) for v in self.by_range.values()) == len(self.views)

    def find(self, range_key: RangeKey) -> View | None:
        """A view of `range_key` (the one covering most), or None."""
        found = self.by_range.get(range_key)
        if not found:
            return None
        if None in found:
            return found[None]
        return found[max(found)]

    def acquire(self, key: ViewKey, rows: Iterable[Row], exhausted: bool) -> View:
        """The view `key`, made from `rows` (the rows a scan at `ts` consumed) if new."""
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = View(key, rows, exhausted)
            self.by_range.setdefault(key[:4], {})[key[4]] = view
        view.users += 1
        return view

    def release(self, key: ViewKey) -> None:
        view = self.views[key]
        view.users -= 1
        if view.users:
            return
        del self.views[key]
        same_range = self.by_range[key[:4]]
        del same_range[key[4]]
        if not same_range:
            del self.by_range[key[:4]]

    def update(self, views: Iterable[View], changes: dict[IndexName, list[Change]],
               catalog, ts: int) -> list[View]:
        """Brings `views` to `ts` with one group's changes (rules 2, 3);
        returns the views whose rows changed."""
        changed = []
        sorted_changes: dict[IndexName, _SortedChanges] = {}
        for view in views:
            index_changes = changes.get(view.index)
            if not index_changes:
                continue
            if len(index_changes) > _sorted_changes_min:
                ordered = sorted_changes.get(view.index)
                if ordered is None:
                    ordered = sorted_changes[view.index] = _SortedChanges(index_changes)
                index_changes = ordered.relevant(view)
            touched = view.apply(index_changes)
            missing = view.settle()
            if missing:
                shard = catalog.shards[view.index[0]]
                self.refill_count += view.refill(shard.indexes[view.index[1]], ts, shard)
                touched = True
            if touched:
                changed.append(view)
        return changed

    def advance(self, ts: int) -> None:
        assert ts >= self.ts, "views went back in time"
        self.ts = ts

    def clear(self) -> None:
        """Forgets every view (the app's indexes may have changed)."""
        self.views.clear()
        self.by_range.clear()


# A group with more changes in one index than this sorts them by key once, so
# each view applies only those in its coverage or of its documents (a write
# of 100 documents into 10 views: 10 each, not 100); below it, each view
# looks at every change, which is cheaper than sorting a few.
_sorted_changes_min = 16


class _SortedChanges:
    """One index's changes of a group, ordered by new key, to find those a view needs."""

    __slots__ = ("changes", "positions_of", "keys", "positions", "distinct")

    def __init__(self, changes: list[Change]) -> None:
        self.changes = changes
        self.positions_of = {change[0]: position for position, change in enumerate(changes)}
        # A document written twice in the group: a view must see both of its
        # changes (the first may move it in, the second out), so `relevant`
        # then hands out every change.
        self.distinct = len(self.positions_of) == len(changes)
        pairs = sorted((change[1], position) for position, change in enumerate(changes)
                       if change[1] is not None)
        self.keys = [key for key, _ in pairs]
        self.positions = [position for _, position in pairs]

    def relevant(self, view: View) -> list[Change]:
        """The changes `View.apply` would act on for `view`, in group order:
        those whose new key it covers and those of documents it holds."""
        if not self.distinct:
            return self.changes
        lo, hi = view.coverage()
        first = bisect.bisect_left(self.keys, lo)
        last = len(self.keys) if hi is None else bisect.bisect_left(self.keys, hi, first)
        found = set(self.positions[first:last])
        key_of, positions_of = view.key_of, self.positions_of
        if len(key_of) < len(positions_of):
            found.update(positions_of[i] for i in key_of if i in positions_of)
        else:
            found.update(p for i, p in positions_of.items() if i in key_of)
        changes = self.changes
        return [changes[position] for position in sorted(found)]


def commit_changes(catalog, commits, indexes: Iterable[IndexName],
                   documents: dict[bytes, dict] | None = None) -> dict[IndexName, list[Change]]:
    """Each commit's writes as changes (rule 2) in each of `indexes`, in commit order.

    A change needs each written document's new key. A commit made by `admit`
    carries the keys it removed or added per index (`Commit.write_keys`): a
    document's new key is the one of them the index holds live at the
    commit's ts for that document (`_new_keys`), so nothing is unpacked or
    encoded. Without them (a Commit not made by `admit`), or for a document
    whose new key is not among them, the document is unpacked, once, to
    compute its keys; `documents`, if given, receives those (packed ->
    document), so a fast result over the new rows need not unpack them
    again (engine/view_reads.py `fast_result`).
    """
    wanted: dict[int, list[tuple[IndexName, Callable[[dict], bytes], IndexState]]] = {}
    for index in indexes:
        shard = catalog.shards.get(index[0])
        if shard is not None and index[1] in shard.indexes:
            state = shard.indexes[index[1]]
            wanted.setdefault(index[0], []).append((index, _key_function(state.fields), state))
    changes: dict[IndexName, list[Change]] = {index: [] for fields in wanted.values()
                                               for index, _, _ in fields}
    unpacked: dict[bytes, dict] = {} if documents is None else documents
    for commit in commits:
        write_keys = commit.write_keys
        for number, writes in commit.writes.items():
            targets = wanted.get(number)
            if not targets or not writes:
                continue
            if write_keys is None:
                _computed_changes(writes, targets, changes, unpacked)
                continue
            internal_ids, packed_documents = zip(*writes)
            for index, key_of, state in targets:
                new_keys = _new_keys(state.life, write_keys.get(index, ()), commit.ts)
                found = list(map(new_keys.get, internal_ids))
                if None in found or None in packed_documents:
                    found = [None if packed is None else
                             _computed_key(key, packed, key_of, unpacked)
                             for key, packed in zip(found, packed_documents)]
                changes[index].extend(zip(internal_ids, found, packed_documents))
    return changes


def _new_keys(life_of: dict[bytes, tuple], written: Iterable[bytes], ts: int) -> dict[bytes, bytes]:
    """internal id -> its key at `ts`, for the keys in `written` that an index
    (`life_of`: its `IndexState.life`) holds live at `ts`.

    A commit's keys in one index are, for each document it wrote, its old
    key and its new key (one key when they are equal). The old key's last
    interval ends at the commit's ts, so the key live at that ts is the new
    one, whatever order the keys come in. Each key has one owner (it ends
    with its document's _id), and each document one live key per index.
    """
    found: dict[bytes, bytes] = {}
    for key, life in zip(written, map(life_of.get, written)):
        if life is None:
            continue
        # life: (owner, begin, end, begin, end, ...), newest interval last;
        # the commit's ts is nearly always in the newest or the one before.
        j = len(life) - 2
        while j > 0 and life[j] > ts:
            j -= 2
        if j > 0 and ts < life[j + 1]:
            found[life[0]] = key
    return found


def _computed_key(key: bytes | None, packed: bytes, key_of: Callable[[dict], bytes],
                  unpacked: dict[bytes, dict]) -> bytes:
    """`key` if found among the commit's keys, else computed from the document."""
    if key is not None:
        return key
    document = unpacked.get(packed)
    if document is None:
        document = unpacked[packed] = values.unpack(packed)
    return key_of(document)


def _computed_changes(writes, targets, changes: dict[IndexName, list[Change]],
                      unpacked: dict[bytes, dict]) -> None:
    """`commit_changes` of one table's writes without the commit's keys:
    each document unpacked once, its keys computed."""
    for internal_id, packed in writes:
        document = None
        if packed is not None:
            document = unpacked.get(packed)
            if document is None:
                document = unpacked[packed] = values.unpack(packed)
        for index, key_of, _ in targets:
            new_key = None if document is None else key_of(document)
            changes[index].append((internal_id, new_key, packed))


def _key_function(fields: list[str]) -> Callable[[dict], bytes]:
    """`index_key(document, fields)` as a function of the document; for
    top-level fields (the usual index) without a path walk per field, which
    was a third of computing a write's keys."""
    if any("." in field for field in fields):
        return lambda document: index_key(document, fields)
    names = tuple(fields)
    encode, undefined = keys.encode_key, keys.UNDEFINED

    def key_of(document: dict) -> bytes:
        get = document.get
        return b"".join([encode(get(name, undefined)) for name in names])
    return key_of
