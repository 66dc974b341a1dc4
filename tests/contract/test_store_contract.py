"""One contract for engine.world.Store, run against every implementation:
RocksDB (actors/storage.py) and the simulator's disk (sim/disk.py).

Each implementation is a `Backend`: it opens a store on a path, reopens it
after close, and can corrupt one stored record the way its medium would
(a flipped byte in RocksDB's value, a flipped bit on the simulated disk).
"""

from __future__ import annotations

import random

import pytest
import rocksdict
import trio

from actors.storage import RocksStore
from engine.errors import EddyError, ErrorCode
from engine.world import COLUMN_FAMILIES
from sim.disk import SimDisk


class RocksBackend:
    def __init__(self, tmp_path) -> None:
        self.path = str(tmp_path / "data")

    def open(self):
        return RocksStore(self.path)

    def corrupt(self, cf: str, key: bytes) -> None:
        families = {name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES}
        db = rocksdict.Rdict(self.path + "/db", rocksdict.Options(raw_mode=True),
                             column_families=families)
        family = db.get_column_family(cf)
        stored = bytearray(family[key])
        stored[-1] ^= 0x01
        family[key] = bytes(stored)
        del family
        db.close()
        del db


class SimBackend:
    def __init__(self, tmp_path) -> None:
        self.disk = SimDisk(random.Random(1))
        self.path = "data"

    def open(self):
        return self.disk.open(self.path)

    def corrupt(self, cf: str, key: bytes) -> None:
        family = self.disk.volume(self.path).visible[cf]
        stored = bytearray(family[key])
        stored[-1] ^= 0x01
        family[key] = bytes(stored)


@pytest.fixture(params=["rocksdb", "sim"])
def backend(request, tmp_path):
    return {"rocksdb": RocksBackend, "sim": SimBackend}[request.param](tmp_path)


def write(store, ops, sync=True):
    trio.run(store.write, ops, sync)


def keys(store, cf, lo=b"", hi=None, reverse=False):
    return [key for key, _ in store.scan(cf, lo, hi, reverse)]


def test_put_get_and_delete(backend):
    """A put is read back; a delete removes the key; a missing key reads as None."""
    store = backend.open()
    write(store, [("meta", b"a", b"1"), ("log", b"a", b"other family")])
    assert store.get("meta", b"a") == b"1"
    assert store.get("log", b"a") == b"other family"
    assert store.get("meta", b"missing") is None
    write(store, [("meta", b"a", None)])
    assert store.get("meta", b"a") is None
    assert store.get("log", b"a") == b"other family"
    store.close()


def test_scans_are_ordered_bounded_and_reversible(backend):
    """Scans return [lo, hi) in byte order, forwards and backwards."""
    store = backend.open()
    names = [bytes([b]) + suffix for b in (0, 1, 2, 255) for suffix in (b"", b"\x00", b"x")]
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    write(store, [("commits", key, key * 2) for key in shuffled])
    everything = sorted(names)
    assert keys(store, "commits") == everything
    assert keys(store, "commits", reverse=True) == everything[::-1]
    assert keys(store, "commits", b"\x01", b"\x02") == [b"\x01", b"\x01\x00", b"\x01x"]
    assert keys(store, "commits", b"\x01", b"\x02", reverse=True) == [b"\x01x", b"\x01\x00", b"\x01"]
    assert keys(store, "commits", b"\x02\x00") == [k for k in everything if k >= b"\x02\x00"]
    assert keys(store, "commits", hi=b"\x01", reverse=True) == [b"\x00x", b"\x00\x00", b"\x00"]
    assert dict(store.scan("commits"))[b"\x02x"] == b"\x02x\x02x"
    assert keys(store, "log") == []
    store.close()


def test_long_scans_cross_chunk_boundaries(backend):
    """A scan over more keys than any internal chunk returns every key once, in order."""
    store = backend.open()
    all_keys = [n.to_bytes(4, "big") for n in range(1500)]
    write(store, [("log", key, b"v") for key in all_keys])
    assert keys(store, "log") == all_keys
    assert keys(store, "log", reverse=True) == all_keys[::-1]
    assert keys(store, "log", all_keys[100], all_keys[1400], reverse=True) == all_keys[100:1400][::-1]
    store.close()


def test_a_batch_is_applied_whole(backend):
    """Puts and deletes of one batch across families land together, last write wins."""
    store = backend.open()
    write(store, [("meta", b"k", b"old"), ("log", b"gone", b"x")])
    write(store, [("meta", b"k", b"new"), ("log", b"gone", None), ("commits", b"c", b"1"),
                  ("meta", b"twice", b"first"), ("meta", b"twice", b"second")])
    assert store.get("meta", b"k") == b"new"
    assert store.get("log", b"gone") is None
    assert store.get("commits", b"c") == b"1"
    assert store.get("meta", b"twice") == b"second"
    store.close()


def test_synced_writes_survive_reopening(backend):
    """What a synced write stored is there after the store is closed and reopened."""
    store = backend.open()
    write(store, [("commits", b"\x00\x01", b"one"), ("meta", b"catalog", b"c")], sync=True)
    write(store, [("commits", b"\x00\x02", b"two")], sync=True)
    store.close()
    again = backend.open()
    assert keys(again, "commits") == [b"\x00\x01", b"\x00\x02"]
    assert again.get("meta", b"catalog") == b"c"
    again.close()


def test_a_damaged_record_is_refused_and_named(backend):
    """A record that fails its checksum raises CORRUPT_RECORD naming its key, on get and scan."""
    store = backend.open()
    write(store, [("log", b"\x00\x07", b"precious payload"), ("log", b"\x00\x08", b"fine")])
    store.close()
    backend.corrupt("log", b"\x00\x07")
    store = backend.open()
    with pytest.raises(EddyError) as info:
        store.get("log", b"\x00\x07")
    assert info.value.code == ErrorCode.CORRUPT_RECORD
    assert "0007" in info.value.message
    with pytest.raises(EddyError) as info:
        list(store.scan("log"))
    assert info.value.code == ErrorCode.CORRUPT_RECORD
    assert store.get("log", b"\x00\x08") == b"fine"
    store.close()


def test_empty_values_and_binary_keys_round_trip(backend):
    """Empty values and keys with every byte value are stored exactly."""
    store = backend.open()
    key = bytes(range(256))
    write(store, [("meta", key, b""), ("meta", b"\xff\xff", b"\x00" * 1000)])
    assert store.get("meta", key) == b""
    assert store.get("meta", b"\xff\xff") == b"\x00" * 1000
    store.close()
