"""The simulated disk: engine.world.Store in memory, with the faults real disks have.

Theory of operation. A `SimDisk` is the device; it outlives node
incarnations. Each data folder on it is a `Volume` holding, per column
family, the records a running process sees (`visible`) and the write-ahead
log of batches not yet synced (`unsynced`). `SimDisk.open(path)` gives a
`SimStore`, the node's handle (the same interface as actors/storage.py's
RocksStore, one contract suite tests both: tests/contract/test_store_contract.py).

Rules:

1. A batch is applied to `visible` whole, at one instant, or not at all.
2. `write(sync=False)` appends the batch to `unsynced`; `write(sync=True)`
   makes it and every earlier batch durable (clears `unsynced`).
3. A process crash (`crash()`) keeps every applied batch: the OS still has
   them. A power loss (`power_loss()`) keeps a prefix of the unsynced batches
   (the WAL is written in order; how far it got is drawn from the disk's
   substream) and drops the rest.
4. Every stored value is sealed with the same CRC-32 as RocksStore's
   (actors.storage.seal); a bit flip (`flip_bit`) is caught on read as
   `EddyError(CORRUPT_RECORD)` naming the key, never served.
5. `snapshot` copies a volume and `swap` puts a copy in its place: a disk
   snapshot restored, so an older copy of the data comes back (the
   stale-storage fault, sim/host.py).
6. Faults a test or the fault injector sets: `write_error_probability` (an
   I/O error, the batch not applied), `capacity_bytes` (ENOSPC past it),
   write latency (`latency_s_min`/`latency_s_max`, slower with sync), all on
   trio's clock, so under MockClock they cost no wall time.

No threads, no files: everything is dictionaries and trio's virtual clock.
"""

from __future__ import annotations

import copy
import random
from typing import Iterator, Sequence

import trio
from sortedcontainers import SortedDict

from actors.storage import seal, unseal
from engine.errors import EddyError, ErrorCode
from engine.world import COLUMN_FAMILIES, WriteOp

from sim.timers import sleep

# Keys fetched per step of a scan: scans see writes made while they run, as a
# RocksDB iterator without a pinned snapshot would past its current block.
scan_chunk_keys_max = 256


class DiskFault(EddyError):
    """An injected storage failure (I/O error, ENOSPC), shaped like RocksStore's."""


class Volume:
    """One data folder on the disk.

    Fields:
        visible: cf -> SortedDict(key -> sealed value): what reads see.
        unsynced: batches applied but not yet synced, oldest first, each as
            [(cf, key, previous sealed value or None)] so a power loss can undo it.
        used_bytes: bytes held by `visible` (keys and values), against capacity.
    """

    def __init__(self) -> None:
        self.visible: dict[str, SortedDict] = {cf: SortedDict() for cf in COLUMN_FAMILIES}
        self.unsynced: list[list[tuple[str, bytes, bytes | None]]] = []
        self.used_bytes = 0
        self.open_count = 0

    def apply(self, ops: Sequence[WriteOp]) -> list[tuple[str, bytes, bytes | None]]:
        undo = []
        for cf, key, value in ops:
            family = self.visible[cf]
            previous = family.get(key)
            undo.append((cf, key, previous))
            if previous is not None:
                self.used_bytes -= len(key) + len(previous)
            if value is None:
                family.pop(key, None)
            else:
                sealed = seal(cf, key, value)
                family[key] = sealed
                self.used_bytes += len(key) + len(sealed)
        return undo

    def undo(self, undo: list[tuple[str, bytes, bytes | None]]) -> None:
        for cf, key, previous in reversed(undo):
            family = self.visible[cf]
            current = family.get(key)
            if current is not None:
                self.used_bytes -= len(key) + len(current)
            if previous is None:
                family.pop(key, None)
            else:
                family[key] = previous
                self.used_bytes += len(key) + len(previous)


class SimDisk:
    """The simulated device: volumes by path, faults, and crash semantics.

    Args:
        rng: the disk's own substream (latency, power-loss cut, bit flips).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random(0)
        self.volumes: dict[str, Volume] = {}
        self.write_error_probability = 0.0
        self.capacity_bytes: int | None = None
        self.latency_s_min = 0.0
        self.latency_s_max = 0.0
        self.sync_latency_s = 0.0
        # What happened, for the run's report: kind -> count.
        self.fault_counts: dict[str, int] = {}
        self.write_count = 0
        self.sync_count = 0
        # Set by sim/bugs.py's "acknowledgement before fsync": sync writes are
        # acknowledged without being synced. Never set outside the simulator.
        self.ignore_sync = False

    def volume(self, path: str) -> Volume:
        return self.volumes.setdefault(path, Volume())

    def open(self, path: str, read_only: bool = False) -> SimStore:
        volume = self.volume(path)
        volume.open_count += 1
        return SimStore(self, volume, path, read_only)

    # ----- crash semantics -------------------------------------------------

    def crash(self) -> None:
        """A process crash: nothing on the disk changes (rule 3)."""

    def power_loss(self) -> int:
        """Drops a random suffix of every volume's unsynced batches (rule 3).

        Returns how many batches were dropped.
        """
        dropped = 0
        for path in sorted(self.volumes):
            volume = self.volumes[path]
            kept = self.rng.randint(0, len(volume.unsynced))
            for undo in reversed(volume.unsynced[kept:]):
                volume.undo(undo)
                dropped += 1
            volume.unsynced.clear()
        return dropped

    def snapshot(self, path: str) -> Volume:
        """A copy of `path` as a storage snapshot takes it: every applied
        batch, synced or not (crash-consistent), nothing left to sync."""
        volume = self.volume(path)
        copy = Volume()
        copy.visible = {cf: SortedDict(family) for cf, family in volume.visible.items()}
        copy.used_bytes = volume.used_bytes
        return copy

    def copy(self) -> SimDisk:
        """Another disk holding a snapshot of each volume (`snapshot`), with
        this one's settings and its generator's state, so it draws what this
        one would draw next (the corruption check damages such a copy)."""
        other = copy.copy(self)
        other.rng = copy.deepcopy(self.rng)
        other.fault_counts = dict(self.fault_counts)
        other.volumes = {path: self.snapshot(path) for path in self.volumes}
        return other

    def swap(self, path: str, volume: Volume) -> Volume:
        """Puts `volume` in place of `path`'s (an older copy restored, or the
        right one put back); returns the volume it replaced."""
        previous = self.volume(path)
        self.volumes[path] = volume
        return previous

    def flip_bit(self, path: str, cf: str) -> bytes | None:
        """Flips one bit of a random record of `cf` in `path`; returns its key."""
        family = self.volume(path).visible[cf]
        if not family:
            return None
        key = family.keys()[self.rng.randrange(len(family))]
        stored = bytearray(family[key])
        index = self.rng.randrange(len(stored) * 8)
        stored[index // 8] ^= 1 << (index % 8)
        family[key] = bytes(stored)
        self.count("bit_flip")
        return key

    def count(self, kind: str) -> None:
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1


class SimStore:
    """engine.world.Store on a SimDisk volume (see the module docstring)."""

    def __init__(self, disk: SimDisk, volume: Volume, path: str, read_only: bool) -> None:
        self.disk = disk
        self.path = path
        self.read_only = read_only
        self._volume = volume
        self._closed = False
        # The process's pauses (sim/world.py, ProcessPause); None: never paused.
        self.pause = None

    def get(self, cf: str, key: bytes) -> bytes | None:
        self._check_open()
        stored = self._volume.visible[cf].get(key)
        return None if stored is None else unseal(cf, key, stored)

    def scan(self, cf: str, lo: bytes = b"", hi: bytes | None = None,
             reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, payload) for keys in [lo, hi), ascending or descending."""
        self._check_open()
        family = self._volume.visible[cf]
        if reverse:
            upper, upper_inclusive = hi, False
            while True:
                keys = list(_take(family.irange(lo, upper, (True, upper_inclusive), reverse=True)))
                for key in keys:
                    stored = family.get(key)
                    if stored is not None:
                        yield key, unseal(cf, key, stored)
                if len(keys) < scan_chunk_keys_max:
                    return
                upper = keys[-1]
        else:
            lower, lower_inclusive = lo, True
            while True:
                keys = list(_take(family.irange(lower, hi, (lower_inclusive, False))))
                for key in keys:
                    stored = family.get(key)
                    if stored is not None:
                        yield key, unseal(cf, key, stored)
                if len(keys) < scan_chunk_keys_max:
                    return
                lower, lower_inclusive = keys[-1], False

    async def write(self, ops: Sequence[WriteOp], sync: bool) -> None:
        """Applies `ops` atomically after the disk's latency (rules 1, 2, 5).

        A checkpoint. Cancelled during the latency, nothing is applied; the
        batch itself is applied in one step, never half. A paused process
        (`pause`) issues nothing until it resumes, and sees a write that
        landed during the pause complete only then.

        Raises:
            DiskFault: an injected I/O error or ENOSPC; nothing was applied.
        """
        self._check_open()
        if self.read_only:
            raise EddyError(ErrorCode.INTERNAL, "This store was opened read-only.")
        disk = self.disk
        if self.pause is not None:
            await self.pause.wait_running()
        delay = disk.rng.uniform(disk.latency_s_min, disk.latency_s_max) if disk.latency_s_max else 0.0
        if sync:
            delay += disk.sync_latency_s
        await sleep(delay)
        self._check_open()
        if disk.write_error_probability and disk.rng.random() < disk.write_error_probability:
            disk.count("io_error")
            raise DiskFault(ErrorCode.INTERNAL, "Storage error at write: IO error (simulated).",
                            where="write")
        if disk.capacity_bytes is not None:
            growth = sum(len(key) + 4 + len(value) for _, key, value in ops if value is not None)
            if self._volume.used_bytes + growth > disk.capacity_bytes:
                disk.count("enospc")
                raise DiskFault(ErrorCode.INTERNAL,
                                "Storage error at write: No space left on device (simulated).",
                                where="write")
        undo = self._volume.apply(ops)
        disk.write_count += 1
        self._volume.unsynced.append(undo)
        if sync and not disk.ignore_sync:
            disk.sync_count += 1
            self._volume.unsynced.clear()
        if self.pause is not None:
            await self.pause.wait_running()

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise EddyError(ErrorCode.INTERNAL, "This store is closed.")


def _take(iterator) -> Iterator:
    for count, item in enumerate(iterator):
        if count == scan_chunk_keys_max:
            return
        yield item
