"""`eddy sim shrink`: delta debugging over a failing seed's calls and faults."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from sim.run import RunOptions, run
from sim.shrink import ddmin, shrink, signature
from tests.conftest import REPO_ROOT


def test_ddmin_finds_a_one_minimal_subset():
    runs = []

    def fails(subset):
        runs.append(subset)
        return {3, 17, 40} <= set(subset)

    assert sorted(ddmin(list(range(64)), fails)) == [3, 17, 40]
    assert len(runs) < 200


def test_ddmin_of_a_failure_needing_nothing_is_empty():
    assert ddmin([1, 2, 3], lambda subset: True) == []


def test_a_planted_bug_shrinks_to_a_few_calls_that_fail_the_same_way():
    """take-refill-off-by-one, seed 1: ~70 calls and ~20 faults come down to
    a handful of calls (set two scores, remove the lowest: the top(1) view
    refills short), and the replay command fails the same way."""
    options = RunOptions(seed=1, workload="leaderboard", duration_s=3.0,
                         bug="take-refill-off-by-one")
    result = shrink(options, budget_s=120, runs_max=100)
    assert result.calls_before > 50 and result.faults_before > 5
    assert len(result.calls) <= 5 and not result.faults
    assert result.final.failure == "safety"
    assert "time-travel query" in result.final.explanation
    command = result.options.replay_command()
    assert "--calls " in command and "--fault-events none" in command
    # The replay, from the options alone (durations measured again), fails the same way.
    replay = run(dataclasses.replace(result.options, call_durations=None))
    assert signature(replay) == result.signature


def test_a_passing_seed_has_nothing_to_shrink():
    try:
        shrink(RunOptions(seed=1, workload="counters", duration_s=1.0, faults=[]), runs_max=5)
    except ValueError as error:
        assert "passes" in str(error)
    else:
        raise AssertionError("a passing seed was shrunk")


def test_the_cli_prints_the_replay_command_and_the_replay_fails():
    env_bug = ["--bug", "take-refill-off-by-one"]
    common = ["--seed", "1", "--workload", "leaderboard", "--duration", "3s"]
    shrunk = subprocess.run([sys.executable, "-m", "wire.cli", "sim", "shrink", *common, *env_bug],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert shrunk.returncode == 3, shrunk.stdout + shrunk.stderr
    replay = shrunk.stdout.strip().splitlines()[-1]
    assert replay.startswith("replay: EDDY_SIM_BUG=take-refill-off-by-one eddy sim run --seed 1")
    arguments = replay.split("eddy sim run ", 1)[1].split()
    again = subprocess.run([sys.executable, "-m", "wire.cli", "sim", "run", *arguments, *env_bug],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 3, again.stdout
    assert "time-travel query" in again.stdout
