"""The catalog: which tables exist, their numbers, and their shards.

Table numbers are what document ids carry (PROTOCOL.md 7). User tables are
numbered from 10,001 up, as Convex's are, leaving the numbers below for system
tables. A number, once given to a name, is never reused; the mapping is part
of the log (each commit that creates a table records it), so a replay rebuilds
the same catalog.
"""

from __future__ import annotations

from typing import Sequence

from engine.errors import EddyError, ErrorCode
from engine.shard import ShardState

FIRST_USER_TABLE_NUMBER = 10_001


class Catalog:
    """Tables and their shards.

    Fields:
        shards: table number -> ShardState; added by `create`.
        numbers: table name -> number; added by `create`.
        index_definitions: table name -> {index name: user fields}, from the
            schema; replaced by `set_index_definitions`.
    """

    def __init__(self) -> None:
        self.shards: dict[int, ShardState] = {}
        self.numbers: dict[str, int] = {}
        self.index_definitions: dict[str, dict[str, Sequence[str]]] = {}

    def validate(self) -> None:
        assert len(self.shards) == len(self.numbers)
        for name, number in self.numbers.items():
            assert self.shards[number].name == name
            self.shards[number].validate()

    def next_number(self) -> int:
        return max(self.shards, default=FIRST_USER_TABLE_NUMBER - 1) + 1

    def create(self, name: str, number: int | None = None) -> ShardState:
        """Adds a table (idempotent for an existing name with the same number)."""
        existing = self.numbers.get(name)
        if existing is not None:
            assert number is None or number == existing, "table renumbered"
            return self.shards[existing]
        number = self.next_number() if number is None else number
        assert number not in self.shards, "table number reused"
        shard = ShardState(number, name, self.index_definitions.get(name))
        self.shards[number] = shard
        self.numbers[name] = number
        return shard

    def shard(self, name: str) -> ShardState | None:
        number = self.numbers.get(name)
        return None if number is None else self.shards[number]

    def table_name(self, number: int) -> str | None:
        shard = self.shards.get(number)
        return None if shard is None else shard.name

    def set_index_definitions(self, definitions: dict[str, dict[str, Sequence[str]]]) -> None:
        """Sets every table's schema indexes and rebuilds changed ones from history."""
        old = self.index_definitions
        self.index_definitions = {t: dict(d) for t, d in definitions.items()}
        for name, number in self.numbers.items():
            if {k: list(v) for k, v in old.get(name, {}).items()} != \
               {k: list(v) for k, v in definitions.get(name, {}).items()}:
                self.shards[number].set_indexes(definitions.get(name, {}))

    def require_table_number(self, name: str) -> int:
        number = self.numbers.get(name)
        if number is None:
            raise EddyError(ErrorCode.TABLE_NOT_FOUND, f"Table {name!r} does not exist.")
        return number
