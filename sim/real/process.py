"""One real `eddy dev` child process, restartable on the same port and data folder.

The process is started as `python -m wire.cli dev APP --port P --data DIR`
(the interpreter running this code, so no console script is needed), its
stdout and stderr going to files in the log folder, one pair per start
(never pipes: a chatty server must not block on a full pipe). It is ready
once its port accepts a TCP connection: `eddy dev` binds the port only after
the node has opened its data folder and replayed its log.

The child dies with the harness (Linux's parent-death signal), so a harness
killed mid-run leaves no server behind.

The faults are signals: `kill` is SIGKILL (nothing is flushed), `pause` is
SIGSTOP and `resume` SIGCONT. `stop` ends the process gracefully (SIGTERM)
after resuming it if it was paused, and SIGKILLs it if it does not exit in
time. The port stays the same across restarts so clients reconnect to the
URL they know; hypercorn binds with SO_REUSEADDR, and a bind that still
fails (another program took the port meanwhile) is retried until
`start_timeout_s`.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import trio

from wire import codecs

REPO_ROOT = Path(__file__).resolve().parents[2]
# Opening RocksDB and loading the reference app takes about a second; a
# shared, busy machine may take several.
start_timeout_s = 30.0
# Graceful shutdown gives in-flight requests 5 s (wire/devserver.py).
stop_timeout_s = 15.0
# Between readiness probes of a starting process.
probe_interval_s = 0.05
# Between two looks at whether a signalled child has exited.
exit_poll_s = 0.01
# An HTTP request of the harness itself (the latest ts after the heal).
request_timeout_s = 10.0


async def _wait_exit(process: subprocess.Popen) -> int:
    """Waits until the child exits and returns its code. A checkpoint (it
    polls: the child is a plain Popen, see `DevProcess.start`)."""
    while process.poll() is None:
        await trio.sleep(exit_poll_s)
    return process.returncode


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGKILL when the harness dies, so
    a harness killed mid-run (a test timeout, kill -9) leaves no `eddy dev`
    behind on a shared machine. Elsewhere the harness's own cleanup is all."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessFailed(Exception):
    """The process exited on its own or never became ready."""


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevProcess:
    """`eddy dev` on one app, port and data folder (see the module docstring).

    Fields:
        process: the live child, or None while it is down.
        paused: whether it was sent SIGSTOP and not yet SIGCONT.
        start_count: how many times it was started (each start is an
            incarnation; its logs are `run-N.out` and `run-N.err`).
    """

    def __init__(self, app_dir: Path, data_dir: Path, log_dir: Path,
                 bug: str | None = None, seed: int = 0) -> None:
        self.app_dir = app_dir
        self.bug = bug
        self.seed = seed
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.paused = False
        self.start_count = 0
        self._exiting = False  # set while this object itself ends the process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self, suffix: str = "err", lines_max: int = 20) -> str:
        """The last lines of the latest start's stdout ("out") or stderr ("err")."""
        path = self.log_dir / f"run-{self.start_count}.{suffix}"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines_max:])

    async def start(self) -> None:
        """Starts the process and waits until its port accepts connections.

        A checkpoint. Cancelled, it kills a half-started child.

        Raises:
            ProcessFailed: it kept exiting (the reason from its stderr) or
                did not become ready within `start_timeout_s`.
        """
        assert self.process is None, "already running"
        deadline = trio.current_time() + start_timeout_s
        self.log_dir.mkdir(parents=True, exist_ok=True)
        while True:
            self.start_count += 1
            with open(self.log_dir / f"run-{self.start_count}.out", "wb") as out, \
                    open(self.log_dir / f"run-{self.start_count}.err", "wb") as err:
                # Started from trio's own thread, not a worker thread (as
                # trio.lowlevel.open_process would): Linux sends the
                # parent-death signal when the *thread* that started the child
                # ends, and trio's idle worker threads end after a while.
                self.process = subprocess.Popen(
                    self.command(), cwd=REPO_ROOT, stdout=out, stderr=err,
                    preexec_fn=_die_with_parent,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                if await self._wait_ready(deadline):
                    return
            except BaseException:
                await self.kill()
                raise
            # It exited: a port still held by someone else is worth another try.
            self.process = None
            if "Address already in use" not in self.log_text() or trio.current_time() > deadline:
                raise ProcessFailed(f"eddy dev exited on start:\n{self.log_text()}")
            await trio.sleep(0.2)

    def command(self) -> list[str]:
        """`eddy dev`, or with a bug to plant, the simulator's launcher of it (sim/real/serve.py)."""
        where = [str(self.app_dir), "--port", str(self.port), "--data", str(self.data_dir)]
        if self.bug is None:
            return [sys.executable, "-m", "wire.cli", "dev", *where]
        return [sys.executable, "-m", "sim.real.serve", *where, "--bug", self.bug,
                "--seed", str(self.seed)]

    async def _wait_ready(self, deadline: float) -> bool:
        """True once the port accepts; False if the process exited first."""
        while trio.current_time() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            except OSError:
                await trio.sleep(probe_interval_s)
                continue
            await stream.aclose()
            return True
        raise ProcessFailed(f"eddy dev did not listen within {start_timeout_s:g}s:\n"
                            f"{self.log_text()}")

    async def kill(self) -> None:
        """SIGKILL (`kill -9`), and wait until it is gone. A checkpoint; no-op when down."""
        if self.process is None:
            return
        self._exiting = True
        self.process.kill()
        with trio.CancelScope(shield=True):
            await _wait_exit(self.process)
        self.process = None
        self.paused = False
        self._exiting = False

    def exited_by_itself(self) -> int | None:
        """The exit code of a process that ended without `kill` or `stop`, else None."""
        if self.process is None or self._exiting:
            return None
        return self.process.poll()

    def pause(self) -> None:
        """SIGSTOP: the process freezes with its sockets open."""
        assert self.process is not None and not self.paused
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`; no-op otherwise."""
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
            self.paused = False

    async def stop(self) -> int | None:
        """Ends the process gracefully (SIGTERM), or with SIGKILL after
        `stop_timeout_s`; returns its exit code (-SIGKILL when it had to be
        killed, None if it was down). A checkpoint."""
        if self.process is None:
            return None
        self.resume()
        process = self.process
        self._exiting = True
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(stop_timeout_s):
            await _wait_exit(process)
        if process.poll() is None:
            await self.kill()
            return -signal.SIGKILL
        self.process = None
        self._exiting = False
        return process.returncode

    async def latest_ts(self) -> int:
        """The node's latest commit ts (HTTP /api/query_ts). A checkpoint.

        Raises:
            OSError: the process did not answer within `request_timeout_s`.
        """
        def ask() -> int:
            request = urllib.request.Request(self.url + "/api/query_ts", data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=request_timeout_s) as response:
                return codecs.decode_ts(json.loads(response.read())["ts"])
        return await trio.to_thread.run_sync(ask)
