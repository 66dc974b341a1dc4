"""Durable single-transaction throughput from 64 concurrent callers.

Workloads (`--workload`):

- `insert` (default): one ~100-byte row per transaction.
  Baseline: SQLite in WAL mode with synchronous=FULL, 64 threads, each with its
  own connection. Eddy: 64 trio tasks calling `bench:insert` through
  `open_node` on a fresh data folder (no network). Target: Eddy >= 1.5x SQLite.
- `transfer`: two-account read-modify-write transactions over 100,000
  accounts, picked uniformly (uncontended). With `--zipf`, the same load is also
  run Zipf-skewed so that about 80% of transactions touch one of the hottest
  accounts. Targets: Eddy's skewed throughput >= 50% of its uncontended
  throughput, and zero conflict errors seen by callers.

Usage:
    python bench/bench_mutations.py --seconds 10
    python bench/bench_mutations.py --seconds 10 --workload transfer --zipf
"""

from __future__ import annotations

import bisect
import itertools
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Rate, Row, Unavailable  # noqa: E402

SEED = 20240601  # Fixed, so every run draws the same transfers.
PAIRS_COUNT = 200_000  # Pre-drawn transfers; callers cycle through them.
ACCOUNTS_PER_CALL = 1000  # Accounts created per `bench:create_accounts` call.
INITIAL_BALANCE = 1_000_000


def add_arguments(parser) -> None:
    parser.add_argument("--workload", choices=["insert", "transfer"], default="insert")
    parser.add_argument("--zipf", action="store_true",
                        help="transfer: also run the Zipf-skewed load")
    parser.add_argument("--callers", type=int, default=64,
                        help="concurrent callers (threads for SQLite, tasks for Eddy)")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--hot-count", type=int, default=10,
                        help="how many of the most popular accounts count as hot")
    parser.add_argument("--hot-share", type=float, default=0.8,
                        help="share of transfers that touch a hot account")
    parser.add_argument("--dir", default=str(common.REPO_ROOT / "bench" / "out"),
                        help="parent folder of the scratch databases")


# ---------------------------------------------------------------------------
# Transfer pairs.


def zipf_exponent(account_count: int, hot_count: int, hot_share: float) -> float:
    """The exponent s for which a transfer (two independent draws) touches one of
    the `hot_count` most popular accounts with probability `hot_share`."""
    one_draw_share = 1 - (1 - hot_share) ** 0.5
    low, high = 0.0, 4.0
    for _ in range(40):  # Far finer than the share needs.
        s = (low + high) / 2
        weights = [k ** -s for k in range(1, account_count + 1)]
        share = sum(weights[:hot_count]) / sum(weights)
        low, high = (s, high) if share < one_draw_share else (low, s)
    return (low + high) / 2


def draw_pairs(account_count: int, exponent: float | None) -> list[tuple[int, int]]:
    """PAIRS_COUNT (source, destination) account numbers, distinct in each pair.

    `exponent` None draws uniformly; otherwise account k (from 0) has weight
    (k + 1) ** -exponent.
    """
    rng = random.Random(SEED)
    if exponent is None:
        def draw() -> int:
            return rng.randrange(account_count)
    else:
        cumulative = list(itertools.accumulate(
            (k ** -exponent for k in range(1, account_count + 1))))
        total = cumulative[-1]

        def draw() -> int:
            return min(bisect.bisect_left(cumulative, rng.random() * total),
                       account_count - 1)
    pairs = []
    while len(pairs) < PAIRS_COUNT:
        source, destination = draw(), draw()
        if source != destination:
            pairs.append((source, destination))
    return pairs


def hot_share(pairs: list[tuple[int, int]], hot_count: int) -> float:
    return sum(1 for s, d in pairs if min(s, d) < hot_count) / len(pairs)


def pair_for(pairs, caller: int, sequence: int, caller_count: int) -> tuple[int, int]:
    return pairs[(sequence * caller_count + caller) % len(pairs)]


# ---------------------------------------------------------------------------
# SQLite.


def sqlite_connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; each statement commits
    # on its own unless we BEGIN.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                 timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def sqlite_inserts(args, scratch: Path) -> Rate:
    path = scratch / "inserts.sqlite"
    setup = sqlite_connect(path)
    setup.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, key TEXT, payload TEXT)")
    setup.close()

    def make_worker(worker: int):
        connection = sqlite_connect(path)
        sequence = itertools.count()

        def insert() -> None:
            key, payload = common.item_row(worker, next(sequence))
            connection.execute("INSERT INTO items (key, payload) VALUES (?, ?)", (key, payload))
        return insert

    return common.run_threads(args.callers, args.seconds, args.warmup, make_worker)


def sqlite_transfers(args, scratch: Path, pairs, name: str) -> Rate:
    path = scratch / f"transfers-{name}.sqlite"
    setup = sqlite_connect(path)
    setup.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
    setup.execute("BEGIN")
    setup.executemany("INSERT INTO accounts (id, balance) VALUES (?, ?)",
                      ((i, INITIAL_BALANCE) for i in range(args.accounts)))
    setup.execute("COMMIT")
    setup.close()

    def make_worker(worker: int):
        connection = sqlite_connect(path)
        sequence = itertools.count()

        def transfer() -> None:
            source, destination = pair_for(pairs, worker, next(sequence), args.callers)
            # IMMEDIATE takes the write lock up front, so two transfers never
            # deadlock upgrading a read lock.
            connection.execute("BEGIN IMMEDIATE")
            (balance_s,), = connection.execute(
                "SELECT balance FROM accounts WHERE id = ?", (source,))
            (balance_d,), = connection.execute(
                "SELECT balance FROM accounts WHERE id = ?", (destination,))
            connection.execute("UPDATE accounts SET balance = ? WHERE id = ?",
                               (balance_s - 1, source))
            connection.execute("UPDATE accounts SET balance = ? WHERE id = ?",
                               (balance_d + 1, destination))
            connection.execute("COMMIT")
        return transfer

    return common.run_threads(args.callers, args.seconds, args.warmup, make_worker)


# ---------------------------------------------------------------------------
# Eddy.


def run_eddy(args, scratch: Path, body):
    """Runs `body(node)` in trio on a fresh node; Unavailable if that fails."""
    try:
        import trio

        open_node = common.load_open_node()

        async def main():
            async with open_node(common.BENCH_APP_DIR, scratch / "eddy") as node:
                return await body(node)

        return trio.run(main)
    except Exception as error:
        return common.eddy_unavailable(error, args.debug)


def eddy_inserts(args, scratch: Path):
    async def body(node):
        async def insert(caller: int, sequence: int) -> None:
            key, payload = common.item_row(caller, sequence)
            await node.mutation("bench:insert", {"key": key, "payload": payload})
        return await common.run_tasks(args.callers, args.seconds, args.warmup, insert,
                                      common.conflict_classifier())
    return run_eddy(args, scratch, body)


def eddy_transfers(args, scratch: Path, loads: dict[str, list]) -> dict:
    """Transfer rates by load name, all on one node seeded with the accounts."""
    async def body(node):
        ids = []
        while len(ids) < args.accounts:
            count = min(ACCOUNTS_PER_CALL, args.accounts - len(ids))
            ids.extend(await node.mutation("bench:create_accounts",
                                           {"count": count, "balance": INITIAL_BALANCE}))
        rates = {}
        for name, pairs in loads.items():
            async def transfer(caller: int, sequence: int, pairs=pairs) -> None:
                source, destination = pair_for(pairs, caller, sequence, args.callers)
                await node.mutation("bench:transfer", {
                    "source": ids[source], "destination": ids[destination], "amount": 1})
            rates[name] = await common.run_tasks(args.callers, args.seconds, args.warmup,
                                                 transfer, common.conflict_classifier())
        return rates

    outcome = run_eddy(args, scratch, body)
    if isinstance(outcome, Unavailable):
        return {name: outcome for name in loads}
    return outcome


# ---------------------------------------------------------------------------


def insert_report(args, scratch: Path) -> None:
    baseline = sqlite_inserts(args, scratch)
    eddy = Unavailable("--skip-eddy") if args.skip_eddy else eddy_inserts(args, scratch)
    common.print_report(
        f"Durable single-row transactions, {args.callers} callers, {args.seconds:g} s",
        [Row("insert ~100 B row", baseline, eddy, target=">= 1.50x")],
        ["baseline: SQLite WAL, synchronous=FULL, one row per transaction, one "
         "connection per thread; eddy: open_node, bench:insert, one trio task per caller"])


def transfer_report(args, scratch: Path) -> None:
    loads = {"uniform": draw_pairs(args.accounts, None)}
    notes = [f"accounts: {args.accounts:,}; baseline: SQLite WAL, synchronous=FULL, "
             "BEGIN IMMEDIATE, two reads and two updates per transaction"]
    if args.zipf:
        exponent = zipf_exponent(args.accounts, args.hot_count, args.hot_share)
        loads["zipf"] = draw_pairs(args.accounts, exponent)
        notes.append(f"zipf: exponent {exponent:.3f}; "
                     f"{hot_share(loads['zipf'], args.hot_count):.1%} of transfers touch "
                     f"one of the {args.hot_count} hottest accounts "
                     f"(uniform: {hot_share(loads['uniform'], args.hot_count):.3%})")
    baselines = {name: sqlite_transfers(args, scratch, pairs, name)
                 for name, pairs in loads.items()}
    if args.skip_eddy:
        eddys = {name: Unavailable("--skip-eddy") for name in loads}
    else:
        eddys = eddy_transfers(args, scratch, loads)
    rows = [Row("transfer, uniform", baselines["uniform"], eddys["uniform"])]
    if args.zipf:
        rows.append(Row("transfer, zipf", baselines["zipf"], eddys["zipf"],
                        target="0 conflict errors"))
        uniform, skewed = eddys["uniform"], eddys["zipf"]
        skew_ratio = "-"
        if isinstance(uniform, Rate) and isinstance(skewed, Rate) and uniform.per_second:
            skew_ratio = f"{skewed.per_second / uniform.per_second:.2f}x"
        base_ratio = (f"{baselines['zipf'].per_second / baselines['uniform'].per_second:.2f}x"
                      if baselines["uniform"].per_second else "-")
        rows.append(Row("zipf / uniform", None, None, target=">= 0.50x (eddy)",
                        ratio_text=f"sqlite {base_ratio}, eddy {skew_ratio}"))
        conflicts = skewed.errors.get("conflict", 0) if isinstance(skewed, Rate) else "-"
        notes.append(f"eddy: conflict errors seen by callers under zipf: {conflicts}")
    common.print_report(
        f"Two-account transfers, {args.callers} callers, {args.seconds:g} s per load",
        rows, notes)


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="mutations-") as scratch:
        print(common.describe_machine(scratch))
        if args.workload == "insert":
            insert_report(args, Path(scratch))
        else:
            transfer_report(args, Path(scratch))


if __name__ == "__main__":
    main()
