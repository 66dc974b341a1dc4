"""A simple subscription oracle over the node's own sessions (node.subscriptions:
each session lives on one of the node's subscription actors).

Every Update a session receives claims that every query it holds is current
at the Update's ts (actors/subscriptions.py). The oracle keeps the client's
view (each query's last delivered outcome, merged Update by Update, as a
client does) and records it with each Update; after the run, every held
query is run again as a time-travel query at its Update's ts
(sim/checkers/reference.py: on the final data, the history as committed)
and the values must be equal. As Updates come it checks that each query's
delivered outcomes come in strictly rising ts and that Update ts never goes
back.

It needs no network: it reads the session's Updates directly, so it sees
what the session's subscription actor delivers (dropped, stale or reordered
deltas, wrong take(n) results), not what the sync protocol does with them.
sim/checkers/subscriptions.py, with protocol clients over a simulated
network, is the end-to-end oracle.
"""

from __future__ import annotations

import json
from typing import Any

from engine.subscriptions import REMOVED

from sim.checkers import reference
from sim.workloads import Check

# Violations kept per run (the first is explained; the count says how many).
violations_kept_max = 20


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


class UpdateOracle:
    """Findings of every checked session of a run.

    Fields:
        violations: (kind, readable description), first found first; kinds
            "order" (ts went back), "missing" (a query without a result),
            "value" (a result differs from the query at the Update's ts).
        stuck: sessions that never reached the final ts (liveness).
        held: per Update read while comparing, (label, ts, the session's
            queries, query id -> the outcome held then), for `compare`.
        violation_count, update_count, comparison_count: totals.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.violations: list[tuple[str, str]] = []
        self.stuck: list[str] = []
        self.violation_count = 0
        self.update_count = 0
        self.comparison_count = 0
        self.final_count = 0
        self.comparing = True  # False: Updates are read, not checked (a run without checkers)
        self.held: list[tuple[str, int, dict, dict]] = []

    def _violation(self, kind: str, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < violations_kept_max or \
                all(k != kind for k, _ in self.violations):
            self.violations.append((kind, text))

    async def follow(self, node, session, queries: dict[int, tuple[str, Any]], label: str,
                     trace=None, until_ts: int | None = None, pause=None) -> None:
        """Reads `session`'s Updates (its queries were added as `queries`:
        query id -> (path, args)) and checks each; returns once an Update at
        ts >= `until_ts` was checked (never when None: cancel it). `pause`:
        the node process's ProcessPause (sim/world.py); an Update is read
        only while the process runs."""
        held: dict[int, Any] = {}
        outcome_ts: dict[int, int] = {}
        last_ts = -1
        while True:
            update = await session.wait_update()
            if pause is not None:
                await pause.wait_running()
            self.update_count += 1
            if trace is not None:
                trace.event("update", label, update.ts, sorted(update.results))
            if update.ts < last_ts:
                self._violation("order", f"{label}: an Update at ts {update.ts} came after one at ts {last_ts} "
                                f"(Updates went back in time)")
            last_ts = max(last_ts, update.ts)
            for query_id, outcome in update.results.items():
                if outcome is REMOVED:
                    held.pop(query_id, None)
                    continue
                previous = outcome_ts.get(query_id)
                if previous is not None and outcome.ts <= previous:
                    path, args = queries[query_id]
                    self._violation(
                        "order",
                        f"{label}: query {query_id} ({path} {_show(args)}) was delivered a result "
                        f"computed at ts {outcome.ts} after one computed at ts {previous} "
                        f"(deltas delivered out of order), in the Update at ts {update.ts}")
                outcome_ts[query_id] = outcome.ts
                held[query_id] = outcome
            if self.comparing:
                self._hold(node, update.ts, held, queries, label)
            if until_ts is not None and update.ts >= until_ts:
                self.final_count += 1
                return

    def _hold(self, node, ts: int, held: dict[int, Any], queries: dict[int, tuple[str, Any]],
              label: str) -> None:
        """Keeps what the session holds at `ts` for `compare`; a query it
        holds no result for is a violation now."""
        for query_id in sorted(queries):
            if query_id not in held:
                path, args = queries[query_id]
                self._violation("missing", f"{label}: the Update at ts {ts} left query {query_id} ({path} "
                                f"{_show(args)}) without any result")
            else:
                # Each comparison once ran on the live node here, and its
                # query's transaction drew a seed from the node's entropy;
                # drawing it still keeps every seed's run as it was (its
                # trace, the planted-bug sweeps' seeds).
                node.world.entropy.seed()
        self.held.append((label, ts, queries, dict(held)))

    def requests(self) -> list[tuple[str, Any, int]]:
        """(path, args, ts) of every comparison `compare` makes."""
        return [(*queries[query_id], ts) for _, ts, queries, held in self.held
                for query_id in sorted(held) if query_id in queries]

    def compare(self, answers: reference.Answers) -> None:
        """Each held outcome against the reference at its Update's ts
        (`answers` holds every one of `requests`)."""
        for label, ts, queries, held in self.held:
            for query_id in sorted(held):
                if query_id not in queries:
                    continue
                path, args = queries[query_id]
                self._compare_one(label, ts, query_id, path, args, held[query_id],
                                  answers.of(path, args, ts))
        self.held = []

    def _compare_one(self, label: str, ts: int, query_id: int, path: str, args: Any, outcome,
                     answer: reference.Answer) -> None:
        ok, expected = answer
        self.comparison_count += 1
        if outcome.error is not None or not ok:
            if (outcome.error is None) != ok:
                self._violation(
                    "value",
                    f"{label}: at ts {ts} query {query_id} ({path} {_show(args)}) holds "
                    f"{'error ' + _show(outcome.error[0]) if outcome.error else _show(outcome.value)}, "
                    f"but a query at ts {ts} gives "
                    f"{_show(expected) if ok else expected}")
            return
        if outcome.value != expected:
            self._violation(
                "value",
                f"{label}: at ts {ts} query {query_id} ({path} {_show(args)}) holds "
                f"{_show(outcome.value)} (computed at ts {outcome.ts}), but a time-travel "
                f"query at ts {ts} returns {_show(expected)}")

    def check(self) -> list[Check]:
        """The verdicts: safety (Updates), and liveness (final sessions)."""
        name = f"{self.name}: every Update equals a query at its ts"
        if self.violation_count:
            # The most telling kind first: ts going back names the bug.
            rank = {"order": 0, "missing": 1, "value": 2}
            kind, text = min(self.violations, key=lambda found: rank[found[0]])
            more = f" ({self.violation_count} violations in all)" if self.violation_count > 1 else ""
            verdict = Check(name, False, text + more)
        else:
            verdict = Check(name, True, f"{self.update_count} Updates, {self.comparison_count} "
                                        f"comparisons, {self.final_count} final reads")
        reached = Check(f"{self.name}: every final session reaches the latest ts", not self.stuck,
                        "; ".join(self.stuck[:3]), liveness=True)
        return [verdict, reached]
