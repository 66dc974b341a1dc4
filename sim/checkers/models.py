"""Models of the reference app's tables that answer its base queries (sim/checkers/reference.py).

Each model follows one table's writes in ts order (`write`, fed by
actors/replay.py `TimeTravel.follow`), keeps the table's documents as of
the ts reached, and answers the app's queries on it (sim/app/) the way
their definitions say: the documents of an index range in index order
(`reference.index_order`: Convex's order of values, then _creationTime,
then _id), the first n, the last n reversed, a count, the values picked out
as each function returns them. No code of the engine's read path runs, so
these answers are the committed history read a second, independent way.

A question a model cannot answer exactly (arguments of another shape, an
empty or inverted range, a value it cannot order) gets None: the
reference then runs the query on the engine. tests/sim/test_oracle.py
checks that every answer equals the engine's own over whole runs.
"""

from __future__ import annotations

from typing import Any

from sortedcontainers import SortedList

from sim.checkers.reference import Answer, index_order, order_key


def _is_int(value: Any) -> bool:
    return type(value) is int


class _Table:
    """One table's documents (internal id -> document), and a version that
    every write raises (what a model caches is good for one version)."""

    def __init__(self) -> None:
        self.documents: dict[bytes, dict] = {}
        self.version = 0

    def write(self, internal_id: bytes, document: dict | None) -> dict | None:
        """Stores the write; returns the document it replaced, or None."""
        self.version += 1
        if document is None:
            return self.documents.pop(internal_id, None)
        previous = self.documents.get(internal_id)
        self.documents[internal_id] = document
        return previous

    def ordered(self, fields: tuple[str, ...]) -> list[dict] | None:
        """The documents in index order on `fields`, or None if some value cannot be ordered."""
        try:
            return sorted(self.documents.values(), key=lambda document: index_order(document, fields))
        except KeyError:
            return None


class _OneTable:
    """A model of one table's documents (`tables` names it)."""

    def __init__(self) -> None:
        self.table = _Table()

    def write(self, table: str, internal_id: bytes, document: dict | None) -> None:
        self.table.write(internal_id, document)


class ScoresModel(_OneTable):
    """`scores` (sim/app/leaderboard.py): `leaderboard:ranked`."""

    tables = ("scores",)
    paths = ("leaderboard:ranked",)

    def __init__(self) -> None:
        super().__init__()
        self._ranked: tuple[int, Answer | None] = (-1, None)

    def answer(self, path: str, args: Any) -> Answer | None:
        if args != {}:
            return None
        version, found = self._ranked
        if version != self.table.version:
            rows = self.table.ordered(("board", "points"))
            found = None if rows is None else (
                True, [[row["board"], row["player"], row["points"]] for row in rows])
            self._ranked = (self.table.version, found)
        return found


class CountersModel(_OneTable):
    """`counters` (sim/app/hot.py): `hot:between` over a non-empty range of names."""

    tables = ("counters",)
    paths = ("hot:between",)

    def __init__(self) -> None:
        super().__init__()
        self._by_name: tuple[int, list | None] = (-1, None)

    def answer(self, path: str, args: Any) -> Answer | None:
        if type(args) is not dict or set(args) != {"lo", "hi"}:
            return None
        lo, hi = args["lo"], args["hi"]
        if type(lo) is not str or type(hi) is not str or not lo < hi:
            return None
        version, rows = self._by_name
        if version != self.table.version:
            rows = self.table.ordered(("name",))
            self._by_name = (self.table.version, rows)
        if rows is None:
            return None
        low, high = order_key(lo), order_key(hi)
        return True, [[row["name"], row["value"]] for row in rows
                      if low <= order_key(row["name"]) < high]


class AccountsModel(_OneTable):
    """`accounts` (sim/app/bank.py): `bank:balances` (a full scan, in creation order)."""

    tables = ("accounts",)
    paths = ("bank:balances",)

    def answer(self, path: str, args: Any) -> Answer | None:
        if args != {}:
            return None
        rows = self.table.ordered(())
        return None if rows is None else (True, {row["name"]: row["balance"] for row in rows})


class EventsModel:
    """`events` (sim/app/ingest.py): `ingest:count`, `lowest`, `latest` and
    `keys`, from the index orders `by_stream_rank` and `by_key` kept per
    stream and per client (the table grows to thousands of events, so a
    question must not walk all of them)."""

    tables = ("events",)
    paths = ("ingest:count", "ingest:lowest", "ingest:latest", "ingest:keys")

    def __init__(self) -> None:
        self.table = _Table()
        self.broken = False  # a document that could not be ordered: the engine answers
        # order_key(stream) -> SortedList of (order_key(rank), creation, id, internal id).
        self.by_stream: dict[tuple, SortedList] = {}
        # order_key(client) -> SortedList of (order_key(seq), creation, id, internal id).
        self.by_client: dict[tuple, SortedList] = {}

    def write(self, table: str, internal_id: bytes, document: dict | None) -> None:
        previous = self.table.write(internal_id, document)
        try:
            if previous is not None:
                self._index(previous, internal_id, SortedList.remove)
            if document is not None:
                self._index(document, internal_id, SortedList.add)
        except (KeyError, ValueError):
            self.broken = True

    def _index(self, document: dict, internal_id: bytes, change) -> None:
        stream_key = index_order(document, ("stream", "rank"))
        client_key = index_order(document, ("client", "seq"))
        change(self.by_stream.setdefault(stream_key[0], SortedList()), (*stream_key[1:], internal_id))
        change(self.by_client.setdefault(client_key[0], SortedList()), (*client_key[1:], internal_id))

    def answer(self, path: str, args: Any) -> Answer | None:
        if self.broken or type(args) is not dict:
            return None
        documents = self.table.documents
        names, n = set(args), args.get("n")
        if path == "ingest:count" and names == {"stream", "lo", "hi"} and \
                type(args["stream"]) is str and _is_int(args["lo"]) and _is_int(args["hi"]) and \
                args["lo"] < args["hi"]:
            rows = self.by_stream.get(order_key(args["stream"]))
            return True, 0 if rows is None else (rows.bisect_left((order_key(args["hi"]),))
                                                 - rows.bisect_left((order_key(args["lo"]),)))
        if path == "ingest:lowest" and names == {"stream", "n"} and \
                type(args["stream"]) is str and _is_int(n) and n >= 0:
            rows = self.by_stream.get(order_key(args["stream"]), [])
            return True, [[document["client"], document["seq"], document["rank"]]
                          for document in (documents[row[-1]] for row in rows[:n])]
        if path in ("ingest:latest", "ingest:keys") and _is_int(args.get("client")):
            rows = self.by_client.get(order_key(args["client"]), [])
            if path == "ingest:keys" and names == {"client"}:
                return True, [[documents[row[-1]]["seq"], documents[row[-1]]["batch"]]
                              for row in rows]
            if path == "ingest:latest" and names == {"client", "n"} and _is_int(n) and n >= 0:
                newest = rows[max(len(rows) - n, 0):]
                return True, [documents[row[-1]]["seq"] for row in reversed(newest)]
        return None
