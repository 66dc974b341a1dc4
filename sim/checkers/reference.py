"""The reference the subscription oracles compare with: time travel over the final data.

Both oracles ask what a query returns at a ts: the update oracle
(sim/checkers/update_oracle.py) for every query a node session held at each
Update, the subscription oracle (sim/checkers/subscriptions.py) for every
result a protocol client received or held. They ask after the run, all at
once: `answer` finds each distinct (path, args, ts) once on the run's final
data, the history as committed, independent of the subscription machinery
and the sync protocol: from a model of the table, or as a time-travel query.

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
tests/sim/test_oracle.py checks that derived and modelled answers equal
the queries' own, run on the engine, over whole runs.

Models. A workload may also name a model of a table (`reference_model`: a
class; sim/checkers/models.py has the reference app's), which follows the
table's writes as the replay passes them and answers base queries of the
app from the documents, as the queries' definitions say, without the
engine's read path: a second, independent reading of the committed history,
and far cheaper than a query (the engine's shards are brought forward only
when some question must run there). A model that cannot answer a question
exactly says so, and the query runs on the engine. Derived answers and
models apply to the reference app only (sim/app).

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


def models_of(workloads: Iterable) -> list:
    """A fresh model (see the module docstring) of each workload that has one."""
    return [workload.reference_model() for workload in workloads
            if hasattr(workload, "reference_model")]


async def answer(time_travel: TimeTravel, questions: Iterable[tuple[str, Any, int]],
                 derivations: Derivations | None = None, models: list | None = None) -> Answers:
    """The answer to each (path, args, ts) of `questions`: derived from its
    base query's, if it has one, and each base query answered at its ts by
    a model that knows it, or else run as a client without the admin key
    runs it (see the module docstring). In rising ts order; each distinct
    base query is answered once. `models` must be `time_travel`'s followers.
    A checkpoint only if a query awaits something that yields."""
    derivations = derivations or {}
    modelled = {path: model for model in models or () for path in model.paths}
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
        model = modelled.get(path)
        if model is not None:
            time_travel.follow(ts)
            result = model.answer(path, args)
            if result is not None:
                results[run] = result
                continue
        try:
            value = (await time_travel.query(path, args, ts, admin=False)).value
        except Exception as error:  # the reference's own failure is an answer too
            results[run] = (False, f"{type(error).__name__}: {error}")
        else:
            results[run] = (True, value)
    for question, (run, derive) in plan.items():
        ok, value = results[run]
        answers[question] = derive(value) if ok and derive is not None else (ok, value)
    return answers


# Convex's order of value types (DESIGN.md section 7): null < int64 <
# float64 < bool < str < bytes.
_TYPE_RANKS = {type(None): 0, int: 1, float: 2, bool: 3, str: 4, bytes: 5}


def order_key(value: Any) -> tuple[int, Any]:
    """A Python sort key that orders scalars as Convex's indexes do (within
    a type Python's own order: numbers by value, strings and bytes by their
    code points and bytes). Raises KeyError for a list, a dict or another
    type (a model then leaves the question to the engine)."""
    return _TYPE_RANKS[type(value)], value


def index_order(document: dict, fields: Iterable[str]) -> tuple:
    """`document`'s sort key in an index on `fields` (then _creationTime, _id)."""
    return (*(order_key(document[field]) for field in fields),
            order_key(document["_creationTime"]), order_key(document["_id"]))
