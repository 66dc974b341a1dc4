"""Reading a data folder's history: the log, past states, diffs, re-runs, bisection.

    from actors.history import open_history

    with open_history("examples/chat") as history:
        for commit in history.commits(function="messages:send", since_ts=ts):
            print(commit.ts, commit.path, commit.args)
        shown = history.show(ts)                      # one commit, every document before/after
        changes = history.diff(ts1, ts2, table="messages")
        value = history.query_at("messages:list", {"channel": channel_id}, ts)
        report = history.rerun(ts)                    # report.same: writes reproduced byte for byte
        found = history.bisect("checks:no_empty_bodies")
        mismatches = history.verify()                 # [] when derived state agrees with the log
        history.replay_into(ts, "/tmp/as-of-ts")      # a data folder holding the log up to ts

Theory of operation. Every commit leaves a record in `commits` (the call that
made it: path, args, identity, snapshot ts, seed, now; its read set; the ids it
wrote) and, per table written, the documents' new states in `log`
(docs/internals.md "Storage layout"). Shards keep every version in memory, so
rebuilding them from the log once gives a state that answers reads at any
retained ts. From that:

1. Listing the log reads only `commits` records: no rebuild.
2. `show`, `diff`, `query_at`, `rerun` and `bisect` rebuild the derived state
   once, lazily, exactly as a node does on start (`Node.recover`), and read it
   at past timestamps.
3. A read-only History opens the store read-only (no lock, nothing in the
   folder created or changed), so it works on a stopped node's folder and on
   a running node's; `follow=True` opens a secondary instance whose
   `refresh()` sees commits made since. Only `compact` writes, and it needs
   the node stopped.
4. A ts must lie in [retained_since_ts, head_ts]; compaction
   (actors/replay.py) moves `retained_since_ts` up.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Iterator

import msgpack
import trio

from engine import ids, values
from engine.commits import RETAINED_SINCE_KEY, log_key, parse_catalog_record, parse_log_entry, ts_key
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed
from engine.functions import canonical_path
from engine.readsets import ReadSet

from actors import replay, rerun as rerun_module
from actors.app import App, load_app
from actors.node import Node
from actors.storage import MARKER_FILE, RocksStore, corrupt
from actors.world import RealWorld

__all__ = ["BisectReport", "DocumentChange", "History", "LoggedCommit", "MISSING",
           "ShownCommit", "open_history"]

DATA_FOLDER_NAME = ".eddy"


class _Missing:
    """A field a document does not have (told apart from a field holding None)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


@dataclasses.dataclass
class LoggedCommit:
    """One `commits` record. `writes` lists (table number, [internal id, ...])
    in the order the commit wrote them; `table_names` maps numbers to names."""

    ts: int
    kind: str
    path: str
    args: Any
    identity: Any
    snapshot_ts: int
    seed: int
    now_ms: float
    created_tables: list[tuple[str, int]]
    writes: list[tuple[int, list[bytes]]]
    table_names: dict[int, str]
    reads_record: list

    @property
    def read_set(self) -> ReadSet:
        return ReadSet.from_record(self.reads_record)

    @property
    def write_count(self) -> int:
        return sum(len(written) for _, written in self.writes)

    def writes_per_table(self) -> dict[str, int]:
        """Table name -> documents written."""
        return {self.table_names.get(number, str(number)): len(written)
                for number, written in self.writes}

    def document_ids(self) -> Iterator[tuple[str, str]]:
        """(table name, document id) of every document written, in order."""
        for number, written in self.writes:
            name = self.table_names.get(number, str(number))
            for internal_id in written:
                yield name, ids.encode_id(number, internal_id)


@dataclasses.dataclass
class DocumentChange:
    """A document's state before and after (None: it did not exist)."""

    table: str
    id: str
    before: dict | None
    after: dict | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "insert"
        return "delete" if self.after is None else "update"

    def fields(self) -> list[tuple[str, Any, Any]]:
        """(field, before, after) for each field that differs; MISSING where absent."""
        before, after = self.before or {}, self.after or {}
        names = list(before) + [name for name in after if name not in before]
        return [(name, before.get(name, MISSING), after.get(name, MISSING)) for name in names
                if before.get(name, MISSING) != after.get(name, MISSING)
                or type(before.get(name)) is not type(after.get(name))]


@dataclasses.dataclass
class ShownCommit:
    """A commit in full. `changes` is None for a commit before the retention
    window, whose documents compaction dropped."""

    commit: LoggedCommit
    changes: list[DocumentChange] | None


@dataclasses.dataclass
class BisectReport:
    """The outcome of `History.bisect`.

    `first_bad` is the first commit after which the check fails (None when it
    holds at the head). `fails_at_start` says it already failed before the
    first retained commit. `failure` describes the failing evaluation (the
    value returned or the error raised); `evaluations` counts check runs.
    """

    first_bad: LoggedCommit | None
    fails_at_start: bool
    failure: str | None
    evaluations: int
    commit_count: int


class History:
    """A data folder's history. Made by `open_history`; see the module docstring.

    Fields:
        store: the RocksStore (read-only unless opened `writable`).
        head_ts: ts of the newest commit (0: none); moved by `refresh`.
        retained_since_ts: reads before it are refused (0: all history kept).
        table_names: table number -> name, from the catalog record.
    """

    def __init__(self, store: RocksStore, data_dir: str, app_dir: str | None,
                 app: App | None = None) -> None:
        self.store = store
        self.data_dir = data_dir
        self.app_dir = app_dir
        self._app = app
        self._node: Node | None = None
        self.head_ts = 0
        self.retained_since_ts = 0
        self.table_names: dict[int, str] = {}
        self._load_meta()

    # ----- opening and refreshing -------------------------------------------

    def _load_meta(self) -> None:
        catalog = self.store.get("meta", b"catalog")
        try:
            pairs = parse_catalog_record(catalog) if catalog else []
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            raise corrupt("meta", b"catalog", f"does not parse ({error})") from None
        self.table_names = {number: name for name, number in pairs}
        retained = self.store.get("meta", RETAINED_SINCE_KEY)
        self.retained_since_ts = 0 if retained is None else int.from_bytes(retained, "big")
        self.head_ts = next((int.from_bytes(key, "big")
                             for key, _ in self.store.scan("commits", reverse=True)), 0)

    def refresh(self) -> None:
        """Sees commits made since the open (a History opened with `follow`)."""
        self.store.catch_up()
        self._load_meta()
        self._node = None  # rebuilt on next use, with the new commits

    @property
    def app(self) -> App:
        """The app's code, loaded on first use (listing the log needs none)."""
        if self._app is None:
            if self.app_dir is None:
                raise EddyError(ErrorCode.BAD_REQUEST, "This history was opened without an app.")
            self._app = load_app(self.app_dir)
        return self._app

    def node(self) -> Node:
        """A node over this folder whose derived state is rebuilt from the log
        (Node.recover) but whose actors never start: it only reads."""
        if self._node is None:
            node = Node(RealWorld(), self.store, self.app, self.data_dir)
            # History stays readable even when today's schema no longer fits
            # the data, so the node's schema check (a full pass over every
            # document) is skipped; nor does it take sync clients' mutations.
            node.recover(check_schema=False, serving=False)
            self._node = node
        return self._node

    def close(self) -> None:
        self._node = None
        self.store.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ----- the log ------------------------------------------------------------

    def commits(self, since_ts: int | None = None, until_ts: int | None = None, *,
                table: str | None = None, function: str | None = None,
                document_id: str | None = None, reverse: bool = False) -> Iterator[LoggedCommit]:
        """Commit records in ts order (newest first with `reverse`), filtered.

        Args:
            since_ts, until_ts: bounds, both inclusive.
            table: only commits that wrote this table.
            function: only commits made by this function (any spelling of its path).
            document_id: only commits that wrote this document.

        Raises:
            EddyError: TABLE_NOT_FOUND for a table the folder never had,
                INVALID_ID for a malformed id, CORRUPT_RECORD for a damaged record.
        """
        lo = ts_key(since_ts) if since_ts is not None and since_ts > 0 else b""
        hi = ts_key(until_ts + 1) if until_ts is not None else None
        number = self.table_number(table) if table is not None else None
        path = canonical_path(function) if function is not None else None
        wanted = ids.decode_id(document_id) if document_id is not None else None
        names = self.table_names
        for key, payload in self.store.scan("commits", lo, hi, reverse=reverse):
            commit = parse_commit(key, payload, names)
            if path is not None and commit.path != path:
                continue
            if number is not None and all(n != number for n, _ in commit.writes):
                continue
            if wanted is not None and not any(
                    n == wanted[0] and wanted[1] in written for n, written in commit.writes):
                continue
            yield commit

    def commit(self, ts: int) -> LoggedCommit:
        """The commit at exactly `ts`.

        Raises:
            EddyError(NOT_FOUND): no commit has that ts (the message names the nearest).
        """
        payload = self.store.get("commits", ts_key(ts))
        if payload is None:
            raise EddyError(ErrorCode.NOT_FOUND, f"No commit at ts {ts}. {self._nearest(ts)}", ts=ts)
        return parse_commit(ts_key(ts), payload, self.table_names)

    def commit_timestamps(self, since_ts: int = 0) -> list[int]:
        """Every commit ts from `since_ts` on, ascending."""
        return [int.from_bytes(key, "big")
                for key, _ in self.store.scan("commits", ts_key(since_ts))]

    def _nearest(self, ts: int) -> str:
        before = next(iter(self.store.scan("commits", b"", ts_key(ts), reverse=True)), None)
        after = next(iter(self.store.scan("commits", ts_key(ts))), None)
        parts = []
        if before is not None:
            parts.append(f"previous: {int.from_bytes(before[0], 'big')}")
        if after is not None:
            parts.append(f"next: {int.from_bytes(after[0], 'big')}")
        return ("Nearest commits: " + ", ".join(parts) + ".") if parts else "The log is empty."

    def table_number(self, table: str) -> int:
        for number, name in self.table_names.items():
            if name == table:
                return number
        known = ", ".join(sorted(self.table_names.values())) or "none"
        raise EddyError(ErrorCode.TABLE_NOT_FOUND,
                        f"No table named {table!r} in this data folder (tables: {known}).",
                        table=table)

    def check_ts(self, ts: int, what: str = "ts") -> int:
        """`ts` if it lies in the retained history, else EddyError(INVALID_TIMESTAMP)."""
        if ts > self.head_ts:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                            f"{what} {ts} is after the newest commit ({self.head_ts}).", ts=ts)
        if ts < self.retained_since_ts:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                            f"{what} {ts} is before the retention window: history before "
                            f"{self.retained_since_ts} was compacted away.", ts=ts)
        if ts < 0:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP, f"{what} {ts} is negative.", ts=ts)
        return ts

    # ----- states -------------------------------------------------------------

    def show(self, ts: int) -> ShownCommit:
        """The commit at `ts` with every document it wrote, before and after."""
        commit = self.commit(ts)
        if ts <= self.retained_since_ts and self.retained_since_ts:
            return ShownCommit(commit, None)
        catalog = self.node().catalog
        changes = []
        for number, written in commit.writes:
            shard = catalog.shards[number]
            for internal_id in written:
                changes.append(DocumentChange(
                    shard.name, ids.encode_id(number, internal_id),
                    _unpack(shard.get(internal_id, ts - 1)), _unpack(shard.get(internal_id, ts))))
        return ShownCommit(commit, changes)

    def diff(self, ts1: int, ts2: int, table: str | None = None) -> list[DocumentChange]:
        """Documents inserted, changed and deleted from the state at `ts1` to the state
        at `ts2` (a later ts2; an earlier one gives the reverse changes), by table and id."""
        self.check_ts(ts1, "TS1")
        self.check_ts(ts2, "TS2")
        only = self.table_number(table) if table is not None else None
        lo, hi = sorted((ts1, ts2))
        touched: set[tuple[int, bytes]] = set()
        for commit in self.commits(lo + 1, hi):
            for number, written in commit.writes:
                if only is None or number == only:
                    touched.update((number, internal_id) for internal_id in written)
        catalog = self.node().catalog
        changes = []
        for number, internal_id in sorted(touched):
            shard = catalog.shards[number]
            before, after = shard.get(internal_id, ts1), shard.get(internal_id, ts2)
            if before != after:
                changes.append(DocumentChange(shard.name, ids.encode_id(number, internal_id),
                                              _unpack(before), _unpack(after)))
        return changes

    def query_at(self, path: str, args: Any = None, ts: int | None = None, *,
                 identity: Any = None) -> Any:
        """Runs a query function against the state as of `ts` (default: the head).

        Raises:
            EddyError: INVALID_TIMESTAMP outside the retained history,
                FUNCTION_NOT_FOUND, ArgumentValidationError, ...
            AppError, FunctionCrashed: the query itself failed.
        """
        ts = self.head_ts if ts is None else self.check_ts(ts)
        node = self.node()
        return trio.run(_call_query, node, path, args, identity, ts)

    # ----- re-running, bisecting, rebuilding -------------------------------------

    def rerun(self, ts: int, other_app_dir: str | None = None, *,
              debug: bool = False) -> rerun_module.RerunReport:
        """Re-executes the mutation logged at `ts` on the snapshot it ran on, with
        its seed, now and identity, and compares its writes with the logged ones
        byte for byte (see actors/rerun.py). `other_app_dir` runs other code;
        `debug` stops in pdb at the function's first line."""
        commit = self.commit(ts)
        if commit.snapshot_ts < self.retained_since_ts:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                            f"The commit at {ts} ran on snapshot {commit.snapshot_ts}, before the "
                            f"retention window ({self.retained_since_ts}): it cannot be re-run.")
        logged = self.logged_writes(commit)
        app = load_app(other_app_dir) if other_app_dir is not None else None
        return trio.run(rerun_module.rerun_commit, self.node(), commit, logged, app, debug)

    def logged_writes(self, commit: LoggedCommit) -> list[tuple[int, bytes, bytes | None]]:
        """(table number, internal id, packed document or None) as logged, in order."""
        found = []
        for number, written in commit.writes:
            key = log_key(number, commit.ts)
            entry = self.store.get("log", key)
            if entry is None:
                raise corrupt("log", key, "is missing though its commit record names it")
            try:
                entries = parse_log_entry(entry)
            except (ValueError, TypeError, msgpack.UnpackException) as error:
                raise corrupt("log", key, f"does not parse ({error})") from None
            found.extend((number, internal_id, packed) for internal_id, packed in entries)
        return found

    def bisect(self, check_path: str, args: Any = None, *, identity: Any = None) -> BisectReport:
        """Finds the first commit after which the query `check_path` stops returning
        True (returns anything else or raises), in O(log n) time-travel evaluations.

        Assumes the check, once failing, keeps failing (as `git bisect` does).
        Raises EddyError for an unknown function or bad args (not a failure of the check).
        """
        node = self.node()
        node.runner.check_args(node.runner.resolve("query", check_path, True), args)
        timestamps = [ts for ts in self.commit_timestamps(self.retained_since_ts)
                      if ts > self.retained_since_ts or ts == 0]
        outcome = trio.run(_bisect, node, check_path, args, identity, timestamps,
                           self.retained_since_ts)
        first_index, fails_at_start, failure, evaluations = outcome
        first_bad = None if first_index is None else self.commit(timestamps[first_index])
        return BisectReport(first_bad, fails_at_start, failure, evaluations, len(timestamps))

    def verify(self) -> list[replay.Mismatch]:
        """Rebuilds every piece of derived state from the log by an independent path
        and compares it with the state a node builds; [] when they agree."""
        return replay.verify_catalog(self.node().catalog, self.store)

    def replay_into(self, until_ts: int, new_dir: str) -> replay.ReplayReport:
        """Writes a new data folder holding the log up to `until_ts` (see actors/replay.py)."""
        self.check_ts(until_ts, "--until")
        return replay.replay_into(self.store, until_ts, new_dir)

    def compact(self, before_ts: int) -> replay.CompactReport:
        """Drops versions older than `before_ts` not needed for the state at it
        (see actors/replay.py). Needs a History opened `writable`."""
        self.check_ts(before_ts, "--before")
        report = replay.compact(self.store, before_ts)
        self._load_meta()
        self._node = None
        return report


def _unpack(packed: bytes | None) -> dict | None:
    return None if packed is None else values.unpack(packed)


def parse_commit(key: bytes, payload: bytes, table_names: dict[int, str]) -> LoggedCommit:
    """A `commits` record as a LoggedCommit; CORRUPT_RECORD if it does not parse."""
    try:
        record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        created = record["tables"]
        if created:
            created = [(name, number) for name, number in created]
            table_names = {**table_names, **{number: name for name, number in created}}
        return LoggedCommit(
            ts=record["ts"], kind=record["kind"], path=record["path"],
            args=values.unpack(record["args"]), identity=record["identity"],
            snapshot_ts=record["snapshot_ts"], seed=record["seed"], now_ms=record["now_ms"],
            created_tables=created, writes=[(n, written) for n, written in record["writes"]],
            table_names=table_names, reads_record=record["reads"])
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as error:
        raise corrupt("commits", key, f"does not parse ({type(error).__name__}: {error})") from None


async def _call_query(node: Node, path: str, args: Any, identity: Any, ts: int) -> Any:
    return (await node.call("query", path, args, identity=identity, admin=True, at_ts=ts)).value


async def _check(node: Node, path: str, args: Any, identity: Any, ts: int) -> str | None:
    """None when the check holds at `ts`, else what it returned or raised."""
    try:
        value = await _call_query(node, path, args, identity, ts)
    except AppError as error:
        return f"raised AppError: {error}"
    except EddyError as error:
        return f"raised {error.code.value}: {error.message}"
    except FunctionCrashed as error:
        return f"raised: {error.message}"
    return None if value is True else f"returned {value!r}"


async def _bisect(node: Node, path: str, args: Any, identity: Any, timestamps: list[int],
                  start_ts: int) -> tuple[int | None, bool, str | None, int]:
    """(index of the first failing ts, whether it fails at the start, the failure, evaluations)."""
    if not timestamps:
        return None, False, None, 0
    evaluations = 1
    failure = await _check(node, path, args, identity, timestamps[-1])
    if failure is None:
        return None, False, None, evaluations
    # Invariant: the check fails at timestamps[hi]; it holds at timestamps[lo - 1]
    # (or lo is 0 and nothing is known before it).
    lo, hi = 0, len(timestamps) - 1
    while lo < hi:
        middle = (lo + hi) // 2
        evaluations += 1
        found = await _check(node, path, args, identity, timestamps[middle])
        if found is None:
            lo = middle + 1
        else:
            hi, failure = middle, found
    fails_at_start = False
    if hi == 0:
        evaluations += 1
        fails_at_start = await _check(node, path, args, identity, start_ts) is not None
    return hi, fails_at_start, failure, evaluations


def open_history(app_dir: str | os.PathLike | None, data_dir: str | os.PathLike | None = None, *,
                 follow: bool = False, writable: bool = False, app: App | None = None) -> History:
    """Opens a data folder's history (default data folder: APP_DIR/.eddy).

    Read-only by default: nothing in the folder is created or changed, and a
    running node may hold it. `follow` opens a secondary instance that
    `History.refresh` catches up; `writable` (for `compact`) needs the node stopped.

    Raises:
        EddyError: NOT_FOUND when the folder does not exist, BAD_REQUEST when it
            is not an Eddy data folder, UNAVAILABLE when `writable` and a node
            holds it, CORRUPT_RECORD when its records are damaged.
    """
    if data_dir is None:
        if app_dir is None:
            raise ValueError("open_history needs an app_dir or a data_dir")
        data_dir = os.path.join(app_dir, DATA_FOLDER_NAME)
    data_dir = os.fspath(data_dir)
    check_data_folder(data_dir)
    scratch = tempfile.mkdtemp(prefix="eddy-follow-") if follow else None
    try:
        store = RocksStore(data_dir, read_only=not writable, secondary_dir=scratch)
    except BaseException:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if scratch:
        # The secondary's own files are scratch: remove them with the store.
        original_close = store.close

        def close() -> None:
            original_close()
            shutil.rmtree(scratch, ignore_errors=True)
        store.close = close
    try:
        return History(store, data_dir, None if app_dir is None else os.fspath(app_dir), app)
    except BaseException:
        store.close()
        raise


def check_data_folder(data_dir: str) -> None:
    """Raises a clear EddyError unless `data_dir` is an Eddy data folder."""
    if not os.path.isdir(data_dir):
        raise EddyError(ErrorCode.NOT_FOUND,
                        f"No data folder at {data_dir} (pass --data DIR if the data lives "
                        f"elsewhere).", path=data_dir)
    if not os.path.exists(os.path.join(data_dir, MARKER_FILE)) or \
            not os.path.isdir(os.path.join(data_dir, "db")):
        raise EddyError(ErrorCode.BAD_REQUEST,
                        f"{data_dir} is not an Eddy data folder (it has no {MARKER_FILE} "
                        f"marker and db/ folder).", path=data_dir)

