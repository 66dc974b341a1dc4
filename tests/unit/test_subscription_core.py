"""The subscription core: shared subscriptions, their interval-indexed reads,
sessions' merged Updates, and the write keys of a commit."""

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from engine import keys, values
from engine.catalog import Catalog
from engine.commits import CallInfo, Commit
from engine.errors import EddyError
from engine.readsets import ReadSet
from engine.subscriptions import (REMOVED, QueryOutcome, QuerySpec, SessionState,
                                  SubscriptionRegistry, commit_write_keys, subscription_key)

INDEX = (10001, "by_id")


def outcome(ts, value, *ranges):
    read_set = ReadSet()
    for lo, hi in ranges:
        read_set.add(INDEX, lo, hi)
    return QueryOutcome(ts=ts, value=value, read_set=read_set)


def test_identical_subscriptions_are_shared_whatever_the_field_order():
    """Two holders of the same path, args (fields in any order) and identity share one subscription."""
    registry = SubscriptionRegistry(0)
    a = registry.acquire(QuerySpec("m:list", {"x": 1, "y": 2}), None, (1, 0))
    b = registry.acquire(QuerySpec("m.js:list", [{"y": 2, "x": 1}]), None, (2, 5))
    assert a is b and list(a.holders) == [(1, 0), (2, 5)]
    assert len(registry.subscriptions) == 1


def test_keys_tell_ints_from_floats_identities_journals_and_admins_apart():
    """Args 1 and 1.0, different identities, journals or the admin flag are different subscriptions."""
    spec = QuerySpec("m:list", {"x": 1})
    base = subscription_key(spec, None)
    assert subscription_key(QuerySpec("m:list", {"x": 1.0}), None) != base
    assert subscription_key(spec, {"subject": "u"}) != base
    assert subscription_key(QuerySpec("m:list", {"x": 1}, "kabc"), None) != base
    assert subscription_key(spec, None, admin=True) != base


def test_release_of_the_last_holder_drops_the_subscription_and_its_ranges():
    """A subscription lives while held; the last release drops it from every interval index."""
    registry = SubscriptionRegistry(0)
    sub = registry.acquire(QuerySpec("m:get", {}), None, (1, 0))
    registry.acquire(QuerySpec("m:get", {}), None, (2, 0))
    registry.record(sub, outcome(0, 1, (b"a", b"c")))
    registry.release(sub, (1, 0))
    assert registry.stab({INDEX: [b"b"]}) == [sub]
    registry.release(sub, (2, 0))
    assert registry.subscriptions == {} and registry.indexes == {}
    assert registry.stab({INDEX: [b"b"]}) == []
    registry.validate()


def test_a_stab_of_the_same_hits_returns_the_remembered_list_until_something_changes():
    """stab and record_many remember one range's hits between changes, and
    every change of the subscriptions, their ranges or outcomes forgets it."""
    registry = SubscriptionRegistry(0)
    subs = [registry.acquire(QuerySpec("m:top", {"viewer": i}), None, (i, 0)) for i in range(3)]
    shared = outcome(0, [1], (b"a", b"c"))
    assert registry.record_many(subs, shared) == subs
    first = registry.stab({INDEX: [b"b"]})
    assert first == subs and registry.stab({INDEX: [b"b"]}) is first
    assert registry.record_many(first, outcome(1, [1], (b"a", b"c"))) == []  # same result
    assert registry.record_many(first, outcome(2, [2], (b"a", b"c"))) == subs
    assert registry.stab({INDEX: [b"b"]}) is first  # outcomes changed, the hits did not
    # One of them alone gets another result: the next shared one is a change for all.
    registry.record(subs[1], outcome(3, [9], (b"a", b"c")))
    again = registry.stab({INDEX: [b"b"]})
    assert again == subs and again is not first
    assert registry.record_many(again, outcome(4, [9], (b"a", b"c"))) == [subs[0], subs[2]]
    # A new subscription on the range joins the hits.
    late = registry.acquire(QuerySpec("m:top", {"viewer": 9}), None, (9, 0))
    registry.record(late, outcome(4, [9], (b"a", b"c")))
    assert registry.stab({INDEX: [b"b"]}) == subs + [late]
    # A range that moves takes its hits with it.
    registry.record_many(subs + [late], outcome(5, [9], (b"x", b"z")))
    assert registry.stab({INDEX: [b"b"]}) == [] and registry.stab({INDEX: [b"y"]}) == subs + [late]
    registry.release(late, (9, 0))
    assert registry.stab({INDEX: [b"y"]}) == subs
    registry.advance(5)
    registry.validate()


def test_record_reindexes_reads_and_reports_only_visible_changes():
    """A re-run moves the subscription's ranges, and is a change only if the result differs."""
    registry = SubscriptionRegistry(0)
    sub = registry.acquire(QuerySpec("m:q", {}), None, (1, 0))
    assert registry.record(sub, outcome(0, [1], (b"a", b"b")))
    assert registry.stab({INDEX: [b"a"]}) == [sub]
    registry.advance(5)
    assert not registry.record(sub, outcome(5, [1], (b"x", None)))
    assert registry.stab({INDEX: [b"a"]}) == []
    assert registry.stab({INDEX: [b"zz"]}) == [sub]
    assert registry.record(sub, outcome(5, [1.0], (b"x", None))), "1 and 1.0 differ"
    assert registry.stab({(1, "other"): [b"x"]}) == []
    registry.validate()


def test_a_paginated_subscription_reruns_with_its_last_journal():
    """The journal a run returns is the one the next run uses (PROTOCOL.md 10.3)."""
    registry = SubscriptionRegistry(0)
    sub = registry.acquire(QuerySpec("m:page", {}), None, (1, 0))
    assert sub.run_journal is None
    registry.record(sub, QueryOutcome(ts=0, value=[], journal="kAAA"))
    assert sub.run_journal == "kAAA"
    registry.record(sub, QueryOutcome(ts=0, error=("boom", None, False)))
    assert sub.run_journal == "kAAA", "a failed run keeps the pinned end"


def test_session_modify_is_all_or_nothing():
    """A duplicate add or an unknown remove changes nothing and raises."""
    session = SessionState(1)
    session.modify([(0, "m:q", {}, None)], [])
    with pytest.raises(EddyError):
        session.modify([(1, "m:q", {}, None), (0, "m:q", {}, None)], [])
    with pytest.raises(EddyError):
        session.modify([(2, "m:q", {}, None)], [7])
    with pytest.raises(EddyError):
        session.modify([(2, "m:q", {}, None), (2, "m:q", {}, None)], [])
    with pytest.raises(EddyError):
        session.modify([], [0, 0])
    assert list(session.desired) == [0] and session.modify_count == 1
    session.modify([(0, "m:r", {}, None)], [0])  # removes come first
    assert session.desired[0].path == "m:r"
    session.validate()


def test_updates_merge_until_taken_and_never_go_back():
    """Undelivered Updates merge (newer outcomes win, ts rises); an older ts is refused."""
    session = SessionState(1)
    session.modify([(0, "m:q", {}, None), (1, "m:r", {}, None)], [])
    session.take_inbox()
    session.deliver(10, {0: "a0", 1: "b0"})
    session.deliver(12, {0: "a1"})
    session.modify([], [1])
    session.take_inbox()
    session.deliver(15, {1: REMOVED})
    assert session.pending_count == 3
    update = session.take_update()
    assert (update.ts, update.results, update.modify_count) == (15, {0: "a1", 1: REMOVED}, 2)
    assert session.take_update() is None
    with pytest.raises(AssertionError):
        session.deliver(14, {})


def test_an_update_is_due_for_each_served_modify_and_each_request():
    """A served modify or set_identity, or a request at or below ts, makes an empty Update due."""
    session = SessionState(1)
    assert not session.update_due(5)
    session.modify([], [])
    assert session.needs_service()
    session.take_inbox()
    assert session.update_due(5)
    session.deliver(5, {})
    assert not session.update_due(5)
    session.request_update(9)
    assert not session.update_due(8) and session.update_due(9)
    session.deliver(9, {})
    assert session.requested_ts is None
    session.set_identity({"subject": "u"})
    session.modify([(3, "m:q", {}, None)], [])
    changes = session.take_inbox()
    assert list(changes) == [3] and session.update_due(9)
    session.deliver(9, {3: "x"})
    assert (session.pending.modify_count, session.pending.identity_count) == (2, 1)


def test_counts_name_only_what_the_actor_served():
    """A modify that arrives after the actor took the inbox is not counted in the Update it is building."""
    session = SessionState(1)
    session.modify([(0, "m:q", {}, None)], [])
    session.take_inbox()
    session.modify([(1, "m:q", {}, None)], [])  # arrives while the actor runs query 0
    session.deliver(3, {0: "x"})
    assert session.pending.modify_count == 1
    assert session.needs_service()


def _apply(catalog, ts, number, writes):
    """Applies writes as the sequencer would; returns (shard's own write keys, Commit)."""
    shard = catalog.shards[number]
    own = {}
    shard.apply(ts, [(i, d, None if d is None else values.pack(d)) for i, d in writes], own)
    commit = Commit(ts=ts, snapshot_ts=ts - 1, call=CallInfo("m:f", {}), seed=0, now_ms=0.0,
                    read_set=ReadSet(),
                    writes={number: [(i, None if d is None else values.pack(d)) for i, d in writes]},
                    created_tables=[])
    return own, commit


IDS = [bytes([i]) * 16 for i in range(4)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(IDS), st.one_of(st.none(), st.integers(0, 3))),
                         min_size=1, max_size=3, unique_by=lambda w: w[0]), min_size=1, max_size=6))
def test_commit_write_keys_match_what_the_shard_saw(history):
    """Write keys computed after the fact from a commit equal the ones the shard recorded while applying it."""
    catalog = Catalog()
    catalog.set_index_definitions({"t": {"by_color": ["color"]}})
    number = catalog.create("t").table_number
    commits = []
    for ts, batch in enumerate(history, start=1):
        writes = [(i, None if c is None else {"_id": i.hex(), "_creationTime": float(i[0]), "color": c})
                  for i, c in batch]
        commits.append(_apply(catalog, ts, number, writes))
    # Computed after every commit was applied: old versions come from history.
    for own, commit in commits:
        computed = commit_write_keys(catalog, commit)
        for index, own_keys in own.items():
            assert sorted(computed.get(index, [])) == sorted(own_keys)


def test_created_tables_count_as_written_names():
    """A commit that creates a table writes its name in the tables pseudo-index."""
    catalog = Catalog()
    number = catalog.create("t").table_number
    _, commit = _apply(catalog, 1, number, [(IDS[0], {"_id": "x", "_creationTime": 1.0})])
    commit.created_tables = [("t", number)]
    assert commit_write_keys(catalog, commit)[(0, "tables")] == [keys.encode_key("t")]
