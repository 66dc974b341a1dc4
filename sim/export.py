"""A simulated run's data folder saved as a real one (`eddy sim run --save-data DIR`).

After a run, the simulated disk still holds the node's data folder: every
batch the node applied (it stops cleanly at the end, so that is everything
durable; sim/disk.py rule 3). `save_volume` copies it into a real RocksDB
data folder through the production store (actors/storage.py `RocksStore`),
column family by column family, so Eddy's log tools (`eddy log`, `show`,
`query --at`, `replay --verify`, ...) open it like any data folder.

Records are copied verbatim. Both stores seal a payload the same way
(`actors.storage.seal`: a CRC-32 of column family, key and payload, then the
payload), so reading a record through the simulated store (which checks its
CRC) and writing its payload through RocksStore (which seals it again) stores
exactly the bytes the simulated disk held, CRC included; the meta records
(the generation, the admin key) come along like any other. A record that
failed its CRC on the simulated disk could not be copied this way; the
simulator only damages copies of the disk (the corruption check), so the save
stops with that record's CORRUPT_RECORD error instead.

Saving happens after the run's trace is computed and draws nothing from the
run's World, so it changes no event of the run.
"""

from __future__ import annotations

import dataclasses
import os

from actors.storage import RocksStore
from engine.world import COLUMN_FAMILIES

from sim.disk import SimDisk

# Records per RocksDB write batch: a batch is held in memory whole, and a
# 30-second run holds a few hundred thousand records; ten thousand keeps a
# batch to a few megabytes while the per-batch cost stays negligible.
save_batch_records_max = 10_000


@dataclasses.dataclass
class SavedData:
    """What `save_volume` wrote: the folder and its records per column family."""

    path: str
    record_counts: dict[str, int]

    @property
    def record_count(self) -> int:
        return sum(self.record_counts.values())


def check_target(path: str) -> None:
    """Refuses a target that exists and is not an empty folder.

    Raises:
        ValueError: `path` is a file, or a folder with something in it.
    """
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"--save-data {path}: exists and is not a folder")
    if os.listdir(path):
        raise ValueError(f"--save-data {path}: the folder is not empty; "
                         f"give a new or empty folder (nothing is overwritten)")


def save_volume(disk: SimDisk, volume_path: str, target: str) -> SavedData:
    """Copies the data folder `volume_path` of `disk` into a real data folder.

    Args:
        disk: the simulated disk as the run left it.
        volume_path: the data folder on it (sim/host.py `DATA_DIR`).
        target: the real folder to create; must not exist or be empty.

    Returns:
        The folder and how many records of each column family it holds.

    Raises:
        ValueError: the target is not a new or empty folder.
        EddyError: a record on the simulated disk failed its CRC
            (CORRUPT_RECORD), or RocksDB could not write.
    """
    check_target(target)
    source = disk.open(volume_path, read_only=True)
    store = RocksStore(target)
    counts = {}
    try:
        batch = []
        for cf in COLUMN_FAMILIES:
            counts[cf] = 0
            for key, payload in source.scan(cf):
                batch.append((cf, key, payload))
                counts[cf] += 1
                if len(batch) == save_batch_records_max:
                    store.write_nowait(batch, sync=False)
                    batch = []
        store.write_nowait(batch, sync=True)  # syncs every earlier batch too
    finally:
        source.close()
        store.close()
    return SavedData(target, counts)
