"""A shard's MVCC state answers reads at any ts exactly as a naive history would."""

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import given, settings

from engine import keys, values
from engine.commits import log_entry, parse_log_columns, parse_log_entry
from engine.errors import EddyError, ErrorCode
from engine.readsets import ReadSet, merge_ranges
from engine.sequencing import SequencerState
from engine.shard import ShardState, index_key

IDS = [bytes([i]) * 16 for i in range(6)]

writes = st.lists(st.tuples(st.sampled_from(IDS),
                            st.one_of(st.none(), st.integers(0, 4))), min_size=1, max_size=4)
histories = st.lists(writes, min_size=1, max_size=12)


def _document(internal_id, color):
    return {"_id": internal_id.hex(), "_creationTime": float(internal_id[0]), "color": color}


@settings(max_examples=150, deadline=None)
@given(histories, st.integers(0, 14), st.booleans(), st.booleans())
def test_scans_at_every_ts_match_a_naive_history(history, read_at, descending, bulk):
    """Index scans at any past ts list exactly the documents live then, in key
    order, whether commits of new documents are indexed together or not."""
    import engine.shard as shard_module

    saved, shard_module.bulk_apply_min = shard_module.bulk_apply_min, 1 if bulk else 1 << 30
    try:
        _check_scans_against_a_naive_history(history, read_at, descending)
    finally:
        shard_module.bulk_apply_min = saved


def _check_scans_against_a_naive_history(history, read_at, descending):
    shard = ShardState(10001, "t", {"by_color": ["color"]})
    naive = [{}]  # naive[ts] = {id: document} as of ts
    for ts, commit in enumerate(history, start=1):
        state = dict(naive[-1])
        batch = {}
        for internal_id, color in commit:
            batch[internal_id] = None if color is None else _document(internal_id, color)
        for internal_id, document in batch.items():
            if document is None:
                state.pop(internal_id, None)
            else:
                state[internal_id] = document
        shard.apply(ts, [(i, d, None if d is None else values.pack(d)) for i, d in batch.items()])
        naive.append(state)
        shard.validate()
    ts = min(read_at, len(history))
    expected = sorted(naive[ts].values(), key=lambda d: index_key(d, shard.indexes["by_color"].fields),
                      reverse=descending)
    got = [values.unpack(shard.get(i, ts)) for _, i in
           shard.indexes["by_color"].scan(b"", None, ts, descending)]
    assert got == expected
    for internal_id in IDS:
        packed = shard.get(internal_id, ts)
        assert (None if packed is None else values.unpack(packed)) == naive[ts].get(internal_id)


def test_changed_document_under_unchanged_key_still_counts_as_written():
    """A patch that keeps a document's index keys still reports those keys as written."""
    shard = ShardState(10001, "t", {"by_color": ["color"]})
    doc = _document(IDS[0], 1)
    shard.apply(1, [(IDS[0], doc, values.pack(doc))])
    patched = {**doc, "other": 5}
    touched = {}
    shard.apply(2, [(IDS[0], patched, values.pack(patched))], touched)
    key = keys.encode_key(doc["_id"])
    assert key in touched[(10001, "by_id")]


def test_read_set_ranges_merge_and_contain():
    """Merged read ranges answer containment like the raw ranges do."""
    assert merge_ranges([(b"c", b"d"), (b"a", b"b"), (b"b", b"c")]) == [(b"a", b"d")]
    assert merge_ranges([(b"a", None), (b"b", b"c")]) == [(b"a", None)]
    read_set = ReadSet()
    read_set.add((1, "i"), b"b", b"d")
    read_set.add((1, "i"), b"x", None)
    assert read_set.contains((1, "i"), b"b")
    assert not read_set.contains((1, "i"), b"d")
    assert read_set.contains((1, "i"), b"zzz")
    assert not read_set.contains((2, "i"), b"b")
    assert ReadSet.from_record(read_set.to_record()).contains((1, "i"), b"c")


def test_sequencer_conflicts_only_after_the_snapshot():
    """A commit conflicts only with writes admitted after its snapshot, and ts always rises."""
    state = SequencerState(last_ts=100)
    state.begin(100)
    ts = state.next_ts(now_ns=50)
    assert ts == 101
    state.record(ts, {(1, "i"): [b"k"]})
    read_set = ReadSet()
    read_set.add((1, "i"), b"a", b"z")
    assert state.conflicts(100, read_set) == 101
    assert state.conflicts(101, read_set) is None
    assert state.next_ts(now_ns=10_000) == 10_000
    state.end(100)
    assert not state.recent
    state.validate()


MANY_IDS = [bytes([i]) * 16 for i in range(256)]
colors = st.one_of(st.integers(0, 3), st.text("ab", max_size=2),
                   st.dictionaries(st.just("x"), st.integers(0, 2)))
# Mostly inserts (what the bulk path batches), with updates and deletions
# (which break a run) mixed in.
bulk_writes = (st.lists(st.tuples(st.sampled_from(MANY_IDS), colors), max_size=5)
               | st.lists(st.tuples(st.sampled_from(MANY_IDS), st.none() | colors), max_size=5))


def _bulk_document(internal_id, color):
    document = {"_id": internal_id.hex(), "_creationTime": float(internal_id[0]), "color": color}
    if isinstance(color, dict):
        document["nested"] = color
    return document


def _same_state(a: ShardState, b: ShardState) -> None:
    assert (a.versions, a.live_count, a.last_ts) == (b.versions, b.live_count, b.last_ts)
    assert a.indexes.keys() == b.indexes.keys()
    for name, index in a.indexes.items():
        other = b.indexes[name]
        assert list(index.keys) == list(other.keys), name
        assert index.life == other.life, name
        index.keys._check()  # SortedList's own invariants (raises if broken)
        other.keys._check()


@settings(max_examples=300, deadline=None)
@given(st.lists(bulk_writes, min_size=1, max_size=14), st.integers(1, 6), st.integers(1, 3),
       st.sampled_from([4, 6, 1000]), st.sampled_from([1, 3, 1 << 30]),
       st.lists(st.booleans(), min_size=14, max_size=14))
def test_bulk_load_and_bulk_apply_build_the_state_apply_builds(history, batch_max, apply_min,
                                                               load, unplaced_max, reads):
    """Loading logged entries in bulk (written before key parts were logged,
    with them, or a mix), and applying commits of new documents together
    (their keys placed at once, later), give exactly the state (and
    conflict-window keys) that applying each write one by one gives, and the
    same scans after any commit; a batch insert's key parts make its
    keys."""
    import engine.shard as shard_module

    user_indexes = {"by_color": ["color"], "by_pair": ["color", "nested.x"]}
    applied = ShardState(10001, "t", user_indexes)
    bulk_applied = ShardState(10001, "t", user_indexes)
    loaded = ShardState(10001, "t", user_indexes)
    loaded_old = ShardState(10001, "t", user_indexes)
    loaded_mixed = ShardState(10001, "t", user_indexes)
    loaders = (loaded, loaded_old, loaded_mixed)
    for shard in (applied, bulk_applied, *loaders):
        for index in shard.indexes.values():
            index.keys._reset(load)  # small sublists: the splits get exercised too
    import engine.index_state as index_module

    saved = (shard_module.bulk_insert_batch_max, shard_module.bulk_apply_min,
             index_module.unplaced_keys_max)
    try:
        shard_module.bulk_insert_batch_max = batch_max
        index_module.unplaced_keys_max = unplaced_max
        for shard in loaders:
            shard.begin_bulk_load()
        for ts, commit in enumerate(history, start=1):
            batch = {i: None if c is None else _bulk_document(i, c) for i, c in commit}
            writes = [(i, d, None if d is None else values.pack(d)) for i, d in batch.items()]
            one_by_one, together = {}, {}
            shard_module.bulk_apply_min = 1 << 30
            inserts_only = bool(writes) and all(i not in applied.versions and d is not None
                                                for i, d, _ in writes)
            assert applied.apply(ts, writes, one_by_one) is None  # no batch: no key parts
            shard_module.bulk_apply_min = apply_min
            parts = bulk_applied.apply(ts, writes, together)
            assert one_by_one == together
            assert (parts is not None) == (inserts_only and len(writes) >= apply_min)
            if parts is not None:  # each index's keys, from the parts
                assert [list(together[(10001, name)]) for name in applied.indexes] == \
                    shard_module.keys_from_parts(parts)
            bulk_applied.validate()
            if reads[ts - 1]:  # a read between writes places the waiting keys
                for name, index in applied.indexes.items():
                    for at_ts in (ts - 1, ts):
                        assert list(bulk_applied.indexes[name].scan(b"", None, at_ts, False)) == \
                            list(index.scan(b"", None, at_ts, False))
            # As the log stores it and `parse_log_columns` returns it.
            logged = [(i, p) for i, _, p in writes]
            new_entry = log_entry(logged, *((None, None) if parts is None
                                            else (applied.key_digest, parts)))
            old_entry = msgpack.packb(logged)
            loaded.load_logged(ts, *parse_log_columns(new_entry))
            loaded_old.load_logged(ts, *parse_log_columns(old_entry))
            loaded_mixed.load_logged(ts, *parse_log_columns(new_entry if ts % 2 else old_entry))
        for shard in loaders:
            shard.end_bulk_load()
    finally:
        (shard_module.bulk_insert_batch_max, shard_module.bulk_apply_min,
         index_module.unplaced_keys_max) = saved
    for shard in (applied, bulk_applied, *loaders):
        shard.validate()
    _same_state(applied, bulk_applied)
    for shard in loaders:
        _same_state(applied, shard)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3), unique=True), st.lists(st.binary(max_size=3), unique=True),
       st.integers(4, 8))
def test_inserting_sorted_keys_equals_sorted_list_update(held, new, load):
    """`_insert_sorted` leaves a SortedList holding what `update` would, its invariants kept."""
    from sortedcontainers import SortedList

    from engine.index_state import _insert_sorted

    new = [key for key in new if key not in set(held)]
    keys = SortedList()
    keys._reset(load)
    keys.update(held)
    if held:
        assert keys[len(held) // 2] == sorted(held)[len(held) // 2]  # builds `_index`
    _insert_sorted(keys, sorted(new))
    keys._check()
    assert list(keys) == sorted(held + new)
    if keys:
        assert keys[len(keys) // 2] == sorted(held + new)[len(keys) // 2]


@pytest.mark.parametrize("batch_max", [1, 2, 1000])
@pytest.mark.parametrize("one_entry", [False, True])
def test_bulk_load_refuses_a_new_document_with_a_known_id(batch_max, one_entry):
    """Two internal ids logged with one _id stop a bulk load with CORRUPT_RECORD,
    in one entry, in one run of entries, or with the first loaded in an earlier run."""
    import engine.shard as shard_module

    shard = ShardState(10001, "t")
    shard.begin_bulk_load()
    packed = values.pack(_bulk_document(IDS[0], 1))
    saved, shard_module.bulk_insert_batch_max = shard_module.bulk_insert_batch_max, batch_max
    try:
        with pytest.raises(EddyError) as raised:
            shard.load_logged(1, [IDS[2]], [values.pack(_bulk_document(IDS[2], 1))])
            if one_entry:
                shard.load_logged(2, [IDS[0], IDS[1]], [packed, packed])
            else:
                shard.load_logged(2, [IDS[0]], [packed])
                shard.load_logged(3, [IDS[1]], [packed])
            shard.end_bulk_load()
    finally:
        shard_module.bulk_insert_batch_max = saved
    assert raised.value.code == ErrorCode.CORRUPT_RECORD


def test_log_entries_parse_as_pairs_or_raise():
    """`parse_log_entry` returns the logged pairs, from an entry written before
    key parts were logged or after, and refuses an entry of anything else."""
    writes = [(IDS[0], b"\x80"), (IDS[1], None)]
    assert parse_log_entry(msgpack.packb(writes)) == tuple(writes)
    assert parse_log_entry(msgpack.packb([])) == ()
    assert log_entry(writes) == msgpack.packb(writes)  # no key parts: the old layout
    assert parse_log_entry(log_entry([])) == ()
    parts = [[b"i0", b"i1"], [b"c0", b"c1"]]
    assert parse_log_columns(log_entry(writes, b"digest", parts)) == (
        (IDS[0], IDS[1]), (b"\x80", None), b"digest", ((b"i0", b"i1"), (b"c0", b"c1")))
    for damaged in ([(IDS[0], b"", b"")], [(IDS[0],)], [(IDS[0], None), 7], {"a": 1}, 7,
                    [3, [], [], None, None], [2, [IDS[0]], [], None, None], [2, [], []]):
        with pytest.raises((ValueError, TypeError)):
            parse_log_entry(msgpack.packb(damaged))


def test_bulk_load_uses_key_parts_only_for_the_same_index_definitions():
    """Key parts logged under other index definitions (the schema changed
    since) are ignored: the keys come from the documents; parts of the wrong
    shape under the same definitions stop the load with CORRUPT_RECORD."""
    import engine.shard as shard_module

    writer = ShardState(10001, "t", {"by_color": ["color"]})
    document = _bulk_document(IDS[0], 3)
    packed = values.pack(document)
    saved, shard_module.bulk_apply_min = shard_module.bulk_apply_min, 1
    try:
        parts = writer.apply(1, [(IDS[0], document, packed)])
    finally:
        shard_module.bulk_apply_min = saved
    assert parts is not None
    renamed = ShardState(10001, "t", {"by_other": ["nested.x"]})
    renamed.begin_bulk_load()
    renamed.load_logged(1, [IDS[0]], [packed], writer.key_digest, parts)
    renamed.end_bulk_load()
    expected = ShardState(10001, "t", {"by_other": ["nested.x"]})
    expected.apply(1, [(IDS[0], document, packed)])
    _same_state(expected, renamed)
    same = ShardState(10001, "t", {"by_color": ["color"]})
    same.begin_bulk_load()
    with pytest.raises(EddyError) as raised:
        same.load_logged(1, [IDS[0]], [packed], writer.key_digest, parts[:2])
    assert raised.value.code == ErrorCode.CORRUPT_RECORD


def test_documents_decode_together_or_fail_as_one_by_one():
    """Batch decoding equals values.unpack of each, and a malformed document raises its error."""
    from engine.shard import _unpack_all

    documents = [_bulk_document(i, c) for i, c in zip(IDS, [1, "a", {"x": 2}])]
    assert _unpack_all([values.pack(d) for d in documents]) == documents
    assert _unpack_all([]) == []
    two_in_one = values.pack(documents[0]) + values.pack(documents[1])
    with pytest.raises(EddyError) as raised:
        _unpack_all([values.pack(documents[2]), two_in_one])
    assert raised.value.code == ErrorCode.INVALID_VALUE


@settings(max_examples=200, deadline=None)
@given(st.lists(bulk_writes, min_size=1, max_size=14), st.integers(0, 14), st.integers(1, 6),
       st.integers(1, 3), st.data())
def test_a_loaded_base_then_live_writes_read_as_apply_built(history, split, apply_min, block,
                                                            data):
    """A shard bulk-loaded from its log (its indexes' keys in a base of sorted
    arrays) and then written live answers every scan (any range, either
    order, any ts) as a shard built by `apply` alone does, reports the same
    written keys, and holds each written key in `life` (where engine/views.py
    looks it up), with the base's blocks of births (`block` keys each)
    skipped by reads in the past."""
    import engine.index_state as index_module
    import engine.shard as shard_module

    user_indexes = {"by_color": ["color"], "by_pair": ["color", "nested.x"]}
    applied = ShardState(10001, "t", user_indexes)
    loaded = ShardState(10001, "t", user_indexes)
    saved = shard_module.bulk_apply_min, index_module.base_block_keys_max
    try:
        shard_module.bulk_apply_min, index_module.base_block_keys_max = apply_min, block
        loaded.begin_bulk_load()
        if split == 0:
            loaded.end_bulk_load()
        for ts, commit in enumerate(history, start=1):
            batch = {i: None if c is None else _bulk_document(i, c) for i, c in commit}
            writes = [(i, d, None if d is None else values.pack(d)) for i, d in batch.items()]
            expected_keys, got_keys = {}, {}
            parts = applied.apply(ts, writes, expected_keys)
            if ts <= split:
                entry = log_entry([(i, p) for i, _, p in writes],
                                  *((None, None) if parts is None else (applied.key_digest, parts)))
                loaded.load_logged(ts, *parse_log_columns(entry))
                if ts == split or ts == len(history):
                    loaded.end_bulk_load()
                continue
            loaded.apply(ts, writes, got_keys)
            assert got_keys == expected_keys
            for (_, name), written in got_keys.items():
                assert all(key in loaded.indexes[name].life for key in written)
            loaded.validate()
            _same_scans(applied, loaded, ts, data)
        if split >= len(history) or split == 0:
            _same_scans(applied, loaded, len(history), data)
    finally:
        shard_module.bulk_apply_min, index_module.base_block_keys_max = saved
    _same_state(applied, loaded)


def _same_scans(expected: ShardState, got: ShardState, head_ts: int, data) -> None:
    for name, index in expected.indexes.items():
        all_keys = index.all_keys()
        bounds = [b"", *all_keys, b"\xff"]
        for _ in range(3):
            lo = data.draw(st.sampled_from(bounds))
            hi = data.draw(st.sampled_from([None, *bounds]))
            at_ts = data.draw(st.integers(0, head_ts))
            descending = data.draw(st.booleans())
            assert list(got.indexes[name].scan(lo, hi, at_ts, descending)) == \
                list(index.scan(lo, hi, at_ts, descending)), (name, lo, hi, at_ts, descending)


def test_a_batch_insert_refuses_an_id_held_in_the_base():
    """`apply` of new documents, one of which has the _id of a document
    loaded into by_id's base (even the first key of it), takes the
    one-by-one path rather than indexing a second owner of that key."""
    import engine.shard as shard_module

    documents = [_bulk_document(i, 1) for i in MANY_IDS[:3]]
    loaded = ShardState(10001, "t")
    loaded.begin_bulk_load()
    loaded.load_logged(1, MANY_IDS[:3], [values.pack(d) for d in documents])
    loaded.end_bulk_load()
    by_id = loaded.indexes["by_id"]
    assert by_id.base_keys and all(by_id.holds_any([key]) for key in by_id.base_keys)
    assert not by_id.holds_any([b"\x07other\x00\x00"])
    saved, shard_module.bulk_apply_min = shard_module.bulk_apply_min, 1
    try:
        again = [(MANY_IDS[10 + n], d, values.pack(d)) for n, d in enumerate(documents[:1])]
        assert loaded._insert_new([w[0] for w in again], [w[1] for w in again],
                                  [w[2] for w in again], [2], None) is None
    finally:
        shard_module.bulk_apply_min = saved


@pytest.mark.parametrize("case", ["then-an-update", "a-later-load", "out-of-order"])
def test_bulk_load_refuses_a_repeated_id_set_aside_for_the_base(case):
    """A repeated _id among keys set aside for by_id's base is CORRUPT_RECORD
    too: when an update moves them to the dict mid-load, when a later bulk
    load (TimeTravel's) brings a document whose _id the base holds, and when
    the base is made from keys that came out of order."""
    shard = ShardState(10001, "t")
    shard.begin_bulk_load()
    first = values.pack(_bulk_document(MANY_IDS[5], 1))
    other = values.pack(_bulk_document(MANY_IDS[6], 1))
    with pytest.raises(EddyError) as raised:
        if case == "out-of-order":
            shard.load_logged(1, [MANY_IDS[5], MANY_IDS[6], MANY_IDS[7]], [first, other, first])
            shard.end_bulk_load()
        else:
            shard.load_logged(1, [MANY_IDS[5], MANY_IDS[6]], [first, other])
            if case == "then-an-update":
                shard.load_logged(2, [MANY_IDS[7]], [first])
                shard.load_logged(3, [MANY_IDS[6]], [values.pack(_bulk_document(MANY_IDS[6], 2))])
                shard.end_bulk_load()
            else:
                shard.end_bulk_load()
                shard.begin_bulk_load()
                shard.load_logged(2, [MANY_IDS[7]], [first])
                shard.end_bulk_load()
    assert raised.value.code == ErrorCode.CORRUPT_RECORD


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("written_before", [False, True])
def test_a_scan_begun_before_a_write_moves_base_keys_reads_as_of_its_ts(descending,
                                                                        written_before):
    """A scan of an index's base, begun at ts 1 and finished after a commit at
    ts 2 updated and deleted documents further along its range (moving their
    keys out of the base), yields what it would have at ts 1; also when the
    index already held keys outside its base."""
    user_indexes = {"by_color": ["color"]}
    documents = {i: _bulk_document(i, n % 3) for n, i in enumerate(MANY_IDS[:40])}
    loaded = ShardState(10001, "t", user_indexes)
    loaded.begin_bulk_load()
    loaded.load_logged(1, list(documents), [values.pack(d) for d in documents.values()])
    loaded.end_bulk_load()
    if written_before:
        extra = _bulk_document(MANY_IDS[100], 1)
        loaded.apply(2, [(MANY_IDS[100], extra, values.pack(extra))])
    at_ts = loaded.last_ts
    index = loaded.indexes["by_color"]
    expected = list(index.scan(b"", None, at_ts, descending))
    scan = index.scan(b"", None, at_ts, descending)
    got = [next(scan), next(scan)]
    rest = [internal_id for _, internal_id in expected[2:]]
    changed = {i: _bulk_document(i, 9) for i in rest[::3]}
    loaded.apply(at_ts + 1, [(i, d, values.pack(d)) for i, d in changed.items()] +
                 [(i, None, None) for i in rest[1::3]])
    got += list(scan)
    assert got == expected
    loaded.validate()
