"""The interval index agrees with a brute-force list of ranges under any
sequence of adds, discards and stabs."""

import hypothesis.strategies as st
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.intervals import IntervalIndex

# Short keys over a small alphabet, so that ranges overlap, nest and touch often.
keys = st.binary(min_size=0, max_size=3).map(lambda b: bytes(x % 4 for x in b))
his = st.one_of(st.none(), keys)
members = st.integers(0, 12)


def brute_stab(entries, key):
    return {m for lo, hi, m in entries if lo <= key and (hi is None or key < hi)}


class IntervalMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.index = IntervalIndex(seed=7)
        self.model: set[tuple[bytes, bytes | None, int]] = set()

    @rule(lo=keys, hi=his, member=members)
    def add(self, lo, hi, member):
        self.index.add(lo, hi, member)
        self.model.add((lo, hi, member))

    @rule(data=st.data())
    def discard_present(self, data):
        if self.model:
            entry = data.draw(st.sampled_from(sorted(self.model, key=repr)))
            self.index.discard(*entry)
            self.model.discard(entry)

    @rule(lo=keys, hi=his, member=members)
    def discard_any(self, lo, hi, member):
        self.index.discard(lo, hi, member)
        self.model.discard((lo, hi, member))

    @rule(lo=keys, hi=his, group=st.lists(members, min_size=1, max_size=5))
    def add_many(self, lo, hi, group):
        self.index.add_many(lo, hi, group)
        self.model.update((lo, hi, m) for m in group)

    @rule(data=st.data(), extra=st.lists(members, max_size=3))
    def discard_many(self, data, extra):
        if self.model:
            lo, hi, _ = data.draw(st.sampled_from(sorted(self.model, key=repr)))
            held = sorted(m for l, h, m in self.model if (l, h) == (lo, hi))
            group = data.draw(st.lists(st.sampled_from(held), unique=True)) + extra
            self.index.discard_many(lo, hi, group)
            self.model.difference_update((lo, hi, m) for m in group)

    @rule(key=keys)
    def stab(self, key):
        found = self.index.stab(key)
        assert len(found) == len(set(found)), "a member reported twice"
        assert set(found) == brute_stab(self.model, key)

    @rule(probe=st.lists(keys, max_size=8))
    def stab_many(self, probe):
        expected = set().union(*(brute_stab(self.model, k) for k in probe)) if probe else set()
        assert set(self.index.stab_many(probe)) == expected

    @invariant()
    def valid(self):
        self.index.validate()
        assert len(self.index) == len({(lo, hi) for lo, hi, _ in self.model})


TestIntervalIndex = IntervalMachine.TestCase
TestIntervalIndex.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@given(st.lists(st.tuples(keys, his), max_size=60), keys)
def test_stab_matches_brute_force_on_bulk_inserts(ranges, key):
    """A stab after many inserts returns exactly the members whose range holds the key."""
    index = IntervalIndex()
    entries = []
    for member, (lo, hi) in enumerate(ranges):
        index.add(lo, hi, member)
        entries.append((lo, hi, member))
    assert sorted(index.stab(key)) == sorted(brute_stab(entries, key))


def test_empty_ranges_hold_nothing():
    """A range whose hi is at or below its lo holds no key (as ReadSet drops them)."""
    index = IntervalIndex()
    index.add(b"b", b"b", 1)
    assert index.stab(b"b") == []
    index.add(b"b", b"c", 2)
    assert index.stab(b"b") == [2]
    assert index.stab(b"c") == []


def test_identical_ranges_share_one_entry():
    """Ten thousand members of one range cost one tree entry, and a stab returns them all."""
    index = IntervalIndex()
    for member in range(10_000):
        index.add(b"k", b"k\x00", member)
    assert len(index) == 1
    assert len(index.stab(b"k")) == 10_000


def test_a_stab_visits_few_nodes_among_many_disjoint_ranges():
    """With 20,000 disjoint ranges a stab visits O(log n) nodes, not all of them."""
    import engine.intervals as intervals
    index = IntervalIndex()
    for i in range(20_000):
        key = i.to_bytes(4, "big")
        index.add(key, key + b"\x00", i)
    visited = 0
    original = intervals._stab

    def counting(node, key, bound, found):
        nonlocal visited
        visited += 1
        return original(node, key, bound, found)

    intervals._stab = counting
    try:
        assert index.stab((12_345).to_bytes(4, "big")) == [12_345]
    finally:
        intervals._stab = original
    assert visited < 200, visited


def test_one_walk_stabs_a_write_of_many_keys():
    """100 keys falling in 10 of 20,000 disjoint ranges are stabbed in one walk
    that visits far fewer nodes than 100 separate stabs would."""
    import engine.intervals as intervals
    index = IntervalIndex()
    for i in range(20_000):
        index.add((10 * i).to_bytes(4, "big"), (10 * i + 10).to_bytes(4, "big"), i)
    visited = 0
    original = intervals._stab_sorted

    def counting(node, keys, i, j, found):
        nonlocal visited
        visited += 1
        return original(node, keys, i, j, found)

    intervals._stab_sorted = counting
    try:
        found = index.stab_many([k.to_bytes(4, "big") for k in range(50_000, 50_100)])
    finally:
        intervals._stab_sorted = original
    assert sorted(found) == list(range(5_000, 5_010))
    assert visited < 150, visited
