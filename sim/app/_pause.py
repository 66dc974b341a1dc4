"""Holds a function between its reads and its writes for `pause_ms` of (virtual)
time, so concurrent mutations interleave and optimistic concurrency has
conflicts to catch. Under the simulator the clock is trio's MockClock and the
scheduling is seeded, so the interleaving replays exactly."""

import trio


async def pause(pause_ms):
    if pause_ms:
        await trio.sleep(pause_ms / 1000)
