"""Helpers shared by the live-query benchmarks (bench/bench_live.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

SUBSCRIBE_S_MAX = 600  # Setting up 20,000 subscriptions one ModifyQuerySet at a time.


@dataclass
class Figure:
    """One measured number for the table (latency, CPU, a count)."""

    value: float
    unit: str
    digits: int = 2

    def __str__(self) -> str:
        if self.unit == "":
            return f"{self.value:,.0f}"
        return f"{self.value:,.{self.digits}f} {self.unit}"


def now_ns() -> int:
    # CLOCK_MONOTONIC: the same clock in every process of this machine.
    return time.monotonic_ns()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Subscribers:
    """Holds many subscriptions of one client pool; each value goes to `on_value`.

    `on_value(index, value)` runs in the subscription's own task each time a
    new value arrives (intermediate values may be skipped: the client keeps
    the latest).
    """

    def __init__(self, clients, on_value) -> None:
        self.clients = clients
        self.on_value = on_value
        self.ready_count = 0
        self.target_count = 0

    async def add_all(self, nursery, specs) -> None:
        """Subscribes (client index, path, args) each; returns once all have a
        first value (which also goes to `on_value`)."""
        import trio

        specs = list(specs)
        self.target_count += len(specs)
        all_ready = trio.Event()

        async def hold(index: int, client, path: str, args: dict) -> None:
            async with client.subscribe(path, args) as sub:
                self.on_value(index, await sub.next())
                self.ready_count += 1
                if self.ready_count == self.target_count:
                    all_ready.set()
                while True:
                    self.on_value(index, await sub.next())

        for index, (client_index, path, args) in enumerate(specs):
            nursery.start_soon(hold, index, self.clients[client_index], path, args)
        with trio.fail_after(SUBSCRIBE_S_MAX):
            await all_ready.wait()
