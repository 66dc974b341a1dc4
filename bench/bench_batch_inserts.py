"""Batched durable inserts: 1,000 documents of ~140 bytes per transaction.

Baseline: raw rocksdict, one synced WriteBatch of 1,000 puts (key: a 16-byte
id, value: the document as msgpack, encoded before the clock starts) per
write, from one caller.
Eddy: `bench:insert_batch` inserting the same 1,000 documents (into a table
with one index) per mutation, from one caller, through `open_node` (no
network). Target: Eddy >= 25% of the baseline's documents per second.

Usage:
    python bench/bench_batch_inserts.py --seconds 10
    python bench/bench_batch_inserts.py --seconds 10 --callers 4
    python bench/bench_batch_inserts.py --seconds 5 --skip-baseline --profile out.prof

`--callers N` (N > 1, not with `--profile`) adds a second, clearly
labelled row: the same mutation from N concurrent callers on a fresh
database, beside the same one-caller baseline figure. The first row, the
issue's figure, is always one caller.

`--profile` runs Eddy's side under cProfile (the main thread: the runner,
the sequencer's admit and the shards' apply; not RocksDB's write thread) and
prints the functions that took the most time of their own. Profiling slows
Python code down several times, so its rate is not a figure to report.
"""

from __future__ import annotations

import itertools
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Row, Unavailable  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=1000, help="documents per transaction")
    parser.add_argument("--dir", default=str(common.REPO_ROOT / "bench" / "out"),
                        help="parent folder of the scratch databases")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="measure only Eddy (with --profile, say)")
    parser.add_argument("--callers", type=int, default=1,
                        help="with N > 1, also measure N concurrent callers (an extra row)")
    parser.add_argument("--profile", metavar="PATH",
                        help="profile Eddy's side, write the cProfile stats to PATH "
                             "and print the top functions")


POOL_BATCHES = 16  # Batches built before the clock starts and cycled through.


def document_pool(size: int) -> list[list[dict]]:
    """Batches of documents made up front, so neither side times making them."""
    return [[common.item_document(batch, index) for index in range(size)]
            for batch in range(POOL_BATCHES)]


def rocksdict_batches(args, scratch: Path, pool: list[list[dict]]):
    import msgpack
    from rocksdict import Options, Rdict, WriteBatch, WriteOptions

    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(scratch / "raw"), options)
    synced = WriteOptions()
    synced.sync = True
    packed_pool = [[msgpack.packb(document) for document in batch] for batch in pool]
    batches = itertools.count()

    def write_batch() -> None:
        batch = next(batches)
        write = WriteBatch(raw_mode=True)
        for index, value in enumerate(packed_pool[batch % POOL_BATCHES]):
            key = struct.pack(">QQ", batch, index)  # A 16-byte id, as Eddy's are.
            write.put(key, value)
        db.write(write, synced)

    try:
        return common.run_threads(1, args.seconds, args.warmup, lambda _: write_batch,
                                  unit="docs/s", scale=args.batch)
    finally:
        db.close()


def eddy_batches(args, scratch: Path, pool: list[list[dict]], callers: int = 1):
    try:
        import trio

        open_node = common.load_open_node()

        async def main():
            async with open_node(common.BENCH_APP_DIR, scratch / f"eddy-{callers}") as node:
                async def insert_batch(caller: int, sequence: int) -> None:
                    await node.mutation("bench:insert_batch",
                                        {"items": pool[(caller + sequence) % POOL_BATCHES]})
                return await common.run_tasks(callers, args.seconds, args.warmup, insert_batch,
                                              unit="docs/s", scale=args.batch)

        if not args.profile:
            return trio.run(main)
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(trio.run, main)
        finally:
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    except Exception as error:
        return common.eddy_unavailable(error, args.debug)


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    import msgpack

    pool = document_pool(args.batch)
    document_bytes = len(msgpack.packb(pool[0][0]))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="batches-") as scratch:
        print(common.describe_machine(scratch))
        baseline = (Unavailable("--skip-baseline") if args.skip_baseline
                    else rocksdict_batches(args, Path(scratch), pool))
        eddy = (Unavailable("--skip-eddy") if args.skip_eddy
                else eddy_batches(args, Path(scratch), pool))
        rows = [Row(f"insert {args.batch:,} x ~{document_bytes} B docs", baseline, eddy,
                    target=">= 0.25x")]
        if args.callers > 1 and not args.skip_eddy and not args.profile:
            rows.append(Row(f"extra: the same, eddy with {args.callers} callers", baseline,
                            eddy_batches(args, Path(scratch), pool, args.callers),
                            target="(not the issue's figure)"))
    common.print_report(
        f"Batched inserts, {args.batch:,} documents per transaction, {args.seconds:g} s",
        rows,
        ["baseline: rocksdict, one synced WriteBatch per batch, one caller; "
         "eddy: open_node, bench:insert_batch (one index), one caller "
         "(the extra row: N callers)"])


if __name__ == "__main__":
    main()
