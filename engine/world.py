"""The World: the one object through which the node meets time, chance and disk.

Production hands the node a World backed by the OS clock, OS entropy and
RocksDB (`actors/world.py`); the simulator hands in a virtual clock, one
seeded root and a simulated disk (`sim/`). Actor code cannot tell them apart,
which is what makes a simulated run replay bit for bit (DESIGN.md section 6).

This module only states the interfaces; it has no implementation of its own
beyond the seed-splitting rule, which both worlds share.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Protocol, Sequence

# A storage operation: (column family, key, value); value None deletes the key.
WriteOp = tuple[str, bytes, "bytes | None"]

# Column families every store has. `commits` holds one record per commit keyed
# by ts, `log` the per-shard append-only logs keyed by table number then ts,
# `meta` small node-wide records (catalog, schema, admin key, epoch).
COLUMN_FAMILIES = ("commits", "log", "meta")


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock nanoseconds since the Unix epoch (may jump; never trusted to rise)."""


class Entropy(Protocol):
    def seed(self) -> int:
        """A fresh 64-bit seed. Production draws it from the OS; it is recorded
        in the log with whatever it decided, so a re-run can reuse it."""


class Store(Protocol):
    """A durable key-value store with column families and atomic batches.

    Every value is checksummed by the store; a value that fails its checksum
    raises `EddyError(CORRUPT_RECORD)` naming the column family and key.
    """

    def get(self, cf: str, key: bytes) -> bytes | None: ...

    def scan(self, cf: str, lo: bytes = b"", hi: bytes | None = None,
             reverse: bool = False) -> Iterator[tuple[bytes, bytes]]: ...

    async def write(self, ops: Sequence[WriteOp], sync: bool) -> None:
        """Applies `ops` atomically; with `sync`, returns only once they are on
        stable storage. A checkpoint; cancellation may leave the batch applied
        or not, never half."""

    def close(self) -> None: ...


class World(Protocol):
    clock: Clock
    entropy: Entropy

    def open_store(self, path: str) -> Store: ...


def split_seed(seed: int, *labels: object) -> int:
    """Derives an independent 64-bit seed for a substream from a parent seed.

    Substreams keyed by label (actor name, call site, counter) do not shift
    when another substream draws more, which keeps simulated runs stable
    under unrelated code changes.
    """
    text = repr((seed, labels)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
