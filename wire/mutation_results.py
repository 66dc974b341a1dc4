"""The node-wide store of recent mutation results the sync protocol answers
re-sends from (wire/session.py rule 4, PROTOCOL.md 5.1)."""

from __future__ import annotations

import collections

from engine import values
from wire.messages import CallSucceeded


class MutationResults:
    """Recent successful mutation results by (sessionId, requestId), node-wide.

    npm reuses its sessionId across reconnects and re-sends every mutation it
    has not seen reflected in a Transition, including answered ones
    (PROTOCOL.md 5.1), so the store outlives any one socket. It keeps the
    newest `entries_max` results and at most `bytes_max` of result values,
    evicting the oldest first. A re-send normally arrives within one
    reconnect (seconds), when only a few thousand mutations have committed
    since, so 100,000 entries cover minutes of full-speed ingestion; the byte
    bound keeps a few huge results from pinning memory (a result may be 16 MiB).
    """

    entries_max = 100_000
    bytes_max = 64 * 1024 * 1024

    def __init__(self, entries_max: int | None = None, bytes_max: int | None = None) -> None:
        if entries_max is not None:
            self.entries_max = entries_max
        if bytes_max is not None:
            self.bytes_max = bytes_max
        # (session id, request id) -> (outcome, size); oldest first.
        self._entries: collections.OrderedDict[tuple[str, int], tuple[CallSucceeded, int]] = (
            collections.OrderedDict())
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str, request_id: int) -> CallSucceeded | None:
        entry = self._entries.get((session_id, request_id))
        return None if entry is None else entry[0]

    def put(self, session_id: str, request_id: int, outcome: CallSucceeded) -> None:
        key = (session_id, request_id)
        old = self._entries.get(key)
        if old is not None and old[0] is outcome:
            return  # the shell put it, then the core answered it (wire/sync.py)
        size = values.size_of(outcome.value) + 64  # 64: the key and the tuple
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (outcome, size)
        self.bytes += size
        while self._entries and (len(self._entries) > self.entries_max
                                 or self.bytes > self.bytes_max):
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted
