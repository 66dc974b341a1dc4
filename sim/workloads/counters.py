"""Counters: every increment produces a distinct value and none is lost."""

from __future__ import annotations

from sim.workloads import Check

COUNTER_NAMES = ["c0", "c1", "c2"]


class CounterWorkload:
    name = "counters"

    async def setup(self, client) -> None:
        pass

    async def step(self, client) -> None:
        rng = client.rng
        await client.call("mutation", "counters:increment",
                          {"name": rng.choice(COUNTER_NAMES), "pause_ms": rng.choice([0, 1, 5])})

    async def finish(self, client) -> None:
        await client.call("query", "counters:values", {})

    def wrote(self, operation) -> bool:
        return operation.path == "counters:increment"

    def check(self, record) -> list[Check]:
        increments = [op for op in record.history if op.path == "counters:increment"]
        finals = [op for op in record.history
                  if op.path == "counters:values" and op.status == "ok" and op.complete_s >= record.healed_s]
        checks = []
        for name in COUNTER_NAMES:
            mine = [op for op in increments if op.args["name"] == name]
            returned = [op.value for op in mine if op.status == "ok"]
            duplicates = sorted({v for v in returned if returned.count(v) > 1})
            if duplicates:
                op = next(op for op in mine if op.status == "ok" and op.value == duplicates[0])
                return [Check("counters: distinct values", False,
                              f"counter {name}: value {duplicates[0]} returned by more than one "
                              f"acknowledged increment (one at ts {op.ts}): a lost update")]
            if finals:
                final = finals[-1].value.get(name, 0)
                unknown = sum(op.status == "info" for op in mine)
                if not len(returned) <= final <= len(returned) + unknown or (returned and max(returned) > final):
                    return [Check("counters: no lost increment", False,
                                  f"counter {name}: final value {final}, but {len(returned)} increments "
                                  f"were acknowledged and {unknown} had unknown outcomes")]
        checks.append(Check("counters: distinct values", True))
        checks.append(Check("counters: no lost increment", True))
        return checks
