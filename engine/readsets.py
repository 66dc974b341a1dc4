"""Read sets and write keys: what a transaction read and what a commit touched.

A read is an index key range, not a set of documents (DESIGN.md section 3): a
range scanned and filtered still conflicts on the whole range, and a `get` of
a missing document still conflicts with a later insert of that id. An index is
named by `(table_number, index_name)`.

A commit's write keys are, per index, every key it removed or added (the old
and the new key of each written document). A commit conflicts with a read set
when one of its keys falls inside one of the read ranges of the same index.
"""

from __future__ import annotations

import bisect
from typing import Iterable

IndexName = tuple[int, str]


class ReadSet:
    """Key ranges read, per index; `lo` inclusive, `hi` exclusive or None (unbounded)."""

    __slots__ = ("ranges", "_sorted", "_starts")

    def __init__(self) -> None:
        # index -> list of (lo, hi); merged and sorted lazily by `_normalize`.
        self.ranges: dict[IndexName, list[tuple[bytes, bytes | None]]] = {}
        # index -> the `lo` of each merged range, for bisection; set by `_normalize`.
        self._starts: dict[IndexName, list[bytes]] = {}
        self._sorted = True

    def add(self, index: IndexName, lo: bytes, hi: bytes | None) -> None:
        if hi is not None and hi <= lo:
            return
        self.ranges.setdefault(index, []).append((lo, hi))
        self._sorted = False

    def range_count(self) -> int:
        return sum(len(r) for r in self.ranges.values())

    def _normalize(self) -> None:
        for index, ranges in self.ranges.items():
            merged = merge_ranges(ranges)
            self.ranges[index] = merged
            self._starts[index] = [lo for lo, _ in merged]
        self._sorted = True

    def contains(self, index: IndexName, key: bytes) -> bool:
        """Whether `key` of `index` falls in a range read."""
        ranges = self.ranges.get(index)
        if not ranges:
            return False
        if not self._sorted:
            self._normalize()
            ranges = self.ranges[index]
        # Merged ranges are disjoint and sorted, so only the last one starting
        # at or before `key` can hold it.
        i = bisect.bisect_right(self._starts[index], key) - 1
        if i < 0:
            return False
        hi = ranges[i][1]
        return hi is None or key < hi

    def overlaps(self, write_keys: "WriteKeys") -> bool:
        """Whether any key a commit touched lies in this read set."""
        for index, keys in write_keys.items():
            if index in self.ranges:
                for key in keys:
                    if self.contains(index, key):
                        return True
        return False

    def to_record(self) -> list:
        """A msgpack-able form for the commit log."""
        if not self._sorted:
            self._normalize()
        return [[t, name, [[lo, hi] for lo, hi in ranges]]
                for (t, name), ranges in sorted(self.ranges.items())]

    @classmethod
    def from_record(cls, record: list) -> "ReadSet":
        read_set = cls()
        for t, name, ranges in record:
            read_set.ranges[(t, name)] = [(lo, hi) for lo, hi in ranges]
        read_set._sorted = False
        return read_set


# index -> keys removed or added by one commit
WriteKeys = dict[IndexName, list[bytes]]


def merge_ranges(ranges: Iterable[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """Sorts ranges by start and merges those that overlap or touch."""
    merged: list[tuple[bytes, bytes | None]] = []
    for lo, hi in sorted(ranges, key=lambda r: r[0]):
        if merged:
            last_lo, last_hi = merged[-1]
            if last_hi is None or lo <= last_hi:
                if last_hi is not None and (hi is None or hi > last_hi):
                    merged[-1] = (last_lo, hi)
                continue
        merged.append((lo, hi))
    return merged
