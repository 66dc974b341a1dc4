"""The `ctx` objects app functions receive, and `ctx.db` over a transaction.

Every database method is `async` to read like Convex's API, but none of them
yields to the scheduler: a mutation that only touches `ctx.db` runs start to
finish in one step, which is what lets the sequencer admit it without a
conflict (engine/sequencing.py).
"""

from __future__ import annotations

import random
from typing import Any, Awaitable, Callable

from engine.queries import QueryBuilder
from engine.transaction import Transaction


class DatabaseReader:
    """`ctx.db` in queries. Its writes go to the transaction, which refuses
    them in a query with ReadOnlyTransaction (a stable code, where a missing
    method would fail with an AttributeError)."""

    __slots__ = ("_txn",)

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    async def get(self, document_id: str) -> dict | None:
        return self._txn.get(document_id)

    def query(self, table: str) -> QueryBuilder:
        return QueryBuilder(self._txn, table)

    def normalize_id(self, table: str, text: str) -> str | None:
        return self._txn.normalize_id(table, text)

    async def insert(self, table: str, document: dict) -> str:
        return self._txn.insert(table, document)

    async def patch(self, document_id: str, changes: dict) -> None:
        self._txn.patch(document_id, changes)

    async def replace(self, document_id: str, document: dict) -> None:
        self._txn.replace(document_id, document)

    async def delete(self, document_id: str) -> None:
        self._txn.delete(document_id)


class DatabaseWriter(DatabaseReader):
    """`ctx.db` in mutations: the same methods over a writable transaction."""

    __slots__ = ()


class Auth:
    """`ctx.auth`: the caller's identity (a verified JWT's, or one the admin
    impersonates; actors/auth.py), or None."""

    __slots__ = ("_identity",)

    def __init__(self, identity: dict | None) -> None:
        self._identity = identity

    async def get_user_identity(self) -> dict | None:
        return None if self._identity is None else dict(self._identity)


class QueryCtx:
    """What a query function receives as `ctx`."""

    _database_class: type[DatabaseReader] = DatabaseReader  # `ctx.db`'s class

    def __init__(self, txn: Transaction, identity: dict | None) -> None:
        self.db = self._database_class(txn)
        self.auth = Auth(identity)
        self.now: float = txn.now_ms
        # What the function prints, as log lines (the runner captures them).
        self.log_lines: list[str] = txn.log_lines
        self._txn = txn

    @property
    def random(self) -> random.Random:
        """A generator seeded from the call's recorded seed (re-runs draw the same)."""
        return self._txn.random

    @property
    def transaction(self) -> Transaction:
        """The transaction behind `db` (for the runner, not for app code)."""
        return self._txn


class MutationCtx(QueryCtx):
    """What a mutation function receives as `ctx`."""

    _database_class = DatabaseWriter


Runner = Callable[[Any, Any], Awaitable[Any]]


class ActionCtx:
    """What an action function receives as `ctx`: no database, but calls.

    `run_query`, `run_mutation` and `run_action` take a registered function or
    its path, and the args as a dict.
    """

    def __init__(self, *, run_query: Runner, run_mutation: Runner, run_action: Runner,
                 identity: dict | None, now_ms: float, rng: random.Random) -> None:
        self._run_query = run_query
        self._run_mutation = run_mutation
        self._run_action = run_action
        self.auth = Auth(identity)
        self.now = now_ms
        self.random = rng
        self.log_lines: list[str] = []

    async def run_query(self, function, args: dict | None = None):
        return await self._run_query(function, args)

    async def run_mutation(self, function, args: dict | None = None):
        return await self._run_mutation(function, args)

    async def run_action(self, function, args: dict | None = None):
        return await self._run_action(function, args)
