"""The RocksDB store: the production implementation of engine.world.Store.

One RocksDB database per node, one column family per kind of record
(engine.world.COLUMN_FAMILIES). Every value is written as a 4-byte CRC-32 of
(column family, key, payload) followed by the payload, so a flipped byte, or a
value copied under another key, is caught on read and reported with the key
instead of being served (DESIGN.md section 5). RocksDB's own block checksums
guard its files underneath; its corruption errors are reported the same way.

Writes are atomic WriteBatches; `write(sync=True)` returns once RocksDB has
synced its write-ahead log. The blocking write runs in a worker thread, but
rocksdict (0.3.29) holds the GIL for the whole of `Rdict.write`, fsync
included, so no Python code runs meanwhile: a synced write stops the node
for its duration (1 to 2 ms for a 360 KB batch; docs/performance.md section
4). `Rdict.flush_wal` does release the GIL; an unsynced write followed by
`flush_wal(sync=True)` lets functions run during the sync, but measured no
gain on section 4's benchmark and a loss on section 1's (groups got smaller:
more writes, more CPU per transaction), so writes stay as they are.
"""

from __future__ import annotations

import os
import zlib
from typing import Iterator, Sequence

import rocksdict
import trio

from engine.errors import EddyError, ErrorCode
from engine.world import COLUMN_FAMILIES, WriteOp

MARKER_FILE = "EDDY"  # present in every Eddy data folder; tells a data folder from any folder


def _checksum(cf: str, key: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(key, _CF_CRCS.get(cf) or zlib.crc32(cf.encode())))
    return crc.to_bytes(4, "big")


# Each column family's name's CRC-32, where every record's checksum starts.
_CF_CRCS = {cf: zlib.crc32(cf.encode()) for cf in COLUMN_FAMILIES}


def seal(cf: str, key: bytes, payload: bytes) -> bytes:
    return _checksum(cf, key, payload) + payload


def unseal(cf: str, key: bytes, stored: bytes) -> bytes:
    payload = stored[4:]
    if len(stored) < 4 or stored[:4] != _checksum(cf, key, payload):
        raise corrupt(cf, key, "failed its checksum")
    return payload


def corrupt(cf: str, key: bytes, what: str) -> EddyError:
    return EddyError(ErrorCode.CORRUPT_RECORD,
                     f"Record {cf}/{key.hex()} {what}: the data folder is damaged. "
                     f"Eddy refuses to serve damaged data; restore the folder from a backup.", cf=cf, key=key.hex())


def _options() -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    return options


class RocksStore:
    """A checksummed, column-family key-value store on RocksDB.

    Args:
        path: the data folder (created if missing).
        read_only: open without taking the write lock (for tools reading a
            running node's data); `write` then raises. Nothing in the
            folder is created or changed.
        secondary_dir: with `read_only`, open as a RocksDB secondary instance
            keeping its own files in this (scratch) folder, so that
            `catch_up` can see commits a running node made after the open.
    """

    def __init__(self, path: str, read_only: bool = False,
                 secondary_dir: str | None = None) -> None:
        if not read_only:
            os.makedirs(path, exist_ok=True)
        self.path = path
        self.read_only = read_only or secondary_dir is not None
        db_path = os.path.join(path, "db")
        families = {cf: rocksdict.Options(raw_mode=True) for cf in COLUMN_FAMILIES}
        if secondary_dir is not None:
            access = rocksdict.AccessType.secondary(secondary_dir)
        elif read_only:
            access = rocksdict.AccessType.read_only()
        else:
            access = rocksdict.AccessType.read_write()
        read_only = self.read_only
        try:
            self._db = rocksdict.Rdict(db_path, _options(), column_families=families,
                                       access_type=access)
        except Exception as error:  # rocksdict raises plain Exceptions
            raise _storage_error(error, db_path) from error
        self._cfs = {cf: self._db.get_column_family(cf) for cf in COLUMN_FAMILIES}
        self._handles = {cf: self._db.get_column_family_handle(cf) for cf in COLUMN_FAMILIES}
        self._sync_options = rocksdict.WriteOptions()
        self._sync_options.sync = True
        self._async_options = rocksdict.WriteOptions()
        marker = os.path.join(path, MARKER_FILE)
        if not read_only and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("Eddy data folder. Do not edit by hand.\n")

    def catch_up(self) -> None:
        """A secondary instance: sees what the primary wrote since the open."""
        try:
            self._db.try_catch_up_with_primary()
        except Exception as error:
            raise _storage_error(error, "catch up") from error
        self._cfs = {cf: self._db.get_column_family(cf) for cf in COLUMN_FAMILIES}

    def get(self, cf: str, key: bytes) -> bytes | None:
        try:
            stored = self._cfs[cf].get(key)
        except Exception as error:
            if _is_corruption(error):
                raise corrupt(cf, key, f"is damaged ({error})") from error
            raise _storage_error(error, f"{cf}/{key.hex()}") from error
        return None if stored is None else unseal(cf, key, stored)

    def scan(self, cf: str, lo: bytes = b"", hi: bytes | None = None,
             reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, payload) for keys in [lo, hi), ascending or descending."""
        iterator = self._cfs[cf].iter()
        try:
            if reverse:
                if hi is None:
                    iterator.seek_to_last()
                else:
                    iterator.seek_for_prev(hi)
                while iterator.valid():
                    key = iterator.key()
                    if key < lo:
                        break
                    if hi is None or key < hi:
                        yield key, unseal(cf, key, iterator.value())
                    iterator.prev()
                # An iterator that hit damage just stops being valid; only its
                # status tells an error from the end of the data.
                iterator.status()
            else:
                iterator.seek(lo)
                while iterator.valid():
                    key = iterator.key()
                    if hi is not None and key >= hi:
                        break
                    yield key, unseal(cf, key, iterator.value())
                    iterator.next()
                iterator.status()
        except EddyError:
            raise
        except Exception as error:
            located = self._locate_corruption(cf) if _is_corruption(error) else None
            raise (located or _storage_error(error, cf)) from error
        finally:
            del iterator

    def _locate_corruption(self, cf: str) -> EddyError | None:
        """Finds the record RocksDB refused, by reading past its block checksums
        and checking each record's own checksum, so the error can name the key."""
        read_options = rocksdict.ReadOptions()
        read_options.set_verify_checksums(False)
        try:
            iterator = self._cfs[cf].iter(read_options)
            iterator.seek_to_first()
            while iterator.valid():
                key = iterator.key()
                try:
                    unseal(cf, key, iterator.value())
                except EddyError as error:
                    return error
                iterator.next()
            iterator.status()
        except Exception:  # the damage is beyond what can be read at all
            return None
        return None

    def write_nowait(self, ops: Sequence[WriteOp], sync: bool) -> None:
        """Applies `ops` atomically, blocking the calling thread."""
        if self.read_only:
            raise EddyError(ErrorCode.INTERNAL, "This store was opened read-only.")
        batch = rocksdict.WriteBatch(raw_mode=True)
        handles = self._handles
        crc32 = zlib.crc32
        for cf, key, value in ops:
            if value is None:
                batch.delete(key, handles[cf])
            else:  # `seal`, in line: a group commit writes two records per mutation
                batch.put(key, crc32(value, crc32(key, _CF_CRCS[cf])).to_bytes(4, "big") + value,
                          handles[cf])
        try:
            self._db.write(batch, self._sync_options if sync else self._async_options)
        except Exception as error:
            raise _storage_error(error, "write") from error

    async def write(self, ops: Sequence[WriteOp], sync: bool) -> None:
        """Applies `ops` atomically; with `sync`, once RocksDB's WAL is synced.

        A checkpoint. The write runs in a worker thread and is not cancellable:
        once started, cancellation waits for it, so a cancelled write is
        either wholly applied or not started.
        """
        await trio.to_thread.run_sync(self.write_nowait, ops, sync)

    def close(self) -> None:
        if not self.read_only:
            # Move memtables into table files, so the next open reads files
            # rather than replaying the write-ahead log.
            for family in self._cfs.values():
                family.flush(True)
        self._cfs.clear()
        self._handles.clear()
        self._db.close()


def _is_corruption(error: Exception) -> bool:
    text = str(error)
    return "orruption" in text or "checksum" in text.lower()


def _storage_error(error: Exception, where: str) -> EddyError:
    text = str(error)
    if _is_corruption(error):
        return EddyError(ErrorCode.CORRUPT_RECORD,
                         f"RocksDB reports corruption at {where}: {text}. Eddy refuses to "
                         f"serve damaged data.", where=where)
    if "lock" in text.lower():
        return EddyError(ErrorCode.UNAVAILABLE,
                         f"The data folder is in use by another Eddy process ({text}).",
                         where=where)
    return EddyError(ErrorCode.INTERNAL, f"Storage error at {where}: {text}", where=where)
