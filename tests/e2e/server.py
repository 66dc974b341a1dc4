"""A real `eddy dev` process on a loopback port, for end-to-end tests.

`EddyServer` starts the server as a subprocess (the same Python, `-m
wire.cli`, so the tests need no installed console script), waits until it
answers `/api/query_ts`, and stops it gracefully (SIGTERM) or with SIGKILL.
Its stdout and stderr go to files in the test's folder rather than pipes, so
a chatty server can never block on a full pipe and a test can read the logs
after the fact.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # Opening RocksDB and loading a small app takes well under a second.
STOP_TIMEOUT_S = 15.0  # Graceful shutdown allows in-flight requests 5 s.
REQUEST_TIMEOUT_S = 30.0


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def eddy_command(*args: str) -> list[str]:
    """The command line for `eddy ARGS...` with this interpreter."""
    return [sys.executable, "-m", "wire.cli", *args]


class EddyServer:
    """One app served by `eddy dev`, restartable on the same data folder.

    Args:
        app_dir: the app folder.
        data_dir: the data folder, kept across restarts.
        log_dir: where stdout and stderr of each run go (`run-N.out`/`.err`).
    """

    def __init__(self, app_dir: Path, data_dir: Path, log_dir: Path) -> None:
        self.app_dir = app_dir
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.run_count = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the server on a fresh port and waits until it answers."""
        assert self.process is None, "already running"
        self.run_count += 1
        self.port = free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout = open(self.stdout_path, "wb")
        stderr = open(self.stderr_path, "wb")
        with stdout, stderr:
            self.process = subprocess.Popen(
                eddy_command("dev", str(self.app_dir), "--port", str(self.port),
                             "--data", str(self.data_dir)),
                cwd=REPO_ROOT, stdout=stdout, stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.wait_until_ready()

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"run-{self.run_count}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"run-{self.run_count}.err"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eddy dev exited with {self.process.returncode}:\n"
                                   f"{self.stderr()}")
            try:
                post(self.url + "/api/query_ts", None, timeout_s=1.0)
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"eddy dev did not answer within {START_TIMEOUT_S} s:\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stops the server with `sig` (SIGTERM, or SIGINT as Ctrl-C sends) and
        returns its exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process = None
        return code

    def kill(self) -> None:
        """Kills the server with SIGKILL (`kill -9`): no chance to flush anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Kills the server if it runs, then starts it again on the same data."""
        self.kill()
        self.start()

    def call(self, kind: str, path: str, args: dict[str, Any] | None = None,
             **options: Any) -> Any:
        """Calls a function over HTTP; returns the value or raises CallFailed."""
        body = post(self.url + f"/api/{kind}",
                    {"path": path, "args": args or {}, "format": "json"}, **options)
        if body.get("status") != "success":
            raise CallFailed(body)
        return body["value"]


class CallFailed(Exception):
    """The server answered, and the function failed."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("errorMessage") or body)
        self.body = body


def post(url: str, body: Any, *, timeout_s: float = REQUEST_TIMEOUT_S,
         headers: dict[str, str] | None = None) -> Any:
    """POSTs JSON and returns the parsed JSON answer (also for non-2xx answers).

    Raises:
        OSError: the connection failed or broke (urllib's URLError is one;
            http.client's errors for a half-read answer become a
            ConnectionError here).
    """
    data = b"" if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST",
        headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())
    except http.client.HTTPException as error:
        # A server killed mid-response: IncompleteRead, BadStatusLine.
        raise ConnectionError(f"{type(error).__name__}: {error}") from error
