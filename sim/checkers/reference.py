"""The reference the subscription oracles compare with: time travel over the final data.

Both oracles ask what a query returns at a ts: the update oracle
(sim/checkers/update_oracle.py) for every query a node session held at each
Update, the subscription oracle (sim/checkers/subscriptions.py) for every
result a protocol client received or held. They ask after the run, all at
once: `answer` runs each distinct (path, args, ts) once as a time-travel
query on the run's final data, the history as committed, independent of
the subscription machinery and the sync protocol.

The queries run in rising ts order on an `actors.replay.TimeTravel`, which
replays the log once as the ts rises and runs each query as
`node.call("query", path, args, at_ts=ts)` runs it on a node opened on the
same data, with the same result: a read at ts sees no commit after ts. It is
cheaper than that node because its shards hold nothing after the ts being
read, so index scans step over no key of a later commit (docs/performance.md
section 11).

Derived answers. Several queries of a workload are views of one read:
`hot:get`, `hot:first` and `hot:total` all read the hot rows, the
leaderboard's `top`, `bottom` and `everyone` one board. A workload may name,
per query path, a *base* query and how to get the answer from its result
(`reference_queries`: path -> function of the args giving (base path, base
args, derive) or None to run the query itself); the base query runs once per
ts and each derived answer is computed from it in plain Python, from the
query's definition (the first n rows of an index range in order, the last n
reversed, a sum), not by the engine's code for it. Each oracle still checks
every value it checks; the answers come from fewer time-travel queries.
tests/sim/test_oracle.py checks that derived answers equal the queries'
own over whole runs.

A query's failure is an answer too (its kind and message): both oracles
compare errors by kind only.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from actors.replay import TimeTravel

# (True, value) or (False, "ErrorType: message").
Answer = tuple[bool, Any]
# A workload's derivations: path -> (args -> (base path, base args, base value -> Answer) or None).
Derivations = dict[str, Callable[[Any], "tuple[str, Any, Callable[[Any], Answer]] | None"]]


def key(path: str, args: Any, ts: int) -> tuple[str, Any, int]:
    """The key of one question: equal for equal arguments (of one type
    each: 1, 1.0 and True are three arguments)."""
    return path, _args_key(args), ts


def _args_key(args: Any) -> Any:
    if type(args) is dict and all(type(value) in _SCALARS for value in args.values()):
        # Most arguments: a few scalars, keyed without encoding them.
        return tuple(sorted((name, type(value), value) for name, value in args.items()))
    return json.dumps(args, sort_keys=True)


_SCALARS = (str, int, bool, type(None))


class Answers(dict):
    """key(path, args, ts) -> Answer, and `of`, which looks one up.

    A run asks about 20,000 times about some 2,000 argument objects (a
    query's args are one object for as long as a client holds it), so each
    object's key part is kept, by identity, with the object (so that the
    identity stays its own).
    """

    def __init__(self) -> None:
        super().__init__()
        self._args_keys: dict[int, tuple[Any, Any]] = {}

    def key(self, path: str, args: Any, ts: int) -> tuple[str, Any, int]:
        found = self._args_keys.get(id(args))
        if found is None or found[0] is not args:
            found = self._args_keys[id(args)] = (args, _args_key(args))
        return path, found[1], ts

    def of(self, path: str, args: Any, ts: int) -> Answer:
        return self[self.key(path, args, ts)]


def derivations_of(workloads: Iterable) -> Derivations:
    """Every workload's `reference_queries`, merged."""
    found: Derivations = {}
    for workload in workloads:
        found.update(getattr(workload, "reference_queries", {}))
    return found


async def answer(time_travel: TimeTravel, questions: Iterable[tuple[str, Any, int]],
                 derivations: Derivations | None = None) -> Answers:
    """The answer to each (path, args, ts) of `questions`: a query run at its
    ts as a client without the admin key runs it, or derived from its base
    query's (see the module docstring). Each distinct query runs once, in
    rising ts order. A checkpoint only if a query awaits something that yields."""
    derivations = derivations or {}
    answers = Answers()
    plan: dict[tuple, tuple[tuple, Callable | None]] = {}
    runs: dict[tuple, tuple[str, Any, int]] = {}
    for path, args, ts in questions:
        question = answers.key(path, args, ts)
        if question in plan:
            continue
        how = derivations.get(path)
        base = how(args) if how is not None else None
        base_path, base_args, derive = base if base is not None else (path, args, None)
        run = answers.key(base_path, base_args, ts)
        runs.setdefault(run, (base_path, base_args, ts))
        plan[question] = (run, derive)
    results: dict[tuple, Answer] = {}
    for run in sorted(runs, key=lambda found: found[2]):
        path, args, ts = runs[run]
        try:
            result = await time_travel.query(path, args, ts, admin=False)
        except Exception as error:  # the reference's own failure is an answer too
            results[run] = (False, f"{type(error).__name__}: {error}")
        else:
            results[run] = (True, result.value)
    for question, (run, derive) in plan.items():
        ok, value = results[run]
        answers[question] = derive(value) if ok and derive is not None else (ok, value)
    return answers
