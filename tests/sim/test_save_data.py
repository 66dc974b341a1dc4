"""`eddy sim run --save-data DIR`: a simulated run's data folder, opened with Eddy's log tools.

The run's final simulated disk is written to a real RocksDB data folder
(sim/export.py); `eddy log`, `show`, `query --at` and `replay --verify` then
open it like any data folder (docs/simulation.md, "Opening a simulated run's
log").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import rocksdict

import sim.run
from engine.world import COLUMN_FAMILIES
from sim.host import DATA_DIR
from sim.run import RunOptions, run

REPO_ROOT = Path(__file__).resolve().parents[2]
SHORT_RUN = ["--duration", "3s", "--clients", "8"]


def _eddy(*arguments: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wire.cli", *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout_s)


def _raw_records(path: Path) -> dict[str, dict[bytes, bytes]]:
    """Every stored value of a RocksDB data folder, as the bytes on disk (CRC included)."""
    families = {cf: rocksdict.Options(raw_mode=True) for cf in COLUMN_FAMILIES}
    db = rocksdict.Rdict(str(path / "db"), rocksdict.Options(raw_mode=True),
                         column_families=families,
                         access_type=rocksdict.AccessType.read_only())
    try:
        return {cf: dict(db.get_column_family(cf).items()) for cf in COLUMN_FAMILIES}
    finally:
        db.close()


def test_a_saved_run_opens_with_the_log_tools(tmp_path):
    """The saved folder lists exactly the run's commits, and show, replay --verify and query --at work on it."""
    data, result_file = tmp_path / "data", tmp_path / "result.json"
    ran = _eddy("sim", "run", "--seed", "1", *SHORT_RUN, "--faults", "none",
                "--save-data", str(data), "--json", str(result_file))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.strip().splitlines()
    assert lines[-1].startswith("trace ")
    assert lines[-2].startswith(f"data saved: {data} (")
    assert lines[-2].endswith(f"open it with: eddy log sim/app --data {data})")
    reported = json.loads(result_file.read_text())
    assert reported["saved_data"] == str(data)

    logged = _eddy("log", "sim/app", "--data", str(data), "--json")
    assert logged.returncode == 0, logged.stderr
    commits = [json.loads(line) for line in logged.stdout.splitlines()]
    assert len(commits) == reported["commit_count"] > 50
    timestamps = [commit["ts"] for commit in commits]
    assert timestamps == sorted(set(timestamps))

    middle = commits[len(commits) // 2]
    shown = _eddy("show", "sim/app", "--data", str(data), str(middle["ts"]))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"commit    {middle['ts']}")
    assert middle["function"] in shown.stdout

    verified = _eddy("replay", "sim/app", "--data", str(data), "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: ") and "mismatch" not in verified.stdout

    increments = [c for c in commits if c["function"] == "counters:increment"]
    at_ts = increments[len(increments) // 2]["ts"]
    queried = _eddy("query", "sim/app", "--data", str(data), "--at", str(at_ts), "counters:values")
    assert queried.returncode == 0, queried.stderr
    values = json.loads(queried.stdout)
    # Every increment up to at_ts, and none after, is in the counters' sum.
    expected = sum(1 for c in increments if c["ts"] <= at_ts)
    assert sum(int(value) for name, value in values.items() if name.startswith("c")) == expected


def test_the_trace_is_the_same_with_and_without_save_data(tmp_path):
    """Saving changes no simulated event: a faulty run's trace is the same with the option."""
    common = ["sim", "run", "--seed", "3", *SHORT_RUN, "--faults", "crash,power_loss,disk_errors"]
    plain = _eddy(*common)
    saved = _eddy(*common, "--save-data", str(tmp_path / "data"))
    assert plain.returncode == saved.returncode == 0, plain.stdout + saved.stdout
    assert plain.stdout.splitlines()[-1] == saved.stdout.splitlines()[-1]
    assert plain.stdout.splitlines()[-1].startswith("trace ")
    assert "data saved:" not in plain.stdout


def test_records_are_copied_verbatim(tmp_path, monkeypatch):
    """Every record of the final simulated disk, meta included, is in the folder with the same bytes and CRC."""
    disks = []
    save_volume = sim.run.save_volume

    def keeping_the_disk(disk, volume_path, target):
        disks.append(disk)
        return save_volume(disk, volume_path, target)
    monkeypatch.setattr(sim.run, "save_volume", keeping_the_disk)
    options = RunOptions(seed=2, duration_s=3.0, faults=["crash", "power_loss"])
    result = run(options, save_data=str(tmp_path / "data"))
    assert result.failure is None and result.save_error is None, result.explanation
    volume = disks[0].volumes[DATA_DIR]
    assert not volume.unsynced  # the node stopped cleanly: everything it wrote is durable
    saved = _raw_records(tmp_path / "data")
    for cf in COLUMN_FAMILIES:
        assert saved[cf] == dict(volume.visible[cf]), cf
    assert saved["meta"] and result.saved.record_counts["meta"] == len(saved["meta"])
    assert result.saved.record_count == sum(len(records) for records in saved.values())


def test_a_folder_with_something_in_it_is_refused(tmp_path):
    """A non-empty --save-data folder stops the command with exit 2 before the run, untouched."""
    (tmp_path / "notes.txt").write_text("mine")
    refused = _eddy("sim", "run", "--seed", "1", *SHORT_RUN, "--save-data", str(tmp_path))
    assert refused.returncode == 2
    assert "not empty" in refused.stderr and refused.stdout == ""
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_failing_run_says_how_to_inspect_its_log(tmp_path):
    """A failure's report ends with the replay line, a hint to save its data, then the trace."""
    failing = subprocess.run(
        [sys.executable, "-m", "wire.cli", "sim", "run", "--seed", "1", "--workload", "counters",
         "--duration", "3s", "--bug", "skipped-read-validation"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert failing.returncode == 3, failing.stdout
    lines = failing.stdout.strip().splitlines()
    assert lines[-3].startswith("replay: ")
    assert lines[-2] == ("inspect its log: add --save-data DIR to the replay, then "
                         "eddy log sim/app --data DIR")
    assert lines[-1].startswith("trace ")


def test_shrink_saves_the_smallest_failing_run(tmp_path):
    """`eddy sim shrink --save-data DIR` saves the shrunk run's data; its replay line stays last."""
    data = tmp_path / "data"
    shrunk = _eddy("sim", "shrink", "--seed", "1", "--workload", "leaderboard", "--duration", "3s",
                   "--bug", "take-refill-off-by-one", "--save-data", str(data), timeout_s=300)
    assert shrunk.returncode == 3, shrunk.stdout + shrunk.stderr
    lines = shrunk.stdout.strip().splitlines()
    assert lines[-1].startswith("replay: ")
    assert lines[-2].startswith(f"data saved: {data} (")
    kept_calls = lines[-1].split("--calls ", 1)[1].split()[0].split(",")
    logged = _eddy("log", "sim/app", "--data", str(data), "--json")
    assert logged.returncode == 0, logged.stderr
    # The shrunk run commits its kept calls (setup writes nothing on this workload).
    assert len(logged.stdout.splitlines()) == len(kept_calls)
