"""Log-replay debugging (issue 5): rebuild rate, time travel, `eddy log` to a pipe.

Three measurements, each beside a baseline taken in the same run:

1. Rebuild: derived state rebuilt from the log (what `eddy replay`, every
   history command and every node start do: `Node.recover`), in documents/s.
   Baseline: a raw rocksdict scan (keys and values, no decoding) of the same
   `log` column family. Targets: >= 100,000 docs/s and >= 10% of the scan.
   The log: `--documents` inserts into `items` (bench/app's schema, one
   index), 10 per commit. Each side is the best of `--repeats` runs, the
   two alternating (the scan takes a few tens of ms, so one run of it on a
   shared machine is mostly noise).
2. Time travel: the same query (`counters:first`, 100 counters via an
   index, and `counters:value`, one get) at the head and at a ts
   `--commits` commits in the past. The log: 1,000 counters, then
   `--commits` commits each bumping one counter, then 1,000 more (so the
   past ts is that far from the head). Target: past <= 2x head.
3. `eddy log APP --data DIR | cat > /dev/null` over that log, in commits/s,
   wall time of the whole process. Baseline: a raw rocksdict scan of the
   `commits` column family. Target: >= 50,000 commits/s.

Both logs are written straight into a store with engine/commits.py's record
format (no functions run), so building a million commits takes seconds.

Usage:
    python bench/bench_history.py                       # 1,000,000 commits, 200,000 docs
    python bench/bench_history.py --commits 100000 --documents 50000
"""

from __future__ import annotations

import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import Rate, Row  # noqa: E402

HISTORY_APP_DIR = Path(__file__).resolve().parent / "app_history"
COUNTER_COUNT = 1000
DOCUMENTS_PER_COMMIT = 10
QUERY_REPEATS = 300


def add_arguments(parser) -> None:
    parser.add_argument("--commits", type=int, default=1_000_000,
                        help="commits between the past ts and the head (default 1,000,000)")
    parser.add_argument("--documents", type=int, default=200_000,
                        help="documents in the rebuild log (default 200,000)")
    parser.add_argument("--dir", default=str(common.REPO_ROOT / "bench" / "out"),
                        help="parent folder of the scratch data folders")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rebuild and scan runs, alternating; the best of each counts (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the rebuild and of `eddy log`'s loop")


# ----- writing logs ----------------------------------------------------------------


class LogWriter:
    """Writes commit records and log entries in the node's own format.

    Inserts go through a shard with the app's indexes (`app_dir`), as a
    node's commits do, for the key parts their log entries carry."""

    def __init__(self, data_dir: Path, app_dir: Path) -> None:
        from actors.app import load_app
        from actors.node import _index_definitions
        from actors.storage import RocksStore
        from engine.catalog import Catalog

        self.store = RocksStore(str(data_dir))
        self.ops: list = []
        self.ts = 1_700_000_000_000_000_000
        self.shards = Catalog()
        self.shards.set_index_definitions(_index_definitions(load_app(str(app_dir)).schema))

    def commit(self, path: str, args: dict, number: int, writes: list, created=(),
               inserted: list | None = None) -> int:
        """`inserted`: the documents of `writes`, when they are all new
        (their key parts are logged); None for updates."""
        from engine.catalog import Catalog
        from engine.commits import CallInfo, Commit, commit_ops
        from engine.readsets import ReadSet

        self.ts += 1000
        for name, table_number in created:
            self.shards.create(name, table_number)
        key_parts = None
        if inserted is not None:
            shard = self.shards.shards[number]
            parts = shard.apply_columns(self.ts, [i for i, _ in writes], inserted,
                                        [p for _, p in writes])
            key_parts = {number: (shard.key_digest, parts)}
        commit = Commit(ts=self.ts, snapshot_ts=self.ts - 1000, call=CallInfo(path, args),
                        seed=self.ts * 7 % (1 << 64), now_ms=self.ts / 1e6, read_set=ReadSet(),
                        writes={number: writes}, created_tables=list(created),
                        key_parts=key_parts)
        catalog = Catalog()
        for name, table_number in created:
            catalog.create(name, table_number)
        self.ops.extend(commit_ops(commit, catalog))
        if len(self.ops) >= 20_000:
            self.flush()
        return self.ts

    def flush(self) -> None:
        self.store.write_nowait(self.ops, sync=False)
        self.ops.clear()

    def close(self) -> None:
        self.flush()
        self.store.close()


def write_items_log(data_dir: Path, document_count: int) -> None:
    from engine import ids, values

    writer = LogWriter(data_dir, common.BENCH_APP_DIR)
    number = 10_001
    created = [("items", number)]
    for start in range(0, document_count, DOCUMENTS_PER_COMMIT):
        writes, documents = [], []
        for n in range(start, min(start + DOCUMENTS_PER_COMMIT, document_count)):
            internal_id = n.to_bytes(16, "big")
            document = {"_id": ids.encode_id(number, internal_id),
                        "_creationTime": (writer.ts + 1000) / 1e6,
                        **common.item_document(n // 1000, n % 1000)}
            writes.append((internal_id, values.pack(document)))
            documents.append(document)
        writer.commit("bench:insert_batch", {"count": len(writes)}, number, writes, created,
                      documents)
        created = []
    writer.close()


def write_counters_log(data_dir: Path, commit_count: int) -> tuple[int, int, str]:
    """Returns (past ts, head ts, one counter's id)."""
    from engine import ids, values

    writer = LogWriter(data_dir, HISTORY_APP_DIR)
    number = 10_001
    documents = []
    for n in range(COUNTER_COUNT):
        internal_id = (n * 7919 + 1).to_bytes(16, "big")
        documents.append({"_id": ids.encode_id(number, internal_id),
                          "_creationTime": writer.ts / 1e6, "name": f"c{n:04d}", "value": 0})
    writer.commit("counters:create", {}, number,
                  [(ids.decode_id(d["_id"])[1], values.pack(d)) for d in documents],
                  [("counters", number)], [dict(d) for d in documents])

    def bump(i: int) -> int:
        document = documents[i % COUNTER_COUNT]
        document["value"] += 1
        return writer.commit("counters:bump", {"name": document["name"]}, number,
                             [(ids.decode_id(document["_id"])[1], values.pack(document))])

    for i in range(COUNTER_COUNT):
        past_ts = bump(i)
    for i in range(commit_count):
        bump(i)
    writer.close()
    return past_ts, writer.ts, documents[0]["_id"]


# ----- measurements ---------------------------------------------------------------------


def raw_scan_seconds(data_dir: Path, cf: str) -> tuple[float, int, float]:
    """(wall seconds, entries, CPU seconds) of iterating a column family's keys
    and values with plain rocksdict."""
    import rocksdict

    from engine.world import COLUMN_FAMILIES

    families = {name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES}
    db = rocksdict.Rdict(str(data_dir / "db"), rocksdict.Options(raw_mode=True),
                         column_families=families, access_type=rocksdict.AccessType.read_only())
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        count = total = 0
        iterator = db.get_column_family(cf).iter()
        iterator.seek_to_first()
        while iterator.valid():
            total += len(iterator.key()) + len(iterator.value())
            count += 1
            iterator.next()
        return time.perf_counter() - start, count, time.process_time() - cpu_start
    finally:
        db.close()


def rebuild_seconds(app_dir: Path, data_dir: Path, profile: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a rebuild."""
    from actors.history import open_history

    with open_history(app_dir, data_dir) as history:
        start, cpu_start = time.perf_counter(), time.process_time()
        history.node()
        elapsed = time.perf_counter() - start, time.process_time() - cpu_start
    if profile:  # a second rebuild under the profiler, after the measured one
        profiler = cProfile.Profile()
        with open_history(app_dir, data_dir) as history:
            profiler.enable()
            history.node()
            profiler.disable()
        print_profile(profiler, "rebuild (Node.recover)")
    return elapsed


def time_travel(app_dir: Path, data_dir: Path, past_ts: int, counter_id: str) -> dict:
    """Mean seconds per query at the head and at past_ts, for each query."""
    import trio

    from actors.history import open_history

    with open_history(app_dir, data_dir) as history:
        node = history.node()
        head_ts = history.head_ts

        async def timed(path: str, args: dict, ts: int) -> float:
            for _ in range(20):  # warm up
                await node.call("query", path, args, at_ts=ts)
            start = time.perf_counter()
            for _ in range(QUERY_REPEATS):
                await node.call("query", path, args, at_ts=ts)
            return (time.perf_counter() - start) / QUERY_REPEATS

        async def main() -> dict:
            found = {}
            for label, path, args in (("100 counters via an index", "counters:first", {"count": 100}),
                                      ("one get by id", "counters:value", {"id": counter_id})):
                found[label] = (await timed(path, args, head_ts), await timed(path, args, past_ts))
            return found
        return trio.run(main)


def eddy_log_seconds(app_dir: Path, data_dir: Path) -> float:
    command = f"{sys.executable} -m wire.cli log {app_dir} --data {data_dir} | cat > /dev/null"
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True, cwd=common.REPO_ROOT)
    return time.perf_counter() - start


def profile_log_loop(app_dir: Path, data_dir: Path, limit: int = 200_000) -> None:
    from actors.history import open_history
    from wire.cli.history import _text_line

    profiler = cProfile.Profile()
    with open_history(app_dir, data_dir) as history:
        sink = io.StringIO()
        profiler.enable()
        for count, commit in enumerate(history.commits()):
            sink.write(_text_line(commit))
            if count >= limit:
                break
        profiler.disable()
    print_profile(profiler, f"eddy log loop, first {limit:,} commits")


def print_profile(profiler: cProfile.Profile, title: str) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print(f"\n### profile: {title}\n")
    print("\n".join(out.getvalue().splitlines()[:30]))


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="history-") as scratch:
        scratch = Path(scratch)
        print(common.describe_machine(str(scratch)))
        items = scratch / "items"
        start = time.perf_counter()
        write_items_log(items, args.documents)
        print(f"wrote {args.documents:,} documents in {time.perf_counter() - start:.1f} s")
        scan_runs, rebuild_runs = [], []
        for run in range(args.repeats):
            scan_s, entries, scan_cpu_s = raw_scan_seconds(items, "log")
            scan_runs.append((scan_s, scan_cpu_s))
            rebuild_runs.append(rebuild_seconds(common.BENCH_APP_DIR, items,
                                                args.profile and run == args.repeats - 1))
        (scan_s, scan_cpu_s), (rebuild_s, rebuild_cpu_s) = min(scan_runs), min(rebuild_runs)
        # CPU time as well: on a shared machine the wall time of a 50 ms scan
        # says more about the neighbours than about the scan.
        print(f"rebuild CPU {rebuild_cpu_s:.3f} s, raw scan CPU {scan_cpu_s:.3f} s "
              f"({scan_cpu_s / rebuild_cpu_s:.3f}x), in the runs with the best wall times")
        # The least CPU of each side over the runs: a neighbour's burst
        # inflates CPU time too (caches, frequency), if less than wall time.
        least_rebuild_cpu_s = min(cpu_s for _, cpu_s in rebuild_runs)
        least_scan_cpu_s = min(cpu_s for _, cpu_s in scan_runs)
        print(f"least CPU over {args.repeats} runs: rebuild {least_rebuild_cpu_s:.3f} s "
              f"({args.documents / least_rebuild_cpu_s:,.0f} docs per CPU s), raw scan "
              f"{least_scan_cpu_s:.3f} s ({least_scan_cpu_s / least_rebuild_cpu_s:.3f}x)")
        scan = Rate(args.documents, scan_s, unit="docs/s")
        rebuild = Rate(args.documents, rebuild_s, unit="docs/s")
        rows.append(Row(f"rebuild {args.documents:,} docs ({entries:,} log entries)", scan, rebuild,
                        target=">= 100,000 docs/s and >= 0.10x"))

        counters = scratch / "counters"
        start = time.perf_counter()
        past_ts, head_ts, counter_id = write_counters_log(counters, args.commits)
        commit_count = args.commits + COUNTER_COUNT + 1
        print(f"wrote {commit_count:,} commits in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        for label, (head_s, past_s) in time_travel(HISTORY_APP_DIR, counters, past_ts,
                                                   counter_id).items():
            rows.append(Row(f"{label}: at head vs {args.commits:,} commits back",
                            Rate(1, head_s, unit="q/s"), Rate(1, past_s, unit="q/s"),
                            target="past <= 2x head",
                            ratio_text=f"{past_s / head_s:.2f}x time"))
        print(f"time travel (including the rebuild of {commit_count:,} commits): "
              f"{time.perf_counter() - start:.1f} s")
        commits_scan_s, _, _ = raw_scan_seconds(counters, "commits")
        log_s = eddy_log_seconds(HISTORY_APP_DIR, counters)
        rows.append(Row(f"eddy log | cat, {commit_count:,} commits",
                        Rate(commit_count, commits_scan_s, unit="commits/s"),
                        Rate(commit_count, log_s, unit="commits/s"), target=">= 50,000 commits/s"))
        if args.profile:
            profile_log_loop(HISTORY_APP_DIR, counters)
    common.print_report(
        "Log-replay debugging", rows,
        ["rebuild baseline: raw rocksdict iteration of the log column family (no decoding); "
         f"eddy: Node.recover via open_history(...).node(); best of {args.repeats} alternating "
         "runs each",
         "time travel: mean of 300 queries each (the row's two rates are head and past; ratio is "
         "past time / head time)",
         "eddy log baseline: raw rocksdict iteration of the commits column family; eddy: the whole "
         "process, start-up included"])


if __name__ == "__main__":
    main()
