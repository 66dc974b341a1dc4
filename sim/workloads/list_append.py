"""Elle's list-append: transactions of appends and reads over a few keyed lists,
checked for serializability by dependency cycles (sim/checkers/elle.py)."""

from __future__ import annotations

from sim.checkers import elle
from sim.workloads import Check

KEY_COUNT = 5
MICRO_OPS_MAX = 4


class ListAppendWorkload:
    name = "list-append"

    def __init__(self) -> None:
        self._next_value: dict[str, int] = {}

    async def setup(self, client) -> None:
        pass

    async def step(self, client) -> None:
        rng = client.rng
        ops = []
        for _ in range(rng.randint(1, MICRO_OPS_MAX)):
            key = f"k{rng.randrange(KEY_COUNT)}"
            if rng.random() < 0.5:
                ops.append(["r", key, None])
            else:
                # Values unique per key, so a read names the appends it saw.
                value = self._next_value.get(key, 0) + 1
                self._next_value[key] = value
                ops.append(["append", key, value])
        await client.call("mutation", "lists:txn", {"ops": ops, "pause_ms": rng.choice([0, 2])})

    async def finish(self, client) -> None:
        await client.call("mutation", "lists:txn",
                          {"ops": [["r", f"k{n}", None] for n in range(KEY_COUNT)], "pause_ms": 0})

    def wrote(self, operation) -> bool:
        return operation.path == "lists:txn" and any(f == "append" for f, _, _ in operation.args["ops"])

    def check(self, record) -> list[Check]:
        txns = [op for op in record.history if op.path == "lists:txn"]
        return [elle.check_serializable(txns), elle.check_commit_order(txns)]
