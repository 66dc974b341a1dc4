"""The `eddy` command line: help texts, `eddy run`, and `eddy dev` failing to start."""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import REPO_ROOT, eddy_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_S = 60


def eddy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(eddy_command(*args), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


@pytest.mark.parametrize("command", [[], ["dev"], ["run"]])
def test_every_command_explains_itself(command):
    """`eddy --help` and each subcommand's --help print a usage text and exit 0."""
    result = eddy(*command, "--help")
    assert result.returncode == 0
    assert "usage: eddy" in result.stdout
    assert "APP_DIR" in result.stdout or "COMMAND" in result.stdout


def test_run_prints_the_result_as_json(keys_app: Path, tmp_path: Path):
    """`eddy run` runs mutations and queries against the app's data and prints clean JSON."""
    data = str(tmp_path / "data")
    for key in ("a", "b"):
        written = eddy("run", str(keys_app), "keys:insert_one", json.dumps({"key": key}),
                       "--data", data)
        assert written.returncode == 0, written.stderr
        assert isinstance(json.loads(written.stdout), str)  # The new document's id.
    listed = eddy("run", str(keys_app), "keys:keys", '{"table": "singles"}', "--data", data)
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(listed.stdout)) == ["a", "b"]


def test_run_reports_failure_on_stderr(keys_app: Path, tmp_path: Path):
    """A failing `eddy run` exits non-zero with the error's code on stderr and nothing on stdout."""
    data = str(tmp_path / "data")
    missing = eddy("run", str(keys_app), "keys:nothing", "--data", data)
    assert missing.returncode == 1
    assert "FunctionNotFound" in missing.stderr
    assert missing.stdout == ""
    bad_args = eddy("run", str(keys_app), "keys:insert_one", "{not json", "--data", data)
    assert bad_args.returncode == 1
    assert "BadJsonBody" in bad_args.stderr


HELP_COMMANDS = ["dev", "run", "log", "show", "query", "diff", "replay", "rerun", "bisect",
                 "compact"]


@pytest.mark.parametrize("command", [[]] + [[name] for name in HELP_COMMANDS])
def test_help_fits_an_80_column_terminal(command):
    """Every --help text is wrapped to the terminal: no line runs past 80 columns."""
    result = subprocess.run(eddy_command(*command, "--help"), cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0
    too_long = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert too_long == []


def test_run_help_examples_work_as_written(tmp_path: Path):
    """The examples `eddy run --help` prints run against the example app and exit 0."""
    text = eddy("run", "--help").stdout
    examples = [line.strip() for line in text.split("Examples:", 1)[1].splitlines()
                if line.strip().startswith("eddy run ")]
    assert len(examples) == 2
    for example in examples:
        result = eddy(*shlex.split(example)[1:], "--data", str(tmp_path / "data"))
        assert result.returncode == 0, (example, result.stderr)
    assert [c["name"] for c in json.loads(result.stdout)] == ["general"]


def test_dev_on_a_busy_port_says_so_in_one_line(keys_app: Path, tmp_path: Path):
    """`eddy dev` on a port another socket listens on exits 1 with one clear line, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = eddy("dev", str(keys_app), "--port", str(port), "--data", str(tmp_path / "data"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"eddy dev: cannot listen on 127.0.0.1:{port}: Address "
                                     "already in use (is another server using it? pass --port N)")


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_dev_refuses_a_port_that_is_not_one(keys_app: Path, port: str):
    """A --port outside 0-65535 is bad usage (exit 2), named before anything starts."""
    result = eddy("dev", str(keys_app), "--port", port)
    assert result.returncode == 2
    assert "argument --port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_permission_error_is_not_called_a_busy_port():
    """Only socket errors read "cannot listen on"; an error naming a file is shown as it is."""
    from wire.cli import describe_dev_error
    file_error = PermissionError(errno.EACCES, "Permission denied", "/srv/data/db")
    assert describe_dev_error(file_error, "127.0.0.1", 3210) == (
        "eddy dev: [Errno 13] Permission denied: '/srv/data/db'")
    socket_error = PermissionError(errno.EACCES, "Permission denied")
    assert describe_dev_error(socket_error, "127.0.0.1", 80) == (
        "eddy dev: cannot listen on 127.0.0.1:80: Permission denied")
