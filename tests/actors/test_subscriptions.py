"""Live queries against a real node: initial results, updates after commits,
removals, sharing, precision of invalidation, requested Updates, journals."""

import os

import pytest
import trio

import actors.subscriptions as subscriptions_module
from actors.live import run_query_at
from actors.node import open_node
from actors.subscriptions import REMOVED
from engine.errors import EddyError

from tests.actors.live_helpers import next_update, run_on_node

APP = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps", "live")


def run(tmp_path, fn):
    return run_on_node(APP, tmp_path, fn)


async def settled(node, ts=None):
    """Waits until the subscription actor has processed every commit up to `ts` (default: the latest)."""
    probe = node.subscriptions.open_session()
    probe.request_update(node.latest_ts if ts is None else ts)
    await next_update(probe)
    probe.close()


def values_of(update):
    return {q: (r if r is REMOVED else r.value) for q, r in update.results.items()}


def test_a_modify_is_answered_with_the_initial_results(tmp_path):
    """Added queries come back in one Update at the node's durable ts, reflecting one modify."""
    async def fn(node):
        await node.mutation("messages:send", {"channel": "a", "n": 1})
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                             (1, "messages.js:total", [{"channel": "a"}], None)])
        update = await next_update(session)
        return update, node.latest_ts
    update, latest_ts = run(tmp_path, fn)
    assert values_of(update) == {0: [1], 1: 1}
    assert update.ts == latest_ts and update.modify_count == 1 and update.identity_count == 0
    assert all(r.ts == update.ts and r.error is None for r in update.results.values())


def test_a_commit_updates_the_queries_it_touches(tmp_path):
    """After a mutation a session gets one Update at the mutation's ts with the changed queries only."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                             (1, "messages:list", {"channel": "b"}, None)])
        await next_update(session)
        result = await node.call("mutation", "messages:send", {"channel": "a", "n": 7})
        return await next_update(session), result.ts
    update, ts = run(tmp_path, fn)
    assert update.ts == ts
    assert values_of(update) == {0: [7]}


def test_edits_and_deletes_reach_a_subscription_by_id(tmp_path):
    """A get by id follows the document through a patch and a delete."""
    async def fn(node):
        message_id = await node.mutation("messages:send", {"channel": "a", "n": 1})
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:get", {"id": message_id}, None)])
        seen = [values_of(await next_update(session))[0]]
        await node.mutation("messages:edit", {"id": message_id, "n": 2})
        seen.append(values_of(await next_update(session))[0])
        await node.mutation("messages:remove", {"id": message_id})
        seen.append(values_of(await next_update(session))[0])
        return seen
    assert run(tmp_path, fn) == [1, 2, None]


def test_a_removed_query_is_reported_and_dropped(tmp_path):
    """A remove is answered by REMOVED, and the subscription is gone from the node."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:list", {"channel": "a"}, None)])
        await next_update(session)
        session.modify(removes=[0])
        update = await next_update(session)
        await node.mutation("messages:send", {"channel": "a", "n": 1})
        await settled(node)
        return update, node.subscriptions.statistics(), session.pending_updates
    update, statistics, pending = run(tmp_path, fn)
    assert update.results == {0: REMOVED} and update.modify_count == 2
    assert statistics.subscription_count == 0 and pending == 0


def test_identical_subscriptions_are_evaluated_once(tmp_path):
    """Two sessions with the same query share one evaluation per commit, and both are told."""
    async def fn(node):
        first, second = node.subscriptions.open_session(), node.subscriptions.open_session()
        first.modify(adds=[(0, "messages:list", {"channel": "a"}, None)])
        second.modify(adds=[(4, "messages:list", {"channel": "a"}, None)])
        await next_update(first)
        await next_update(second)
        before = node.subscriptions.statistics()
        await node.mutation("messages:send", {"channel": "a", "n": 3})
        updates = await next_update(first), await next_update(second)
        return before, node.subscriptions.statistics(), updates
    before, after, (first, second) = run(tmp_path, fn)
    assert before.evaluation_count == 1 and before.subscription_count == 1
    assert after.evaluation_count == 2
    assert values_of(first) == {0: [3]} and values_of(second) == {4: [3]}


def test_a_write_to_an_unrelated_range_evaluates_nothing(tmp_path):
    """A commit into another channel's index range re-runs no subscription at all."""
    async def fn(node):
        await node.mutation("messages:send", {"channel": "b", "n": 0})
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                             (1, "messages:latest", {"channel": "c", "count": 2}, None)])
        await next_update(session)
        before = node.subscriptions.statistics()
        for n in range(5):
            await node.mutation("messages:send", {"channel": "b", "n": n})
        await settled(node)
        return before, node.subscriptions.statistics(), session.pending_updates
    before, after, pending = run(tmp_path, fn)
    assert after.evaluation_count == before.evaluation_count
    assert after.hit_count == before.hit_count
    assert pending == 0


def test_request_update_gives_an_update_even_without_a_change(tmp_path):
    """After request_update(T) an Update with ts >= T follows, empty when nothing it holds changed."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:list", {"channel": "a"}, None)])
        await next_update(session)
        result = await node.call("mutation", "messages:send", {"channel": "z", "n": 1})
        session.request_update(result.ts)
        update = await next_update(session)
        session.request_update(update.ts)  # already reached: answered at once
        again = await next_update(session)
        return result.ts, update, again
    ts, update, again = run(tmp_path, fn)
    assert update.ts >= ts and update.results == {}
    assert again.ts >= update.ts and again.results == {}


def test_a_slow_session_gets_merged_updates(tmp_path):
    """Updates not taken merge into one holding the newest outcome per query."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:total", {"channel": "a"}, None),
                             (1, "messages:list", {"channel": "b"}, None)])
        await next_update(session)
        for n in (1, 2, 3):
            await node.mutation("messages:send", {"channel": "a", "n": n})
        ts = (await node.call("mutation", "messages:send", {"channel": "b", "n": 9})).ts
        await settled(node)
        return session.pending_updates, await next_update(session), ts
    pending, update, ts = run(tmp_path, fn)
    assert pending >= 2
    assert update.ts == ts and values_of(update) == {0: 6, 1: [9]}


def test_failures_are_outcomes_with_the_clients_message(tmp_path):
    """AppError data, crashes, unknown functions, bad args and internal functions are error outcomes."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:fail_if_empty", {"channel": "a"}, None),
                             (1, "messages:crash", {}, None),
                             (2, "messages:nope", {}, None),
                             (3, "messages:list", {"channel": 5}, None),
                             (4, "messages:secret", {}, None)])
        first = await next_update(session)
        await node.mutation("messages:send", {"channel": "a", "n": 1})
        second = await next_update(session)
        admin = node.subscriptions.open_session(admin=True)
        admin.modify(adds=[(0, "messages:secret", {}, None)])
        return first, second, await next_update(admin)
    first, second, admin = run(tmp_path, fn)
    errors = {q: r.error for q, r in first.results.items()}
    assert errors[0] == ("ConvexError", {"empty": "a"}, True)
    assert errors[1] == ("Uncaught ValueError: boom", None, False)
    assert "Could not find public function" in errors[2][0] and errors[2][2] is False
    assert errors[3] is not None and errors[3][2] is False
    assert "internal" in errors[4][0]
    assert values_of(second) == {0: "ok"}, "a failed query recovers when what it read changes"
    assert values_of(admin) == {0: "secret"}


def test_set_identity_reruns_every_query(tmp_path):
    """A new identity re-runs the session's queries under it, counted in identity_count."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:whoami", {}, None)])
        first = await next_update(session)
        session.set_identity({"subject": "ada", "issuer": "https://auth"})
        second = await next_update(session)
        session.set_identity(None)
        return first, second, await next_update(session)
    first, second, third = run(tmp_path, fn)
    assert values_of(first) == {0: None}
    assert values_of(second) == {0: "ada"} and second.identity_count == 1
    assert values_of(third) == {0: None} and third.identity_count == 2


def test_a_query_of_a_table_not_yet_created_sees_its_creation(tmp_path):
    """A read of a missing table is re-run when a commit creates the table."""
    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:flag_count", {}, None)])
        first = await next_update(session)
        await node.mutation("messages:flag", {"name": "x"})
        return first, await next_update(session)
    first, second = run(tmp_path, fn)
    assert values_of(first) == {0: 0} and values_of(second) == {0: 1}


def test_closing_a_session_releases_its_subscriptions(tmp_path):
    """After close the session's subscriptions are dropped unless another session holds them."""
    async def fn(node):
        first, second = node.subscriptions.open_session(), node.subscriptions.open_session()
        first.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                           (1, "messages:total", {"channel": "a"}, None)])
        second.modify(adds=[(0, "messages:list", {"channel": "a"}, None)])
        await next_update(first)
        await next_update(second)
        first.close()
        await settled(node)
        statistics = node.subscriptions.statistics()
        with pytest.raises(EddyError):
            first.modify(adds=[(5, "messages:list", {"channel": "a"}, None)])
        return statistics
    statistics = run(tmp_path, fn)
    assert statistics.subscription_count == 1 and statistics.session_count == 1


def test_a_pinned_page_grows_under_inserts_and_pages_stay_contiguous(tmp_path):
    """With its journal a page keeps its end, so inserts grow it and the next page neither gaps nor repeats."""
    async def fn(node):
        for n in range(1, 6):
            await node.mutation("messages:send", {"channel": "a", "n": n})
        args = {"channel": "a", "newest_first": True, "paginationOpts": {"numItems": 2, "cursor": None}}
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:page", args, None)])
        first = (await next_update(session)).results[0]
        args1 = {**args, "paginationOpts": {"numItems": 2, "cursor": first.value["continueCursor"]}}
        session.modify(adds=[(1, "messages:page", args1, None)])
        second = (await next_update(session)).results[1]
        await node.mutation("messages:send", {"channel": "a", "n": 6})
        grown = (await next_update(session)).results
        fresh = await run_query_at(node, "messages:page", args, None, node.latest_ts)
        # A client that reconnects re-adds page 0 with its journal and gets the same page.
        again = node.subscriptions.open_session()
        again.modify(adds=[(0, "messages:page", args, grown[0].journal)])
        rejoined = (await next_update(again)).results[0]
        return first, second, grown, fresh, rejoined
    first, second, grown, fresh, rejoined = run(tmp_path, fn)
    assert first.value["page"] == [5, 4] and first.journal == first.value["continueCursor"]
    assert second.value["page"] == [3, 2]
    assert list(grown) == [0], "page 1 did not change"
    assert grown[0].value["page"] == [6, 5, 4] and grown[0].journal == first.journal
    assert fresh.value["page"] == [6, 5] and fresh.journal is not None
    assert rejoined.value["page"] == [6, 5, 4]


def test_run_query_at_reads_the_past_and_rejects_the_future(tmp_path):
    """run_query_at answers at a past ts as of then, and a ts beyond the durable one is an error outcome."""
    async def fn(node):
        ts = (await node.call("mutation", "messages:send", {"channel": "a", "n": 1})).ts
        await node.mutation("messages:send", {"channel": "a", "n": 2})
        past = await run_query_at(node, "messages:list", {"channel": "a"}, None, ts)
        future = await run_query_at(node, "messages:list", {"channel": "a"}, None, node.latest_ts + 1)
        return past, future
    past, future = run(tmp_path, fn)
    assert past.value == [1] and past.read_set.range_count() == 1
    assert future.error is not None and future.error[2] is False


def test_a_full_mailbox_coalesces_groups_without_losing_any(tmp_path, monkeypatch):
    """When published groups outrun the actor, the overflow is taken as one group and nothing is missed."""
    monkeypatch.setattr(subscriptions_module, "published_groups_max", 1)

    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:total", {"channel": "a"}, None)])
        await next_update(session)
        async with trio.open_nursery() as nursery:
            for n in range(1, 41):
                nursery.start_soon(node.mutation, "messages:send", {"channel": "a", "n": n})
        await settled(node)
        return await next_update(session), node.latest_ts
    update, latest_ts = run(tmp_path, fn)
    assert update.ts == latest_ts and values_of(update) == {0: sum(range(1, 41))}


def test_reloaded_code_reruns_every_subscription(tmp_path):
    """node.reload re-runs every live query at the current ts; unchanged results send nothing."""
    from actors.app import load_app

    async def fn(node):
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                             (1, "messages:whoami", {}, None)])
        await next_update(session)
        before = node.subscriptions.statistics().evaluation_count
        node.reload(load_app(APP))
        await settled(node)
        return node.subscriptions.statistics().evaluation_count - before, session.pending_updates
    evaluated, pending = run(tmp_path, fn)
    assert evaluated == 2 and pending == 0


def test_a_cancelled_wait_update_loses_nothing(tmp_path):
    """Cancelling wait_update leaves the pending Update for the next call."""
    async def fn(node):
        session = node.subscriptions.open_session()
        with trio.move_on_after(0.05):
            await session.wait_update()
        session.modify(adds=[(0, "messages:total", {"channel": "a"}, None)])
        await settled(node)
        with trio.CancelScope() as scope:
            scope.cancel()
            await session.wait_update()
        return session.pending_updates, await next_update(session)
    pending, update = run(tmp_path, fn)
    assert pending == 1 and values_of(update) == {0: 0}


YIELDING_APP = '''
import trio
from engine import query, v

@query(args={"sleep_ms": v.int64()})
async def count_after_sleep(ctx, sleep_ms):
    await trio.sleep(sleep_ms / 1000)
    return len(await ctx.db.query("things").collect())
'''


def test_a_live_query_that_yields_runs_and_times_out_as_a_one_shot_query(tmp_path, monkeypatch):
    """A live query that yields to trio completes, and one that outlives the query time limit
    fails with the runner's timeout message."""
    from engine import limits

    app = tmp_path / "app"
    app.mkdir()
    (app / "things.py").write_text(YIELDING_APP)
    monkeypatch.setattr(limits, "query_user_ms_max", 100)

    async def main():
        async with open_node(str(app), str(tmp_path / "data")) as node:
            ts = node.sequencer.durable_ts
            quick = await run_query_at(node, "things:count_after_sleep", {"sleep_ms": 1}, None, ts)
            slow = await run_query_at(node, "things:count_after_sleep", {"sleep_ms": 1000}, None, ts)
            with pytest.raises(EddyError) as one_shot:
                await node.query("things:count_after_sleep", {"sleep_ms": 1000})
            return quick, slow, one_shot.value
    quick, slow, one_shot = trio.run(main)
    assert quick.error is None and quick.value == 0
    assert slow.error == (one_shot.message, None, False) and "ran longer than 100 ms" in slow.error[0]
