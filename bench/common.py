"""What every benchmark shares: load runners, the documents, and the table.

Each benchmark measures a baseline (SQLite, raw rocksdict) and Eddy in the
same invocation, on the same machine, one after the other, and prints one
side-by-side table:

    workload | baseline | eddy | ratio | target

A figure is a rate over a measured window: each load runs for a warm-up
(not counted) and then for `--seconds`; operations that complete inside the
window count. Eddy's side may be unavailable while the node is being built;
then the table says "not available" with the reason instead of a number.

Benchmarks are not engine code: they read the wall clock directly.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_APP_DIR = Path(__file__).resolve().parent / "app"

PAYLOAD_FILLER = "eddy-bench-" * 8  # 88 characters of incompressible-enough text.


# ---------------------------------------------------------------------------
# Results and the table.


@dataclass
class Rate:
    """Operations completed in a measured window."""

    operations: int
    seconds: float
    unit: str = "tx/s"
    errors: dict[str, int] = field(default_factory=dict)
    scale: int = 1  # Items per operation (1,000 documents per batch, say).
    # CPU seconds the whole process (every thread) used in the window, when
    # measured: unlike the rate, barely moved by other work on the machine.
    cpu_seconds: float | None = None

    @property
    def per_second(self) -> float:
        return self.operations * self.scale / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return f"{self.per_second:,.0f} {self.unit}"


@dataclass
class Unavailable:
    """Eddy's side could not run (the node has not landed, or it failed)."""

    reason: str

    def __str__(self) -> str:
        return "not available"


Outcome = Rate | Unavailable


@dataclass
class Row:
    workload: str
    baseline: Outcome | None
    eddy: Outcome | None
    target: str = ""
    ratio_text: str | None = None  # Overrides eddy / baseline when given.

    def ratio(self) -> str:
        if self.ratio_text is not None:
            return self.ratio_text
        if isinstance(self.baseline, Rate) and isinstance(self.eddy, Rate) \
                and self.baseline.per_second > 0:
            return f"{self.eddy.per_second / self.baseline.per_second:.2f}x"
        return "-"


def format_table(rows: list[Row]) -> str:
    """The side-by-side table, as aligned plain text (also valid Markdown)."""
    header = ["workload", "baseline", "eddy", "ratio", "target"]
    cells = [[row.workload,
              "-" if row.baseline is None else str(row.baseline),
              "-" if row.eddy is None else str(row.eddy),
              row.ratio(), row.target or "-"] for row in rows]
    widths = [max(len(line[i]) for line in [header] + cells) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(header), rule] + [line(c) for c in cells])


def print_report(title: str, rows: list[Row], notes: list[str] = ()) -> None:
    """Prints the table, then Eddy's unavailability reasons and other notes."""
    print()
    print(f"## {title}")
    print()
    print(format_table(rows))
    reported = set()
    for row in rows:
        for side, outcome in (("baseline", row.baseline), ("eddy", row.eddy)):
            if isinstance(outcome, Unavailable) and (side, outcome.reason) not in reported:
                reported.add((side, outcome.reason))
                print(f"{side}: not available ({outcome.reason})")
            if isinstance(outcome, Rate) and outcome.cpu_seconds and outcome.operations:
                per_item = outcome.cpu_seconds / (outcome.operations * outcome.scale) * 1e6
                item = "operation" if outcome.scale == 1 else "item"
                print(f"{row.workload} ({side}): {per_item:.1f} µs of process CPU "
                      f"(all threads) per {item}")
            if isinstance(outcome, Rate) and outcome.errors:
                counts = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.errors.items()))
                print(f"{row.workload} ({side}) errors seen by callers: {counts}")
    for note in notes:
        print(note)
    print()


# ---------------------------------------------------------------------------
# Command line.


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] = None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds per load (default 10)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before measuring (default: a fifth of "
                             "--seconds, at most 2)")
    parser.add_argument("--skip-eddy", action="store_true",
                        help="measure only the baselines")
    parser.add_argument("--debug", action="store_true",
                        help="let an error on Eddy's side crash with its traceback")
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = min(2.0, args.seconds / 5)
    return args


def describe_machine(directory: str | None = None) -> str:
    """CPU count and fsync latency of the disk under `directory` (or the tmp dir)."""
    p50_ms = fsync_p50_ms(directory)
    return f"machine: {os.cpu_count()} cores, fsync p50 {p50_ms:.2f} ms (4 KiB appends)"


def fsync_p50_ms(directory: str | None = None, count: int = 200) -> float:
    samples = []
    with tempfile.NamedTemporaryFile(dir=directory) as handle:
        block = b"x" * 4096
        for _ in range(count):
            handle.write(block)
            handle.flush()
            start = time.perf_counter()
            os.fsync(handle.fileno())
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


# ---------------------------------------------------------------------------
# Documents.


def item_row(worker: int, sequence: int) -> tuple[str, str]:
    """A ~100-byte item: (key, payload)."""
    return f"w{worker:03d}-{sequence:010d}", PAYLOAD_FILLER


def item_document(batch: int, index: int) -> dict:
    """A ~140-byte document (as JSON) for the batch-insert benchmarks."""
    return {
        "key": f"b{batch:07d}-{index:05d}",
        "group": f"group-{index % 64:02d}",
        "payload": PAYLOAD_FILLER,
        "n": batch * 1000 + index,
    }


# ---------------------------------------------------------------------------
# Load runners.


class Window:
    """The measured window: a warm-up, then `seconds` during which work counts."""

    def __init__(self, seconds: float, warmup: float) -> None:
        now = time.perf_counter()
        self.measure_start = now + warmup
        self.end = self.measure_start + seconds

    def running(self) -> bool:
        return time.perf_counter() < self.end

    def counts(self) -> bool:
        """Whether an operation finishing now falls inside the window."""
        now = time.perf_counter()
        return self.measure_start <= now < self.end

    def measured_seconds(self) -> float:
        return self.end - self.measure_start


def run_threads(worker_count: int, seconds: float, warmup: float,
                make_worker: Callable[[int], Callable[[], None]],
                unit: str = "tx/s", scale: int = 1) -> Rate:
    """Runs `worker_count` threads, each calling its own operation in a loop.

    `make_worker(i)` runs in thread i before the clock starts (open a
    connection there) and returns the operation. An operation that raises ends
    the whole run with that error.
    """
    counts = [0] * worker_count
    failures: list[BaseException] = []
    window_box: list[Window] = []
    # The clock starts when the last thread is ready, not while connections open.
    ready = threading.Barrier(
        worker_count, action=lambda: window_box.append(Window(seconds, warmup)))

    def work(i: int) -> None:
        try:
            operation = make_worker(i)
            ready.wait()
        except threading.BrokenBarrierError:
            return  # Another thread failed to start; its error is reported.
        except BaseException as error:  # Reported below, after every thread stops.
            failures.append(error)
            ready.abort()
            return
        window = window_box[0]
        try:
            while window.running() and not failures:
                operation()
                if window.counts():
                    counts[i] += 1
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,), daemon=True)
               for i in range(worker_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return Rate(sum(counts), window_box[0].measured_seconds(), unit=unit, scale=scale)


async def run_tasks(task_count: int, seconds: float, warmup: float,
                    operation: Callable[[int, int], Awaitable[None]],
                    classify_error: Callable[[BaseException], str | None] = lambda e: None,
                    unit: str = "tx/s", scale: int = 1) -> Rate:
    """Runs `task_count` trio tasks, each awaiting `operation(task, sequence)` in a loop.

    An error for which `classify_error` returns a name is counted under that
    name and the task goes on (a conflict error seen by a caller, say); any
    other error ends the run.
    """
    import trio

    counts = [0] * task_count
    errors: dict[str, int] = {}
    window = Window(seconds, warmup)

    async def work(i: int) -> None:
        sequence = 0
        while window.running():
            try:
                await operation(i, sequence)
            except Exception as error:
                name = classify_error(error)
                if name is None:
                    raise
                errors[name] = errors.get(name, 0) + 1
            else:
                if window.counts():
                    counts[i] += 1
            sequence += 1

    cpu: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_measure_cpu, window, cpu)
        for i in range(task_count):
            nursery.start_soon(work, i)
    return Rate(sum(counts), window.measured_seconds(), unit=unit, errors=errors, scale=scale,
                cpu_seconds=cpu[0] if cpu else None)


async def _measure_cpu(window: Window, out: list[float]) -> None:
    """Appends the process CPU time (all threads) spent during `window`."""
    import trio

    await trio.sleep(max(0.0, window.measure_start - time.perf_counter()))
    start = time.process_time()
    await trio.sleep(max(0.0, window.end - time.perf_counter()))
    out.append(time.process_time() - start)


def eddy_unavailable(error: BaseException, debug: bool) -> Unavailable:
    """Turns an error on Eddy's side into a table entry (or re-raises with --debug)."""
    if debug:
        raise error
    detail = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(detail[-1].filename).name}:{detail[-1].lineno}" if detail else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return Unavailable(f"{type(error).__name__}: {message}{where}")


def load_open_node():
    """`actors.open_node`, or raises ImportError when the node has not landed."""
    import actors

    open_node = getattr(actors, "open_node", None)
    if open_node is None:
        from actors.node import open_node  # The node module, if the package skips the export.
    return open_node


def conflict_classifier() -> Callable[[BaseException], str | None]:
    """Counts Eddy's conflict errors (and only those) as caller-visible errors."""
    from engine.errors import EddyError, ErrorCode

    def classify(error: BaseException) -> str | None:
        if isinstance(error, EddyError) and error.code == ErrorCode.CONFLICT:
            return "conflict"
        return None

    return classify


def answers_query_ts(port: int) -> bool:
    """Whether a server on 127.0.0.1:`port` answers `POST /api/query_ts`
    (the readiness probe of the benchmarks that start `eddy dev`)."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("POST", "/api/query_ts", body=b"{}",
                           headers={"content-type": "application/json"})
        connection.getresponse().read()
        connection.close()
        return True
    except OSError:
        return False
