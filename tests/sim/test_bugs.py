"""Each planted bug is caught, by the checker meant to catch it, with a
readable explanation and the command that replays it.

Short runs of the workload each bug needs; `make test` runs these. The
sweep that shows each bug is caught within 1,000 seeds of the default mix is
a documented command (docs/simulation.md, "Planted bugs"), and the slow test
at the end runs a small version of it.
"""

from __future__ import annotations

import pytest

from sim.bugs import BUGS, plant
from sim.run import RunOptions, run

# bug -> (workload, a phrase the failing check's explanation must hold)
EXPECTED = {
    "skipped-read-validation": ("bank,counters,list-append", ""),
    "ack-before-fsync": ("counters", ""),
    "timestamp-reuse-after-restart": ("counters", ""),
    "multi-shard-non-atomic": ("leaderboard", "atomicity: no commit half there"),
    "dropped-subscription-delta": ("leaderboard", "every Update equals a query at its ts"),
    "deltas-out-of-order": ("leaderboard", "went back in time"),
    "take-refill-off-by-one": ("leaderboard", "time-travel query"),
    "lost-mutation-dedup": ("hot-keys", "ran again instead of being answered"),
}
SEEDS = range(1, 9)
DURATION_S = 3.0


def test_every_bug_has_an_expectation():
    assert set(EXPECTED) == set(BUGS)


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_the_bug_is_caught_by_its_checker(bug):
    workload, phrase = EXPECTED[bug]
    for seed in SEEDS:
        result = run(RunOptions(seed=seed, workload=workload, duration_s=DURATION_S, bug=bug))
        if result.failure:
            assert result.failure == "safety", result.explanation
            assert phrase in result.explanation, result.explanation
            assert f"EDDY_SIM_BUG={bug}" in result.options.replay_command()
            return
    pytest.fail(f"{bug} was not caught by seeds {SEEDS} of workload {workload}")


@pytest.mark.parametrize("bug", ["multi-shard-non-atomic", "dropped-subscription-delta",
                                 "deltas-out-of-order", "take-refill-off-by-one"])
def test_without_the_bug_the_same_runs_pass(bug):
    """The checkers that catch these bugs do not cry wolf on the same seeds."""
    workload, _ = EXPECTED[bug]
    for seed in (1, 2):
        result = run(RunOptions(seed=seed, workload=workload, duration_s=DURATION_S))
        assert result.failure is None, result.explanation


def test_an_unknown_bug_is_refused():
    with pytest.raises(ValueError):
        plant("no-such-bug", node=type("N", (), {"sequencer": type("S", (), {"durable_ts": 0})()})(),
              world=type("W", (), {"stream": lambda self, *labels: None})())


@pytest.mark.slow
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_a_sweep_of_the_default_mix_catches_the_bug(bug):
    """The documented sweep, cut to seeds 1-20 of 10 simulated seconds: the
    default mix (every workload, swarm faults) catches each bug, as a safety
    violation, within those seeds (measured: by seed 3)."""
    from sim.sweep import sweep
    outcomes = sweep(RunOptions(seed=0, duration_s=10.0, bug=bug), list(range(1, 21)), jobs=2,
                     budget_s=600, report=lambda line: None)
    assert any(outcome.failure == "safety" for outcome in outcomes), \
        f"{bug}: no safety failure in seeds 1-20"
