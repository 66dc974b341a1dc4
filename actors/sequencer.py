"""The sequencer actor: admits commits at once and makes them durable in groups.

Admission (`admit`) is a plain call into engine.commits.admit, atomic under
trio's scheduling. Durability is this actor's loop: it takes every admitted
commit not yet written (up to `limits.group_commits_max`), writes them in one
batch with one fsync, then publishes them: `durable_ts` rises, waiters wake,
and the `on_publish` hooks see the commits in ts order. Nothing is
acknowledged before its group is on disk (DESIGN.md section 5).

Backpressure: at most `pending_commits_max` admitted commits wait for the
disk; `wait_capacity` blocks new mutations until the group in flight lands.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Callable

import trio

from engine import limits
from engine.catalog import Catalog
from engine.commits import CallInfo, Commit, admit, commit_ops
from engine.sequencing import SequencerState
from engine.transaction import Transaction
from engine.world import Clock, Store

log = logging.getLogger("eddy.sequencer")

# Admitted commits that may wait for the disk at once: two full groups, so one
# group can be written while the next fills.
pending_commits_max = 2 * limits.group_commits_max


class LaneBusy(Exception):
    """Another mutation holds the serial lane; wait for it and try again."""


class SequencerActor:
    """Fields:
        state: the pure sequencer core (conflict window, last ts).
        pending: admitted commits not yet durable, in ts order.
        durable_ts: ts of the newest durable (published) commit.
        lane_holder: the transaction holding the serial lane, or None.
        on_publish: hooks called with each durable group, in order.
        callbacks: (ts, order, callback) heap of `when_durable` callbacks.
    """

    def __init__(self, store: Store, catalog: Catalog, state: SequencerState, clock: Clock) -> None:
        self.store = store
        self.catalog = catalog
        self.state = state
        self.clock = clock
        self.pending: list[Commit] = []
        self.durable_ts = state.last_ts
        self.lane_holder: Transaction | None = None
        self.lane = trio.Lock()
        self.on_publish: list[Callable[[list[Commit]], None]] = []
        self.callbacks: list[tuple[int, int, Callable[[], None]]] = []
        self._callback_order = itertools.count()
        self._work = trio.lowlevel.ParkingLot()
        self._parked = False  # whether the loop is parked on `_work` and not yet woken
        self._durable = trio.lowlevel.ParkingLot()
        self._capacity = trio.lowlevel.ParkingLot()
        self._lane_free = trio.lowlevel.ParkingLot()
        self.group_count = 0

    def admit(self, txn: Transaction, call: CallInfo) -> Commit | int:
        """Decides `txn`'s commit now. Returns the Commit, or a conflicting ts.

        Raises:
            LaneBusy: another mutation holds the serial lane.
        """
        if self.lane_holder is not None and self.lane_holder is not txn:
            raise LaneBusy()
        outcome = admit(self.state, self.catalog, txn, call, self.clock.now_ns())
        if isinstance(outcome, Commit):
            self.pending.append(outcome)
            if self._parked:  # only while nothing is pending: skip the calls otherwise
                self._parked = False
                self._work.unpark_all()
        return outcome

    async def wait_lane_free(self) -> None:
        """Blocks while another mutation holds the serial lane. A checkpoint."""
        while self.lane_holder is not None:
            await self._lane_free.park()

    def release_lane(self) -> None:
        self.lane_holder = None
        self._lane_free.unpark_all()

    def has_capacity(self) -> bool:
        """Whether a new mutation may run now (`wait_capacity` would not block)."""
        return len(self.pending) < pending_commits_max

    async def wait_capacity(self) -> None:
        """Blocks while too many admitted commits wait for the disk."""
        while len(self.pending) >= pending_commits_max:
            await self._capacity.park()

    async def wait_durable(self, ts: int) -> None:
        """Returns once every commit up to `ts` is durable. A checkpoint;
        cancellation leaves the commit to become durable on its own."""
        while self.durable_ts < ts:
            await self._durable.park()

    def when_durable(self, ts: int, callback: Callable[[], None]) -> None:
        """Calls `callback()` once every commit up to `ts` is durable: at once
        if they are, else from the durability loop right after the group's
        `on_publish` hooks (before the waiters of `wait_durable` run), in ts
        order. What `wait_durable` does for a task, for a caller with no task
        of its own (wire/sync.py answers most mutations this way). A callback
        must not raise; one that does is logged and the loop goes on."""
        if self.durable_ts >= ts:
            callback()
        else:
            heapq.heappush(self.callbacks, (ts, next(self._callback_order), callback))

    async def run(self) -> None:
        """The durability loop. Never returns; a storage error ends the node."""
        while True:
            while not self.pending:
                self._parked = True
                try:
                    await self._work.park()
                finally:
                    self._parked = False
            await self.flush_once()

    async def flush_once(self) -> None:
        group = self.pending[:limits.group_commits_max]
        del self.pending[:len(group)]
        ops = []
        for commit in group:
            ops.extend(commit_ops(commit, self.catalog))
        await self.store.write(ops, sync=True)
        self.durable_ts = group[-1].ts
        self.group_count += 1
        for hook in self.on_publish:
            hook(group)
        callbacks = self.callbacks
        while callbacks and callbacks[0][0] <= self.durable_ts:
            callback = heapq.heappop(callbacks)[2]
            try:
                callback()
            except Exception:
                log.exception("a when_durable callback failed")
        self._durable.unpark_all()
        self._capacity.unpark_all()

    async def drain(self) -> None:
        """Makes every admitted commit durable (used on shutdown)."""
        while self.pending:
            await self.flush_once()
