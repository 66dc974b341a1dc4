"""Every Update a live query session receives equals the same queries run
from scratch at that Update's ts, under concurrent mutations, many
overlapping subscriptions, removals and identity changes; on a node with
one subscription actor and on one with two (sessions spread over both)."""

import os
import shutil
import tempfile
import threading

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.node import open_node
from actors.subscriptions import REMOVED
from engine.errors import AppError, EddyError, FunctionCrashed

APP = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps", "live")
CHANNELS = ["a", "b", "c"]
IDENTITIES = [None, {"subject": "ada"}, {"subject": "bob"}]
STEP_TIMEOUT_S = 20

query_specs = st.one_of(
    st.builds(lambda c: ("messages:list", {"channel": c}), st.sampled_from(CHANNELS)),
    st.builds(lambda c: ("messages:total", {"channel": c}), st.sampled_from(CHANNELS)),
    st.builds(lambda c, n: ("messages:latest", {"channel": c, "count": n}),
              st.sampled_from(CHANNELS), st.integers(1, 3)),
    st.builds(lambda c: ("messages:fail_if_empty", {"channel": c}), st.sampled_from(CHANNELS)),
    st.just(("messages:whoami", {})),
)
sends = st.tuples(st.just("send"), st.sampled_from(CHANNELS), st.integers(-5, 5))
edits = st.tuples(st.just("edit"), st.integers(0, 30), st.integers(-5, 5))
removes = st.tuples(st.just("remove"), st.integers(0, 30))
mutations = st.lists(st.one_of(sends, sends, edits, removes), min_size=1, max_size=8)


class NodeThread:
    """A node running in a trio loop on its own thread, so that Hypothesis's
    synchronous rules can drive one node (and its live sessions) across steps."""

    def __init__(self, data_dir, subscription_actors=1):
        self.error = None
        self.subscription_actors = subscription_actors
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(data_dir,), daemon=True)
        self.thread.start()
        assert self._ready.wait(STEP_TIMEOUT_S), "node did not open"
        if self.error:
            raise self.error

    def _run(self, data_dir):
        try:
            trio.run(self._main, data_dir)
        except BaseException as error:  # reported to the test thread by `call`
            self.error = error
            self._ready.set()

    async def _main(self, data_dir):
        async with open_node(APP, data_dir,
                             subscription_actors=self.subscription_actors) as node:
            self.node = node
            node.subscriptions.validate_each_step = True
            self.stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self.stop.wait()
                nursery.cancel_scope.cancel()

    def call(self, async_fn, *args):
        async def bounded():
            with trio.fail_after(STEP_TIMEOUT_S):
                return await async_fn(*args)
        assert self.error is None, self.error
        return trio.from_thread.run(bounded, trio_token=self.token)

    def close(self):
        if self.error is None:
            trio.from_thread.run_sync(self.stop.set, trio_token=self.token)
        self.thread.join(STEP_TIMEOUT_S)


class Client:
    """A session and what its owner knows: the specs it added (query ids are
    never reused), the identity after each set_identity, and the Updates taken."""

    def __init__(self, session):
        self.session = session
        self.specs = {}
        self.live = set()
        self.identities = [None]
        self.modify_count = 0
        self.updates = []
        self.checked = 0
        self.view = {}  # query id -> value or error as the client sees it


async def _consume(client):
    while True:
        client.updates.append(await client.session.wait_update())


def _seen(outcome):
    if outcome.error is None:
        return ("value", outcome.value)
    return ("error",) + tuple(outcome.error)


async def _expected(node, path, args, identity, ts):
    try:
        result = await node.call("query", path, args, identity=identity, admin=False, at_ts=ts)
    except AppError as error:
        return ("error", str(error), error.data, True)
    except (EddyError, FunctionCrashed) as error:
        return ("error", error.message, None, False)
    return ("value", result.value)


class LiveQueriesMachine(RuleBasedStateMachine):
    subscription_actors = 1  # the node's (open_node)

    def __init__(self):
        super().__init__()
        self.data_dir = tempfile.mkdtemp(prefix="eddy-live-")
        self.node_thread = NodeThread(self.data_dir, self.subscription_actors)
        self.clients = []
        self.ids = []
        self.next_query_id = 0

    def teardown(self):
        self.node_thread.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def node(self):
        return self.node_thread.node

    @precondition(lambda self: len(self.clients) < 4)
    @rule()
    def open_session(self):
        async def go():
            client = Client(self.node.subscriptions.open_session())
            self.node_thread.nursery.start_soon(_consume, client)
            return client
        self.clients.append(self.node_thread.call(go))

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), specs=st.lists(query_specs, min_size=1, max_size=4))
    def add_queries(self, data, specs):
        client = data.draw(st.sampled_from(self.clients))
        adds = []
        for path, args in specs:
            query_id, self.next_query_id = self.next_query_id, self.next_query_id + 1
            client.specs[query_id] = (path, args)
            client.live.add(query_id)
            adds.append((query_id, path, args, None))

        async def go():
            client.session.modify(adds=adds)
        self.node_thread.call(go)
        client.modify_count += 1

    @precondition(lambda self: any(c.live for c in self.clients))
    @rule(data=st.data())
    def remove_queries(self, data):
        client = data.draw(st.sampled_from([c for c in self.clients if c.live]))
        gone = data.draw(st.lists(st.sampled_from(sorted(client.live)), min_size=1, unique=True))
        client.live.difference_update(gone)

        async def go():
            client.session.modify(removes=gone)
        self.node_thread.call(go)
        client.modify_count += 1

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), identity=st.sampled_from(IDENTITIES))
    def set_identity(self, data, identity):
        client = data.draw(st.sampled_from(self.clients))
        client.identities.append(identity)

        async def go():
            client.session.set_identity(identity)
        self.node_thread.call(go)

    @rule(batch=mutations)
    def run_mutations_concurrently(self, batch):
        """Runs the batch at once; then every session must reach the last ts (rule 3)."""
        node = self.node

        async def one(operation):
            try:
                if operation[0] == "send":
                    self.ids.append(await node.mutation(
                        "messages:send", {"channel": operation[1], "n": operation[2]}))
                elif self.ids:
                    target = self.ids[operation[1] % len(self.ids)]
                    if operation[0] == "edit":
                        await node.mutation("messages:edit", {"id": target, "n": operation[2]})
                    else:
                        await node.mutation("messages:remove", {"id": target})
            except EddyError:
                pass  # edit or remove of a message already removed

        async def go():
            async with trio.open_nursery() as nursery:
                for operation in batch:
                    nursery.start_soon(one, operation)
            ts = node.latest_ts
            for client in self.clients:
                client.session.request_update(ts)
            return ts
        ts = self.node_thread.call(go)
        self._settle()
        for client in self.clients:
            assert client.updates and client.updates[-1].ts >= ts, "request_update not answered"

    def _settle(self):
        async def go():
            for actor in self.node.subscriptions.actors:  # each brought to the latest ts
                probe = actor.open_session()
                probe.request_update(self.node.latest_ts)
                await probe.wait_update()
                probe.close()
            await trio.testing.wait_all_tasks_blocked()
        self.node_thread.call(go)

    @invariant()
    def every_update_equals_the_queries_run_at_its_ts(self):
        self._settle()

        async def go():
            self.node.subscriptions.validate()
            for client in self.clients:
                await self._check(client)
        self.node_thread.call(go)

    async def _check(self, client):
        for update in client.updates[client.checked:]:
            assert not client.checked or update.ts >= client.updates[client.checked - 1].ts, \
                "an Update went back in time"
            identity = client.identities[update.identity_count]
            for query_id, outcome in update.results.items():
                if outcome is REMOVED:
                    client.view.pop(query_id, None)
                else:
                    # Computed then, or earlier with nothing it read written since.
                    assert outcome.ts <= update.ts
                    client.view[query_id] = _seen(outcome)
            # Rule 1: every query the client holds is current at the Update's ts.
            for query_id, seen in client.view.items():
                path, args = client.specs[query_id]
                expected = await _expected(self.node, path, args, identity, update.ts)
                assert seen == expected, (query_id, path, args, update.ts, seen, expected)
            client.checked += 1
        if client.modify_count or len(client.identities) > 1:
            last = client.updates[-1]
            assert last.modify_count == client.modify_count, "a modify was not answered"
            assert last.identity_count == len(client.identities) - 1
            assert set(client.view) == client.live, "the client's view and its query set differ"


LiveQueriesMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=14,
                                                deadline=None)
TestLiveQueries = pytest.mark.slow(LiveQueriesMachine.TestCase)


class TwoActorsLiveQueriesMachine(LiveQueriesMachine):
    """The same rules on a node with two subscription actors: the sessions
    alternate between them, so every invariant holds across actors too."""

    subscription_actors = 2

    @invariant()
    def sessions_are_spread_over_both_actors(self):
        async def go():
            return [actor.statistics().session_count for actor in self.node.subscriptions.actors]
        held = self.node_thread.call(go)
        assert sum(held) == len(self.clients) and max(held) - min(held) <= 1, held


TwoActorsLiveQueriesMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=14,
                                                         deadline=None)
TestLiveQueriesTwoActors = pytest.mark.slow(TwoActorsLiveQueriesMachine.TestCase)
