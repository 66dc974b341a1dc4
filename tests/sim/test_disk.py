"""The simulated disk's crash semantics and faults (what the contract suite cannot
ask of RocksDB): power loss drops unsynced writes only, faults leave nothing half
applied, latency runs on trio's virtual clock, and the World's clock and seeds."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from actors.storage import seal
from engine.errors import EddyError, ErrorCode
from sim.disk import DiskFault, SimDisk
from sim.world import SimWorld, run_simulated


def write(store, ops, sync):
    trio.run(store.write, ops, sync)


def test_a_power_loss_keeps_synced_writes_and_a_prefix_of_unsynced_ones():
    """After a power loss every synced batch is there and the unsynced ones kept are a prefix."""
    for seed in range(20):
        disk = SimDisk(random.Random(seed))
        store = disk.open("d")
        write(store, [("log", b"synced", b"1")], sync=True)
        for n in range(5):
            write(store, [("log", b"u%d" % n, b"x"), ("meta", b"u%d" % n, b"x")], sync=False)
        disk.power_loss()
        store = disk.open("d")
        assert store.get("log", b"synced") == b"1"
        kept = [n for n in range(5) if store.get("log", b"u%d" % n) is not None]
        assert kept == list(range(len(kept)))
        assert all((store.get("meta", b"u%d" % n) is not None) == (n in kept) for n in range(5))


def test_a_sync_write_makes_earlier_unsynced_writes_durable():
    """A synced batch syncs the write-ahead log, with every batch before it."""
    disk = SimDisk(random.Random(0))
    store = disk.open("d")
    write(store, [("log", b"a", b"1")], sync=False)
    write(store, [("log", b"b", b"2")], sync=True)
    disk.power_loss()
    assert disk.open("d").get("log", b"a") == b"1"


def test_a_process_crash_keeps_unsynced_writes():
    """A crash of the process, not the machine, loses nothing written."""
    disk = SimDisk(random.Random(0))
    write(disk.open("d"), [("log", b"a", b"1")], sync=False)
    disk.crash()
    assert disk.open("d").get("log", b"a") == b"1"


def test_io_errors_and_enospc_apply_nothing():
    """An injected I/O error or a full disk fails the batch and leaves no part of it."""
    disk = SimDisk(random.Random(0))
    store = disk.open("d")
    disk.write_error_probability = 1.0
    with pytest.raises(DiskFault):
        write(store, [("log", b"a", b"1"), ("log", b"b", b"2")], sync=True)
    disk.write_error_probability = 0.0
    disk.capacity_bytes = 40
    with pytest.raises(DiskFault) as info:
        write(store, [("log", b"a", b"1" * 20), ("log", b"b", b"2" * 20)], sync=True)
    assert "No space" in info.value.message
    assert list(store.scan("log")) == []
    assert disk.fault_counts == {"io_error": 1, "enospc": 1}


def test_a_flipped_bit_is_caught_by_the_checksum():
    """Any single flipped bit makes the record fail its checksum."""
    disk = SimDisk(random.Random(5))
    store = disk.open("d")
    write(store, [("log", b"k%d" % n, b"payload %d" % n) for n in range(10)], sync=True)
    for _ in range(20):
        key = disk.flip_bit("d", "log")
        with pytest.raises(EddyError) as info:
            store.get("log", key)
        assert info.value.code == ErrorCode.CORRUPT_RECORD
        # Repair it, so the next flip is the only damage on the disk.
        disk.volume("d").visible["log"][key] = seal("log", key, b"repaired")


def test_write_latency_runs_on_the_virtual_clock():
    """Disk latency advances trio's mock clock, not the wall clock."""
    disk = SimDisk(random.Random(0))
    disk.latency_s_min, disk.latency_s_max, disk.sync_latency_s = 0.5, 0.5, 1.0
    store = disk.open("d")

    async def main():
        start = trio.current_time()
        await store.write([("log", b"a", b"1")], sync=True)
        return trio.current_time() - start
    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == pytest.approx(1.5)


def test_the_world_clock_follows_virtual_time_and_jumps():
    """The simulated clock is epoch + skew + virtual time; seeds differ by substream."""
    world = SimWorld(42)

    async def main():
        first = world.clock.now_ns()
        await trio.sleep(2)
        second = world.clock.now_ns()
        world.clock.jump(-10**9)
        return first, second, world.clock.now_ns()
    first, second, third = run_simulated(main, 42)
    assert second - first == 2 * 10**9
    assert third == second - 10**9
    assert SimWorld(42).clock.epoch_ns == world.clock.epoch_ns != SimWorld(43).clock.epoch_ns
    assert world.stream("a").random() != world.stream("b").random()
    assert world.stream("a").random() == SimWorld(42).stream("a").random()
