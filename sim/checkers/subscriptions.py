"""The subscription oracle: what protocol clients saw, against time travel.

Protocol clients (sim/clients.py) record in a `SubscriptionLog` every query
result they receive, as (query, ts, value) where ts is the Transition's
`endVersion.ts`, and what they hold at chosen moments. After the run each
(path, args, ts) is evaluated as a time-travel query on the final data
(sim/checkers/reference.py: `node.call("query", path, args, at_ts=ts)` as a
node opened there runs it; the committed history at ts, independent of the
subscription machinery and of the sync protocol). Checks:

- values: every result a client received at ts equals the reference at ts
  (a dropped, stale, reordered or mis-refilled delta shows here);
- own writes: when a client's mutation resolves (a Transition at or after its
  commit ts arrived), *every* result the client holds, updated in that
  Transition or not, equals the reference at the client's ts, which is at or
  after the commit: the client sees its own acknowledged writes, and a query
  left out of a Transition really did not change;
- order: within a connection each Transition starts at the client's version
  (PROTOCOL.md 3.2), ts never goes back, each query's results come at
  strictly rising ts, and no connection starts before a ts the client has
  already observed; a correct client never gets a FatalError;
- liveness: after the faults heal and every writer stopped, each client
  reaches a ts at or after the final ts (a mutation writing nothing forces
  its Transition) and every query it holds equals the reference there.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from sim.workloads import Check

Reference = Callable[[str, dict, int], Awaitable[tuple[bool, Any]]]


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 160 else text[:160] + "..."


def _same(ok: bool, value: Any, ref_ok: bool, ref_value: Any) -> bool:
    if ok != ref_ok:
        return False
    # Errors compare by kind only: the message may name a request.
    return not ok or (type(value) is type(ref_value) and value == ref_value)


def questions(log) -> list[tuple[str, dict, int]]:
    """(path, args, ts) of every result in `log` that `check` compares with
    the reference (so a caller can answer them all at once first)."""
    return [(path, args, snapshot.ts) for snapshot in log.snapshots
            for _, path, args, _, _ in snapshot.results]


async def check(log, reference: Reference, client_ids: list[int]) -> list[Check]:
    """The oracle's checks over `log` (sim.clients.SubscriptionLog)."""
    checks = []
    by_reason: dict[str, list] = {"delivered": [], "resolved": [], "final": []}
    for snapshot in log.snapshots:
        by_reason[snapshot.reason].append(snapshot)

    async def first_mismatch(snapshots) -> str | None:
        for snapshot in snapshots:
            for query_id, path, args, ok, value in snapshot.results:
                ref_ok, ref_value = await reference(path, args, snapshot.ts)
                if not _same(ok, value, ref_ok, ref_value):
                    got = _show(value) if ok else f"error {value!r}"
                    expected = _show(ref_value) if ref_ok else f"error {ref_value!r}"
                    what = f" (mutation request {snapshot.request_id} committed at ts " \
                           f"{snapshot.commit_ts} had resolved)" if snapshot.reason == "resolved" else ""
                    return (f"client {snapshot.client} connection {snapshot.connection}: query "
                            f"{query_id} {path} {_show(args)} held {got} at ts {snapshot.ts}"
                            f"{what}, but the history at ts {snapshot.ts} gives {expected}")
        return None

    delivered = by_reason["delivered"]
    mismatch = await first_mismatch(delivered)
    count = sum(len(s.results) for s in delivered)
    checks.append(Check("subscriptions: values equal time travel at their ts", mismatch is None,
                        mismatch or f"{count} results received"))

    resolved = by_reason["resolved"]
    early = next((s for s in resolved if s.ts < s.commit_ts), None)
    mismatch = (f"client {early.client}: mutation request {early.request_id} committed at ts "
                f"{early.commit_ts} resolved while the client was at ts {early.ts}"
                if early else await first_mismatch(resolved))
    checks.append(Check("subscriptions: a client sees its own writes", mismatch is None,
                        mismatch or f"{len(resolved)} mutations resolved, each with every held "
                                    "result current"))

    violations = log.violations
    checks.append(Check("subscriptions: versions chain, ts rises, no FatalError", not violations,
                        (f"client {violations[0][0]}: {violations[0][1]}"
                         + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""))
                        if violations else f"{log.transitions} Transitions"))

    checks.append(check_exactly_once(log.executions))

    finals = {s.client: s for s in by_reason["final"]}
    missing = [client for client in client_ids if client not in finals]
    problem = None
    if log.unfinished:
        problem = "; ".join(log.unfinished[:3])
    elif missing:
        problem = f"clients {missing} never reached a final state"
    elif log.final_ts is not None:
        behind = next((s for s in finals.values() if s.ts < log.final_ts), None)
        if behind is not None:
            problem = (f"client {behind.client} ended at ts {behind.ts}, before the final ts "
                       f"{log.final_ts}")
    if problem is None:
        problem = await first_mismatch(finals.values())
    checks.append(Check("subscriptions: every subscription reaches the final ts", problem is None,
                        problem or f"{len(finals)} clients current at ts >= {log.final_ts}",
                        liveness=bool(log.unfinished or missing)))
    return checks


def check_exactly_once(executions: dict) -> Check:
    """A mutation re-sent with the same (sessionId, requestId) runs once, in
    one node incarnation (the node-wide MutationResults answer it) and
    across restarts (the restarted node answers it from the result logged
    with the commit, `Node.logged_mutation_result`).

    `executions`: (sessionId, requestId) -> [(incarnation, commit ts)] of each
    answer that ran the mutation. Two answers with one commit ts are one run
    (a re-send answered from the log); a second commit ts is a second run.
    """
    name = "mutations: a re-sent request runs once, across restarts too"
    for (session_id, request_id), runs in sorted(executions.items()):
        if len({ts for _, ts in runs}) > 1:
            incarnations = sorted({incarnation for incarnation, _ in runs})
            where = (f"in node incarnation {incarnations[0]}" if len(incarnations) == 1
                     else f"across node incarnations {incarnations} (after a restart)")
            return Check(name, False,
                         f"session {session_id} request {request_id} ran {len(runs)} times {where} "
                         f"(incarnation, commit ts): {runs}: it ran again instead of being "
                         f"answered from its stored or logged result")
    return Check(name, True, f"{len(executions)} mutations ran")
