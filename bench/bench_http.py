"""Durable single-row mutations over HTTP, from 64 concurrent keep-alive clients.

Baseline: bench/sqlite_http_server.py, SQLite (WAL, synchronous=FULL, one
row per transaction) behind the same HTTP stack Eddy uses (hypercorn's trio
worker, an ASGI app). Eddy: `eddy dev bench/app` as a real process, called
at `POST /api/mutation` with `bench:insert`. The load generator is the same
for both: 64 threads in this process, each with its own HTTP/1.1 keep-alive
connection. Each server runs in its own process, on the same two cores as the
load generator, so compare the two figures with each other and with the
embedded figures of bench_mutations.py: the gap is the HTTP layer's cost.

Usage:
    python bench/bench_http.py --seconds 10
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Row, Unavailable  # noqa: E402

SERVER_START_S_MAX = 60  # Starting includes loading the app and opening RocksDB.


def add_arguments(parser) -> None:
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--dir", default=str(common.REPO_ROOT / "bench" / "out"),
                        help="parent folder of the scratch databases")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + SERVER_START_S_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        if common.answers_query_ts(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {SERVER_START_S_MAX} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load(args, port: int):
    """Runs the callers against the server on `port`; the Rate of acknowledged mutations."""
    def make_worker(worker: int):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        sequence = itertools.count()

        def call() -> None:
            key, payload = common.item_row(worker, next(sequence))
            body = json.dumps({"path": "bench:insert", "format": "json",
                               "args": {"key": key, "payload": payload}})
            connection.request("POST", "/api/mutation", body=body,
                               headers={"content-type": "application/json"})
            response = connection.getresponse()
            reply = response.read()
            if response.status != 200 or json.loads(reply).get("status") != "success":
                raise RuntimeError(f"HTTP {response.status}: {reply[:200]!r}")
        return call

    return common.run_threads(args.callers, args.seconds, args.warmup, make_worker)


def measure(args, command: list[str], port: int, log_path: Path):
    """Starts a server, loads it, stops it; a Rate, or Unavailable with the reason."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=common.REPO_ROOT)
    try:
        wait_until_serving(process, port)
        return load(args, port)
    except Exception as error:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        if tail:
            error = RuntimeError(f"{error}; server said: {tail[0]}")
        return common.eddy_unavailable(error, args.debug)
    finally:
        stop(process)


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="http-") as scratch_text:
        scratch = Path(scratch_text)
        print(common.describe_machine(scratch_text))
        port = free_port()
        baseline = measure(args, [sys.executable, str(Path(__file__).parent / "sqlite_http_server.py"),
                                  "--port", str(port), "--db", str(scratch / "http.sqlite")],
                           port, scratch / "sqlite-server.log")
        if args.skip_eddy:
            eddy = Unavailable("--skip-eddy")
        else:
            port = free_port()
            eddy_command = [str(Path(sys.executable).parent / "eddy"), "dev",
                            str(common.BENCH_APP_DIR), "--port", str(port),
                            "--data", str(scratch / "eddy")]
            if not os.path.exists(eddy_command[0]):
                eddy_command[:1] = [sys.executable, "-m", "wire.cli"]
            eddy = measure(args, eddy_command, port, scratch / "eddy-server.log")
    common.print_report(
        f"Durable single-row mutations over HTTP, {args.callers} callers, {args.seconds:g} s",
        [Row("POST /api/mutation, ~100 B row", baseline, eddy, target="(report)")],
        ["baseline: SQLite WAL, synchronous=FULL behind hypercorn (trio) + an ASGI app; "
         "eddy: eddy dev; load: one keep-alive connection per caller thread"])


if __name__ == "__main__":
    main()
