"""Holds a function between its reads and its writes for `pause_ms` of (virtual)
time, so concurrent mutations interleave and optimistic concurrency has
conflicts to catch. Under the simulator the clock is trio's MockClock and the
scheduling is seeded, so the interleaving replays exactly.

It sleeps as the simulator's own tasks do (sim/timers.py: trio.sleep's
deadline without its cancel scope; the same wakeups, so the same runs): the
pause is the simulation's device for widening conflict windows, not work an
app does. Under the real-process tier it runs under trio's real clock, where
sim/timers.py works the same way."""

from sim.timers import sleep


async def pause(pause_ms):
    if pause_ms:
        await sleep(pause_ms / 1000)
