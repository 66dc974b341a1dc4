"""Re-running a logged mutation and comparing its writes with the logged ones.

DESIGN.md section 6: a mutation gets its "now", its randomness and its new
ids from the seed and time recorded with its commit, so running it again on
the snapshot it ran on, with the same identity, must write the same bytes. A
difference means the app code read something outside the transaction (the
wall clock, Python's own random module, a global, a file) and is reported as
non-deterministic, naming the first write that differs. With other app code
(`eddy rerun --with`) the same comparison tells whether a fixed function
would have written something else.

The re-run never commits: its writes are compared and dropped. A table it
creates is a scratch shard the catalog never sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import pdb
import sys
from typing import Any, Iterator

from engine import ids, values
from engine.context import MutationCtx
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed
from engine.shard import ShardState
from engine.transaction import Transaction

# (table number, internal id, packed document or None for a deletion)
Write = tuple[int, bytes, "bytes | None"]


@dataclasses.dataclass
class WriteDifference:
    """The first write where the re-run and the log disagree.

    `position` counts writes from 0 in the commit's order; `logged` and
    `rerun` are the documents (None: a deletion; absent: no such write, see
    `logged_present` / `rerun_present`).
    """

    position: int
    table: str
    id: str
    logged: dict | None
    rerun: dict | None
    logged_present: bool = True
    rerun_present: bool = True

    def describe(self) -> str:
        where = f"write {self.position + 1} ({self.table} {self.id})"
        if not self.logged_present:
            return f"{where}: the re-run wrote it, the logged run did not"
        if not self.rerun_present:
            return f"{where}: the logged run wrote it, the re-run did not"
        if self.logged is None or self.rerun is None:
            logged = "a deletion" if self.logged is None else "a document"
            rerun = "a deletion" if self.rerun is None else "a document"
            return f"{where}: logged {logged}, re-run wrote {rerun}"
        fields = [name for name in list(self.logged) + [n for n in self.rerun if n not in self.logged]
                  if self.logged.get(name, _ABSENT) != self.rerun.get(name, _ABSENT)
                  or type(self.logged.get(name)) is not type(self.rerun.get(name))]
        shown = "; ".join(f"{name}: logged {_short(self.logged.get(name, _ABSENT))}, "
                          f"re-run {_short(self.rerun.get(name, _ABSENT))}" for name in fields)
        return f"{where}: {shown or 'same fields, different bytes (field order)'}"


@dataclasses.dataclass
class RerunReport:
    """What `rerun_commit` found. `same` is True when every write matched byte for byte."""

    ts: int
    path: str
    same: bool
    logged_count: int
    rerun_count: int
    first_difference: WriteDifference | None = None
    error: str | None = None  # the re-run failed (the logged run committed)
    value: Any = None
    log_lines: list[str] = dataclasses.field(default_factory=list)
    with_other_code: bool = False

    def describe(self) -> str:
        subject = f"{self.path} at ts {self.ts}"
        if self.same:
            return (f"{subject}: the re-run wrote the same {self.logged_count} document(s), "
                    f"byte for byte.")
        label = "other code" if self.with_other_code else "non-deterministic app code"
        if self.error is not None:
            return f"{subject}: {label}: the re-run failed ({self.error}); the logged run committed."
        return (f"{subject}: {label}: the re-run wrote {self.rerun_count} document(s), the log "
                f"holds {self.logged_count}; first difference at "
                f"{self.first_difference.describe()}.")


async def rerun_commit(node, commit, logged: list[Write], app=None, debug: bool = False) -> RerunReport:
    """Runs `commit`'s mutation again at its snapshot and compares its writes.

    A checkpoint (the function may await). `node` is a recovered, not
    running node (History.node()); `app`, if given, replaces its code for this
    run only; `debug` stops in pdb at the function's first line.

    Raises:
        EddyError: FUNCTION_NOT_FOUND / FUNCTION_KIND_MISMATCH when the code has
            no such mutation, BAD_REQUEST for a commit that is not a mutation's.
    """
    if commit.kind != "mutation":
        raise EddyError(ErrorCode.BAD_REQUEST, f"The commit at {commit.ts} was made by a "
                                               f"{commit.kind}; only mutations can be re-run.")
    saved = node.app, node.schema
    if app is not None:
        node.app, node.schema = app, app.schema
    try:
        runner = node.runner
        function = runner.resolve("mutation", commit.path, True)
        report = RerunReport(commit.ts, commit.path, False, len(logged), 0,
                             with_other_code=app is not None)
        try:
            args = runner.check_args(function, commit.args)
        except EddyError as error:
            report.error = f"{error.code.value}: {error.message}"
            return report
        txn = Transaction(node.catalog, commit.snapshot_ts, schema=node.schema, writable=True,
                          seed=commit.seed, now_ms=commit.now_ms,
                          create_table=_scratch_tables(node.catalog))
        ctx = MutationCtx(txn, commit.identity)
        try:
            with _breakpoint_at(function.handler) if debug else contextlib.nullcontext():
                # The runner's own invocation: the same time limit, log capture
                # and return checks as the logged run had.
                report.value, _ = await runner._invoke(function, args, lambda: ctx,
                                                       rerunnable=False)
        except (AppError, EddyError, FunctionCrashed) as error:
            report.error = _describe_error(error)
            report.log_lines = list(txn.log_lines)
            return report
        report.log_lines = list(txn.log_lines)
        rerun = ordered_writes(txn)
        report.rerun_count = len(rerun)
        report.first_difference = first_difference(logged, rerun, node.catalog.table_name)
        report.same = report.first_difference is None
        return report
    finally:
        node.app, node.schema = saved


def ordered_writes(txn: Transaction) -> list[Write]:
    """A transaction's writes in the order its commit logs them (engine/commits.py
    `admit`: grouped by table, tables in order of first write)."""
    by_table: dict[int, list[Write]] = {}
    for (number, internal_id), document in txn.writes.items():
        packed = None if document is None else values.pack(document)
        by_table.setdefault(number, []).append((number, internal_id, packed))
    return [write for writes in by_table.values() for write in writes]


def first_difference(logged: list[Write], rerun: list[Write], table_name) -> WriteDifference | None:
    """The first position where the two write lists differ, or None."""
    for position in range(max(len(logged), len(rerun))):
        mine = logged[position] if position < len(logged) else None
        theirs = rerun[position] if position < len(rerun) else None
        if mine == theirs:
            continue
        number, internal_id, _ = mine or theirs
        return WriteDifference(
            position, table_name(number) or str(number), ids.encode_id(number, internal_id),
            _unpack(mine), _unpack(theirs), mine is not None, theirs is not None)
    return None


def _unpack(write: Write | None) -> dict | None:
    return None if write is None or write[2] is None else values.unpack(write[2])


def _scratch_tables(catalog):
    """A table creator for the re-run that leaves the catalog alone."""
    created: dict[str, ShardState] = {}

    def create(name: str) -> ShardState:
        if name not in created:
            created[name] = ShardState(catalog.next_number() + len(created), name,
                                       catalog.index_definitions.get(name))
        return created[name]
    return create


def _describe_error(error: Exception) -> str:
    if isinstance(error, AppError):
        return f"AppError: {error}"
    if isinstance(error, EddyError):
        return f"{error.code.value}: {error.message}"
    return error.message


@contextlib.contextmanager
def _breakpoint_at(handler) -> Iterator[None]:
    """Stops in pdb at the first line of `handler` when it next runs.

    A trace function watches for the handler's code object being entered and
    hands that frame to pdb (`set_trace(frame)`), which then stops at the
    frame's first line event: the first line of the function body.
    """
    code = inspect.unwrap(handler).__code__
    debugger = pdb.Pdb()
    previous = sys.gettrace()

    def watch(frame, event, arg):
        if event == "call" and frame.f_code is code:
            debugger.set_trace(frame)
            return debugger.trace_dispatch
        return None

    sys.settrace(watch)
    try:
        yield
    finally:
        sys.settrace(previous)


def _short(value: Any, chars_max: int = 60) -> str:
    text = "(absent)" if value is _ABSENT else repr(value)
    return text if len(text) <= chars_max else text[:chars_max - 3] + "..."


_ABSENT = object()
