"""Seeded whole-node runs: they pass under faults, replay bit for bit (also
across processes with another PYTHONHASHSEED), and each planted bug is caught
within a bounded range of seeds. A failing run prints the command replaying it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sim.bugs import BUGS
from sim.faults import FAULT_KINDS
from sim.run import RunOptions, run
from tests.conftest import REPO_ROOT

FAST_DURATION_S = 4.0


def _failure_text(result) -> str:
    return (f"{result.failure}: {result.explanation}\n"
            f"replay: {result.options.replay_command()}")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_seed_with_swarm_faults_passes_every_check(seed):
    """A swarm-drawn fault mix leaves every checker satisfied."""
    result = run(RunOptions(seed=seed, duration_s=FAST_DURATION_S))
    assert result.failure is None, _failure_text(result)
    assert all(check.ok for check in result.checks)
    assert len(result.checks) >= 10


def test_every_fault_kind_at_once_passes():
    """Crashes, power losses, disk errors, ENOSPC, latency and clock jumps together break nothing."""
    result = run(RunOptions(seed=4, faults=list(FAULT_KINDS), duration_s=FAST_DURATION_S))
    assert result.failure is None, _failure_text(result)
    assert result.incarnations > 1
    assert sum(result.fault_counts.values()) > 5


def test_the_same_seed_gives_the_same_trace():
    """Two runs of one seed in one process hash every event the same."""
    options = RunOptions(seed=5, faults=list(FAULT_KINDS), duration_s=2.0)
    first, second = run(options), run(options)
    assert first.trace == second.trace
    assert first.event_count == second.event_count > 100
    assert run(RunOptions(seed=6, faults=list(FAULT_KINDS), duration_s=2.0)).trace != first.trace


def _trace_line(seed: int, hash_seed: int) -> str:
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), EDDY_SIM_HEAP_PERTURB=str(hash_seed * 1009))
    completed = subprocess.run(
        [sys.executable, "-m", "wire.cli", "sim", "run", "--seed", str(seed), "--faults", "all",
         "--duration", "2s"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    last = completed.stdout.strip().splitlines()[-1]
    assert last.startswith("trace ")
    return last


def test_the_trace_hash_is_each_event_repr_and_a_newline_in_order():
    """The trace hashes events in batches, yet every checkpoint and the final
    hash are those of hashing each event's repr and a newline one by one."""
    import hashlib

    from sim.trace import Trace, checkpoint_events
    trace, one_by_one, checkpoints = Trace(), hashlib.blake2b(digest_size=16), []
    for n in range(2 * checkpoint_events + 7):
        trace.event("call", n, {"key": f"k{n}"}, [n, None], "é")
        one_by_one.update(repr(("call", n, {"key": f"k{n}"}, [n, None], "é")).encode() + b"\n")
        if (n + 1) % checkpoint_events == 0:
            checkpoints.append(one_by_one.hexdigest())
    assert trace.checkpoints == checkpoints
    assert trace.hexdigest() == one_by_one.hexdigest()
    assert trace.hexdigest() == one_by_one.hexdigest()  # reading it twice changes nothing


def test_the_trace_is_identical_across_processes_and_hash_seeds():
    """`eddy sim run` prints the same trace under different PYTHONHASHSEED values and heaps."""
    assert _trace_line(8, 1) == _trace_line(8, 2) == _trace_line(8, 3)


# Seeds within which each planted bug must be caught (measured: the first
# failing seed is 1 or 2 for each; the range leaves room for drift).
BUG_SEEDS = range(1, 9)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_planted_bug_is_caught(bug):
    """A planted bug fails some seed of a small range as a safety violation, with an explanation.

    A seed may fail as liveness first: a dropped subscription delta also
    leaves a client waiting for an update that never comes (seed 8 of
    dropped-subscription-delta does; a change of scheduling made seed 3 do
    it too, for a while). The same seeds pass without the bug (the sweep
    and determinism tests run them)."""
    others = []
    for seed in BUG_SEEDS:
        result = run(RunOptions(seed=seed, duration_s=FAST_DURATION_S, bug=bug))
        if result.failure == "safety":
            assert result.explanation
            assert f"EDDY_SIM_BUG={bug}" in result.options.replay_command()
            return
        if result.failure:
            others.append(f"seed {seed}: {_failure_text(result)}")
    pytest.fail(f"planted bug {bug} was not caught as a safety violation by seeds {BUG_SEEDS}"
                + "".join(f"\n{line}" for line in others))


def test_a_users_app_runs_under_its_own_workload():
    """`--app` with a workload file: the example chat workload passes its own and the generic checks."""
    result = run(RunOptions(seed=3, app_dir=str(REPO_ROOT / "examples" / "chat"),
                            workload=str(REPO_ROOT / "sim" / "examples" / "chat_workload.py"),
                            duration_s=2.0, clients=4))
    assert result.failure is None, _failure_text(result)
    assert "chat: the newest message is listed" in [check.name for check in result.checks]
