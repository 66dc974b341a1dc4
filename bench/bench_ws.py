"""Durable single-document mutations/s from 64 concurrent WebSocket clients.

- Eddy: `eddy dev bench/app` as a real process; 64 clients of Eddy's own
  Python client (`from wire import connect`, msgpack frames), each on its
  own connection, each calling `bench:insert` (one ~100-byte document) in a
  loop. A call counts when it resolves, which is after the mutation is
  durable and a Transition reflecting it arrived. The clients run in
  `--client-processes` processes (default 1: one process takes the replies
  of many connections per wake-up, and the client costs about 70 us of CPU
  per mutation, so one process is not the limit below some 14,000/s; two
  spent 5-25% more CPU per mutation, docs/performance.md section 5).
- Baseline: a throw-away PostgreSQL (bench/postgres.py, fsync on,
  `synchronous_commit=on`) and 64 Python threads, each with its own psycopg
  connection, each doing `INSERT` + `pg_notify` in one transaction in a loop;
  one more connection LISTENs and drains the notifications.

Both servers run on this machine, on the same cores as the load. Targets
(issue 3): Eddy >= 8,000 mutations/s and >= 4x PostgreSQL.

Usage:
    python bench/bench_ws.py --seconds 10
    python bench/bench_ws.py --seconds 10 --client-processes 2
    python bench/bench_ws.py --seconds 10 --skip-baseline --count-server

Notes give the CPU per mutation of the server and of the client processes
(each process's CPU from the barrier to its end over every mutation that
resolved meanwhile, warm-up included): on a shared machine they move less
than the rate.

`--count-server` also prints what does not depend on the machine: the
server's Python calls (`sys.setprofile` call events of its main thread,
coroutine resumptions included) and trio task steps per mutation in the
window, and the most called functions (it slows the server, so its rate is
not the row's).

This module also holds what bench_live.py shares: `EddyProcess` (a real
`eddy dev` on a free loopback port) and `process_cpu_s` (a process's CPU
seconds from /proc).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Rate, Row, Unavailable  # noqa: E402

SERVER_START_S_MAX = 60  # Loading the app and opening RocksDB.
CONNECT_S_MAX = 60  # 64 WebSocket handshakes on a busy machine.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
COUNTED_FUNCTIONS = 250  # `--count-server` lists this many functions


# ---------------------------------------------------------------------------
# What bench_live.py shares.


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, all its threads
    (/proc/<pid>/stat fields 14 and 15; resolution 1/CLK_TCK, 10 ms here)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EddyProcess:
    """`eddy dev APP --data DATA` on a free loopback port, logs to a file."""

    def __init__(self, app_dir: Path, data_dir: Path, log_path: Path,
                 profile_path: str | None = None, count_path: str | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        command = [sys.executable, "-m", "wire.cli"]
        if profile_path:  # cProfile writes the file when the server exits on SIGTERM.
            command = [sys.executable, "-m", "cProfile", "-o", profile_path, "-m", "wire.cli"]
        if count_path:  # counts between SIGUSR1 and SIGUSR2 (run_counted_server)
            command = [sys.executable, str(Path(__file__).resolve()), "counted-server", count_path]
        command += ["dev", str(app_dir), "--port", str(self.port), "--data", str(data_dir)]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=common.REPO_ROOT)
        self._wait_until_serving()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + SERVER_START_S_MAX
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eddy dev exited with code {self.process.returncode}: "
                                   f"{self.log_tail()}")
            if common.answers_query_ts(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"eddy dev did not answer within {SERVER_START_S_MAX} s")

    def log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def open_eddy(app_dir: Path, scratch: Path, name: str = "eddy",
              profile_path: str | None = None,
              count_path: str | None = None) -> Iterator[EddyProcess]:
    """A fresh `eddy dev` on `app_dir` with its data in `scratch/name`, stopped
    after; with `profile_path`, under cProfile (stats written there at exit);
    with `count_path`, counting (`run_counted_server`)."""
    server = EddyProcess(app_dir, scratch / name, scratch / f"{name}.log", profile_path,
                         count_path)
    if profile_path:
        print(f"eddy: server under cProfile, stats to {profile_path}", flush=True)
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def open_clients(url: str, count: int):
    """`count` clients of Eddy's Python client, each on its own connection.

    (No deadline here: a cancel scope around nurseries that an exit stack
    opens one by one would be misnested; callers bound the wait instead.)
    """
    from wire import connect

    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(url)) for _ in range(count)]


# ---------------------------------------------------------------------------
# Eddy: client processes.


def _eddy_client_process(url: str, first_worker: int, worker_count: int, seconds: float,
                         warmup: float, barrier, results) -> None:
    """One load process: `worker_count` connections, one caller on each."""
    import trio

    async def main() -> tuple[int, str | None, float, float, int]:
        counts = [0] * worker_count
        resolved = [0]
        async with open_clients(url, worker_count) as clients:
            await trio.to_thread.run_sync(barrier.wait)
            window = common.Window(seconds, warmup)
            cpu_start = time.process_time()

            async def work(i: int) -> None:
                worker = first_worker + i
                for sequence in itertools.count():
                    if not window.running():
                        return
                    key, payload = common.item_row(worker, sequence)
                    await clients[i].mutation("bench:insert", {"key": key, "payload": payload})
                    resolved[0] += 1
                    if window.counts():
                        counts[i] += 1

            async with trio.open_nursery() as nursery:
                for i in range(worker_count):
                    nursery.start_soon(work, i)
            cpu_s = time.process_time() - cpu_start
        return sum(counts), None, cpu_s / (seconds + warmup), cpu_s, resolved[0]

    try:
        results.put(trio.run(main))
    except BaseException as error:  # Reported by the parent.
        barrier.abort()
        results.put((0, f"{type(error).__name__}: {error}", 0.0, 0.0, 0))


def eddy_load(args, scratch: Path) -> tuple[Rate | Unavailable, list[str]]:
    """Runs the client processes against a fresh `eddy dev`; the rate and notes."""
    notes: list[str] = []
    count_path = str(scratch / "counts.txt") if args.count_server else None
    try:
        with open_eddy(common.BENCH_APP_DIR, scratch, profile_path=args.profile_server,
                       count_path=count_path) as server:
            context = multiprocessing.get_context("spawn")
            processes_count = max(1, min(args.client_processes, args.callers))
            barrier = context.Barrier(processes_count + 1)
            results = context.Queue()
            shares = [args.callers // processes_count
                      + (1 if p < args.callers % processes_count else 0)
                      for p in range(processes_count)]
            processes = []
            for p, share in enumerate(shares):
                process = context.Process(target=_eddy_client_process, args=(
                    server.url, sum(shares[:p]), share, args.seconds, args.warmup,
                    barrier, results))
                process.start()
                processes.append(process)
            barrier.wait(timeout=CONNECT_S_MAX * 2)
            cpu_start, wall_start = server.cpu_s(), time.perf_counter()
            if count_path:  # the clients' window starts as they pass the barrier too
                time.sleep(args.warmup)
                server.process.send_signal(signal.SIGUSR1)
                time.sleep(args.seconds)
                server.process.send_signal(signal.SIGUSR2)
            outcomes = [results.get(timeout=args.seconds + args.warmup + 120)
                        for _ in processes]
            cpu_used = server.cpu_s() - cpu_start
            wall = time.perf_counter() - wall_start
            for process in processes:
                process.join()
            failures = [outcome[1] for outcome in outcomes if outcome[1]]
            if failures:
                raise RuntimeError(f"{failures[0]}; server said: {server.log_tail()}")
            client_loads = ", ".join(f"{outcome[2]:.0%}" for outcome in outcomes)
            if count_path:
                notes.append(_counts_note(count_path, sum(outcome[0] for outcome in outcomes)))
            notes.append(f"eddy: server process CPU {cpu_used / wall:.0%} of one core "
                         f"over the run; {processes_count} client processes at "
                         f"{client_loads} of one core each")
            resolved = max(1, sum(outcome[4] for outcome in outcomes))
            notes.append(f"eddy: CPU per mutation (barrier to end, {resolved:,} mutations): "
                         f"server {cpu_used / resolved * 1e6:.0f} us, clients "
                         f"{sum(outcome[3] for outcome in outcomes) / resolved * 1e6:.0f} us")
            return Rate(sum(outcome[0] for outcome in outcomes), args.seconds), notes
    except Exception as error:
        return common.eddy_unavailable(error, args.debug), notes


def _counts_note(count_path: str, mutation_count: int) -> str:
    deadline = time.monotonic() + 10  # the server writes on SIGUSR2
    while not Path(count_path).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    calls, steps = map(int, Path(count_path).read_text().split())
    per = max(1, mutation_count)
    top = []
    for line in Path(count_path + ".functions").read_text().splitlines()[:COUNTED_FUNCTIONS]:
        count, name = line.split("\t", 1)
        top.append(f"\n  {int(count) / per:6.2f}  {name}")
    return (f"eddy (--count-server, the server slowed by counting): per mutation in the "
            f"window {calls / per:,.0f} Python calls, {steps / per:.2f} trio task steps "
            f"({mutation_count:,} mutations); the most called, per mutation:{''.join(top)}")


def run_counted_server(count_path: str, argv: list[str]) -> int:
    """`eddy dev` (argv as for wire.cli) that counts from SIGUSR1 to SIGUSR2 the
    Python call events of its main thread (sys.setprofile; a coroutine resumed
    counts as a call) and trio's task steps, then writes "calls steps" to
    `count_path`."""
    import trio

    sys.path.insert(0, str(common.REPO_ROOT))  # run as a script: the repo is not on the path
    import wire.cli as cli

    import collections

    counts = {"calls": 0, "steps": 0, "on": False}
    by_code: collections.Counter = collections.Counter()

    def on_event(frame, event, arg) -> None:
        if event == "call":
            counts["calls"] += 1
            by_code[frame.f_code] += 1

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task) -> None:
            if counts["on"]:
                counts["steps"] += 1

    def start(*_) -> None:
        counts.update(calls=0, steps=0, on=True)
        by_code.clear()
        sys.setprofile(on_event)

    def stop(*_) -> None:
        sys.setprofile(None)
        counts["on"] = False
        # Which functions the calls were, most first (`count_path`.functions).
        Path(count_path + ".functions").write_text("".join(
            f"{count}\t{code.co_filename.replace(str(common.REPO_ROOT) + '/', '')}:"
            f"{code.co_firstlineno} {code.co_qualname}\n"
            for code, count in by_code.most_common()))
        Path(count_path).write_text(f"{counts['calls']} {counts['steps']}\n")

    serve_dev = cli.serve_dev

    async def counted_serve_dev(*args, **options):
        trio.lowlevel.add_instrument(Steps())
        signal.signal(signal.SIGUSR1, start)
        signal.signal(signal.SIGUSR2, stop)
        return await serve_dev(*args, **options)

    cli.serve_dev = counted_serve_dev
    return cli.main(argv)


# ---------------------------------------------------------------------------
# PostgreSQL.


def postgres_load(args, scratch: Path) -> tuple[Rate | Unavailable, list[str]]:
    """64 threads of INSERT + pg_notify in one transaction; a listener drains."""
    import psycopg

    import postgres

    notes = []
    with postgres.open_postgres(args.dir) as server:
        with psycopg.connect(server.conninfo, autocommit=True) as setup:
            setup.execute("CREATE TABLE items (id bigserial PRIMARY KEY, key text NOT NULL, "
                          "payload text NOT NULL)")
            setup.execute("CREATE INDEX items_by_key ON items (key)")  # as bench:insert's by_key
        stop = threading.Event()
        received = [0]

        def listen() -> None:
            with psycopg.connect(server.conninfo, autocommit=True) as connection:
                connection.execute("LISTEN items")
                while not stop.is_set():
                    for _ in connection.notifies(timeout=0.2):
                        received[0] += 1

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()

        def make_worker(worker: int):
            connection = psycopg.connect(server.conninfo, autocommit=True)
            sequence = itertools.count()

            def insert() -> None:
                key, payload = common.item_row(worker, next(sequence))
                with connection.transaction():
                    connection.execute("INSERT INTO items (key, payload) VALUES (%s, %s)",
                                       (key, payload))
                    connection.execute("SELECT pg_notify('items', %s)", (key,))
            return insert

        rate = common.run_threads(args.callers, args.seconds, args.warmup, make_worker)
        time.sleep(0.5)
        stop.set()
        listener.join()
        notes.append(f"baseline: {server.version}; notifications received by the "
                     f"listener: {received[0]:,}")
    return rate, notes


def add_arguments(parser) -> None:
    parser.add_argument("--callers", type=int, default=64,
                        help="concurrent clients (connections for Eddy, threads for PostgreSQL)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the Eddy clients are spread over (default 1)")
    parser.add_argument("--count-server", action="store_true",
                        help="also count the server's Python calls and trio task steps "
                             "per mutation (slows the server)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="measure only Eddy (the baseline column says skipped)")
    add_common_arguments(parser)


def add_common_arguments(parser) -> None:
    """Arguments bench_live.py shares."""
    parser.add_argument("--dir", default=str(common.REPO_ROOT / "bench" / "out"),
                        help="parent folder of the scratch databases")
    parser.add_argument("--profile-server", metavar="PATH", default=None,
                        help="run eddy dev under cProfile and write its stats to PATH "
                             "(read with `python -m pstats PATH`); slows the server down")


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ws-") as scratch_text:
        scratch = Path(scratch_text)
        print(common.describe_machine(scratch_text))
        if args.skip_baseline:
            baseline, notes = Unavailable("--skip-baseline"), []
        else:
            baseline, notes = postgres_load(args, scratch)
        if args.skip_eddy:
            eddy, eddy_notes = Unavailable("--skip-eddy"), []
        else:
            eddy, eddy_notes = eddy_load(args, scratch)
        rows = [Row("insert ~100 B doc, mutations/s", baseline, eddy,
                    target=">= 8,000/s and >= 4.00x")]
        common.print_report(
            f"Durable single-document mutations over WebSocket, {args.callers} clients, "
            f"{args.seconds:g} s", rows,
            notes + eddy_notes + [
                "baseline: PostgreSQL INSERT + pg_notify in one transaction, fsync on, "
                "synchronous_commit=on, one psycopg connection per thread; eddy: eddy dev, "
                "Eddy's client (msgpack), one connection per caller, bench:insert"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["counted-server"]:
        sys.exit(run_counted_server(sys.argv[2], sys.argv[3:]))
    main()
