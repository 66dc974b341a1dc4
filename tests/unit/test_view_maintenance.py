"""Views maintained from commit deltas equal the same reads made from scratch."""

import types

import hypothesis.strategies as st
from hypothesis import given, settings

from engine import keys, values
from engine.catalog import Catalog
from engine.shard import index_key
from engine.view_reads import FastPath, fast_result
from engine.views import View, ViewSet, after, commit_changes

IDS = [bytes([i]) * 16 for i in range(1, 13)]
TABLE = 10001
INDEX = (TABLE, "by_score")

writes = st.lists(st.tuples(st.sampled_from(IDS), st.one_of(st.none(), st.integers(0, 9))),
                  min_size=1, max_size=4)
histories = st.lists(writes, min_size=1, max_size=15)
bounds = st.one_of(st.none(), st.integers(0, 10))
reads = st.tuples(bounds, bounds, st.booleans(), st.one_of(st.none(), st.integers(1, 6)))


def _document(internal_id, score):
    return {"_id": internal_id.hex(), "_creationTime": float(internal_id[0]), "score": score}


def _bound(score):
    return b"" if score is None else keys.encode_key(score)


class World:
    """A catalog with one table and a commit counter, fed like the sequencer does."""

    def __init__(self):
        self.catalog = Catalog()
        self.shard = self.catalog.create("scores", TABLE)
        self.shard.set_indexes({"by_score": ["score"]})
        self.ts = 0

    def commit(self, batch):
        self.ts += 1
        final = {}
        for internal_id, score in batch:
            final[internal_id] = None if score is None else _document(internal_id, score)
        rows = [(i, d, None if d is None else values.pack(d)) for i, d in final.items()]
        write_keys = {}
        self.shard.apply(self.ts, rows, write_keys)
        return types.SimpleNamespace(ts=self.ts, writes={TABLE: [(i, p) for i, _, p in rows]},
                                     write_keys=write_keys)

    def scratch(self, lo, hi, descending, limit):
        """(rows, exhausted) of a scan that a take(limit) consumes, from scratch:
        it stops once it has `limit` rows, and runs to the end otherwise."""
        index = self.shard.indexes["by_score"]
        rows = []
        for key, internal_id in index.scan(lo, hi, self.ts, descending):
            rows.append((key, internal_id, self.shard.get(internal_id, self.ts)))
            if limit is not None and len(rows) == limit:
                return rows, False
        return rows, True


def _view_key(read):
    low, high, descending, limit = read
    lo = _bound(low)
    hi = None if high is None else max(lo, _bound(high))
    return (INDEX, lo, hi, descending, limit)


def _covered(view):
    """The range a from-scratch scan consuming the view's rows records."""
    if view.complete:
        return view.lo, view.hi
    last = list(view.scan_rows())[-1][0]
    return (view.lo, after(last)) if not view.descending else (last, view.hi)


def _scratch_range(key, rows, exhausted):
    _, lo, hi, descending, _ = key
    if exhausted:
        return lo, hi
    return (lo, after(rows[-1][0])) if not descending else (rows[-1][0], hi)


@settings(max_examples=300, deadline=None)
@given(histories, histories, reads)
def test_a_view_maintained_over_commits_equals_the_read_from_scratch(before, after_, read):
    """After every commit a view holds the first `limit` rows of its range, as a fresh scan does."""
    world = World()
    for batch in before:
        world.commit(batch)
    key = _view_key(read)
    rows, exhausted = world.scratch(*key[1:])
    if not exhausted and not rows:
        return  # a scan that consumed nothing records nothing and is no view
    limit = None if exhausted else len(rows)
    key = key[:4] + (limit,)
    views = ViewSet(world.ts)
    view = views.acquire(key, rows, exhausted)
    for batch in after_:
        commit = world.commit(batch)
        covered = _covered(view)
        keys_before = list(view.keys)
        changes = commit_changes(world.catalog, [commit], [INDEX])
        views.update([view], changes, world.catalog, commit.ts)
        views.advance(commit.ts)
        view.validate()
        expected, expected_exhausted = world.scratch(key[1], key[2], key[3], limit)
        assert list(view.scan_rows()) == expected
        assert view.complete == expected_exhausted
        assert _covered(view) == _scratch_range(key, expected, expected_exhausted)
        # Precision: a commit none of whose write keys fall in the view's
        # coverage leaves it as it was, so the interval index may skip it.
        lo, hi = covered
        if not any(lo <= k and (hi is None or k < hi) for k in commit.write_keys[INDEX]):
            assert view.keys == keys_before


@settings(max_examples=200, deadline=None)
@given(histories, histories, st.integers(1, 5), st.booleans())
def test_the_fast_path_over_a_view_equals_take_from_scratch(before, after_, count, descending):
    """take(n) computed from a maintained view equals take(n) scanned from scratch, read range too."""
    world = World()
    for batch in before + [[(IDS[0], 5)]]:
        world.commit(batch)
    key = (INDEX, b"", None, descending, None)
    rows, exhausted = world.scratch(b"", None, descending, count)
    key = key[:4] + (None if exhausted else len(rows),)
    views = ViewSet(world.ts)
    view = views.acquire(key, rows, exhausted)
    fast = FastPath(types.SimpleNamespace(filters=()), count)
    for batch in after_:
        commit = world.commit(batch)
        views.update([view], commit_changes(world.catalog, [commit], [INDEX]), world.catalog,
                     commit.ts)
        result = fast_result(fast, view.scan_rows(), view.complete)
        expected, expected_exhausted = world.scratch(b"", None, descending, count)
        assert result is not None
        documents, consumed, _ = result
        assert documents == [values.unpack(p) for _, _, p in expected]
        assert consumed == (None if expected_exhausted else count)


def test_a_deleted_row_in_a_top_view_is_refilled_from_the_shard():
    """Deleting a row inside a take(3) view reads exactly one row beyond it from the shard."""
    world = World()
    world.commit([(IDS[i], i) for i in range(6)])
    rows, exhausted = world.scratch(b"", None, True, 3)
    views = ViewSet(world.ts)
    view = views.acquire((INDEX, b"", None, True, 3), rows, exhausted)
    commit = world.commit([(IDS[5], None)])
    changed = views.update([view], commit_changes(world.catalog, [commit], [INDEX]),
                           world.catalog, commit.ts)
    assert changed == [view] and views.refill_count == 1
    assert [values.unpack(p)["score"] for _, _, p in view.scan_rows()] == [4, 3, 2]


def test_a_new_top_row_pushes_the_last_one_out():
    """An insert before the limit makes the last row fall out and the coverage shrink."""
    world = World()
    world.commit([(IDS[i], i) for i in range(6)])
    rows, _ = world.scratch(b"", None, False, 2)
    view = View((INDEX, b"", None, False, 2), rows, False)
    commit = world.commit([(IDS[9], -1)])
    view.apply(commit_changes(world.catalog, [commit], [INDEX])[INDEX])
    assert view.settle() == 0
    assert [values.unpack(p)["score"] for _, _, p in view.scan_rows()] == [-1, 0]
    assert not view.covers(keys.encode_key(1) + b"\xff")


@settings(max_examples=300, deadline=None)
@given(histories, st.lists(histories, min_size=1, max_size=4), st.lists(reads, min_size=1, max_size=4))
def test_views_given_only_their_changes_equal_the_reads_from_scratch(before, groups, read_list):
    """Groups of commits applied through the sorted changes (each view gets only
    the changes in its coverage or of its rows) leave every view as a fresh scan."""
    import engine.views as views_module
    world = World()
    for batch in before:
        world.commit(batch)
    views = ViewSet(world.ts)
    held = []
    for read in read_list:
        key = _view_key(read)
        rows, exhausted = world.scratch(*key[1:])
        if exhausted or rows:
            held.append(views.acquire(key[:4] + (None if exhausted else len(rows),), rows,
                                      exhausted))
    original = views_module._sorted_changes_min
    views_module._sorted_changes_min = 0
    try:
        for group in groups:
            commits = [world.commit(batch) for batch in group]
            changes = commit_changes(world.catalog, commits, [INDEX])
            views.update(held, changes, world.catalog, world.ts)
            views.advance(world.ts)
            for view in held:
                view.validate()
                expected, expected_exhausted = world.scratch(view.lo, view.hi, view.descending,
                                                             view.limit)
                assert list(view.scan_rows()) == expected
                assert view.complete == expected_exhausted
    finally:
        views_module._sorted_changes_min = original


ALL_INDEXES = [INDEX, (TABLE, "by_id"), (TABLE, "by_creation_time")]


@settings(max_examples=300, deadline=None)
@given(histories, histories, st.randoms(use_true_random=False), st.floats(0.0, 1.0))
def test_changes_from_the_commit_keys_equal_changes_computed_from_documents(
        before, group, random, kept_fraction):
    """New keys read from a commit's write keys (in any order, some missing, read
    after later commits moved them again) equal the keys computed from its documents."""
    world = World()
    for batch in before:
        world.commit(batch)
    commits = [world.commit(batch) for batch in group]
    world.commit([(i, 3) for i in IDS])  # later commits move every key again
    for commit in commits:
        for index, index_keys in commit.write_keys.items():
            random.shuffle(index_keys)
            del index_keys[int(len(index_keys) * kept_fraction):]
    without_keys = [types.SimpleNamespace(ts=c.ts, writes=c.writes, write_keys=None)
                    for c in commits]
    assert commit_changes(world.catalog, commits, ALL_INDEXES) == \
        commit_changes(world.catalog, without_keys, ALL_INDEXES)


def test_changes_from_the_commit_keys_unpack_no_document(monkeypatch):
    """A commit carrying admit's write keys becomes changes without unpacking any document."""
    import engine.views as views_module
    world = World()
    inserts = world.commit([(IDS[i], i) for i in range(10)])  # the shard's bulk insert path
    commit = world.commit([(IDS[0], 9), (IDS[1], None), (IDS[2], 2), (IDS[11], 1)])

    def refuse(packed):
        raise AssertionError("a document was unpacked")
    monkeypatch.setattr(views_module.values, "unpack", refuse)
    documents = {}
    fields = world.shard.index_fields("by_score")
    changes = commit_changes(world.catalog, [inserts], ALL_INDEXES, documents)
    assert [k for _, k, _ in changes[INDEX]] == [
        index_key(_document(IDS[i], i), fields) for i in range(10)]
    changes = commit_changes(world.catalog, [commit], ALL_INDEXES, documents)
    assert [(i, k) for i, k, _ in changes[INDEX]] == [
        (IDS[0], index_key(_document(IDS[0], 9), fields)), (IDS[1], None),
        (IDS[2], index_key(_document(IDS[2], 2), fields)),
        (IDS[11], index_key(_document(IDS[11], 1), fields))]
    assert documents == {}
