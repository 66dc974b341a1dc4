"""The production World: the OS clock, OS entropy and RocksDB on disk."""

from __future__ import annotations

import os
import time

from actors.storage import RocksStore


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()  # world: the production clock lives here


class OsEntropy:
    def seed(self) -> int:
        return int.from_bytes(os.urandom(8), "big")  # world: production entropy lives here


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
