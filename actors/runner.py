"""The function runner: runs app functions as queries, mutations and actions.

- A query runs at the newest durable ts (or a retained `at_ts`) in a
  read-only transaction.
- A mutation runs at the newest admitted ts, so it sees every commit decided
  before it, durable or not; it is admitted by the sequencer as soon as it
  returns and answered once its group is durable. A conflict (possible only
  when the function yielded mid-way and another commit wrote what it read)
  re-runs it at a newer snapshot, at most `limits.optimistic_attempts_max`
  times; after that it takes the serial lane: no other mutation is admitted
  from its snapshot until it is, so it cannot conflict. Contention slows a
  mutation down but never fails it.
- An action runs outside any transaction and calls the others.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import random
import traceback
import types
from typing import Any, Callable, NamedTuple

import trio

from engine import limits, values
from engine.commits import CallInfo, Commit
from engine.context import ActionCtx, MutationCtx, QueryCtx
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed
from engine.functions import (FunctionDef, FunctionKind, canonical_path, check_flat_args,
                              validate_args, validate_returns)
from engine.transaction import Transaction

from actors import logs
from actors.sequencer import LaneBusy

log = logging.getLogger("eddy.functions")


@dataclasses.dataclass
class CallResult:
    value: Any
    ts: int
    log_lines: list[str] = dataclasses.field(default_factory=list)
    attempts: int = 1


class Decided(NamedTuple):
    """A mutation decided by `FunctionRunner.mutation_now`: its commit ts (None
    if it wrote nothing), the ts to answer it at once durable, its value and
    its log lines."""

    commit_ts: int | None
    durable_ts: int
    value: Any
    log_lines: list[str]


class FunctionRunner:
    """Runs functions for one node (see the module docstring)."""

    def __init__(self, node) -> None:
        self.node = node
        self.conflict_count = 0
        self.serial_count = 0

    def resolve(self, kind: str | None, path: str, admin: bool) -> FunctionDef:
        canonical = canonical_path(path)
        function = self.node.app.functions.get(canonical)
        if function is None:
            raise EddyError(ErrorCode.FUNCTION_NOT_FOUND,
                            f"Could not find public function for '{path}'.", path=path)
        if function.internal and not admin:
            raise EddyError(ErrorCode.INTERNAL_FUNCTION,
                            f"Could not find public function for '{path}': it is internal. "
                            f"Call it from another function, or with the admin key.", path=path)
        if kind is not None and function.kind != kind:  # a str enum: equal to its value
            raise EddyError(ErrorCode.FUNCTION_KIND_MISMATCH,
                            f"'{path}' is a {function.kind.value}, not a {kind}.", path=path)
        return function

    def check_args(self, function: FunctionDef, args) -> dict:
        checked = check_flat_args(function, args)
        if checked is not None:
            return checked
        if args is None:
            args = {}
        elif isinstance(args, list):
            if len(args) != 1 or not isinstance(args[0], dict):
                raise EddyError(ErrorCode.INVALID_ARGS,
                                "Arguments must be an object, or an array holding one object.")
            args = args[0]
        if not isinstance(args, dict):
            raise EddyError(ErrorCode.INVALID_ARGS,
                            f"Arguments must be an object, got {values.type_name(args)}.")
        _check_size(args, "Arguments")
        return validate_args(function, args, self.node.catalog.table_name)

    async def call(self, kind: str | None, path, args=None, *, identity=None, admin: bool = True,
                   at_ts: int | None = None,
                   on_decided: Callable[[int | None], None] | None = None,
                   request: tuple[str, int] | None = None) -> CallResult:
        """Runs a function by path (or FunctionDef) and returns its CallResult.

        A checkpoint. Raises EddyError, AppError or FunctionCrashed.

        Args:
            on_decided: for a mutation, called once its commit is decided and
                before it waits for durability: with the commit ts, or None
                if it wrote nothing. The sync protocol starts a session's
                next mutation then (wire/session.py rule 4).
            request: for a mutation, the sync protocol's (sessionId,
                requestId); logged with the commit and its result, so a re-send
                after a restart is answered without running it again
                (`Node.logged_mutation_result`).
        """
        if isinstance(path, FunctionDef):
            if path.path is None:
                raise EddyError(ErrorCode.FUNCTION_NOT_FOUND,
                                "That function is not registered in this app.")
            path = path.path
        function = self.resolve(kind, path, admin)
        args = self.check_args(function, args)
        if function.kind is FunctionKind.QUERY:
            return await self.run_query(function, args, identity, at_ts)
        if at_ts is not None:
            raise EddyError(ErrorCode.BAD_REQUEST, "Only queries can run at a past ts.")
        if function.kind is FunctionKind.MUTATION:
            return await self.run_mutation(function, args, identity, on_decided, request)
        return await self.run_action(function, args, identity)

    def _transaction(self, snapshot_ts: int, writable: bool) -> Transaction:
        node = self.node
        clock = node.world.clock
        started_ns = clock.now_ns()
        deadline_ns = started_ns + limits.query_user_ms_max * 1_000_000

        def check_deadline() -> None:
            if clock.now_ns() > deadline_ns:
                raise EddyError(ErrorCode.TIMEOUT,
                                f"Function ran longer than {limits.query_user_ms_max} ms.",
                                limit="query_user_ms_max")

        return Transaction(node.catalog, snapshot_ts, schema=node.schema, writable=writable,
                           seed=node.world.entropy.seed(), now_ms=started_ns / 1e6,
                           check_deadline=check_deadline)

    async def run_query(self, function: FunctionDef, args: dict, identity,
                        at_ts: int | None) -> CallResult:
        durable_ts = self.node.sequencer.durable_ts
        if at_ts is None:
            at_ts = durable_ts
        elif at_ts > durable_ts:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                            f"ts {at_ts} is after the newest commit ({durable_ts}).")
        elif at_ts < self.node.retained_since_ts:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                            f"ts {at_ts} is before the retention window "
                            f"(history starts at {self.node.retained_since_ts}).")
        value, ctx = await self._invoke(
            function, args, lambda: QueryCtx(self._transaction(at_ts, writable=False), identity))
        return CallResult(value, at_ts, ctx.log_lines)

    async def run_mutation(self, function: FunctionDef, args: dict, identity,
                           on_decided: Callable[[int | None], None] | None = None,
                           request: tuple[str, int] | None = None) -> CallResult:
        sequencer = self.node.sequencer
        call = CallInfo(function.path, args, identity, "mutation", request)
        attempt = 0
        while True:
            # Both waits return at once almost always: test before awaiting.
            if sequencer.lane_holder is not None:
                await sequencer.wait_lane_free()
            if not sequencer.has_capacity():
                await sequencer.wait_capacity()
            attempt += 1
            serial = attempt > limits.optimistic_attempts_max
            if serial:
                await sequencer.lane.acquire()
            try:
                outcome, value, txn = await self._attempt(function, args, identity, call, serial)
            except LaneBusy:
                attempt -= 1
                continue
            finally:
                if serial:
                    sequencer.release_lane()
                    sequencer.lane.release()
            if isinstance(outcome, Commit):
                if on_decided is not None:
                    on_decided(outcome.ts)
                await sequencer.wait_durable(outcome.ts)
                return CallResult(value, outcome.ts, txn.log_lines, attempts=attempt)
            if outcome is None:
                # Wrote nothing: answer once what it read is durable.
                if on_decided is not None:
                    on_decided(None)
                await sequencer.wait_durable(txn.snapshot_ts)
                return CallResult(value, txn.snapshot_ts, txn.log_lines, attempts=attempt)
            self.conflict_count += 1
            if attempt == limits.optimistic_attempts_max:
                self.serial_count += 1

    def mutation_now(self, path: str, args, *, identity=None, admin: bool = True,
                     request: tuple[str, int] | None = None) -> Decided | None:
        """`call` of a mutation, decided now, without suspending, if it can be.

        Most mutations can: nothing holds the serial lane, the disk has room
        for another commit, and the function never suspends. Then it runs on
        the newest admitted snapshot and is admitted in the same step, so
        nothing can conflict with it, and this returns its `Decided`; the
        caller answers it once `Decided.durable_ts` is durable
        (`SequencerActor.when_durable`). Otherwise nothing happened (no
        commit; a run that tried to suspend was abandoned) and this returns
        None: run it with `call`. No task, cancel scope or wake-up is spent
        on the way, which is most of what a small mutation's `call` costs
        beyond the function itself (the sync protocol's shell, wire/sync.py).

        Raises what `call` raises for a mutation.
        """
        function = self.resolve("mutation", path, admin)
        args = self.check_args(function, args)
        sequencer = self.node.sequencer
        if sequencer.lane_holder is not None or not sequencer.has_capacity():
            return None
        state = sequencer.state
        snapshot_ts = state.last_ts
        ctx = MutationCtx(self._transaction(snapshot_ts, writable=True), identity)
        state.begin(snapshot_ts)
        try:
            finished, value = self._invoke_now(function, args, ctx)
            if not finished:
                return None
            txn = ctx.transaction
            if not txn.writes:
                # Wrote nothing: answered once what it read is durable.
                return Decided(None, snapshot_ts, value, txn.log_lines)
            call = CallInfo(function.path, args, identity, "mutation", request)
            call.result = value
            outcome = sequencer.admit(txn, call)
        finally:
            state.end(snapshot_ts)
        if not isinstance(outcome, Commit):
            return None  # cannot happen (nothing ran since its snapshot); `call` will see
        return Decided(outcome.ts, outcome.ts, value, txn.log_lines)

    async def _attempt(self, function: FunctionDef, args: dict, identity, call: CallInfo,
                       serial: bool) -> tuple[Commit | int | None, Any, Transaction]:
        """One run of a mutation: (its Commit, a conflicting ts, or None if it
        wrote nothing; its value; its transaction)."""
        sequencer = self.node.sequencer
        state = sequencer.state
        snapshot_ts = state.last_ts

        def fresh_ctx() -> MutationCtx:
            txn = self._transaction(snapshot_ts, writable=True)
            if serial:
                # From here until it is admitted, no other commit can land
                # after its snapshot, so it cannot conflict.
                sequencer.lane_holder = txn
            return MutationCtx(txn, identity)

        state.begin(snapshot_ts)
        try:
            value, ctx = await self._invoke(function, args, fresh_ctx)
            txn = ctx.transaction
            if not txn.writes:
                return None, value, txn
            call.result = value
            return sequencer.admit(txn, call), value, txn
        finally:
            state.end(snapshot_ts)

    async def run_action(self, function: FunctionDef, args: dict, identity) -> CallResult:
        world = self.node.world

        def runner(kind: str):
            async def run(target, inner_args):
                result = await self.call(kind, target, inner_args, identity=identity, admin=True)
                return result.value
            return run

        ctx = ActionCtx(run_query=runner("query"), run_mutation=runner("mutation"),
                        run_action=runner("action"), identity=identity,
                        now_ms=world.clock.now_ns() / 1e6, rng=random.Random(world.entropy.seed()))
        value, ctx = await self._invoke(function, args, lambda: ctx, rerunnable=False)
        return CallResult(value, self.node.sequencer.durable_ts, ctx.log_lines)

    async def _invoke(self, function: FunctionDef, args: dict, make_ctx,
                      rerunnable: bool = True) -> tuple[Any, Any]:
        """Runs the function on a ctx from `make_ctx`; returns (value, that ctx).

        Time limit. Awaits that suspend are bounded by a cancel scope on trio's
        clock (the World's, in the simulator); database calls check the
        World's clock themselves. Entering a cancel scope costs about a tenth
        of a small mutation, and almost no query or mutation ever suspends
        (`ctx.db` never does), so a `rerunnable` function (a query or
        mutation: a pure function of its snapshot, seed and args, whose
        effects stay in its transaction) first runs without one
        (`_invoke_now`); if it tries to suspend, that run is abandoned before
        anything happens and the function runs again from the start, on a
        fresh ctx, under the scope. Actions have effects outside any
        transaction, so they always run under the scope.
        """
        ctx = make_ctx()
        if rerunnable:
            finished, value = self._invoke_now(function, args, ctx)
            if finished:
                return value, ctx
            ctx = make_ctx()
        lines = ctx.log_lines
        limit_ms = (limits.action_user_ms_max if function.kind is FunctionKind.ACTION
                    else limits.query_user_ms_max)
        try:
            with trio.CancelScope(deadline=trio.current_time() + limit_ms / 1000) as scope, \
                    logs.capture(lines):
                result = function.handler(ctx, **args)
                if inspect.isawaitable(result):
                    result = await result
            if scope.cancelled_caught:
                raise _with_lines(EddyError(
                    ErrorCode.TIMEOUT, f"{function.path} ran longer than {limit_ms} ms.",
                    limit="query_user_ms_max" if limit_ms == limits.query_user_ms_max
                    else "action_user_ms_max"), lines)
        except trio.Cancelled:
            raise
        except (AppError, EddyError, FunctionCrashed) as error:
            raise _with_lines(error, lines)
        except Exception as error:
            raise _crashed(function, error, lines) from error
        return self._checked_result(function, result), ctx

    def _invoke_now(self, function: FunctionDef, args: dict, ctx) -> tuple[bool, Any]:
        """Runs the function on `ctx` if it finishes without suspending:
        (True, its value, checked as `_invoke` checks it), or (False, None)
        once it tried to suspend (that run abandoned; nothing happened).
        Raises what `_invoke` raises."""
        lines = ctx.log_lines
        try:
            with logs.capture(lines):
                finished, result = _run_without_suspending(function.handler(ctx, **args))
        except (AppError, EddyError, FunctionCrashed) as error:
            raise _with_lines(error, lines)
        except Exception as error:
            raise _crashed(function, error, lines) from error
        if not finished:
            return False, None
        return True, self._checked_result(function, result)

    def _checked_result(self, function: FunctionDef, result: Any) -> Any:
        """A function's return value as the caller gets it: tuples as lists,
        size-checked, validated against `returns=`."""
        if isinstance(result, tuple):
            result = list(result)
        try:
            _check_size(result, "Return value")
        except EddyError as error:
            raise EddyError(ErrorCode.INVALID_RETURN, f"{function.path}: {error.message}") from None
        if function.returns is None:
            return result
        return validate_returns(function, result, self.node.catalog.table_name)


def _crashed(function: FunctionDef, error: Exception, lines: list[str]) -> FunctionCrashed:
    """An app exception as the caller sees it (the traceback goes to the log)."""
    text = traceback.format_exc()
    log.error("%s failed:\n%s", function.path, text)
    return _with_lines(FunctionCrashed(f"Uncaught {type(error).__name__}: {error}", text), lines)


def _run_without_suspending(result) -> tuple[bool, Any]:
    """(True, value) if `result` (a handler's return) completes without
    suspending; (False, None) if it tried to suspend, after abandoning it
    (closing a coroutine runs its `finally` blocks and exits its cancel
    scopes in order; the scheduler never saw it)."""
    if type(result) is not types.CoroutineType:  # not inspect.iscoroutine: a call less
        if inspect.isawaitable(result):
            return False, None  # some other awaitable: run it properly, under the scope
        return True, result
    try:
        result.send(None)
    except StopIteration as stop:
        return True, stop.value
    result.close()
    return False, None


def _with_lines(error: Exception, lines: list[str]) -> Exception:
    """Attaches what the function printed, so a failure's log lines reach the caller too."""
    error.log_lines = list(lines)
    return error


def _check_size(value, what: str) -> None:
    kind = type(value)
    if value is None or kind is bool or kind is float or (
            kind is str and len(value) < 4096 and value.isascii()):
        return  # most results (an id, a count, nothing): valid and small by construction
    size = values.check_value(value)
    if size > limits.value_bytes_max:
        raise EddyError(ErrorCode.LIMIT_EXCEEDED,
                        f"{what} too large: {size} bytes (limit {limits.value_bytes_max}).",
                        limit="value_bytes_max")
