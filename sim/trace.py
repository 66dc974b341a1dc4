"""The trace: a running hash of every event of a simulated run.

Every event (a client's call and its outcome, a published commit, a fault, a
node start or stop) is recorded as a tuple of plain values and folded into
one BLAKE2b hash. Two runs of one seed must give the same final hash; a
checkpoint hash every `checkpoint_events` events lets `eddy sim determinism`
name the first event where two runs part.

Events are hashed through `repr` of tuples of ints, strings, bytes, floats,
None, lists and dicts, whose reprs do not depend on PYTHONHASHSEED or the
heap. A set or an object's default repr (which holds its address) must never
reach `event`.
"""

from __future__ import annotations

import collections
import hashlib

checkpoint_events = 1000
# Recent events kept in memory, so a determinism failure can show the events
# around the first difference without keeping a whole run.
recent_events_max = 50


class Trace:
    """Fields:
        event_count: events recorded so far.
        counts: event kind -> how many.
        checkpoints: the hash after every `checkpoint_events` events.
        recent: the last `recent_events_max` events, as their reprs.
    """

    def __init__(self, keep_events: bool = False) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        # Events since the hash last took them: hashed together, one update
        # per checkpoint rather than two per event (the same bytes in the
        # same order, so the same hash).
        self._unhashed: list[str] = []
        # Every event's repr, when asked for (`eddy sim determinism` compares them).
        self.events: list[str] | None = [] if keep_events else None
        self.event_count = 0
        self.counts: dict[str, int] = {}
        self.checkpoints: list[str] = []
        self.recent: collections.deque[str] = collections.deque(maxlen=recent_events_max)

    def event(self, kind: str, *fields: object) -> None:
        text = repr((kind,) + fields)
        self._unhashed.append(text)
        self.event_count += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.recent.append(text)
        if self.events is not None:
            self.events.append(text)
        if self.event_count % checkpoint_events == 0:
            self.checkpoints.append(self.hexdigest())

    def hexdigest(self) -> str:
        if self._unhashed:
            self._unhashed.append("")  # every event's text ends with a newline
            self._hash.update("\n".join(self._unhashed).encode())
            self._unhashed.clear()
        return self._hash.hexdigest()
