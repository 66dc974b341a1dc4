"""The sequencer's core: the conflict check, the timestamp rule, the recent window.

Theory of operation. The sequencer is the one place commits are decided
(STYLE.md "One writer"). A commit request carries the snapshot ts S it ran
at and its read set. Rules, in order:

1. Conflict: if any commit admitted after S wrote a key inside the read set,
   the request is refused and the mutation runs again at a newer snapshot.
2. Timestamp: T = max(last_ts + 1, now_ns). Timestamps are unique and rise
   strictly, across restarts too (the last ts is recovered from the log), and
   track wall-clock nanoseconds as Convex's do (PROTOCOL.md 3.1).
3. Window: the write keys of each admitted commit stay in `recent` while
   some running transaction's snapshot is older than it, because rule 1 needs
   them; `trim` drops the rest.

Admission is a plain call that never awaits, so under trio's cooperative
scheduling an admission is atomic: a mutation that ran at the head without
yielding is admitted with no possible conflict. Durability is separate: the
sequencer actor persists admitted commits in groups and acknowledges them
after the fsync.
"""

from __future__ import annotations

import collections
from typing import Deque

from engine.readsets import ReadSet, WriteKeys


class SequencerState:
    """Decides commits. Plain object: the actor around it does the I/O.

    Fields:
        last_ts: ts of the newest admitted commit; set on open from the log,
            raised by every admission.
        recent: (ts, write keys) of admitted commits newer than the oldest
            active snapshot, in ts order; appended by `admit`, trimmed by `trim`.
        active: snapshot ts -> number of transactions running at it; changed
            by `begin` and `end`.
    """

    def __init__(self, last_ts: int) -> None:
        self.last_ts = last_ts
        self.recent: Deque[tuple[int, WriteKeys]] = collections.deque()
        self.active: dict[int, int] = {}

    def validate(self) -> None:
        previous = -1
        for ts, _ in self.recent:
            assert ts > previous, "recent commits out of order"
            previous = ts
        assert not self.recent or self.recent[-1][0] <= self.last_ts
        assert all(count > 0 for count in self.active.values())

    def begin(self, snapshot_ts: int) -> None:
        """Registers a transaction running at `snapshot_ts`."""
        self.active[snapshot_ts] = self.active.get(snapshot_ts, 0) + 1

    def end(self, snapshot_ts: int) -> None:
        """Unregisters a transaction and trims what no one needs any more."""
        count = self.active[snapshot_ts] - 1
        if count:
            self.active[snapshot_ts] = count
        else:
            del self.active[snapshot_ts]
        self.trim()

    def trim(self) -> None:
        oldest = min(self.active) if self.active else self.last_ts
        recent = self.recent
        while recent and recent[0][0] <= oldest:
            recent.popleft()

    def conflicts(self, snapshot_ts: int, read_set: ReadSet) -> int | None:
        """The ts of the first commit after `snapshot_ts` that wrote into
        `read_set`, or None."""
        if snapshot_ts >= self.last_ts:
            return None
        for ts, write_keys in self.recent:
            if ts > snapshot_ts and read_set.overlaps(write_keys):
                return ts
        return None

    def next_ts(self, now_ns: int) -> int:
        """Rule 2: the ts the next admitted commit gets."""
        return max(self.last_ts + 1, now_ns)

    def record(self, ts: int, write_keys: WriteKeys) -> None:
        """Records an admitted commit (after `next_ts` chose its ts)."""
        assert ts > self.last_ts
        self.last_ts = ts
        if self.active:
            self.recent.append((ts, write_keys))
