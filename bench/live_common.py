"""Helpers shared by the live-query benchmarks (bench/bench_live.py)."""

from __future__ import annotations

import http.client
import json
import math
import os
import statistics
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


class ThreadCpu:
    """CPU seconds of a process so far, at nanosecond resolution.

    /proc/<pid>/stat counts CPU in 10 ms ticks, too coarse for a write that
    costs a few milliseconds; each thread's /proc/<pid>/task/<tid>/schedstat
    starts with its time on a CPU in nanoseconds (user and system). A thread
    that exits takes its figure with it, so the last figure read of every
    thread ever seen is kept: what an exiting thread ran after the previous
    reading is lost (the server's worker threads are long-lived). Falls back
    to the ticks where schedstat is missing.
    """

    def __init__(self, pid: int, coarse) -> None:
        self.pid = pid
        self.coarse = coarse  # the 10 ms reading (bench_ws.process_cpu_s)
        self.seen_ns: dict[str, int] = {}
        self.precise = os.path.exists(f"/proc/{pid}/task/{pid}/schedstat")

    def seconds(self) -> float:
        if not self.precise:
            return self.coarse(self.pid)
        folder = f"/proc/{self.pid}/task"
        for tid in os.listdir(folder):
            try:
                with open(f"{folder}/{tid}/schedstat") as handle:
                    self.seen_ns[tid] = int(handle.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited meanwhile: its last figure stays
        return sum(self.seen_ns.values()) / 1e9

    @property
    def resolution(self) -> str:
        return "ns (schedstat)" if self.precise else "10 ms ticks (/proc/<pid>/stat)"


def mean_interval(samples: list[float]) -> tuple[float, float]:
    """The mean of `samples` and the half-width of its 95% confidence interval
    (normal approximation: 1.96 standard errors; 0 for fewer than 2 samples)."""
    mean = statistics.fmean(samples)
    if len(samples) < 2:
        return mean, 0.0
    return mean, 1.96 * statistics.stdev(samples) / math.sqrt(len(samples))


def ratio_interval(numerator: tuple[float, float],
                   denominator: tuple[float, float]) -> tuple[float, float]:
    """The range of a ratio of two means given as (mean, half-width): its
    lowest and highest value with both means inside their intervals."""
    (top, top_half), (bottom, bottom_half) = numerator, denominator
    low = (top - top_half) / (bottom + bottom_half) if bottom + bottom_half > 0 else math.inf
    high = (top + top_half) / (bottom - bottom_half) if bottom - bottom_half > 0 else math.inf
    return low, high


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


def http_query_cpu_s(server_cpu: ThreadCpu, port: int, paths: list[str],
                     count: int) -> dict[str, list[float]]:
    """Server CPU seconds of each of `count` `POST /api/query` of each of
    `paths` (sequential, one connection). The paths take turns, call by
    call, so that a slower minute of a shared machine weighs on all alike
    and their differences can be taken pair by pair."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(path: str) -> None:
        body = json.dumps({"path": path, "args": {}, "format": "json"})
        connection.request("POST", "/api/query", body=body,
                           headers={"content-type": "application/json"})
        response = connection.getresponse()
        reply = json.loads(response.read())
        if reply.get("status") != "success":
            raise RuntimeError(f"query {path}: {reply}")

    for _ in range(20):
        for path in paths:
            call(path)  # Warm up the connection and the code paths.
    used: dict[str, list[float]] = {path: [] for path in paths}
    coarse_before = server_cpu.coarse(server_cpu.pid)
    for _ in range(count):
        for path in paths:
            before = server_cpu.seconds()
            call(path)
            used[path].append(server_cpu.seconds() - before)
    # A cross-check of the fine figures: the same calls in 10 ms ticks.
    used["ticks"] = [server_cpu.coarse(server_cpu.pid) - coarse_before]
    connection.close()
    return used
