"""The checks of a real-process run, after the process has stopped.

Most are the simulator's own checkers (sim/checkers/, sim/workloads/), fed
from what the real run recorded: the clients' history (every call with its
real invoke and completion times, status, value and commit ts), the
subscription log of the protocol clients, and the node's commit log read
from the data folder with the storage layer's own reader:

- each workload's checks (bank conservation, counters, Elle on list-append);
- durability of acknowledged writes and atomicity, over the commit log;
- exactly once, across restarts too: no (sessionId, requestId) is on two
  commits, and no path and arguments commit more often than calls account for;
- the subscription oracle against time-travel queries on the final data
  folder, read in-process (sim/checkers/reference.py);
- for the reference app, no call failed (its functions never raise on their
  own) except by the function time limit;
- the node's own logs hold no failed assertion or internal error.
"""

from __future__ import annotations

import bisect
import dataclasses
import types
from pathlib import Path

from actors.app import load_app
from actors.replay import TimeTravel
from actors.world import RealWorld

from sim.checkers import durability, reference
from sim.clients import ProtocolStack
from sim.workloads import Check

NO_FAILED_CALL = "functions: no call of the reference app failed"
NODE_LOGS = "node logs: no failed assertion or internal error"
# How a call that outlived its time limit fails (actors/runner.py, TIMEOUT).
TIMEOUT_MESSAGE = " ran longer than "
# What in the node's stderr means an invariant broke or Eddy itself failed.
NODE_LOG_ALARMS = ("AssertionError", "INTERNAL")


@dataclasses.dataclass
class RunRecord:
    """What a finished run leaves for its checks (and what a test may doctor).

    Fields:
        history: every call (`sim.host.Operation`), times on trio's clock.
        log: the protocol clients' `sim.clients.SubscriptionLog`.
        healed_s: when the faults healed (workload checkers read it).
        workloads: the workload objects (some keep state their checks need).
        openings: (time, newest commit ts in the folder) at each start.
    """

    history: list
    log: object
    healed_s: float
    workloads: list
    app_dir: str
    reference_app: bool
    data_dir: Path
    log_dir: Path
    openings: list[tuple[float, int]]
    client_ids: list[int]


def read_log(data_dir: Path) -> tuple[dict[int, dict], Check]:
    """The commit records of the data folder, and the atomicity check over it."""
    store = RealWorld().open_store(str(data_dir), read_only=True)
    try:
        commits = durability.read_commits(store)
        return commits, durability.check_atomic(store, commits)
    finally:
        store.close()


def newest_commit_ts(data_dir: Path) -> int:
    """The newest commit ts in a data folder no process has open (0 if none)."""
    if not (Path(data_dir) / "db").exists():
        return 0
    store = RealWorld().open_store(str(data_dir), read_only=True)
    try:
        for key, _ in store.scan("commits", reverse=True):
            return int.from_bytes(key, "big")
        return 0
    finally:
        store.close()


def check_no_call_failed(history: list) -> Check:
    """The reference app's functions never raise on their own. The one
    failure real time brings is the function time limit: its deadline is on
    the process's clock, so a call a SIGSTOP (or a busy machine) held past
    it fails with TIMEOUT and does not commit (the other checks see that
    its writes never appear)."""
    failed = [op for op in history if op.status == "fail"]
    timed_out = [op for op in failed if TIMEOUT_MESSAGE in (op.error or "")]
    others = [op for op in failed if op not in timed_out]
    if others:
        op = others[0]
        return Check(NO_FAILED_CALL, False,
                     f"client {op.client} call {op.index} {op.path} {op.args} failed: {op.error} "
                     f"({len(others)} failed calls besides time limits)")
    return Check(NO_FAILED_CALL, True,
                 f"{len(timed_out)} calls held past the 1 s function time limit" if timed_out else "")


def check_node_logs(log_dir: Path) -> Check:
    for path in sorted(log_dir.glob("run-*.err")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(alarm in line for alarm in NODE_LOG_ALARMS):
                return Check(NODE_LOGS, False, f"{path.name}:{number}: {line.strip()}")
    return Check(NODE_LOGS, True)


def executions(commits: dict[int, dict], openings: list[tuple[float, int]]) -> dict:
    """(sessionId, requestId) -> [(incarnation, commit ts)], from the log, for
    the oracle's exactly-once check (the simulator records it server side)."""
    starts = [ts for _, ts in openings]
    found: dict[tuple, list] = {}
    for ts, record in sorted(commits.items()):
        if record.get("request") is not None:
            incarnation = max(bisect.bisect_left(starts, ts), 1)
            found.setdefault(tuple(record["request"]), []).append((incarnation, ts))
    return found


class _Oracle(ProtocolStack):
    """The simulator's subscription-oracle glue (`ProtocolStack.questions`
    and `check`: time travel on the final data, then
    sim/checkers/subscriptions.py) over a real run's log. `check` reads only the log and the clients' ids, so
    there is no simulated network, host or World here."""

    def __init__(self, log, client_ids: list[int]) -> None:  # not the stack's: no network
        self.log = log
        self.clients = [types.SimpleNamespace(id=client_id) for client_id in client_ids]


async def check_run(record: RunRecord) -> tuple[list[Check], int]:
    """Every check of a finished run (its process must be down), and the
    number of commits in its log. A checkpoint."""
    history, workloads, openings = record.history, record.workloads, record.openings
    commits, atomic = read_log(record.data_dir)
    checks = [check for workload in workloads for check in workload.check(record)]

    def wrote(op) -> bool:
        return any(w.wrote(op) for w in workloads if hasattr(w, "wrote"))
    checks.append(durability.check_durable(history, commits, wrote))
    checks.append(atomic)
    checks.append(durability.check_exactly_once(history, commits, openings))
    if record.reference_app:
        checks.append(check_no_call_failed(history))
    checks.append(check_node_logs(record.log_dir))
    record.log.executions = executions(commits, openings)

    oracle = _Oracle(record.log, record.client_ids)
    world = RealWorld()
    store = world.open_store(str(record.data_dir), read_only=True)
    try:
        # Derived answers and models know the reference app's queries only.
        models = reference.models_of(workloads) if record.reference_app else []
        time_travel = TimeTravel(world, store, load_app(record.app_dir), str(record.data_dir),
                                 followers=models)
        answers = await reference.answer(
            time_travel, oracle.questions(),
            reference.derivations_of(workloads) if record.reference_app else {}, models)
    finally:
        store.close()
    checks.extend(await oracle.check(answers))
    return checks, len(commits)
