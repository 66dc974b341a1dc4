"""Bank transfers: money moves between accounts and is never made or lost."""

from __future__ import annotations

from sim.checkers import models
from sim.workloads import Check

ACCOUNT_NAMES = [f"acct{n}" for n in range(6)]
OPENING_BALANCE = 100


class BankWorkload:
    name = "bank"
    # Half of its clients call over the sync protocol (sim/clients.py): a
    # transfer re-sent after a crash may run twice, which conserves the total.
    protocol = "some"
    # The subscription oracle's reference answers `bank:balances` from a
    # model of the accounts table (sim/checkers/models.py).
    reference_model = models.AccountsModel

    def __init__(self) -> None:
        self.total = OPENING_BALANCE * len(ACCOUNT_NAMES)

    async def setup(self, client) -> None:
        while (await client.call("mutation", "bank:open_accounts",
                                 {"names": ACCOUNT_NAMES, "balance": OPENING_BALANCE})).status != "ok":
            pass

    async def step(self, client) -> None:
        rng = client.rng
        if rng.random() < 0.2:
            await client.call("query", "bank:balances", {})
            return
        source, destination = rng.sample(ACCOUNT_NAMES, 2)
        await client.call("mutation", "bank:transfer",
                          {"src": source, "dst": destination, "amount": rng.randint(1, 60),
                           "pause_ms": rng.choice([0, 1, 5])})

    async def finish(self, client) -> None:
        await client.call("query", "bank:balances", {})

    def wrote(self, operation) -> bool:
        return operation.path == "bank:transfer" and operation.value is True

    def check(self, record) -> list[Check]:
        reads = [op for op in record.history if op.path == "bank:balances" and op.status == "ok"]
        for op in reads:
            if sorted(op.value) != ACCOUNT_NAMES or sum(op.value.values()) != self.total:
                return [Check("bank: conserved total", False,
                              f"client {op.client} read balances {op.value} at ts {op.ts} "
                              f"(t={op.complete_s:.3f}s): total {sum(op.value.values())}, "
                              f"expected {self.total} over {len(ACCOUNT_NAMES)} accounts")]
        negative = [op for op in reads if min(op.value.values()) < 0]
        if negative:
            op = negative[0]
            return [Check("bank: no negative balance", False,
                          f"client {op.client} read {op.value} at ts {op.ts}: transfers check "
                          f"the balance, so one ran on a stale read")]
        return [Check("bank: conserved total", True, f"{len(reads)} balance reads"),
                Check("bank: no negative balance", True)]
