"""Canary: trio's deterministic scheduling switch still makes runs identical.

The simulator relies on a private switch of trio (`trio._core._run`:
`_ALLOW_DETERMINISTIC_SCHEDULING` and the module generator `_r`, the ones
trio's Hypothesis plugin uses). trio is pinned in pyproject.toml; if an
upgrade moves or changes the switch, these tests fail before any seed
silently stops replaying.
"""

from __future__ import annotations

import importlib.metadata

import pytest
import trio
import trio.testing

from sim.world import deterministic_scheduling, sim_mock_clock


async def _racing_tasks() -> list[int]:
    """Many tasks that wake in the same scheduler batches: their order is the scheduler's choice."""
    order = []

    async def worker(number):
        for step in range(5):
            await trio.sleep(0)
            order.append(number * 10 + step)
    async with trio.open_nursery() as nursery:
        for number in range(20):
            nursery.start_soon(worker, number)
    return order


def _run(seed: int) -> list[int]:
    with deterministic_scheduling(seed):
        return trio.run(_racing_tasks, clock=sim_mock_clock())


def test_trio_is_the_pinned_version():
    """The switch was checked against trio 0.35.0; another version needs this canary re-read."""
    assert importlib.metadata.version("trio") == "0.35.0"


def test_the_same_seed_schedules_tasks_identically():
    """Two runs with one seed interleave tasks the same way."""
    assert _run(11) == _run(11)


def test_the_switch_is_really_on():
    """Different seeds give different interleavings, so the seed is what decides them."""
    orders = {tuple(_run(seed)) for seed in range(5)}
    assert len(orders) > 1


def test_the_switch_is_restored_afterwards():
    """Leaving the simulator puts trio's scheduling back as it was."""
    from trio._core import _run as run_module
    before = run_module._ALLOW_DETERMINISTIC_SCHEDULING
    _run(3)
    assert run_module._ALLOW_DETERMINISTIC_SCHEDULING == before


def test_the_simulator_clock_reads_what_mock_clock_reads():
    """sim_mock_clock's fast read (its virtual base at rate 0) is MockClock's own
    reading, its autojumps land on each sleep's deadline, and at another
    rate it reads as MockClock does."""
    clock = sim_mock_clock()
    readings = []

    async def main():
        for delay in (0.0, 0.001, 0.25, 3.0, 1e-9):
            await trio.sleep(delay)
            readings.append((clock.current_time(), trio.testing.MockClock.current_time(clock)))
    trio.run(main, clock=clock)
    expected = [0.0, 0.001, 0.251, 3.251, 3.251 + 1e-9]  # each autojump lands on the deadline
    assert [fast for fast, _ in readings] == pytest.approx(expected, abs=1e-12)
    assert all(fast == slow for fast, slow in readings)
    clock.rate = 2.0
    assert abs(clock.current_time() - trio.testing.MockClock.current_time(clock)) < 0.1
