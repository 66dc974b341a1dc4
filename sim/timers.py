"""Sleeping without a cancel scope: `sleep`, the simulator's `trio.sleep`.

The simulated disk, network and clients sleep about 12,000 times in a
reference-scenario run (docs/performance.md section 11). trio sleeps in a
cancel scope with a deadline (`move_on_at`): entering and leaving it, and the
`Cancelled` raised and caught when it expires, cost about 10 us each time.
`sleep` puts the same deadline into trio's deadline heap directly, with an
entry that reschedules the task when the deadline passes.

Why a run stays event for event the same: trio expires its deadline heap
before it makes each batch of runnable tasks, so the task wakes in the same
pass of the scheduler as from `trio.sleep`; under deterministic scheduling a
batch is sorted by task and then shuffled, so the order in which its tasks
woke does not matter; and the MockClock's autojump reads the same next
deadline. It relies on private fields of the pinned trio, as
`sim.world.sim_mock_clock` does (tests/sim/test_canary.py guards both).
"""

from __future__ import annotations

import math

import trio
from trio._core import _run as _trio_run  # private: pinned trio, guarded by the canary test


class Waiter:
    """Parks one task until `wake` is called or a deadline passes: a
    `trio.Event().wait()` inside `trio.move_on_at(deadline)`, without the
    cancel scope (see the module docstring). One wait at a time.

    It is its own entry in trio's deadline heap, which asks of an entry
    exactly this: `_registered_deadline` (an entry whose deadline no longer
    matches it is stale) and `_cancel`, called when the deadline passes.

    Fields:
        _task: the waiting task; set by `wait`, cleared when it is woken,
            its deadline passes or its wait is cancelled.
        _registered_deadline: the deadline in trio's heap while the task
            waits for it, else infinity.
    """

    __slots__ = ("_task", "_registered_deadline", "_deadlines")

    def __init__(self) -> None:
        self._task = None
        self._registered_deadline = math.inf
        self._deadlines = None

    async def wait(self, deadline: float) -> None:
        """Returns once `wake` is called or `deadline` (trio's clock) passes.

        A checkpoint; cancellation ends the wait and leaves nothing behind.
        """
        assert self._task is None, "one wait at a time"
        context = _trio_run.GLOBAL_RUN_CONTEXT
        self._task = context.task
        if deadline < math.inf:
            deadlines = self._deadlines = context.runner.deadlines
            self._registered_deadline = deadline
            deadlines.add(deadline, self)
        try:
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        except BaseException:
            # Cancelled (already disarmed by `_abort`), or the coroutine was
            # closed without trio seeing it suspend (the runner abandons a
            # function's first run that way): its deadline must not fire.
            self._disarm()
            raise

    def wake(self) -> None:
        """Ends the current wait, if a task waits (else nothing)."""
        task = self._task
        if task is not None:
            self._disarm()
            _trio_run.GLOBAL_RUN_CONTEXT.runner.reschedule(task)

    def _cancel(self, reason=None) -> None:
        """Called by trio's `Deadlines.expire` when the deadline has passed."""
        self.wake()

    def _abort(self, raise_cancel) -> trio.lowlevel.Abort:
        self._disarm()
        return trio.lowlevel.Abort.SUCCEEDED

    def _disarm(self) -> None:
        self._task = None
        if self._registered_deadline != math.inf:
            self._deadlines.remove(self._registered_deadline, self)
            self._registered_deadline = math.inf


async def sleep(seconds: float) -> None:
    """`trio.sleep(seconds)` without a cancel scope (see the module docstring).

    A checkpoint; cancellation ends it early and leaves nothing behind, as
    trio.sleep's does. Zero, infinite and invalid durations go to trio.sleep.
    """
    if not 0 < seconds < math.inf:
        await trio.sleep(seconds)  # 0 is a plain checkpoint; the rest trio handles (or refuses)
        return
    await Waiter().wait(_trio_run.GLOBAL_RUN_CONTEXT.runner.clock.current_time() + seconds)
