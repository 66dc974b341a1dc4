"""Shrinking a failing run: the fewest calls and faults that fail the same way.

Theory of operation. A run's randomness is fixed by its seed, substream by
substream (sim/world.py): each client draws its calls from its own stream,
each fault kind its injection times and strengths from its own. A shrunk run
keeps every draw and drops *effects*: a client still draws its i-th call but
skips making it unless (client, i) is kept (sim/host.py, SimClient.keep),
waiting instead as long as the call took in the unshrunk run (so every other
call keeps its time), and
the fault injector still draws its n-th injection of a kind but makes it only
if (kind, n) is kept (sim/faults.py). Setup, the final reads after the heal,
and the calls of protocol clients always run. So a subset of the original
run's units (its safety-phase calls and its fault injections) names one
deterministic run, replayed by `eddy sim run ... --calls C:I,... --fault-events
KIND:N,...`.

A run "fails the same way" when it fails with the same kind (safety,
liveness, crash) and, for a checker's failure, the same first failed check
(the first line of the explanation up to its colon); for a crash, the same
exception type.

The search (Zeller and Hildebrandt's ddmin, "Simplifying and Isolating
Failure-Inducing Input", 2002), run by `shrink`:
1. faults: drop them all if the failure survives, else ddmin over them;
2. calls: the shortest prefix (in order of invocation) that still fails, by
   bisection, then ddmin over that prefix;
3. faults once more, now that fewer calls remain.
Each test is one whole run; results are cached by the units kept. The search
stops early, keeping the best found so far, when `budget_s` of wall time or
`runs_max` runs are spent.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from sim.run import RunOptions, RunResult, run


@dataclasses.dataclass
class ShrinkResult:
    options: RunOptions  # the smallest failing run found
    original: RunResult
    final: RunResult
    signature: tuple
    calls_before: int
    faults_before: int
    runs: int
    wall_s: float
    complete: bool  # False: the budget ran out before ddmin finished

    @property
    def calls(self) -> list[tuple[int, int]]:
        return sorted(self.options.calls or ())

    @property
    def faults(self) -> list[tuple[str, int]]:
        return sorted(self.options.fault_events or ())


def signature(result: RunResult) -> tuple:
    """How a run failed, for "the same way"."""
    if result.failure is None:
        return (None,)
    first = result.explanation.strip().splitlines()[0] if result.explanation.strip() else ""
    if result.failure == "crash":
        last = result.explanation.strip().splitlines()[-1] if result.explanation.strip() else ""
        return ("crash", last.split(":")[0])
    if result.failure == "liveness":
        return ("liveness",)
    failed = [check.name for check in result.checks if not check.ok]
    if failed:
        return (result.failure, failed[0])
    return (result.failure, first.split(":")[0])


class _OutOfBudget(Exception):
    pass


class Shrinker:
    def __init__(self, options: RunOptions, budget_s: float | None = 600.0,
                 runs_max: int | None = 400, report: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.budget_s = budget_s
        self.runs_max = runs_max
        self.report = report or (lambda line: None)
        self.started = time.perf_counter()
        self.runs = 0
        self._cache: dict[tuple[frozenset, frozenset], bool] = {}
        self.target: tuple | None = None
        self.best: tuple[frozenset, frozenset] | None = None
        self.best_result: RunResult | None = None

    def _spent(self) -> bool:
        return ((self.budget_s is not None and time.perf_counter() - self.started > self.budget_s)
                or (self.runs_max is not None and self.runs >= self.runs_max))

    def fails(self, calls: frozenset, faults: frozenset) -> bool:
        """Whether the run keeping `calls` and `faults` fails the same way."""
        key = (calls, faults)
        if key in self._cache:
            return self._cache[key]
        if self._spent():
            raise _OutOfBudget()
        self.runs += 1
        result = run(dataclasses.replace(self.options, calls=calls, fault_events=faults))
        same = signature(result) == self.target
        self._cache[key] = same
        if same and (self.best is None or len(calls) + len(faults) < sum(map(len, self.best))):
            self.best, self.best_result = key, result
        self.report(f"run {self.runs}: {len(calls)} calls, {len(faults)} faults: "
                    f"{'fails the same way' if same else 'passes or fails otherwise'}")
        return same

    def shrink(self) -> ShrinkResult:
        original = run(self.options)
        self.runs += 1
        durations = {(op.client, op.index): (op.complete_s or op.invoke_s) - op.invoke_s
                     for op in original.history}
        self.options = dataclasses.replace(self.options, call_durations=durations)
        if original.failure is None:
            raise ValueError(f"seed {self.options.seed} passes: nothing to shrink")
        self.target = signature(original)
        calls = frozenset(original.safety_calls)
        faults = frozenset(original.fault_events)
        self.report(f"seed {self.options.seed} fails ({' / '.join(map(str, self.target))}) with "
                    f"{len(calls)} calls and {len(faults)} faults; shrinking")
        self.best, self.best_result = (calls, faults), original
        complete = True
        try:
            # The original run with its units named explicitly must fail the same way.
            if not self.fails(calls, faults):
                raise ValueError("the run with its own calls and faults named does not fail "
                                 "the same way (non-determinism?); try `eddy sim determinism`")
            faults = self._shrink_faults(calls, faults)
            calls = self._shrink_calls(calls, faults)
            faults = self._shrink_faults(calls, faults)
        except _OutOfBudget:
            complete = False
        best_calls, best_faults = self.best
        options = dataclasses.replace(self.options, calls=best_calls, fault_events=best_faults)
        return ShrinkResult(options, original, self.best_result, self.target, len(original.safety_calls),
                            len(original.fault_events), self.runs,
                            time.perf_counter() - self.started, complete)

    def _shrink_faults(self, calls: frozenset, faults: frozenset) -> frozenset:
        if not faults:
            return faults
        if self.fails(calls, frozenset()):
            return frozenset()
        kept = ddmin(sorted(faults), lambda subset: self.fails(calls, frozenset(subset)))
        return frozenset(kept)

    def _shrink_calls(self, calls: frozenset, faults: frozenset) -> frozenset:
        if not calls:
            return calls
        if self.fails(frozenset(), faults):
            return frozenset()
        # Calls in the order they were made: client index order is per client,
        # so order by index, then client (roughly invocation order).
        ordered = sorted(calls, key=lambda unit: (unit[1], unit[0]))
        low, high = 0, len(ordered)  # the prefix of `high` fails; of `low`, not (or unknown)
        while high - low > 1:
            middle = (low + high) // 2
            if self.fails(frozenset(ordered[:middle]), faults):
                high = middle
            else:
                low = middle
        kept = ddmin(ordered[:high], lambda subset: self.fails(frozenset(subset), faults))
        return frozenset(kept)


def ddmin(items: list, fails: Callable[[list], bool]) -> list:
    """A 1-minimal sublist of `items` (which fails) that still fails."""
    granularity = 2
    while len(items) >= 2:
        size = len(items) // granularity
        chunks = [items[i:i + size] for i in range(0, len(items), size)] if size else [items]
        reduced = False
        for chunk in chunks:
            if len(chunk) < len(items) and fails(chunk):
                items, granularity, reduced = chunk, 2, True
                break
        if not reduced:
            for index in range(len(chunks)):
                complement = [item for j, chunk in enumerate(chunks) if j != index for item in chunk]
                if len(complement) < len(items) and fails(complement):
                    items, granularity, reduced = complement, max(granularity - 1, 2), True
                    break
        if not reduced:
            if granularity >= len(items):
                break
            granularity = min(len(items), granularity * 2)
    if len(items) == 1 and fails([]):
        return []
    return items


def shrink(options: RunOptions, budget_s: float | None = 600.0, runs_max: int | None = 400,
           report: Callable[[str], None] | None = None) -> ShrinkResult:
    """Shrinks the failing run `options` (see the module docstring).

    Raises:
        ValueError: the run does not fail, or does not replay.
    """
    return Shrinker(options, budget_s, runs_max, report).shrink()
