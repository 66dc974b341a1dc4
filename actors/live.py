"""Running one query for a live subscription: `run_query_at` -> QueryOutcome.

A live query's failure is part of its result (Convex's QueryFailed), not an
exception: a bad path, bad args, an `AppError`, a crash or a limit all become
an outcome with `error` set, carrying the message the client should see.
It uses the function runner's own steps (resolve, check_args, the read-only
transaction) and invokes the function through the runner's own `_invoke`
(the same time limit, log capture, errors and return checks), so a live
query and a one-shot query behave alike. A `PreparedCall` kept by the
caller skips resolving and checking the same args again on a re-run.

Journals (PROTOCOL.md 10.3). When a journal is given and the query's
`paginationOpts` names no `endCursor`, the journal becomes its `endCursor`,
so the page ends where it ended last time and grows or shrinks with the rows
inside it instead of shifting. The outcome's journal is the continueCursor
of the query's one paginated read (engine/queries.py records it on the
transaction as `page_end_cursor`), or None if it did not paginate.

Views. Given the subscription actor's `ViewSet`, the query runs against a
`ViewReader` (engine/view_reads.py): reads of ranges a view holds come from
the view, others from the shards, and the outcome carries the reader
(`outcome.reader`, with its reads and, if the run qualifies, its fast path
as `reader.fast`) for the actor to turn into the subscription's views.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Any

import trio

from engine.context import QueryCtx
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed
from engine.functions import FunctionDef
from engine.subscriptions import QueryOutcome
from engine.view_reads import ViewReader, fast_path_of


__all__ = ["PreparedCall", "QueryOutcome", "run_query_at"]



class PreparedCall:
    """A live query's resolved function and checked arguments, kept between
    its runs (a subscription holds one), so a re-evaluation skips resolving
    the path and validating the arguments again.

    Kept only while the app is the same object (`node.reload` replaces it),
    for the same journal and admin flag, and only for arguments whose values
    are all immutable scalars: the function gets a fresh keyword dict each
    run, so it cannot change what the next run receives. Validation of such
    arguments depends only on the function and the table catalog, whose
    table numbers never change meaning.

    Fields:
        app, journal, admin: what the kept call is valid for; set by `keep`.
        function, args: the resolved function and its checked arguments.
    """

    __slots__ = ("app", "journal", "admin", "function", "args")

    def __init__(self) -> None:
        self.app: Any = None
        self.journal: str | None = None
        self.admin = False
        self.function: FunctionDef | None = None
        self.args: dict | None = None

    def get(self, app, journal: str | None, admin: bool) -> "tuple[FunctionDef, dict] | None":
        if self.app is app and self.journal == journal and self.admin == admin:
            return self.function, self.args
        return None

    def keep(self, app, journal: str | None, admin: bool, function: FunctionDef,
             args: dict) -> None:
        if type(args) is dict and all(type(value) in _IMMUTABLE for value in args.values()):
            self.app, self.journal, self.admin = app, journal, admin
            self.function, self.args = function, args
        else:
            self.app = None


_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})


def with_journal(args: Any, journal: str | None) -> Any:
    """`args` with the journal as `paginationOpts.endCursor` where one applies."""
    if journal is None:
        return args
    wrapped = isinstance(args, list) and len(args) == 1
    inner = args[0] if wrapped else args
    if not isinstance(inner, dict):
        return args
    options = inner.get("paginationOpts")
    if not isinstance(options, dict) or options.get("endCursor") is not None:
        return args
    inner = {**inner, "paginationOpts": {**options, "endCursor": journal}}
    return [inner] if wrapped else inner


async def run_query_at(node, path: str, args: Any, identity: Any, ts: int,
                       journal: str | None = None, *, admin: bool = False,
                       views=None, previous=None,
                       prepared: PreparedCall | None = None) -> QueryOutcome:
    """Runs the query `path` at `ts` and returns its outcome; see the module docstring.

    A checkpoint if the query awaits something that yields; cancellation
    propagates and leaves nothing behind (queries write nothing).

    Args:
        node: the node (its runner, catalog and sequencer).
        path: the function path as the client sent it.
        args: a dict, a list holding one dict, or None.
        identity: the caller's identity dict, or None.
        ts: a durable, retained ts to read at.
        journal: the end cursor of the previous run, or None.
        admin: True lets internal functions run (admin-key callers).
        views: the subscription actor's ViewSet, current at `ts`, to serve
            reads from (see "Views" above); None reads the shards only.
        previous: range key -> View of the query's own last run (served first).
        prepared: the query's PreparedCall, used when valid and refreshed
            otherwise; the caller keeps it between runs of the same path
            and args.

    Returns:
        The QueryOutcome. Never raises for the query's own failure or bad input.
    """
    runner = node.runner
    txn = None
    try:
        _check_ts(node, ts)
        call = None if prepared is None else prepared.get(node.app, journal, admin)
        if call is None:
            function = runner.resolve("query", path, admin)
            checked = runner.check_args(function, with_journal(args, journal))
            if prepared is not None:
                prepared.keep(node.app, journal, admin, function, checked)
        else:
            function, checked = call
        if views is not None:
            assert views.ts == ts, "views are not current at the ts of the run"

        def fresh_ctx() -> QueryCtx:
            nonlocal txn
            txn = runner._transaction(ts, writable=False)
            if views is not None:
                txn = ViewReader(txn, views, previous)
            return QueryCtx(txn, identity)

        # The runner's own invocation (time limit, log capture, errors, return
        # checks). A run served from views may register views as it reads, so
        # it is never abandoned and re-run: it runs under the time limit's
        # scope from the start.
        value, _ = await runner._invoke(function, checked, fresh_ctx,
                                        rerunnable=views is None)
    except trio.Cancelled:
        raise
    except AppError as error:
        return _failed(ts, txn, str(error), error.data, True)
    except (EddyError, FunctionCrashed) as error:
        return _failed(ts, txn, error.message, None, False)
    outcome = QueryOutcome(ts=ts, value=value,
                           log_lines=list(getattr(txn, "log_lines", None) or []),
                           journal=getattr(txn, "page_end_cursor", None), read_set=txn.read_set)
    if isinstance(txn, ViewReader):
        eligible = not outcome.log_lines and returns_query_directly(function.handler)
        txn.fast = fast_path_of(txn, value, returns_checked=function.returns is not None) \
            if eligible else None
        outcome.reader = txn
    return outcome


def _check_ts(node, ts: int) -> None:
    durable_ts = node.sequencer.durable_ts
    if ts > durable_ts or ts < node.retained_since_ts:
        raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                        f"ts {ts} is outside the readable history "
                        f"[{node.retained_since_ts}, {durable_ts}].")


def _failed(ts: int, txn, message: str, data: Any, has_data: bool) -> QueryOutcome:
    # A failed run still read something: its read set decides when to re-run
    # it (a query failing on a missing document recovers when it appears).
    outcome = QueryOutcome(ts=ts, error=(message, data, has_data),
                           log_lines=list(getattr(txn, "log_lines", None) or []),
                           journal=getattr(txn, "page_end_cursor", None))
    if txn is not None:
        outcome.read_set = txn.read_set
        if isinstance(txn, ViewReader):
            txn.fast = None
            outcome.reader = txn
    return outcome


def returns_query_directly(handler) -> bool:
    """Whether a query function is only `return await <query>.take(n)` /
    `.collect()`, or `return await <ctx>.db.get(<id>)`.

    The fast path (engine/view_reads.py) serves later results straight from
    the view without running the function. That is right only if the result
    cannot depend on what the rows contain, which holds for a function whose
    whole body returns the terminal's list or the get's document; a function
    that inspects its rows first (`if any(r["banned"] for r in rows): return
    []`) must run again on every change, so it is re-evaluated against its
    views instead.
    """
    code = getattr(handler, "__code__", None)
    return code is not None and _body_returns_terminal(code)


@functools.lru_cache(maxsize=4096)
def _body_returns_terminal(code) -> bool:
    try:
        source = textwrap.dedent(inspect.getsource(code))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return False
    functions = [node for node in ast.walk(tree)
                 if isinstance(node, (ast.AsyncFunctionDef, ast.FunctionDef))
                 and node.name == code.co_name]
    if len(functions) != 1:
        return False
    body = functions[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return False
    value = body[0].value
    if not isinstance(value, ast.Await) or not isinstance(value.value, ast.Call):
        return False
    call = value.value
    if not isinstance(call.func, ast.Attribute):
        return False
    if call.func.attr == "get":
        if not _is_ctx_db(call.func.value, functions[0]):
            return False
    elif call.func.attr not in ("take", "collect"):
        return False
    # No other await anywhere in the expression: its only read is this query.
    return not any(isinstance(node, ast.Await) for node in ast.walk(call))


def _is_ctx_db(node, function) -> bool:
    """Whether `node` is `<first parameter>.db` (the function's ctx.db)."""
    parameters = function.args.posonlyargs + function.args.args
    return (bool(parameters) and isinstance(node, ast.Attribute) and node.attr == "db"
            and isinstance(node.value, ast.Name) and node.value.id == parameters[0].arg)
