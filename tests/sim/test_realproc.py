"""The real-process tier (sim/real/): the simulator's workloads and checkers
against a real `eddy dev` process, with SIGKILL and SIGSTOP as faults.

A short run with kills and pauses must pass every check; its record, doctored
(an acknowledged write deleted from a copy of its data folder, a read of the
list-append history rewritten, a subscription value changed), must fail the
checker meant to catch each; a bug planted in the process (the sequencer
skipping read validation) must fail the run; and a process that hangs at the heal must end
the run as a liveness failure within its bound. A failing run prints the
command that reruns its seed (the same operations and fault schedule, not the
same interleaving: real time is not simulated).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
import sys
import time

import pytest
import trio

from actors.storage import RocksStore
from engine.commits import ts_key
from sim.real.checks import check_run
from sim.real.run import FAULT_KINDS, RealOptions, check_workloads, draw_schedule, run
from tests.conftest import REPO_ROOT

RUN_DURATION_S = 12.0
EXIT_OK, EXIT_SAFETY, EXIT_LIVENESS, EXIT_USAGE = 0, 3, 4, 2


def _failure_text(result) -> str:
    return (f"{result.failure}: {result.explanation}\nlogs: {result.log_dir}\n"
            f"rerun: {result.options.command()}")


@pytest.fixture(scope="module")
def passing_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("real") / "data"
    started = time.perf_counter()
    result = run(RealOptions(seed=3, duration_s=RUN_DURATION_S, data_dir=str(data_dir)))
    print(f"real-process run: {time.perf_counter() - started:.1f}s wall, "
          f"{result.fault_counts}, {result.commit_count} commits")
    return result


def _recheck(result, tmp_path, **changes) -> dict[str, bool]:
    """Runs the checks again on a doctored copy of the run's record and data folder."""
    if "data_dir" not in changes:
        changes["data_dir"] = tmp_path / "data"
        shutil.copytree(result.record.data_dir, changes["data_dir"])
    record = dataclasses.replace(copy.deepcopy(result.record), **changes)
    checks, _ = trio.run(check_run, record)
    return {check.name: check.ok for check in checks}


@pytest.mark.slow
def test_kills_and_pauses_of_a_real_process_pass_every_check(passing_run):
    """A 12 s run with SIGKILLs, restarts and SIGSTOP pauses, through the simulator's protocol
    client and Eddy's Python client, passes every check."""
    result = passing_run
    assert result.failure is None, _failure_text(result)
    assert result.exit_code == EXIT_OK
    assert result.fault_counts.get("kill", 0) >= 1 and result.fault_counts.get("stop", 0) >= 1
    assert result.incarnations >= result.fault_counts["kill"] + 1
    assert len(result.checks) >= 15 and all(check.ok for check in result.checks)
    acknowledged = [op for op in result.record.history if op.status == "ok"]
    assert len(acknowledged) >= 100, f"only {len(acknowledged)} calls acknowledged"
    # Some clients called through wire/client.py, and their mutations carry commit ts.
    python_writes = [op for op in acknowledged if op.client not in result.record.client_ids
                     and op.kind == "mutation"]
    assert len(python_writes) >= 10 and all(op.ts for op in python_writes)
    assert result.wall_s < RUN_DURATION_S + 30


@pytest.mark.slow
def test_an_acknowledged_write_missing_from_the_log_fails_durability(passing_run, tmp_path):
    """Deleting one acknowledged write's commit record from the data folder fails durability."""
    victim = next(op for op in passing_run.record.history
                  if op.path == "counters:increment" and op.status == "ok")
    data_copy = tmp_path / "victim"
    shutil.copytree(passing_run.record.data_dir, data_copy)
    store = RocksStore(str(data_copy))
    store.write_nowait([("commits", ts_key(victim.ts), None)], sync=True)
    store.close()
    verdicts = _recheck(passing_run, tmp_path, data_dir=data_copy)
    assert verdicts["durability: no acknowledged write lost"] is False
    assert verdicts["atomicity: no commit half there"] is False  # its log entries are orphans now


@pytest.mark.slow
def test_a_read_that_missed_an_earlier_append_fails_serializability(passing_run, tmp_path):
    """A list-append read doctored to drop the first value of a long list fails Elle."""
    history = copy.deepcopy(passing_run.record.history)
    for op in (op for op in history if op.path == "lists:txn" and op.status == "ok"):
        reads = [micro for micro in op.value if micro[0] == "r" and len(micro[2] or []) >= 2]
        if reads:
            reads[0][2] = reads[0][2][1:]
            break
    else:
        pytest.fail("no list-append read of two or more values to doctor")
    verdicts = _recheck(passing_run, tmp_path, history=history)
    assert verdicts["list-append: serializable (Elle: ww/wr/rw/rt cycles)"] is False


@pytest.mark.slow
def test_a_subscription_value_unlike_time_travel_fails_the_oracle(passing_run, tmp_path):
    """A delivered subscription value changed after the fact fails the subscription oracle."""
    log = copy.deepcopy(passing_run.record.log)
    snapshot = next(s for s in log.snapshots if s.reason == "delivered" and s.results[0][3])
    query_id, path, args, ok, value = snapshot.results[0]
    snapshot.results[0] = (query_id, path, args, ok, {"doctored": value})
    verdicts = _recheck(passing_run, tmp_path, log=log)
    assert verdicts["subscriptions: values equal time travel at their ts"] is False


@pytest.mark.slow
def test_a_node_that_skips_read_validation_fails_a_real_run(tmp_path):
    """skipped-read-validation planted in the real process (sim/real/serve.py) loses updates
    that the bank, counters and Elle checkers catch: exit 3."""
    result = run(RealOptions(seed=1, duration_s=6.0, bug="skipped-read-validation",
                             data_dir=str(tmp_path / "data")))
    assert result.exit_code == EXIT_SAFETY, _failure_text(result)
    failed = {check.name for check in result.checks if not check.ok}
    assert failed & {"bank: conserved total", "counters: distinct values",
                     "list-append: serializable (Elle: ww/wr/rw/rt cycles)"}, failed


@pytest.mark.slow
@pytest.mark.parametrize("liveness_s, timeout_s, says", [
    (3.0, None, "still pending"),  # the liveness phase's bound
    (60.0, 8.0, "overall timeout of 8s (stuck in: liveness phase)"),  # the whole run's bound
])
def test_a_process_hanging_at_the_heal_is_a_liveness_failure_within_the_bound(
        tmp_path, liveness_s, timeout_s, says):
    """A process left paused after the heal ends the run with exit 4, within its bound."""
    started = time.perf_counter()
    result = run(RealOptions(seed=1, faults=(), duration_s=2.0, liveness_s=liveness_s,
                             timeout_s=timeout_s, hang_at_heal=True,
                             data_dir=str(tmp_path / "data")))
    assert result.exit_code == EXIT_LIVENESS, _failure_text(result)
    assert says in result.explanation, result.explanation
    assert time.perf_counter() - started < 30


def test_the_fault_schedule_comes_from_the_seed_with_every_kind_asked_for():
    """The same seed draws the same schedule; each kind asked for happens in the phase."""
    first = draw_schedule(5, FAULT_KINDS, 10.0)
    assert first == draw_schedule(5, FAULT_KINDS, 10.0)
    assert first != draw_schedule(6, FAULT_KINDS, 10.0)
    for seed in range(20):
        schedule = draw_schedule(seed, FAULT_KINDS, 3.0)
        assert {event.kind for event in schedule} == set(FAULT_KINDS)
        assert all(0 <= event.at_s < 3.0 for event in schedule)
    assert draw_schedule(5, (), 10.0) == []


def test_workloads_that_need_an_in_process_node_are_refused():
    """leaderboard holds sessions on the node's own actor: the real tier says so."""
    with pytest.raises(ValueError, match="leaderboard"):
        check_workloads("bank,leaderboard")
    assert [w.name for w in check_workloads("all")] == ["bank", "counters", "list-append", "hot-keys"]
    done = subprocess.run([sys.executable, "-m", "wire.cli", "sim", "real", "--faults", "crash"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_USAGE and "kill and stop" in done.stderr
