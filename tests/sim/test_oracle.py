"""The subscription oracle (sim/checkers/subscriptions.py) and the protocol
clients it watches (sim/clients.py): seeds pass under node and network
faults, replay bit for bit, planted subscription bugs are caught end to end,
and each check fails on the history it exists to refuse."""

from __future__ import annotations

import pytest
import trio

from sim.bugs import BUGS
from sim.checkers import subscriptions
from sim.clients import Snapshot, SubscriptionLog
from sim.faults import ALL_FAULT_KINDS
from sim.net import NET_FAULT_KINDS
from sim.run import RunOptions, run

ORACLE_CHECKS = {"subscriptions: values equal time travel at their ts",
                 "subscriptions: a client sees its own writes",
                 "subscriptions: versions chain, ts rises, no FatalError",
                 "subscriptions: every subscription reaches the final ts",
                 "mutations: a re-sent request runs once, across restarts too"}


def _failure_text(result) -> str:
    return f"{result.failure}: {result.explanation}\nreplay: {result.options.replay_command()}"


@pytest.mark.parametrize("seed", [1, 2])
def test_hot_keys_under_swarm_faults_pass_the_oracle(seed):
    result = run(RunOptions(seed=seed, workload="hot-keys,bank", duration_s=4.0))
    assert result.failure is None, _failure_text(result)
    names = {check.name for check in result.checks}
    assert ORACLE_CHECKS <= names
    assert result.operation_counts


def test_every_network_fault_with_crashes_passes_and_is_injected():
    result = run(RunOptions(seed=3, workload="hot-keys", duration_s=6.0,
                            faults=list(NET_FAULT_KINDS) + ["crash"]))
    assert result.failure is None, _failure_text(result)
    injected = {kind for kind in result.fault_counts if kind in NET_FAULT_KINDS}
    assert len(injected) >= 5, result.fault_counts
    assert result.fault_counts.get("net connections broken", 0) > 0
    assert result.incarnations > 1


def test_protocol_runs_replay_bit_for_bit():
    options = RunOptions(seed=9, workload="hot-keys,bank", faults=list(ALL_FAULT_KINDS),
                         duration_s=2.0)
    first, second = run(options), run(options)
    assert first.trace == second.trace
    assert first.event_count == second.event_count > 100


@pytest.mark.parametrize("seed", [1, 2])
def test_derived_and_modelled_reference_answers_equal_the_queries_own(seed, monkeypatch):
    """Every answer the reference derives from a base query's rows (the hot
    keys' range, the leaderboard's boards) or takes from a model of a table
    (sim/checkers/models.py) equals what running the query itself at its ts
    on the engine gives, over whole runs with faults."""
    from actors.replay import TimeTravel
    from sim.checkers import reference
    answer = reference.answer
    shortcuts = []

    async def both(time_travel, questions, derivations=None, models=None):
        questions = list(questions)
        answers = await answer(time_travel, questions, derivations, models)
        node = time_travel.node
        direct = await answer(TimeTravel(node.world, node.store, node.app, node.data_dir),
                              questions)
        for question, (ok, value) in answers.items():
            direct_ok, direct_value = direct[question]
            assert ok == direct_ok, (question, value, direct_value)
            assert not ok or (type(value) is type(direct_value) and value == direct_value), \
                (question, value, direct_value)
        modelled = {path for model in models for path in model.paths}
        shortcuts.append(sum(1 for path, _, _ in answers if path in derivations or path in modelled))
        return answers
    monkeypatch.setattr(reference, "answer", both)
    result = run(RunOptions(seed=seed, workload="hot-keys,leaderboard,ingest,bank", duration_s=4.0))
    assert result.failure is None, _failure_text(result)
    assert shortcuts and shortcuts[0] > 100, shortcuts


SUBSCRIPTION_BUGS = [bug for bug in ("dropped-subscription-delta", "deltas-out-of-order",
                                     "take-refill-off-by-one") if bug in BUGS]


@pytest.mark.parametrize("bug", SUBSCRIPTION_BUGS)
def test_planted_subscription_bugs_are_caught_through_the_protocol(bug):
    """The bug is planted in the node; the protocol clients' oracle (or the
    real session core's own invariants) must catch it."""
    for seed in range(1, 7):
        result = run(RunOptions(seed=seed, workload="hot-keys", duration_s=4.0, bug=bug))
        if result.failure:
            assert result.failure == "safety", _failure_text(result)
            return
    pytest.fail(f"{bug} was not caught by hot-keys seeds 1-6")


# ----- the checks on hand-made logs

async def _reference_from(history: dict):
    async def reference(path, args, ts):
        # The value of key k at ts is the last write at or before ts.
        writes = [(at, value) for at, value in history[args["key"]] if at <= ts]
        return True, (writes[-1][1] if writes else None)
    return reference


def _check(log) -> dict:
    async def main():
        reference = await _reference_from({"a": [(10, 1), (20, 2)]})
        return await subscriptions.check(log, reference, [0])
    return {check.name: check for check in trio.run(main)}


def _log(*snapshots, final_ts=20) -> SubscriptionLog:
    log = SubscriptionLog()
    log.snapshots.extend(snapshots)
    log.final_ts = final_ts
    return log


def _held(value):
    return [(0, "hot:get", {"key": "a"}, True, value)]


def test_a_correct_log_passes():
    checks = _check(_log(Snapshot(0, 0, "delivered", 10, _held(1)),
                         Snapshot(0, 0, "delivered", 20, _held(2)),
                         Snapshot(0, 0, "resolved", 25, _held(2), request_id=3, commit_ts=20),
                         Snapshot(0, 1, "final", 25, _held(2))))
    assert all(check.ok for check in checks.values()), checks


def test_a_stale_value_fails_the_values_check():
    checks = _check(_log(Snapshot(0, 0, "delivered", 20, _held(1)),
                         Snapshot(0, 1, "final", 25, _held(2))))
    check = checks["subscriptions: values equal time travel at their ts"]
    assert not check.ok and "held 1 at ts 20" in check.explanation


def test_a_held_result_left_stale_fails_own_writes():
    """The client resolved its mutation at ts 25, still holding the value of ts 10."""
    checks = _check(_log(Snapshot(0, 0, "delivered", 10, _held(1)),
                         Snapshot(0, 0, "resolved", 25, _held(1), request_id=3, commit_ts=20),
                         Snapshot(0, 1, "final", 25, _held(2))))
    check = checks["subscriptions: a client sees its own writes"]
    assert not check.ok and "request 3" in check.explanation


def test_resolving_before_the_commit_ts_fails_own_writes():
    checks = _check(_log(Snapshot(0, 0, "resolved", 15, _held(1), request_id=3, commit_ts=20),
                         Snapshot(0, 1, "final", 25, _held(2))))
    assert "resolved while the client was at ts 15" in \
        checks["subscriptions: a client sees its own writes"].explanation


def test_a_client_behind_the_final_ts_or_missing_fails_liveness():
    behind = _check(_log(Snapshot(0, 0, "final", 15, _held(1)), final_ts=20))
    assert "before the final ts 20" in \
        behind["subscriptions: every subscription reaches the final ts"].explanation
    missing = _check(_log(final_ts=20))["subscriptions: every subscription reaches the final ts"]
    assert not missing.ok and missing.liveness


def test_client_side_violations_fail_the_order_check():
    log = _log(Snapshot(0, 1, "final", 25, _held(2)))
    log.violations.append((0, "connection 0: Transition startVersion ... (PROTOCOL.md 3.2)"))
    check = _check(log)["subscriptions: versions chain, ts rises, no FatalError"]
    assert not check.ok and "PROTOCOL.md 3.2" in check.explanation


def test_a_mutation_run_twice_fails_in_one_incarnation_and_across_restarts():
    """A second commit ts for one request fails, before or after a restart; one ts answered twice does not."""
    once = subscriptions.check_exactly_once({("s", 1): [(1, 10)], ("s", 2): [(1, 11), (2, 11)]})
    assert once.ok
    twice = subscriptions.check_exactly_once({("s", 1): [(1, 10), (1, 12)]})
    assert not twice.ok and "request 1 ran 2 times in node incarnation 1" in twice.explanation
    after_restart = subscriptions.check_exactly_once({("s", 2): [(1, 11), (2, 30)]})
    assert not after_restart.ok and "after a restart" in after_restart.explanation


def test_the_log_check_fails_a_request_committed_twice_across_restarts():
    """From the log alone: one (sessionId, requestId) on commits in two incarnations fails."""
    from sim.checkers import durability
    from sim.host import Operation
    commits = {10: {"path": "hot:add", "args": {"key": "h0", "delta": 1}, "request": ["s", 4]},
               30: {"path": "hot:add", "args": {"key": "h0", "delta": 1}, "request": ["s", 4]}}
    call = Operation(0, 1, "mutation", "hot:add", {"key": "h0", "delta": 1}, 0.5, 3.0, "ok")
    check = durability.check_exactly_once([call], commits, [(0.0, 0), (2.0, 20)])
    assert not check.ok and "request 4 committed 2 times" in check.explanation
    assert "incarnations 1, 2" in check.explanation
    del commits[30]
    assert durability.check_exactly_once([call], commits, [(0.0, 0), (2.0, 20)]).ok


@pytest.mark.slow
def test_a_sweep_of_protocol_seeds_passes():
    for seed in range(20, 40):
        result = run(RunOptions(seed=seed, workload="hot-keys,bank", duration_s=20.0, clients=12))
        assert result.failure is None, _failure_text(result)
