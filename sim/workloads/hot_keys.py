"""Many subscriptions on hot keys, over the sync protocol.

Every client holds several live queries (a point read, a range, `take(n)`
from either end, a sum) over a few hot keys and keeps changing its query set
while all clients write those keys (set, add, delete). Its calls go through
protocol clients (sim/clients.py); what the subscriptions deliver is checked
by the subscription oracle (sim/checkers/subscriptions.py), which runs for
every run with protocol clients.
"""

from __future__ import annotations

from sim.checkers import models

KEY_COUNT = 8
SUBSCRIPTIONS_MIN, SUBSCRIPTIONS_MAX = 2, 8

# The hot range of the `by_name` index (sim/app/hot.py `_hot`): every hot key's rows.
HOT_LO, HOT_HI = "h", "i"
HOT_ROWS = ("hot:between", {"lo": HOT_LO, "hi": HOT_HI})


def _key(rng) -> str:
    # Skewed: h0 is the hottest.
    return f"h{min(int(rng.expovariate(0.6)), KEY_COUNT - 1)}"


def _query(rng) -> tuple[str, dict]:
    kind = rng.random()
    if kind < 0.4:
        return "hot:get", {"key": _key(rng)}
    if kind < 0.6:
        lo = rng.randrange(KEY_COUNT)
        return "hot:between", {"lo": f"h{lo}", "hi": f"h{lo + rng.randint(1, 4)}"}
    if kind < 0.75:
        return "hot:first", {"n": rng.randint(1, 4)}
    if kind < 0.9:
        return "hot:last", {"n": rng.randint(1, 4)}
    return "hot:total", {}


# The subscription oracle's derived answers (sim/checkers/reference.py): each
# hot query is a view of the hot rows (`HOT_ROWS`: the hot range of the index,
# in order, as [name, value]), so one time-travel read of them per ts answers
# all of them. A range reaching outside the hot one, empty or inverted, or a
# negative n, runs as itself.

def _get(args):
    def derive(rows):  # `unique()` of the key's rows, then its value
        found = [value for name, value in rows if name == args["key"]]
        if len(found) > 1:
            return False, "EddyError: unique() found more than one document"
        return True, found[0] if found else None
    return (*HOT_ROWS, derive) if HOT_LO <= args["key"] < HOT_HI else None


def _between(args):
    lo, hi = args["lo"], args["hi"]
    if not HOT_LO <= lo < hi <= HOT_HI or (lo, hi) == (HOT_LO, HOT_HI):
        return None
    return (*HOT_ROWS, lambda rows: (True, [row for row in rows if lo <= row[0] < hi]))


def _first(args):
    n = args["n"]
    return (*HOT_ROWS, lambda rows: (True, rows[:n])) if n >= 0 else None


def _last(args):
    n = args["n"]
    return (*HOT_ROWS, lambda rows: (True, rows[::-1][:n])) if n >= 0 else None


def _total(args):
    return (*HOT_ROWS, lambda rows: (True, sum(value for _, value in rows)))


REFERENCE_QUERIES = {"hot:get": _get, "hot:between": _between, "hot:first": _first,
                     "hot:last": _last, "hot:total": _total}


class HotKeysWorkload:
    name = "hot-keys"
    # Its clients speak the sync protocol (sim/run.py makes them so).
    protocol = True
    reference_queries = REFERENCE_QUERIES
    reference_model = models.CountersModel

    def __init__(self) -> None:
        self._live: dict[int, list[int]] = {}

    async def setup(self, client) -> None:
        pass

    async def step(self, client) -> None:
        rng, protocol = client.rng, client.protocol
        live = self._live.setdefault(client.id, [])
        roll = rng.random()
        if len(live) < SUBSCRIPTIONS_MIN or (roll < 0.15 and len(live) < SUBSCRIPTIONS_MAX):
            live.append(protocol.subscribe(*_query(rng)))
            return
        if roll < 0.25:
            protocol.unsubscribe(live.pop(rng.randrange(len(live))))
            return
        if roll < 0.3:
            await client.call("query", *_query(rng))
            return
        key = _key(rng)
        if roll < 0.6:
            await client.call("mutation", "hot:add", {"key": key, "delta": rng.randint(-3, 5)})
        elif roll < 0.9:
            await client.call("mutation", "hot:set", {"key": key, "value": rng.randint(0, 99)})
        else:
            await client.call("mutation", "hot:remove", {"key": key})

    async def finish(self, client) -> None:
        pass

    def wrote(self, operation) -> bool:
        return operation.path in ("hot:add", "hot:set") or (
            operation.path == "hot:remove" and operation.value is True)

    def check(self, record) -> list:
        return []  # the subscription oracle checks this workload
