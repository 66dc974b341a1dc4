"""One index of one shard: its keys and their lives, in MVCC.

Theory of operation. An index holds every key that was ever live, and for
each key the document it belongs to and the ts intervals [begin, end)
during which it was live (end is LIVE while it still is). engine/shard.py
moves a document's keys as its writes are applied (its rules 1-3); a read
at ts S (`IndexState.scan`) yields the keys in a range whose intervals hold
S, in key order.

Where a key is held:
- the base: the keys a bulk load (a node's start-up, `eddy` history
  commands) put into an empty index, in one sorted list, and their lives in
  a second list of the same order. Made once, at the end of the load
  (`end_bulk_load`), never grown: no dict entry and no SortedList insertion
  per key, which were most of the cost of rebuilding an index.
- `life`, a dict, and `_sorted`, a SortedList of its keys: every key added
  after (by `apply`), and a base key once it is written again (`add`,
  `remove`, `touch` move it), so that a commit's written keys are always
  found in `life` (engine/views.py looks them up there). Once half of the
  base has moved, the rest follows.

A key that moved stays in the base with the life it had then (its current
one is `life`'s): a write at T changes only intervals from T on, so that
life still answers a read at a ts before T, which is what a scan begun
before the move reads at. A scan walks the base's slice of the range and
`_sorted`'s together, in key order (`_merged_scan`), taking a key held in
both from `life`; or the base alone while `_sorted` is empty. A scan at a
ts before some base keys were first live skips each block of
`base_block_keys_max` base keys all first live after it (`base_births`):
a "latest N" in the past does not step over every key born since.

Batch inserts (`add_new`) keep their new keys aside (`unplaced`) until the
index is next read, or until `unplaced_keys_max` keys wait; then merge them
into `_sorted` together (`_insert_sorted`) rather than one by one. A single
write's new key (`add`) waits there too, until `unplaced_added_max` wait.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from bisect import bisect_right, insort
from itertools import repeat
from typing import Iterable, Iterator, Sequence

from sortedcontainers import SortedList

LIVE = 1 << 63  # end of an interval that has not ended

# New keys of a batch insert that an index keeps unsorted, outside its sorted
# list, until it is next read. Placing many keys at once costs less per key
# (consecutive sorted keys land in the same part of the list, whose memory
# is then warm): the shard's apply of 1,000-document batches into a table
# of 300,000 to 400,000 documents measured 6.2-7.3 against 7.6-8.1 us per
# document with 8,192 (5.6-6.2 with 32,768). What bounds it: the merge is
# paid at once, by the read or the write that finds this many waiting, and
# took up to 21 ms per index at 8,192 keys (54 ms at 32,768), about what a
# 1,000-document batch costs the shard anyway.
unplaced_keys_max = 8192

# New keys of single writes (`IndexState.add`) from which the waiting keys
# are placed: enough that placing them together costs less per key than
# `SortedList.add` does, few enough that a write that places them takes a
# few tens of microseconds, not a batch's milliseconds.
unplaced_added_max = 64

# Base keys per block of `IndexState.base_births`: a scan at a ts before a
# block's keys were all born skips the block at once. Small enough that a
# block is a small part of a scan (a `take(100)` reads a few), large enough
# that the births of a million keys take a few thousand entries and are
# computed (once, at the first such read) in a few ms.
base_block_keys_max = 256


class IndexState:
    """One index of one shard. See the module docstring for the rules."""

    __slots__ = ("fields", "_sorted", "life", "pending", "unplaced", "base_keys", "base_lives",
                 "moved_count", "base_births", "base_newest_birth", "loaded_keys", "loaded_lives", "repeated")

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        # Every key of `life`, sorted, but those in `unplaced` (or `pending`).
        self._sorted = SortedList()
        # New keys of batch inserts (`add_new`) not yet in `_sorted`, in no
        # order, outside a bulk load; emptied by the next read or once
        # `unplaced_keys_max` wait.
        self.unplaced: list[bytes] = []
        # New keys of `life` not yet in `_sorted`, while a bulk load
        # (start-up replay) runs: sorting them once at the end is several
        # times cheaper than inserting them one by one. None outside a bulk load.
        self.pending: list[bytes] | None = None
        # key -> (internal id, begin, end, begin, end, ...): the document the
        # key belongs to (a key ends with its _id, so it has one owner), then
        # its intervals, newest last. One tuple, replaced on change: one dict
        # entry per key rather than two, and the garbage collector stops
        # tracking a tuple of ints and bytes, so a big index does not slow
        # every full collection down (lists here cost about a fifth of the
        # batch-insert benchmark's time). Holds every key but those of the base.
        self.life: dict[bytes, tuple] = {}
        # The base: the keys a bulk load into an empty index inserted, sorted,
        # and their lives, in two lists of the same length: no dict entry per
        # key (most of the cost of a start-up's indexes). Set by
        # `end_bulk_load`, never changed after. A key that is written again
        # (`add`, `remove`, `touch`) moves to `life`; its base entry stays,
        # as of the move (see the module docstring). Empty when the index
        # holds no base.
        self.base_keys: list[bytes] = []
        self.base_lives: list[tuple] = []
        # How many base keys moved to `life`. Once half of them have, the
        # rest moves too (`_dissolve_base`): scans would otherwise step over
        # more moved keys than they find.
        self.moved_count = 0
        # For each block of `base_block_keys_max` base keys, the least ts at
        # which one of them was first live (a key is live at no ts before
        # its first interval begins). None until a scan at a ts before
        # `base_newest_birth` needs it; the base never changes, so neither
        # does this.
        self.base_births: list[int] | None = None
        # The greatest ts at which a base key was first live: that of the
        # last key loaded, since a bulk load goes in ts order.
        self.base_newest_birth = 0
        # During a bulk load into an empty index, the keys `load_new` took
        # and their lives, in load order, not yet anywhere else (the base
        # they become at the end). None when not collecting: outside a bulk
        # load, into an index that held keys, or once something needed
        # `life` to be whole (`_flush_loaded`).
        self.loaded_keys: list[bytes] | None = None
        self.loaded_lives: list[tuple] | None = None
        # Whether keys set aside for the base held one key twice, found when
        # they moved to `life` (`_flush_loaded`) or made the base
        # (`end_bulk_load`); reset by `begin_bulk_load`. Only a damaged log
        # does that (two documents logged as new with one _id).
        self.repeated = False

    # ----- writes ---------------------------------------------------------------

    def add(self, key: bytes, internal_id: bytes, ts: int) -> None:
        if self.loaded_keys:
            self._flush_loaded()
        life = self.life.get(key)
        if life is None and self.base_keys:
            life = self._promote(key)
        if life is None:
            self.life[key] = (internal_id, ts, LIVE)
            if self.pending is None:
                # A new key waits with a batch's (`add_new`): `SortedList.add`
                # is a dozen Python steps, placing a few dozen keys at once
                # costs a fraction of that per key. Placed when the
                # `unplaced_added_max`th key waits, so a run of single writes
                # places a few dozen keys at a time; keys of a batch that wait
                # past that are placed by a read or at `unplaced_keys_max`,
                # as in `add_new`, not by the next single write.
                unplaced = self.unplaced
                unplaced.append(key)
                waiting_count = len(unplaced)
                if waiting_count == unplaced_added_max or waiting_count >= unplaced_keys_max:
                    self._place()
            else:
                self.pending.append(key)
        else:
            self.life[key] = life + (ts, LIVE)

    def add_new(self, new_keys: list[bytes], lives: list[tuple]) -> None:
        """`add` of keys this index has never held, all distinct; `lives`
        holds each key's (internal id, ts, LIVE)."""
        if self.loaded_keys:
            self._flush_loaded()
        self.life.update(zip(new_keys, lives))
        if self.pending is None:
            self.unplaced.extend(new_keys)
            if len(self.unplaced) >= unplaced_keys_max:
                self._place()
        else:
            self.pending.extend(new_keys)

    def load_new(self, new_keys: list[bytes], lives: list[tuple]) -> None:
        """`add_new` during a bulk load: into an empty index, the keys are set
        aside for the base (`end_bulk_load` checks them)."""
        if self.loaded_keys is None:
            self.add_new(new_keys, lives)
        else:
            self.loaded_keys.extend(new_keys)
            self.loaded_lives.extend(lives)

    def remove(self, key: bytes, ts: int) -> None:
        if self.loaded_keys:
            self._flush_loaded()
        life = self.life.get(key)
        if life is None:
            life = self._promote(key)
        assert life is not None and life[-1] == LIVE, "removing a key that is not live"
        self.life[key] = life[:-1] + (ts,)

    def touch(self, key: bytes) -> None:
        """Moves `key` out of the base into `life`, where readers of a
        commit's written keys (engine/views.py) look it up: a document
        written under a key that did not change."""
        if self.base_keys and key not in self.life:
            self._promote(key)

    def holds_any(self, keys_to_find: Sequence[bytes]) -> bool:
        """Whether this index ever held one of `keys_to_find`."""
        if self.loaded_keys:
            self._flush_loaded()
        return not self.life.keys().isdisjoint(keys_to_find) or self.base_holds_any(keys_to_find)

    def base_holds_any(self, keys_to_find: Sequence[bytes]) -> bool:
        """Whether the base holds (or held, before they moved) one of `keys_to_find`."""
        return bool(self.base_keys) and any(
            position is not None for position in map(self._base_position, keys_to_find))

    def _base_position(self, key: bytes) -> int | None:
        """`key`'s position in the base (whether or not it moved to `life`), or None."""
        base = self.base_keys
        position = bisect.bisect_left(base, key)
        return position if position < len(base) and base[position] == key else None

    def _promote(self, key: bytes) -> tuple | None:
        """Moves `key`, which `life` does not hold, from the base to `life`;
        returns its life, or None if the base does not hold it either."""
        position = self._base_position(key)
        if position is None:
            return None
        life = self.life[key] = self.base_lives[position]
        if self.pending is None:
            self._sorted.add(key)
        else:
            self.pending.append(key)
        self.moved_count += 1
        if 2 * self.moved_count >= len(self.base_keys):
            self._dissolve_base()
        return life

    def _dissolve_base(self) -> None:
        """Moves every key of the base to `life`."""
        life_of = self.life
        kept = [(key, life) for key, life in zip(self.base_keys, self.base_lives)
                if key not in life_of]
        self.base_keys, self.base_lives, self.moved_count = [], [], 0
        self.base_births, self.base_newest_birth = None, 0
        self.life.update(kept)
        new_keys = [key for key, _ in kept]
        if self.pending is None:
            self.unplaced.extend(new_keys)
        else:
            self.pending.extend(new_keys)

    def _flush_loaded(self) -> None:
        """Moves the keys set aside for the base into `life`: something
        during the bulk load needs `life` whole. Stops collecting."""
        loaded_keys, loaded_lives = self.loaded_keys, self.loaded_lives
        self.loaded_keys = self.loaded_lives = None
        held_count = len(self.life)
        self.add_new(loaded_keys, loaded_lives)
        if len(self.life) != held_count + len(loaded_keys):
            self.repeated = True

    # ----- bulk load ------------------------------------------------------------

    def begin_bulk_load(self) -> None:
        if self.pending is None:
            self.pending = []
        self.repeated = False
        if self.loaded_keys is None and not self.life and not self.base_keys:
            self.loaded_keys, self.loaded_lives = [], []

    def end_bulk_load(self, check_repeats: bool = False) -> None:
        """Ends a bulk load. With `check_repeats`, a base made now is checked
        for a key held twice (`repeated`), which costs a pass over it when
        its keys did not come in order."""
        if self.loaded_keys:
            self.base_births, self.base_newest_birth = None, self.loaded_lives[-1][1]
            self.base_keys, self.base_lives = _sorted_together(self.loaded_keys,
                                                               self.loaded_lives)
            base = self.base_keys
            if check_repeats and base is not self.loaded_keys and \
                    any(map(operator.eq, base, itertools.islice(base, 1, None))):
                self.repeated = True
        self.loaded_keys = self.loaded_lives = None
        if self.pending:
            self._sorted.update(self.pending)
        self.pending = None

    # ----- reads ----------------------------------------------------------------

    @property
    def keys(self) -> SortedList:
        """Every key this index ever held, sorted, as one SortedList: the base
        is moved into `life` first (a debugging and testing aid; reads use
        `scan`)."""
        assert self.pending is None, "reading an index during a bulk load"
        if self.base_keys:
            self._dissolve_base()
        return self._placed()

    def all_keys(self) -> list[bytes]:
        """Every key this index ever held, sorted (base and `life` together)."""
        life_of = self.life
        return sorted([*self._placed(), *(key for key in self.base_keys if key not in life_of)])

    def all_lives(self) -> dict[bytes, tuple]:
        """key -> life of every key this index ever held (base and `life` together)."""
        lives = dict(zip(self.base_keys, self.base_lives))
        lives.update(self.life)
        return lives

    def _placed(self) -> SortedList:
        """`_sorted`, with the unplaced keys merged in first."""
        if self.unplaced:
            self._place()
        return self._sorted

    def _births(self) -> list[int]:
        """`base_births`, computed at the first need."""
        if self.base_births is None:
            self.base_births = block_births(list(map(operator.itemgetter(1), self.base_lives)))
        return self.base_births

    def _place(self) -> None:
        unplaced = self.unplaced
        if len(unplaced) == 1:  # a read after each single write: no batch to merge
            self._sorted.add(unplaced[0])
        else:
            _insert_sorted(self._sorted, sorted(unplaced))
        self.unplaced = []

    def scan(self, lo: bytes, hi: bytes | None, at_ts: int,
             descending: bool) -> Iterator[tuple[bytes, bytes]]:
        """(key, internal id) of keys live at `at_ts` in [lo, hi), in order."""
        assert self.pending is None, "scanning an index during a bulk load"
        placed = self._placed()
        if hi is None:
            keys_in_range = placed.irange(lo, None, (True, False), reverse=descending)
        else:
            keys_in_range = placed.irange(lo, hi, (True, False), reverse=descending)
        base = self.base_keys
        if base:
            start = bisect.bisect_left(base, lo)
            end = len(base) if hi is None else bisect.bisect_left(base, hi)
            if start < end:
                positions = range(end - 1, start - 1, -1) if descending else range(start, end)
                if at_ts < self.base_newest_birth:  # in the past: some keys were not born yet
                    positions = _positions_born_by(self._births(), start, end, at_ts, descending)
                if placed:
                    yield from _merged_scan(self, keys_in_range, positions, at_ts, descending)
                else:
                    yield from _base_scan(self, positions, at_ts)
                return
        life_of = self.life
        for key in keys_in_range:
            life = life_of[key]
            if life[-1] == LIVE and life[-2] <= at_ts:
                yield key, life[0]
            elif _live_at(life, at_ts):
                yield key, life[0]


def block_births(firsts: list[int]) -> list[int]:
    """The least of each block of `base_block_keys_max` in `firsts`."""
    block = base_block_keys_max
    return [min(firsts[start:start + block]) for start in range(0, len(firsts), block)]


def _positions_born_by(births: list[int], start: int, end: int, at_ts: int,
                       descending: bool) -> Iterator[int]:
    """The base positions in [start, end), in scan order, but those of
    blocks whose keys were all first live after `at_ts`."""
    block = base_block_keys_max
    blocks = range(start // block, (end - 1) // block + 1)
    for number in reversed(blocks) if descending else blocks:
        if births[number] > at_ts:
            continue
        low, high = max(start, number * block), min(end, (number + 1) * block)
        yield from (range(high - 1, low - 1, -1) if descending else range(low, high))


def _base_scan(index: IndexState, positions: Iterable[int], at_ts: int) -> Iterator[tuple[bytes, bytes]]:
    """`IndexState.scan` over positions of the base alone (`life` empty)."""
    base, lives = index.base_keys, index.base_lives
    for position in positions:
        life = lives[position]
        if life[-1] == LIVE and life[-2] <= at_ts:
            yield base[position], life[0]
        elif _live_at(life, at_ts):
            yield base[position], life[0]


def _merged_scan(index: IndexState, keys_in_range: Iterator[bytes], positions: Iterable[int],
                 at_ts: int, descending: bool) -> Iterator[tuple[bytes, bytes]]:
    """`IndexState.scan` over keys of `life` and positions of the base
    together, in key order. A key both hold moved to `life`, and is taken
    from there."""
    base, lives, life_of = index.base_keys, index.base_lives, index.life
    other = next(keys_in_range, None)
    for position in positions:
        key = base[position]
        # The keys of `life` before this one (after it, descending).
        while other is not None and (other > key if descending else other < key):
            life = life_of[other]
            if (life[-1] == LIVE and life[-2] <= at_ts) or _live_at(life, at_ts):
                yield other, life[0]
            other = next(keys_in_range, None)
        if other == key:  # moved to `life`: yielded from there, next
            continue
        life = lives[position]
        if (life[-1] == LIVE and life[-2] <= at_ts) or _live_at(life, at_ts):
            yield key, life[0]
    while other is not None:
        life = life_of[other]
        if (life[-1] == LIVE and life[-2] <= at_ts) or _live_at(life, at_ts):
            yield other, life[0]
        other = next(keys_in_range, None)


def _sorted_together(keys_to_sort: list[bytes], lives: list[tuple]) -> tuple[list, list]:
    """`keys_to_sort` sorted, and `lives` in the same order. Keys loaded in
    ts order often are already (a creation-time index's always are): that
    is checked first, in one C-level pass."""
    if all(map(operator.lt, keys_to_sort, itertools.islice(keys_to_sort, 1, None))):
        return keys_to_sort, lives
    order = sorted(range(len(keys_to_sort)), key=keys_to_sort.__getitem__)
    return list(map(keys_to_sort.__getitem__, order)), list(map(lives.__getitem__, order))


def _live_at(life: tuple, ts: int) -> bool:
    """Whether one of the intervals in `life` (after its owner) holds `ts`.

    Intervals are in ts order: bisect for the last one beginning at or before
    `ts` (a key that came and went often is still O(log intervals))."""
    lo, hi = 0, (len(life) - 1) // 2  # interval j begins at life[1 + 2j]
    while lo < hi:
        middle = (lo + hi) // 2
        if life[1 + 2 * middle] <= ts:
            lo = middle + 1
        else:
            hi = middle
    return lo > 0 and ts < life[2 * lo]


def _insert_sorted(sorted_list: SortedList, new_keys: list[bytes]) -> None:
    """`sorted_list.update(new_keys)` for sorted keys it does not hold.

    SortedList.update inserts a batch of fewer than a quarter of the list's
    length one `add` at a time. Here, for the same result, the keys above
    the list's last go onto its end (new by_creation_time keys nearly all
    do), the others are placed with one C-level pass each (bisect for the
    sublist, insort into it), and only the sublists that grew are split.
    This keeps SortedList's invariants (sortedcontainers 2.4's `_check`):
    `_maxes[i]` is the last of `_lists[i]`, every sublist holds at most
    twice `_load` and, but the last, at least half of it; `_index` is
    rebuilt on the next positional lookup once cleared.
    """
    maxes = sorted_list._maxes
    if not maxes or 4 * len(new_keys) >= len(sorted_list):
        sorted_list.update(new_keys)  # rebuilds the list: cheaper for many keys
        return
    lists, load = sorted_list._lists, sorted_list._load
    inside_count = bisect_right(new_keys, maxes[-1])
    if inside_count:
        inside = new_keys[:inside_count]
        positions = list(map(bisect_right, repeat(maxes), inside))
        for _ in map(insort, map(lists.__getitem__, positions), inside):
            pass
        # Only the sublists that grew past twice the load, from the last
        # down, so that a split never moves a sublist still to be split
        # (`positions` ascend, as the keys do). Picking them in one
        # comprehension costs a fifth of a call per sublist touched.
        twice_load = 2 * load
        for position in [position for position in reversed(dict.fromkeys(positions))
                         if len(lists[position]) > twice_load]:
            _split_long(lists, maxes, position, load)
    if inside_count < len(new_keys):
        lists[-1].extend(new_keys[inside_count:])
        maxes[-1] = new_keys[-1]
        _split_long(lists, maxes, len(lists) - 1, load)
    sorted_list._len += len(new_keys)
    del sorted_list._index[:]


def _split_long(lists: list[list], maxes: list, position: int, load: int) -> None:
    """Splits `lists[position]`, if longer than 2 * `load`, into pieces of
    `load` to 1.5 * `load` keys."""
    sublist = lists[position]
    length = len(sublist)
    if length <= 2 * load:
        return
    count = length // load
    bounds = [length * i // count for i in range(count + 1)]
    pieces = [sublist[begin:end] for begin, end in zip(bounds, bounds[1:])]
    lists[position:position + 1] = pieces
    maxes[position:position + 1] = [piece[-1] for piece in pieces]
