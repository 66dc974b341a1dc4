"""The ingest workload (sim/workloads/ingest.py) and its checker
(sim/checkers/ingest.py): bursts of inserts pass under faults and replay bit
for bit, and the checker fails a history doctored to lose an acknowledged
insert, hold one twice, or keep half a batch."""

from __future__ import annotations

import copy

import pytest

from sim.checkers import ingest
from sim.clients import Snapshot
from sim.run import RunOptions, run
from sim.workloads import ingest as ingest_workload

INGEST_CHECKS = {"ingest: no acknowledged insert lost",
                 "ingest: no event inserted twice, none unasked for",
                 "ingest: a batch is all or nothing",
                 "ingest: a live count never goes back",
                 "subscriptions: values equal time travel at their ts",
                 "mutations: a re-sent request runs once, across restarts too"}


def _failure_text(result) -> str:
    return f"{result.failure}: {result.explanation}\nreplay: {result.options.replay_command()}"


@pytest.fixture(scope="module")
def crashed_run():
    """Four ingest clients (two on msgpack, which send MutationBatch frames)
    under crashes and broken connections, so bursts in flight are re-sent;
    every burst sent in one frame is counted."""
    frames = []
    send = ingest_workload.call_in_one_frame

    async def counted(client, calls):
        frames.append(len(calls))
        return await send(client, calls)
    ingest_workload.call_in_one_frame = counted
    try:
        result = run(RunOptions(seed=4, workload="ingest", clients=4, duration_s=6.0,
                                faults=["crash", "conn_reset"]))
    finally:
        ingest_workload.call_in_one_frame = send
    return result, frames


def test_bursts_under_crashes_and_broken_connections_pass(crashed_run):
    """Every ingest check and the oracle pass; bursts of every shape were sent, across restarts."""
    result, frames = crashed_run
    assert result.failure is None, _failure_text(result)
    assert INGEST_CHECKS <= {check.name for check in result.checks}
    assert result.incarnations > 1
    assert frames, "no MutationBatch frame was sent"
    counts = result.operation_counts
    assert counts.get("ingest:insert_batch ok", 0) > 5 and counts.get("ingest:insert ok", 0) > 100


def test_an_ingest_run_replays_bit_for_bit():
    """Two runs of one seed hash every event the same, bursts and re-sends included."""
    options = RunOptions(seed=7, workload="ingest", clients=4, duration_s=2.0,
                         faults=["crash", "conn_reset"])
    first, second = run(options), run(options)
    assert first.failure is None, _failure_text(first)
    assert first.trace == second.trace and first.event_count == second.event_count > 100


def test_a_node_that_runs_a_resent_mutation_again_fails_the_duplicate_check():
    """Planted lost-mutation-dedup (re-sent requests run again): the final table holds an event twice."""
    result = run(RunOptions(seed=7, workload="ingest", duration_s=3.0, bug="lost-mutation-dedup"))
    assert result.failure == "safety", _failure_text(result)
    assert "ingest: no event inserted twice" in result.explanation
    assert "a mutation ran more than once" in result.explanation


def _doctored(crashed_run):
    """The run's history, copied; its final reads (client -> the Operation)."""
    history = copy.deepcopy(crashed_run[0].history)
    finals = {op.args["client"]: op for op in history
              if op.path == ingest.FINAL_READ_PATH and op.status == "ok"}
    return history, finals


def _failed(history) -> dict[str, str]:
    return {check.name: check.explanation for check in ingest.check(history, healed_s=0.0)
            if not check.ok}


def test_the_undoctored_history_passes(crashed_run):
    history, _ = _doctored(crashed_run)
    assert not _failed(history)


def test_a_lost_acknowledged_insert_fails(crashed_run):
    """An acknowledged single insert's row dropped from the final read fails no-loss."""
    history, finals = _doctored(crashed_run)
    op = next(op for op in history if op.path == "ingest:insert" and op.status == "ok")
    final = finals[op.client]
    final.value = [row for row in final.value if row[0] != op.args["seq"]]
    failed = _failed(history)
    assert f"lacks seq [{op.args['seq']}]" in failed["ingest: no acknowledged insert lost"]


def test_an_event_twice_fails(crashed_run):
    """A row repeated in the final read (a mutation run twice) fails no-duplicate."""
    history, finals = _doctored(crashed_run)
    op = next(op for op in history if op.path == "ingest:insert" and op.status == "ok")
    finals[op.client].value.append([op.args["seq"], op.args["seq"]])
    failed = _failed(history)
    assert "2 times" in failed["ingest: no event inserted twice, none unasked for"]


def test_an_event_no_call_asked_for_fails(crashed_run):
    history, finals = _doctored(crashed_run)
    final = next(iter(finals.values()))
    final.value.append([10**9, 10**9])
    assert "which no call inserted" in _failed(history)["ingest: no event inserted twice, none unasked for"]


def test_half_a_batch_fails(crashed_run):
    """A batch insert with its last event missing fails all-or-nothing (and, acknowledged, no-loss)."""
    history, finals = _doctored(crashed_run)
    op = next(op for op in history if op.path == "ingest:insert_batch" and op.status == "ok"
              and len(op.args["events"]) > 1)
    last = op.args["events"][-1]["seq"]
    final = finals[op.client]
    final.value = [row for row in final.value if row[0] != last]
    failed = _failed(history)
    assert "the rest" in failed["ingest: a batch is all or nothing"]
    assert "ingest: no acknowledged insert lost" in failed


def test_an_unknown_outcome_may_be_absent_but_not_in_part(crashed_run):
    """A batch whose outcome is unknown (`info`) may be wholly absent; half of it still fails."""
    history, finals = _doctored(crashed_run)
    op = next(op for op in history if op.path == "ingest:insert_batch" and op.status == "ok"
              and len(op.args["events"]) > 1)
    op.status = "info"
    seqs = [event["seq"] for event in op.args["events"]]
    final = finals[op.client]
    final.value = [row for row in final.value if row[0] not in seqs]
    assert not _failed(history)
    final.value.append([seqs[0], seqs[0]])
    assert "ingest: a batch is all or nothing" in _failed(history)


def test_a_missing_final_read_fails(crashed_run):
    history, finals = _doctored(crashed_run)
    history.remove(next(iter(finals.values())))
    assert "ingest: the final reads" in _failed(history)


def _count(client: int, ts: int, value: int, stream: str = "s0") -> Snapshot:
    args = {"stream": stream, "lo": 0, "hi": 50}
    return Snapshot(client, 0, "delivered", ts, [(1, ingest.COUNT_PATH, args, True, value)])


def test_a_count_going_back_fails():
    """Counts that rise with ts pass; a later, smaller one, or two at one ts that differ, fail."""
    rising = [_count(0, 10, 1), _count(1, 12, 1), _count(0, 15, 4), _count(1, 20, 9, "s1")]
    assert ingest.check_counts_rise(rising).ok
    back = ingest.check_counts_rise(rising + [_count(1, 16, 3)])
    assert not back.ok and "got count 4 at ts 15" in back.explanation
    assert not ingest.check_counts_rise(rising + [_count(1, 15, 5)]).ok
