"""The simulated World: a virtual clock, one seeded root of randomness, a simulated disk.

Theory of operation. A simulated run is one `trio.run` under
`trio.testing.MockClock(autojump_threshold=0)`: whenever every task is
blocked, trio jumps its clock to the next deadline, so a 30-second run of
timeouts and latencies takes as long as the work in it. The node reads time
only through `SimClock.now_ns`, which is trio's current (virtual) time plus
an epoch chosen from the seed plus whatever skew the fault injector added, so
wall-clock timestamps look real, differ per seed, and can jump.

Randomness comes from one root seed. `SimWorld.stream(label, ...)` gives an
independent `random.Random` for each actor and call site, derived with
`engine.world.split_seed`, so a new draw in one place never shifts the draws
anywhere else. The node's own `entropy.seed()` is one such substream.

Storage is a `SimDisk` (sim/disk.py) that outlives node incarnations: the
World opens a `SimStore` on it for every `open_node`, and a crash or power
loss is applied to the disk between incarnations.

A process pause (the `pause` fault: a GC or VM pause, SIGSTOP) is
`SimWorld.pause`, a `ProcessPause`: while it lasts, the node's process is
stopped as the outside world sees it. Every way in and out of the process
waits at `ProcessPause.wait_running`: a client's call entering the node and
its answer leaving it (sim/host.py), each disk write being issued and its
completion being seen (sim/disk.py; the device itself keeps going, so a
write already under way still lands), every frame the node's sync endpoint
reads or sends (sim/clients.py; the client's kernel keeps buffering up to the
window, then its sends block), and the subscription sessions the update
oracle reads. Clients' timers keep running. The node's in-memory work that
was already running may still finish inside the pause, unseen: nothing it
does reaches a client or the disk before the pause ends.

`deterministic_scheduling(seed)` turns on trio's deterministic scheduling
switch (the one trio's Hypothesis plugin uses, trio/_core/_run.py) and seeds
its scheduler's generator. trio is pinned in pyproject.toml because the
switch is private; tests/sim/test_canary.py fails if it stops making runs
identical.
"""

from __future__ import annotations

import contextlib
import math
import random
from typing import Iterator

import trio
# MockClock from where trio defines it: `trio.testing` also imports pytest
# (its RaisesGroup), about 75 ms of every `eddy sim` process's start.
from trio._core._mock_clock import MockClock  # private: pinned trio, guarded by the canary test

from actors.instruments import with_dict_instruments
from engine.world import split_seed

from sim.disk import SimDisk, SimStore

# Simulated runs start somewhere in 2023-2026 so timestamps look like real
# Convex timestamps (nanoseconds since the epoch) and differ per seed.
EPOCH_NS_MIN = 1_672_531_200 * 10**9  # 2023-01-01
EPOCH_SPAN_NS = 3 * 365 * 86_400 * 10**9


class SimClock:
    """engine.world.Clock on trio's virtual clock, with injectable skew.

    Fields:
        epoch_ns: wall-clock ns at virtual time 0; fixed per seed.
        skew_ns: added to every reading; changed by clock faults (a jump is
            a step of skew_ns; it may go backwards).
    """

    def __init__(self, epoch_ns: int) -> None:
        self.epoch_ns = epoch_ns
        self.skew_ns = 0

    def now_ns(self) -> int:
        return self.epoch_ns + self.skew_ns + round(trio.current_time() * 1e9)

    def jump(self, delta_ns: int) -> None:
        """Steps the clock by `delta_ns` (negative: back in time), as an NTP step would."""
        self.skew_ns += delta_ns


class ProcessPause:
    """The node process's pauses (see the module docstring).

    Fields:
        until_s: virtual time at which the current pause ends (0: running).
        count, paused_s: pauses begun and their total planned seconds.
    """

    def __init__(self) -> None:
        self.until_s = 0.0
        self.count = 0
        self.paused_s = 0.0
        self._ended: trio.Event | None = None

    def begin(self, duration_s: float) -> bool:
        """Stops the process for `duration_s` from now; False if it is stopped already."""
        now = trio.current_time()
        if now < self.until_s:
            return False
        self.until_s = now + duration_s
        self.count += 1
        self.paused_s += duration_s
        self._ended = trio.Event()
        return True

    def end(self) -> None:
        """Resumes the process now (the heal, or the process died)."""
        self.until_s = 0.0
        if self._ended is not None:
            self._ended.set()
            self._ended = None

    async def wait_running(self) -> None:
        """Returns at once while the process runs, else when the pause ends.

        Not a checkpoint when running. Cancelled (the process was killed
        while stopped), it leaves nothing behind.
        """
        if not self.until_s:
            return  # running, the usual case (about 12,000 calls a run): no clock read
        while trio.current_time() < self.until_s:
            ended = self._ended
            with trio.move_on_at(self.until_s):
                await ended.wait()


class SimEntropy:
    """engine.world.Entropy as a seeded substream of the run's root seed."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self.draw_count = 0

    def seed(self) -> int:
        self.draw_count += 1
        return self._random.getrandbits(64)


class SimWorld:
    """The simulator's World (engine.world.World).

    Args:
        seed: the root seed of the run; everything random derives from it.
        disk: the simulated disk; a fresh one when None.
        planted_bug: the name of a bug sim/bugs.py plants, or None. Only the
            simulator sets it; production never sees it.
    """

    def __init__(self, seed: int, disk: SimDisk | None = None,
                 planted_bug: str | None = None) -> None:
        self.seed = seed
        epoch_offset = random.Random(split_seed(seed, "clock", "epoch")).randrange(EPOCH_SPAN_NS)
        self.clock = SimClock(EPOCH_NS_MIN + epoch_offset)
        self.entropy = SimEntropy(split_seed(seed, "node", "entropy"))
        if disk is None:
            disk = SimDisk(self.stream("disk"))
            # A healthy disk still takes time: writes about a millisecond,
            # syncs one more, so group commit has groups to form.
            disk.latency_s_max, disk.sync_latency_s = 0.002, 0.001
        self.disk = disk
        self.planted_bug = planted_bug
        self.store: SimStore | None = None
        self.pause = ProcessPause()
        # What "the process" saw of each data folder (actors/node.py,
        # StorageMark): the World outlives node incarnations, so an older
        # copy of the data coming back is noticed at the next opening.
        self.storage_seen: dict = {}

    def stream(self, *labels: object) -> random.Random:
        """An independent generator for one actor or call site."""
        return random.Random(split_seed(self.seed, *labels))

    def open_store(self, path: str, read_only: bool = False) -> SimStore:
        self.store = self.disk.open(path, read_only=read_only)
        self.store.pause = self.pause
        return self.store


@contextlib.contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Makes trio's scheduler shuffle runnable tasks from `seed` (restored on exit).

    Without it trio reverses each batch of runnable tasks at random from an
    unseeded generator; with it trio sorts the batch by task creation order
    and shuffles it with its module generator, which is seeded here.
    """
    from trio._core import _run  # private: pinned trio, guarded by the canary test

    previous_flag = _run._ALLOW_DETERMINISTIC_SCHEDULING
    previous_state = _run._r.getstate()
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True
    _run._r.seed(split_seed(seed, "trio", "scheduler"))
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = previous_flag
        _run._r.setstate(previous_state)


def sim_mock_clock() -> MockClock:
    """trio's MockClock with autojump, read without the real clock while its
    rate is 0, and jumping without gathering statistics.

    MockClock reads the real clock on every `current_time` and scales the
    time since its last jump by its rate; at rate 0 (a simulated run's: time
    moves only by autojumps) that adds exactly 0.0 to the virtual base, so
    the base is the answer. trio reads the time several times per scheduler
    pass and the node at every transaction: about 140,000 reads in a
    reference-scenario run, 2% of its CPU time (docs/performance.md section
    11). Its autojump (about 7,000 a run) reads the next deadline directly,
    as MockClock's own does through `current_statistics()`, without building
    the run's statistics (the I/O backend's included) each time: 1% more.
    MockClock is final, so both are set on the instance; they rely on
    private fields of trio, as pinned (the canary test runs under this clock).
    """
    from trio._core import _run  # private: pinned trio, guarded by the canary test

    clock = MockClock(autojump_threshold=0)
    scaled = clock.current_time

    def current_time() -> float:
        return scaled() if clock._rate else clock._virtual_base

    def autojump() -> None:
        jump = _run.GLOBAL_RUN_CONTEXT.runner.deadlines.next_deadline() - current_time()
        if 0 < jump < math.inf:
            clock.jump(jump)
    clock.current_time = current_time
    clock._autojump = autojump
    return clock


def run_simulated(async_fn, seed: int, *args):
    """`trio.run(async_fn, *args)` under a MockClock with deterministic scheduling."""
    with deterministic_scheduling(seed):
        return trio.run(with_dict_instruments, async_fn, *args, clock=sim_mock_clock())
