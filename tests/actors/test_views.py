"""Live queries served from views on a real node: every Update equals the
query run from scratch at its ts (value and read set), the fast path is taken
exactly for a query returning its rows as read, and a changed control flow
falls back to the shards."""

import os
import random


from actors.live import run_query_at

from tests.actors.live_helpers import next_update, run_on_node

APP = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps", "leaderboard")
ROW_COUNT = 400


def run(tmp_path, fn):
    return run_on_node(APP, tmp_path, fn)


async def load(node, rng, count=ROW_COUNT):
    rows = [{"player": f"p{i}", "score": rng.randrange(1000)} for i in range(count)]
    return await node.mutation("scores:load", {"rows": rows})


async def check_against_scratch(node, path, args, outcome, ts, session=None, query_id=0):
    """The outcome equals a from-scratch run at `ts`, value and read set alike
    (the read set of the subscription's newest run: an unchanged result is
    not sent again)."""
    scratch = await run_query_at(node, path, args, None, ts, admin=True)
    assert outcome.error is None and scratch.error is None
    assert outcome.value == scratch.value, (path, ts)
    if session is not None:
        current = session.state.bound[query_id].outcome
        now = await run_query_at(node, path, args, None, node.subscriptions.statistics().current_ts,
                                 admin=True)
        assert current.ranges() == now.ranges(), "a view-served run read differently"
        assert current.fingerprint() == now.fingerprint(), "a fast-path fingerprint is off"


async def caught_up(node, session, query_id, latest):
    """(the first Update at or past the newest commit, the query's newest outcome)."""
    ts = node.latest_ts
    session.request_update(ts)
    while True:
        update = await next_update(session)
        if query_id in update.results:
            latest = update.results[query_id]
        if update.ts >= ts:
            return update, latest


async def random_changes(node, rng, ids, session, query_id, path, args, steps, latest):
    """Random inserts, score changes and deletes (many inside the top); after
    each one the subscription's Update is checked against a from-scratch run."""
    for step in range(steps):
        top = await node.query("scores:top", {"count": 10})
        choice = rng.random()
        if choice < 0.3 and top:  # delete inside the top 10: the view must refill
            victim = rng.choice(top)["_id"]
            await node.mutation("scores:remove", {"id": victim})
            ids.remove(victim)
        elif choice < 0.6:  # move a random row, often into or out of the top
            await node.mutation("scores:set_score", {"id": rng.choice(ids),
                                                     "score": rng.randrange(1200)})
        else:
            ids.append(await node.mutation("scores:add", {"player": f"n{step}",
                                                          "score": rng.randrange(1200)}))
        update, latest = await caught_up(node, session, query_id, latest)
        await check_against_scratch(node, path, args, latest, update.ts, session, query_id)


def test_a_top_10_stays_equal_to_the_query_from_scratch_under_random_writes(tmp_path):
    """A fast-path top 10 over many rows equals a from-scratch run at every Update's ts."""
    async def fn(node):
        rng = random.Random(3)
        ids = await load(node, rng)
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "scores:top", {"count": 10}, None)])
        first = (await next_update(session)).results[0]
        await check_against_scratch(node, "scores:top", {"count": 10}, first, first.ts)
        await random_changes(node, rng, ids, session, 0, "scores:top", {"count": 10}, 60, first)
        return node.subscriptions.statistics()
    statistics = run(tmp_path, fn)
    assert statistics.fast_path_count > 20 and statistics.refill_count > 5
    assert statistics.view_evaluation_count == 0 and statistics.fallback_count == 0
    assert statistics.evaluation_count == 1 + statistics.fast_path_count


def test_a_query_that_transforms_its_rows_reruns_against_its_views(tmp_path):
    """A query returning a list it built is re-run, from its views, never the fast path."""
    async def fn(node):
        rng = random.Random(4)
        ids = await load(node, rng)
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "scores:top_players", {"count": 10}, None)])
        first = (await next_update(session)).results[0]
        await random_changes(node, rng, ids, session, 0, "scores:top_players", {"count": 10}, 25,
                             first)
        return node.subscriptions.statistics()
    statistics = run(tmp_path, fn)
    assert statistics.fast_path_count == 0 and statistics.view_evaluation_count > 5
    assert statistics.fallback_count == 0


def test_a_filtered_take_keeps_its_fast_path_as_it_consumes_more_or_fewer_rows(tmp_path):
    """A filtered take(10) stays exact while the rows it must skip come and go."""
    async def fn(node):
        rng = random.Random(5)
        rows = [{"player": f"p{i}", "score": rng.randrange(-5, 8)} for i in range(60)]
        ids = await node.mutation("scores:load", {"rows": rows})
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "scores:top_positive", {"count": 10}, None)])
        first = (await next_update(session)).results[0]
        await random_changes(node, rng, ids, session, 0, "scores:top_positive", {"count": 10}, 30,
                             first)
        return node.subscriptions.statistics()
    statistics = run(tmp_path, fn)
    assert statistics.fast_path_count > 5


def test_app_code_mutating_its_rows_does_not_corrupt_a_shared_view(tmp_path):
    """A query that scribbles over the rows it read shares a view with a fast-path query, harmlessly."""
    async def fn(node):
        rng = random.Random(6)
        ids = await load(node, rng, 50)
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "scores:top_vandalized", {"count": 10}, None),
                             (1, "scores:top", {"count": 10}, None)])
        update = await next_update(session)
        await check_against_scratch(node, "scores:top", {"count": 10}, update.results[1],
                                    update.ts)
        assert node.subscriptions.statistics().view_count == 1, "identical reads share a view"
        await random_changes(node, rng, ids, session, 1, "scores:top", {"count": 10}, 20,
                             update.results[1])
        return node.subscriptions.statistics()
    statistics = run(tmp_path, fn)
    assert statistics.fast_path_count > 5


def test_a_changed_control_flow_falls_back_to_the_shards(tmp_path):
    """A query that starts reading another range reads it from the shard, then keeps it as a view."""
    async def fn(node):
        rng = random.Random(7)
        await load(node, rng, 30)
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "scores:top_or_bottom", {}, None)])
        seen = [(await next_update(session)).results[0]]
        for lowest_first in (False, True, True, False):
            await node.mutation("scores:set_order", {"lowest_first": lowest_first})
            update, latest = await caught_up(node, session, 0, seen[-1])
            seen.append(latest)
            await check_against_scratch(node, "scores:top_or_bottom", {}, seen[-1], update.ts,
                                        session)
        return seen, node.subscriptions.statistics()
    seen, statistics = run(tmp_path, fn)
    assert seen[0].value == sorted(seen[0].value, reverse=True)
    assert seen[-1].value == sorted(seen[-1].value, reverse=True)
    assert any(outcome.value == sorted(outcome.value) for outcome in seen)
    # The settings table appears (a new read), then the ascending range
    # (another), then the descending one again (dropped in between: another).
    assert statistics.fallback_count >= 3 and statistics.view_evaluation_count >= 4
    assert statistics.fast_path_count == 0


def test_subscriptions_with_one_read_share_one_view_and_one_fast_result(tmp_path):
    """Many users watching one top 10 hold one view; a change updates all of them."""
    async def fn(node):
        rng = random.Random(8)
        ids = await load(node, rng, 100)
        sessions = []
        for user in range(20):
            session = node.subscriptions.open_session()
            session.set_identity({"subject": f"u{user}"})
            session.modify(adds=[(0, "scores:top", {"count": 10}, None)])
            await next_update(session)
            sessions.append(session)
        assert node.subscriptions.statistics().view_count == 1
        await node.mutation("scores:set_score", {"id": ids[0], "score": 5000})
        updates = [await next_update(session) for session in sessions]
        values = [u.results[0].value for u in updates]
        assert all(v == values[0] for v in values) and values[0][0]["score"] == 5000
        return node.subscriptions.statistics()
    statistics = run(tmp_path, fn)
    assert statistics.fast_path_count == 20 and statistics.view_count == 1


def test_fast_path_only_for_functions_that_return_the_query_itself():
    """A function that inspects its rows before returning them never takes the fast path."""
    from actors.live import returns_query_directly

    async def plain(ctx):
        """Top ten."""
        return await ctx.db.query("t").with_index("by_score").order("desc").take(10)

    async def inspecting(ctx):
        rows = await ctx.db.query("t").with_index("by_score").order("desc").take(10)
        if any(row.get("banned") for row in rows):
            return []
        return rows

    async def two_reads(ctx):
        return await ctx.db.query("t").take(await ctx.db.query("u").first())

    async def get(ctx, id):
        return await ctx.db.get(id)

    async def get_field(ctx, id):
        return (await ctx.db.get(id))["score"]

    async def get_other(ctx, id, cache):
        return await cache.db.get(id)

    async def two_gets(ctx, id):
        return await ctx.db.get(await ctx.db.get(id))

    assert returns_query_directly(plain) and returns_query_directly(get)
    assert not returns_query_directly(inspecting)
    assert not returns_query_directly(two_reads)
    assert not any(map(returns_query_directly, (get_field, get_other, two_gets)))


def test_a_function_that_inspects_its_rows_sees_every_change(tmp_path):
    """A query that returns its rows only if none is banned answers [] once a banned row enters."""
    async def fn(node):
        rng = random.Random(5)
        await load(node, rng, 50)
        session = node.subscriptions.open_session()
        session.modify(adds=[(0, "scores:top_unless_banned", {"count": 10}, None)])
        first = (await next_update(session)).results[0]
        assert len(first.value) == 10
        await node.mutation("scores:add", {"player": "banned-1", "score": 5000})
        update, latest = await caught_up(node, session, 0, first)
        await check_against_scratch(node, "scores:top_unless_banned", {"count": 10}, latest,
                                    update.ts)
        return latest.value, node.subscriptions.statistics()
    value, statistics = run(tmp_path, fn)
    assert value == []
    assert statistics.fast_path_count == 0


def test_a_get_takes_the_fast_path_shared_by_distinct_subscriptions(tmp_path):
    """Distinct subscriptions to a function that returns its get share one fast result that follows
    the document through patches and its delete, equal to the query from scratch, while a
    collect of the same point range and a function that looks inside the document run again."""
    async def fn(node):
        rng = random.Random(9)
        ids = await load(node, rng, 20)
        target = ids[3]
        session = node.subscriptions.open_session()
        adds = [(viewer, "scores:player", {"id": target, "viewer": viewer}, None)
                for viewer in range(30)]
        adds += [(100, "scores:player_as_list", {"id": target}, None),
                 (101, "scores:player_score", {"id": target}, None)]
        session.modify(adds=adds)
        first = await next_update(session)
        assert first.results[0].value["_id"] == target and first.results[100].value[0]["_id"] == target
        before = node.subscriptions.statistics()
        seen = []
        for step in range(4):
            if step < 3:
                await node.mutation("scores:set_score", {"id": target, "score": 2000 + step})
            else:
                await node.mutation("scores:remove", {"id": target})
            update, _ = await caught_up(node, session, 0, None)
            assert len(update.results) == 32, "every subscription changed"
            for viewer in (0, 29):
                await check_against_scratch(node, "scores:player", {"id": target, "viewer": viewer},
                                            update.results[viewer], update.ts, session, viewer)
            await check_against_scratch(node, "scores:player_as_list", {"id": target},
                                        update.results[100], update.ts, session, 100)
            seen.append((update.results[0].value, update.results[100].value,
                         update.results[101].value))
        after = node.subscriptions.statistics()
        return seen, before, after
    seen, before, after = run(tmp_path, fn)
    assert [s[0]["score"] for s in seen[:3]] == [2000, 2001, 2002] and seen[3][0] is None
    assert [s[1][0]["score"] for s in seen[:3]] == [2000, 2001, 2002] and seen[3][1] == []
    assert [s[2] for s in seen] == [2000, 2001, 2002, None]
    assert after.fast_path_count - before.fast_path_count == 4 * 31, "gets and the collect"
    assert after.view_evaluation_count - before.view_evaluation_count == 4, "player_score re-runs"
    assert after.view_count == 2, "one point view for the gets, one range view for the collect"
