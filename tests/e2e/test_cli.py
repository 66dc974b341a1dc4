"""The `eddy` command line: help texts and `eddy run`."""

from __future__ import annotations

import json
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
