"""Mutations decided with no task of their own: the runner's `mutation_now`
and the sequencer's `when_durable`, which the sync protocol's shell answers
most mutations with (wire/sync.py `Connection._mutate_now`)."""

import os

import pytest
import trio

from actors.node import open_node
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps")
LIMITS_APP = os.path.join(FIXTURES, "limits")
BANK_APP = os.path.join(FIXTURES, "bank")


def run(app, data_dir, fn):
    async def main():
        async with open_node(app, str(data_dir)) as node:
            return await fn(node)
    return trio.run(main)


def test_a_mutation_is_decided_at_once_and_answered_once_durable(tmp_path):
    async def fn(node):
        sequencer = node.sequencer
        before = sequencer.state.last_ts
        decided = node.runner.mutation_now("notes:add", {"body": "hi"})
        assert decided.commit_ts == decided.durable_ts > before
        assert sequencer.state.last_ts == decided.commit_ts  # admitted, in the same step
        assert sequencer.durable_ts < decided.commit_ts  # not yet on disk
        answered = []
        sequencer.when_durable(decided.durable_ts,
                               lambda: answered.append(sequencer.durable_ts))
        assert answered == []
        with trio.fail_after(10):
            while not answered:
                await trio.sleep(0.001)
        assert answered == [decided.commit_ts]
        note = await node.query("notes:get", {"id": decided.value})
        return note["body"]
    assert run(LIMITS_APP, tmp_path, fn) == "hi"


def test_a_mutation_that_writes_nothing_is_answered_at_its_snapshot(tmp_path):
    async def fn(node):
        await node.mutation("notes:add", {"body": "a"})
        decided = node.runner.mutation_now("notes:add_many", {"count": 0})
        assert decided.commit_ts is None
        assert decided.durable_ts == node.sequencer.state.last_ts
    run(LIMITS_APP, tmp_path, fn)


def test_a_mutation_that_suspends_is_left_to_call_and_nothing_happens(tmp_path):
    async def fn(node):
        await node.mutation("bank:open_accounts", {"names": ["a", "b"], "balance": 10})
        last_ts = node.sequencer.state.last_ts
        args = {"src": "a", "dst": "b", "amount": 3, "pauses": 1}
        assert node.runner.mutation_now("bank:transfer", args) is None
        assert node.sequencer.state.last_ts == last_ts  # no commit
        assert not node.sequencer.pending or node.sequencer.pending[-1].ts == last_ts
        # `call` runs it, once.
        assert await node.mutation("bank:transfer", args) == [7, 13]
    run(BANK_APP, tmp_path, fn)


def test_a_mutation_is_left_to_call_while_the_serial_lane_is_held(tmp_path):
    async def fn(node):
        node.sequencer.lane_holder = object()
        try:
            assert node.runner.mutation_now("notes:add", {"body": "x"}) is None
        finally:
            node.sequencer.lane_holder = None
        assert node.runner.mutation_now("notes:add", {"body": "x"}) is not None
    run(LIMITS_APP, tmp_path, fn)


def test_errors_are_raised_as_call_raises_them(tmp_path):
    async def fn(node):
        runner = node.runner
        with pytest.raises(AppError) as app_error:
            runner.mutation_now("notes:fail_app", {})
        assert app_error.value.data == {"why": "because"}
        with pytest.raises(FunctionCrashed):
            runner.mutation_now("notes:crash", {})
        with pytest.raises(EddyError) as bad_args:
            runner.mutation_now("notes:add", {"body": 1})
        assert bad_args.value.code == ErrorCode.INVALID_ARGS
        with pytest.raises(EddyError) as not_a_mutation:
            runner.mutation_now("notes:scan_all", {})
        assert not_a_mutation.value.code == ErrorCode.FUNCTION_KIND_MISMATCH
        with pytest.raises(EddyError) as unknown:
            runner.mutation_now("notes:nope", {})
        assert unknown.value.code == ErrorCode.FUNCTION_NOT_FOUND
    run(LIMITS_APP, tmp_path, fn)


def test_when_durable_calls_back_in_ts_order_and_at_once_when_durable(tmp_path):
    async def fn(node):
        sequencer = node.sequencer
        calls = []
        first = node.runner.mutation_now("notes:add", {"body": "1"}).commit_ts
        second = node.runner.mutation_now("notes:add", {"body": "2"}).commit_ts
        sequencer.when_durable(second, lambda: calls.append(second))
        sequencer.when_durable(first, lambda: calls.append(first))

        def broken():
            raise RuntimeError("a callback that fails does not stop the loop")
        sequencer.when_durable(first, broken)
        with trio.fail_after(10):
            while len(calls) < 2:
                await trio.sleep(0.001)
        assert calls == [first, second]
        sequencer.when_durable(first, lambda: calls.append("at once"))
        assert calls[-1] == "at once"
        await node.mutation("notes:add", {"body": "3"})  # the loop still runs
    run(LIMITS_APP, tmp_path, fn)
