"""Runs the official Convex clients against a real `eddy dev` and reads what they saw.

The npm client runs in Node scripts beside this file (`node SCRIPT.mjs <url>
<JSON params>`); the PyPI client runs in Python scripts the same way, in a
subprocess, because its blocking calls cannot be interrupted from the test if
the server never answers. Each script prints one `RESULT <json>` line; see
lib.mjs. A result with `ok: false` fails the test with the script's error, the
last WebSocket frames it recorded and the tail of the server's log, so a
failure names the exact protocol messages involved.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.official import protocol
from tests.e2e.official.tap import FrameTap
from tests.e2e.server import EddyServer

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"
APP_DIR = REPO_ROOT / "tests" / "fixtures" / "apps" / "official"
SCRIPT_TIMEOUT_S = 60.0  # Each script arms its own shorter deadline; this catches a wedged Node.
PYTHON_SCRIPT_TIMEOUT_S = 35.0  # pypi_client.py's deadline is 25 s, when its watchdog can run.
FRAMES_SHOWN_MAX = 60  # The tail of the recorded frames that a failure report shows.
SERVER_LOG_CHARS_MAX = 3000


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "convex" / "package.json").exists()


requires_node = pytest.mark.skipif(
    not node_available(),
    reason="needs node and ./node_modules/convex (run `make e2e-deps`)")


class SamePortServer(EddyServer):
    """An EddyServer that keeps its port across restarts (clients reconnect to
    the same URL after a `kill -9`), unlike the base helper, which picks a
    fresh port on every start."""

    def start(self) -> None:
        if not self.port:
            super().start()
            return
        assert self.process is None, "already running"
        self.run_count += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # A socket of the killed process may linger briefly; retry the bind.
        deadline = time.monotonic() + 10.0
        while True:
            with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "wire.cli", "dev", str(self.app_dir),
                     "--port", str(self.port), "--data", str(self.data_dir)],
                    cwd=REPO_ROOT, stdout=stdout, stderr=stderr,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                self.wait_until_ready()
                return
            except RuntimeError:
                self.process = None
                if time.monotonic() > deadline or "in use" not in self.stderr():
                    raise
                time.sleep(0.2)


def copy_app(tmp_path: Path) -> Path:
    """A private copy of the official-tests app (a test may add files to it)."""
    app_dir = tmp_path / "app"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__", ".eddy"))
    return app_dir


def start_server(tmp_path: Path, app_dir: Path | None = None) -> SamePortServer:
    server = SamePortServer(app_dir or copy_app(tmp_path), tmp_path / "data", tmp_path / "logs")
    server.start()
    return server


def run_script(command: list[str], server: EddyServer | None, params: dict[str, Any],
               timeout_s: float = SCRIPT_TIMEOUT_S, tap: FrameTap | None = None) -> dict[str, Any]:
    """Runs a client script and returns its parsed RESULT (ok or not). With a
    tap the script talks to the tap's address and the tap's frames are the
    result's `frames`."""
    url = tap.url if tap is not None else server.url
    try:
        done = subprocess.run([*command, url, json.dumps(params)], cwd=HERE,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        stdout = error.stdout or b""
        stdout = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
        frames = format_frames(tap.frames) if tap is not None else ""
        pytest.fail(f"{Path(command[-1]).name} did not finish within {timeout_s} s; "
                    f"its output ends:\n{stdout[-3000:]}\n{frames}\n{server_log_tail(server)}",
                    pytrace=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        pytest.fail(f"{command[-1]} printed no RESULT (exit {done.returncode})\n"
                    f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}\n"
                    f"{server_log_tail(server)}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["_output"] = (done.stdout + done.stderr)[-3000:]
    if tap is not None and "frames" not in result:  # The PyPI client records none itself.
        result["frames"] = list(tap.frames)
        result["messages"] = list(tap.messages)
    return result


def run_node(script: str, server: EddyServer, params: dict[str, Any] | None = None,
             timeout_s: float = SCRIPT_TIMEOUT_S, tap: FrameTap | None = None) -> dict[str, Any]:
    """Runs `node tests/e2e/official/SCRIPT` against the server (through `tap`
    if given); fails the test if the script reported `ok: false` or the server
    broke a protocol rule."""
    return expect_ok(run_script(["node", str(HERE / script)], server, params or {}, timeout_s,
                                tap), server)


def run_python(script: str, server: EddyServer, params: dict[str, Any] | None = None,
               timeout_s: float = PYTHON_SCRIPT_TIMEOUT_S) -> dict[str, Any]:
    """Runs a PyPI-client script with this interpreter through a FrameTap;
    fails the test on `ok: false`."""
    with FrameTap(server.port) as tap:
        result = run_script([sys.executable, str(HERE / script)], server, params or {},
                            timeout_s, tap)
    return expect_ok(result, server)


def run_node_interactive(script: str, server: EddyServer, params: dict[str, Any],
                         turns: dict[str, Callable[[], str]],
                         timeout_s: float = SCRIPT_TIMEOUT_S) -> dict[str, Any]:
    """Runs a Node script that takes turns with the test: each `READY <name>`
    line it prints makes the test call `turns[name]()` and write the returned
    word back on the script's stdin. Fails the test on `ok: false`."""
    return run_interactive(["node", str(HERE / script)], server, params, turns, timeout_s)


def run_python_interactive(script: str, server: EddyServer, params: dict[str, Any],
                           turns: dict[str, Callable[[], str]],
                           timeout_s: float = SCRIPT_TIMEOUT_S) -> dict[str, Any]:
    """As run_node_interactive, for a PyPI-client script, through a FrameTap."""
    with FrameTap(server.port) as tap:
        return run_interactive([sys.executable, str(HERE / script)], server, params, turns,
                               timeout_s, tap)


def run_interactive(command: list[str], server: EddyServer, params: dict[str, Any],
                    turns: dict[str, Callable[[], str]], timeout_s: float,
                    tap: FrameTap | None = None) -> dict[str, Any]:
    script = Path(command[-1]).name
    url = tap.url if tap is not None else server.url
    process = subprocess.Popen([*command, url, json.dumps(params)],
                               cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    output: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            output.put(line)
        output.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    result = None
    try:
        while result is None:
            try:
                line = output.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                frames = format_frames(tap.frames) if tap is not None else ""
                pytest.fail(f"{script} did not finish within {timeout_s} s\n"
                            + "".join(seen[-40:]) + frames + "\n" + server_log_tail(server),
                            pytrace=False)
            if line is None:
                pytest.fail(f"{script} printed no RESULT\n" + "".join(seen[-60:])
                            + server_log_tail(server))
            seen.append(line)
            if line.startswith("READY "):
                answer = turns[line.split()[1]]()
                process.stdin.write(answer + "\n")
                process.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
    finally:
        if process.poll() is None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    result["_output"] = "".join(seen)[-3000:]
    if tap is not None and "frames" not in result:
        result["frames"] = list(tap.frames)
        result["messages"] = list(tap.messages)
    return expect_ok(result, server)


def expect_ok(result: dict[str, Any], server: EddyServer | None) -> dict[str, Any]:
    """Fails the test if the script failed or the server broke a protocol rule
    (tests/e2e/official/protocol.py) in any message the client saw."""
    broken = protocol.violations(result.get("messages", []))
    result["violations"] = broken
    if not result.get("ok"):
        pytest.fail(describe_failure(result, server), pytrace=False)
    if broken:
        pytest.fail("the server broke the sync protocol:\n  " + "\n  ".join(broken[:20])
                    + "\n" + format_frames(result.get("frames", [])) + "\n"
                    + server_log_tail(server), pytrace=False)
    return result


def describe_failure(result: dict[str, Any], server: EddyServer | None) -> str:
    error = result.get("error", {})
    parts = [f"client script failed: {error.get('name')}: {error.get('message')}"]
    if result.get("violations"):
        parts.append("sync protocol rules broken (protocol.py):\n  "
                     + "\n  ".join(result["violations"][:20]))
    if error.get("waitingFor"):
        parts.append(f"while: {error['waitingFor']}")
    if result.get("partial"):
        parts.append("observed so far: " + json.dumps(result["partial"])[:2000])
    parts.append(format_frames(result.get("frames", [])))
    parts.append("client output tail:\n" + result.get("_output", ""))
    parts.append(server_log_tail(server))
    return "\n".join(parts)


def format_frames(frames: list[dict[str, Any]]) -> str:
    shown = frames[-FRAMES_SHOWN_MAX:]
    lines = [f"last {len(shown)} of {len(frames)} recorded frames (ms, socket, direction):"]
    for frame in shown:
        lines.append(f"  {frame['ms']:>6} s{frame['socket']} {frame['dir']:<7} {frame['data']}")
    return "\n".join(lines)


def server_log_tail(server: EddyServer | None) -> str:
    if server is None:
        return ""
    try:
        return "server stderr tail:\n" + server.stderr()[-SERVER_LOG_CHARS_MAX:]
    except OSError:
        return ""
