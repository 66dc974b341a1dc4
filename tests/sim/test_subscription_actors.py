"""The simulator's node runs two subscription actors by default (issue 4's
reference scenario), puts sessions on both, and replays a run with another
count from its printed command."""

from __future__ import annotations

import collections

from actors.subscription_pool import SubscriptionPool
from sim.run import RunOptions, reference_subscription_actors, run


def test_a_default_run_spreads_its_sessions_over_two_actors(monkeypatch):
    """A fault-free run of the subscribing workloads passes with sessions on both actors."""
    placed = collections.Counter()
    open_session = SubscriptionPool.open_session

    def counting_open_session(self, admin=False):
        session = open_session(self, admin)
        placed[(len(self.actors), self.actors.index(session._hub))] += 1
        return session

    monkeypatch.setattr(SubscriptionPool, "open_session", counting_open_session)
    result = run(RunOptions(seed=1, workload="leaderboard,hot-keys", faults=[], duration_s=3.0))
    assert result.failure is None, result.explanation
    assert reference_subscription_actors == 2
    assert placed[(2, 0)] >= 2 and placed[(2, 1)] >= 2, placed
    assert set(placed) == {(2, 0), (2, 1)}


def test_the_replay_command_names_a_count_other_than_the_reference():
    """`--subscription-actors` appears in a replay command only when it differs from 2."""
    assert "--subscription-actors" not in RunOptions(seed=1).replay_command()
    assert RunOptions(seed=1, subscription_actors=1).replay_command().endswith(
        "--subscription-actors 1")
