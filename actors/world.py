"""The production World: the OS clock, OS entropy and RocksDB on disk."""

from __future__ import annotations

import os
import struct
import time

from actors.storage import RocksStore


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()  # world: the production clock lives here


class OsEntropy:
    """Seeds from the OS's entropy, read 512 at a time: every mutation and
    query draws one, and a `getrandom` call each was a system call per
    function call."""

    def __init__(self) -> None:
        self._seeds: list[int] = []

    def seed(self) -> int:
        seeds = self._seeds
        if not seeds:
            seeds = self._seeds = list(_SEEDS.unpack(
                os.urandom(_SEEDS.size)))  # world: production entropy lives here
        return seeds.pop()


_SEEDS = struct.Struct(">512Q")


class RealWorld:
    """Production's World (engine.world.World).

    `storage_seen` is what this process saw of each data folder it opened
    (actors/node.py, "stale storage"): shared by every RealWorld of the
    process, as the process is what remembers.
    """

    storage_seen: dict = {}

    def __init__(self) -> None:
        self.clock = SystemClock()
        self.entropy = OsEntropy()

    def open_store(self, path: str, read_only: bool = False) -> RocksStore:
        return RocksStore(path, read_only=read_only)
