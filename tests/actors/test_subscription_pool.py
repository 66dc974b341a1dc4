"""A node with several subscription actors (actors/subscription_pool.py):
sessions are spread deterministically, every actor is fed every commit, and
sessions on different actors see the same values, Updates and statistics
that one actor gives."""

import os

import pytest
import trio
import trio.testing

from actors.app import load_app
from actors.subscription_pool import subscription_actors_max
from actors.subscriptions import REMOVED

from tests.actors.live_helpers import next_update, run_on_node

APP = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps", "live")


def run(tmp_path, fn, actors=2):
    return run_on_node(APP, tmp_path, fn, actors)


async def settled(node):
    """Waits until every actor has processed every commit up to the latest."""
    for actor in node.subscriptions.actors:
        probe = actor.open_session()
        probe.request_update(node.latest_ts)
        await next_update(probe)
        probe.close()


def values_of(update):
    return {q: (r if r is REMOVED else r.value) for q, r in update.results.items()}


def actor_index(node, session):
    """Which of the node's actors holds `session`."""
    return node.subscriptions.actors.index(session._hub)


def test_sessions_go_to_the_actor_holding_fewest_ties_going_round(tmp_path):
    """Sessions alternate over two actors; a session closed on one makes that
    actor the next one chosen once it has been released; and short-lived
    sessions opened one after another (ties each time) take turns."""
    async def fn(node):
        sessions = [node.subscriptions.open_session() for _ in range(3)]
        placed = [actor_index(node, s) for s in sessions]
        sessions[1].close()
        await settled(node)
        fourth = node.subscriptions.open_session()
        after_close = actor_index(node, fourth)
        counts = [a.statistics().session_count for a in node.subscriptions.actors]
        for session in (sessions[0], sessions[2], fourth):
            session.close()
        turns = []
        for _ in range(4):
            await trio.testing.wait_all_tasks_blocked()  # closed sessions released: a tie
            session = node.subscriptions.open_session()
            turns.append(actor_index(node, session))
            session.close()
        return placed, after_close, counts, turns
    placed, after_close, counts, turns = run(tmp_path, fn)
    assert placed == [0, 1, 0]
    assert after_close == 1
    assert counts == [2, 1]  # open: the first and third on 0, the fourth on 1
    assert turns == [0, 1, 0, 1]


def test_sessions_on_both_actors_see_every_commit(tmp_path):
    """Each actor is fed every published group: sessions on either actor get
    the new values in one Update at the commit's ts, including a write made
    between their subscribing and a removal."""
    async def fn(node):
        first, second = node.subscriptions.open_session(), node.subscriptions.open_session()
        assert first._hub is not second._hub
        first.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                           (1, "messages:total", {"channel": "b"}, None)])
        second.modify(adds=[(0, "messages:list", {"channel": "a"}, None),
                            (2, "messages:latest", {"channel": "b", "count": 2}, None)])
        initial = await next_update(first), await next_update(second)
        ts = (await node.call("mutation", "messages:send", {"channel": "a", "n": 5})).ts
        after_a = await next_update(first), await next_update(second)
        await node.mutation("messages:send", {"channel": "b", "n": 7})
        await node.mutation("messages:send", {"channel": "b", "n": 8})
        await settled(node)
        after_b = await next_update(first), await next_update(second)
        second.modify(removes=[0])
        removed = await next_update(second)
        return initial, ts, after_a, after_b, removed, node.latest_ts
    initial, ts, after_a, after_b, removed, latest_ts = run(tmp_path, fn)
    assert values_of(initial[0]) == {0: [], 1: 0}
    assert values_of(initial[1]) == {0: [], 2: []}
    assert [u.ts for u in after_a] == [ts, ts]
    assert values_of(after_a[0]) == {0: [5]} and values_of(after_a[1]) == {0: [5]}
    assert [u.ts for u in after_b] == [latest_ts, latest_ts]
    assert values_of(after_b[0]) == {1: 15} and values_of(after_b[1]) == {2: [8, 7]}
    assert values_of(removed) == {0: REMOVED} and removed.modify_count == 2


def test_statistics_add_up_every_actor(tmp_path):
    """The pool's statistics are the actors' summed (a query watched on both
    actors is two subscriptions, evaluated by each), with the lowest ts."""
    async def fn(node):
        sessions = [node.subscriptions.open_session() for _ in range(3)]
        for session in sessions:
            session.modify(adds=[(0, "messages:list", {"channel": "a"}, None)])
            await next_update(session)
        before = node.subscriptions.statistics()
        await node.mutation("messages:send", {"channel": "a", "n": 1})
        await settled(node)
        each = [actor.statistics() for actor in node.subscriptions.actors]
        return before, node.subscriptions.statistics(), each, node.latest_ts
    before, after, each, latest_ts = run(tmp_path, fn)
    assert before.session_count == 3 and before.subscription_count == 2
    assert [s.subscription_count for s in each] == [1, 1]
    assert after.evaluation_count - before.evaluation_count == 2, "one evaluation per actor"
    assert after.evaluation_count == sum(s.evaluation_count for s in each)
    assert after.hit_count == sum(s.hit_count for s in each)
    assert after.view_count == sum(s.view_count for s in each) == 2
    assert after.current_ts == min(s.current_ts for s in each) == latest_ts


def test_reload_reruns_every_actors_subscriptions(tmp_path):
    """node.reload re-runs the live queries of every actor."""
    async def fn(node):
        sessions = [node.subscriptions.open_session() for _ in range(2)]
        for query_id, session in enumerate(sessions):
            session.modify(adds=[(query_id, "messages:whoami", {}, None)])
            await next_update(session)
        before = [a.statistics().evaluation_count for a in node.subscriptions.actors]
        node.reload(load_app(APP))
        await settled(node)
        return before, [a.statistics().evaluation_count for a in node.subscriptions.actors]
    before, after = run(tmp_path, fn)
    assert [b - a for a, b in zip(before, after)] == [1, 1]


def test_the_switches_reach_every_actor_and_one_actor_is_a_pool_of_one(tmp_path):
    """validate_each_step and use_views set every actor; the default node has one actor."""
    async def fn(node):
        node.subscriptions.use_views = False
        return ([a.use_views for a in node.subscriptions.actors],
                [a.validate_each_step for a in node.subscriptions.actors])
    assert run(tmp_path / "two", fn) == ([False, False], [True, True])
    assert run(tmp_path / "one", fn, actors=1) == ([False], [True])


@pytest.mark.parametrize("count", [0, subscription_actors_max + 1])
def test_an_impossible_actor_count_is_refused_before_opening(tmp_path, count):
    """open_node refuses 0 or too many actors with ValueError and creates no data folder."""
    with pytest.raises(ValueError, match="subscription actors"):
        run(tmp_path / "data", lambda node: None, actors=count)
    assert not (tmp_path / "data").exists()


def test_eddy_dev_takes_the_actor_count_to_the_node(tmp_path, monkeypatch):
    """`eddy dev --subscription-actors N` parses N (refusing 0) and serve_dev
    opens its node with it."""
    import contextlib

    from wire import devserver
    from wire.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["dev", "app"]).subscription_actors == 1
    assert parser.parse_args(["dev", "app", "--subscription-actors", "3"]).subscription_actors == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["dev", "app", "--subscription-actors", "0"])
    opened = []

    class Opened(Exception):
        pass

    @contextlib.asynccontextmanager
    async def recording_open_node(*args, **kwargs):
        opened.append(kwargs)
        raise Opened
        yield

    monkeypatch.setattr(devserver, "open_node", recording_open_node)
    with pytest.raises(Opened):
        trio.run(lambda: devserver.serve_dev(tmp_path, host="127.0.0.1", port=0, data_dir=tmp_path,
                                             subscription_actors=3))
    assert opened == [{"subscription_actors": 3}]
