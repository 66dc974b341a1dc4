"""Mutations are serializable: concurrent read-modify-write mutations agree
with a serial reference model applied in the sequencer's commit order."""

import os
import shutil
import tempfile

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.node import open_node
from engine.errors import AppError

APP = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps", "bank")
NAMES = ["a", "b", "c", "d"]
START = 100

transfers = st.tuples(st.just("transfer"), st.sampled_from(NAMES), st.sampled_from(NAMES),
                      st.integers(0, 60), st.integers(0, 3)).filter(lambda t: t[1] != t[2])
increments = st.tuples(st.just("increment"), st.integers(1, 5), st.integers(0, 3))
operations = st.one_of(transfers, increments)


class Model:
    """The serial reference: plain dicts, one operation at a time."""

    def __init__(self):
        self.balances = {name: START for name in NAMES}
        self.counter = 0

    def apply(self, op):
        if op[0] == "transfer":
            _, src, dst, amount, _ = op
            if self.balances[src] < amount:
                return ("error", {"code": "insufficient", "balance": self.balances[src]})
            self.balances[src] -= amount
            self.balances[dst] += amount
            return ("ok", [self.balances[src], self.balances[dst]])
        _, by, _ = op
        self.counter += by
        return ("ok", self.counter)


async def _run(node, op):
    try:
        if op[0] == "transfer":
            _, src, dst, amount, pauses = op
            result = await node.call("mutation", "bank:transfer",
                                     {"src": src, "dst": dst, "amount": amount, "pauses": pauses})
        else:
            _, by, pauses = op
            result = await node.call("mutation", "bank:increment", {"by": by, "pauses": pauses})
        return result.ts, ("ok", result.value)
    except AppError as error:
        # A failed mutation commits nothing; it is ordered by when it ran.
        return None, ("error", error.data)


class TransactionsMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.data_dir = tempfile.mkdtemp(prefix="eddy-stateful-")
        self.model = Model()

    def teardown(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @initialize()
    def open_accounts(self):
        async def main():
            async with open_node(APP, self.data_dir) as node:
                await node.mutation("bank:open_accounts", {"names": NAMES, "balance": START})
        trio.run(main)

    @rule(ops=st.lists(operations, min_size=1, max_size=16))
    def run_concurrently(self, ops):
        outcomes = [None] * len(ops)

        async def main():
            async with open_node(APP, self.data_dir) as node:
                async def one(i):
                    outcomes[i] = await _run(node, ops[i])
                async with trio.open_nursery() as nursery:
                    for i in range(len(ops)):
                        nursery.start_soon(one, i)

        trio.run(main)
        committed = sorted((ts, i) for i, (ts, _) in enumerate(outcomes) if ts is not None)
        failed = [i for i, (ts, _) in enumerate(outcomes) if ts is None]
        # Replay the committed ones in commit order; each must see what the
        # model sees at that point. Failures (insufficient funds) must have
        # been right at some point: check they fail against a final model too.
        for _, i in committed:
            assert self.model.apply(ops[i]) == outcomes[i][1], (ops[i], outcomes[i])
        for i in failed:
            assert outcomes[i][1][0] == "error"
            assert outcomes[i][1][1]["code"] == "insufficient"

    @invariant()
    def matches_model(self):
        async def main():
            async with open_node(APP, self.data_dir) as node:
                return await node.query("bank:balances"), await node.query("bank:counter")
        balances, counter = trio.run(main)
        if counter is None:
            return
        assert balances == self.model.balances
        assert counter == self.model.counter
        assert sum(balances.values()) == START * len(NAMES)


TransactionsMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=6,
                                                 deadline=None)
TestTransactions = pytest.mark.slow(TransactionsMachine.TestCase)
