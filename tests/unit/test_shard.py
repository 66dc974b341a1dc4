"""A shard's MVCC state answers reads at any ts exactly as a naive history would."""

import hypothesis.strategies as st
from hypothesis import given, settings

from engine import keys, values
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
@given(histories, st.integers(0, 14), st.booleans())
def test_scans_at_every_ts_match_a_naive_history(history, read_at, descending):
    """Index scans at any past ts list exactly the documents live then, in key order."""
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
