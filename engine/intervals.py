"""An interval index: which members read a key range that holds this key.

Theory of operation. The subscription registry (engine/subscriptions.py)
keeps one `IntervalIndex` per database index. Each entry is a half-open key
range `[lo, hi)` (`hi` None: unbounded) with the set of members (subscription
ids) that read it; identical ranges share one entry, so ten thousand
subscriptions reading the same document cost one entry. A stab ("which
members read a range containing key k?") must not scan every entry.

The entries live in a treap (a binary search tree kept balanced by random
priorities) ordered by `(lo, hi)`, where every node also holds `reach`, the
largest `hi` in its subtree. Rules:

1. In-order, entries are sorted by `lo`; so once a node's `lo` is above `k`,
   nothing to its right can hold `k`.
2. A subtree whose `reach` is at or below `k` holds no range containing `k`
   (ranges are exclusive at `hi`), so the search skips it.
3. Together these give a stab in O(log n) per entry found, plus O(log n).
   Insertion and removal are O(log n) expected.

Priorities come from a generator seeded by the index itself: the shape of the
tree never changes what a stab returns, and the same operations give the same
tree in every run (DESIGN.md section 6).
"""

from __future__ import annotations

import bisect
import random
from typing import Iterable

# A range's upper end as a sortable value: (0, hi) for a bounded range,
# (1, b"") for an unbounded one, so that unbounded sorts above every key.
_UNBOUNDED = (1, b"")


def _rank(hi: bytes | None) -> tuple:
    return _UNBOUNDED if hi is None else (0, hi)


class _Node:
    __slots__ = ("lo", "hi", "order", "reach", "priority", "left", "right", "members")

    def __init__(self, lo: bytes, hi: bytes | None, priority: int) -> None:
        self.lo = lo
        self.hi = hi
        self.order = (lo, _rank(hi))
        self.reach = self.order[1]
        self.priority = priority
        self.left: _Node | None = None
        self.right: _Node | None = None
        # member id -> None; a dict, so that members come out in the order
        # they were added (deterministic, unlike a set).
        self.members: dict[int, None] = {}


def _update(node: _Node) -> None:
    reach = node.order[1]
    left, right = node.left, node.right
    if left is not None and left.reach > reach:
        reach = left.reach
    if right is not None and right.reach > reach:
        reach = right.reach
    node.reach = reach


def _split(node: _Node | None, order: tuple) -> tuple[_Node | None, _Node | None]:
    """(entries below `order`, entries at or above it)."""
    if node is None:
        return None, None
    if node.order < order:
        below, above = _split(node.right, order)
        node.right = below
        _update(node)
        return node, above
    below, above = _split(node.left, order)
    node.left = above
    _update(node)
    return below, node


def _merge(low: _Node | None, high: _Node | None) -> _Node | None:
    """Joins two treaps where every entry of `low` sorts below every entry of `high`."""
    if low is None:
        return high
    if high is None:
        return low
    if low.priority > high.priority:
        low.right = _merge(low.right, high)
        _update(low)
        return low
    high.left = _merge(low, high.left)
    _update(high)
    return high


def _insert(node: _Node | None, new: _Node) -> _Node:
    if node is None:
        return new
    if new.priority > node.priority:
        new.left, new.right = _split(node, new.order)
        _update(new)
        return new
    if new.order < node.order:
        node.left = _insert(node.left, new)
    else:
        node.right = _insert(node.right, new)
    _update(node)
    return node


def _delete(node: _Node | None, order: tuple) -> _Node | None:
    assert node is not None, "deleting an entry that is not in the tree"
    if node.order == order:
        return _merge(node.left, node.right)
    if order < node.order:
        node.left = _delete(node.left, order)
    else:
        node.right = _delete(node.right, order)
    _update(node)
    return node


def _stab(node: _Node | None, key: bytes, bound: tuple, found: list[_Node]) -> None:
    """Appends every node of the subtree whose range holds `key` (rules 1-3)."""
    while node is not None and node.reach > bound:
        _stab(node.left, key, bound, found)
        if node.lo > key:
            return
        if node.hi is None or key < node.hi:
            found.append(node)
        node = node.right


def _stab_sorted(node: _Node | None, keys: list[bytes], i: int, j: int,
                 found: list[_Node]) -> None:
    """Appends every node of the subtree whose range holds one of `keys[i:j]`
    (sorted, distinct) once: one walk for all the keys of a write, which
    visits each node on their shared paths once rather than once per key."""
    while node is not None:
        reach = node.reach
        if reach[0] == 0:  # rule 2: keys at or above the reach are held by no range here
            j = bisect.bisect_left(keys, reach[1], i, j)
        if i >= j:
            return
        _stab_sorted(node.left, keys, i, j, found)
        # Rule 1: keys below this node's lo lie in no range of it or its right.
        i = bisect.bisect_left(keys, node.lo, i, j)
        if i >= j:
            return
        hi = node.hi
        if hi is None or keys[i] < hi:  # the smallest key at or above lo
            found.append(node)
        node = node.right


class IntervalIndex:
    """Ranges of one database index and the members that read them.

    Fields:
        _root: the treap; changed by `add` and `discard`.
        _entries: (lo, hi) -> its node, for O(1) sharing of identical ranges;
            an entry is removed when its last member goes.
        _random: the seeded generator of treap priorities.
    """

    def __init__(self, seed: int = 0) -> None:
        self._root: _Node | None = None
        self._entries: dict[tuple[bytes, bytes | None], _Node] = {}
        self._random = random.Random(seed)

    def __len__(self) -> int:
        """The number of distinct ranges."""
        return len(self._entries)

    def add(self, lo: bytes, hi: bytes | None, member: int) -> None:
        """Records that `member` reads `[lo, hi)`."""
        node = self._entries.get((lo, hi))
        if node is None:
            node = _Node(lo, hi, self._random.getrandbits(32))
            self._entries[(lo, hi)] = node
            self._root = _insert(self._root, node)
        node.members[member] = None

    def add_many(self, lo: bytes, hi: bytes | None, members: list[int]) -> None:
        """`add` for several members at once (subscriptions moving together)."""
        node = self._entries.get((lo, hi))
        if node is None:
            self.add(lo, hi, members[0])
            node = self._entries[(lo, hi)]
        node.members.update(dict.fromkeys(members))

    def discard_many(self, lo: bytes, hi: bytes | None, members: list[int]) -> None:
        """`discard` for several members at once."""
        node = self._entries.get((lo, hi))
        if node is None:
            return
        if len(members) >= len(node.members) and node.members.keys() <= set(members):
            node.members.clear()  # all of them leave (a shared result moved on)
        else:
            for member in members:
                node.members.pop(member, None)
        if not node.members:
            del self._entries[(lo, hi)]
            self._root = _delete(self._root, node.order)

    def discard(self, lo: bytes, hi: bytes | None, member: int) -> None:
        """Forgets that `member` reads `[lo, hi)` (no-op if it did not)."""
        node = self._entries.get((lo, hi))
        if node is None or member not in node.members:
            return
        del node.members[member]
        if not node.members:
            del self._entries[(lo, hi)]
            self._root = _delete(self._root, node.order)

    def stab(self, key: bytes) -> list[int]:
        """Members reading a range that holds `key`, each once, in a fixed order."""
        found: list[_Node] = []
        _stab(self._root, key, (0, key), found)
        if len(found) == 1:
            return list(found[0].members)
        members: dict[int, None] = {}
        for node in found:
            members.update(node.members)
        return list(members)

    def stab_many(self, keys: Iterable[bytes]) -> dict[int, None]:
        """Members reading a range that holds any of `keys`, in a fixed order."""
        members: dict[int, None] = {}
        for held in self.stab_ranges(keys):
            members.update(held)
        return members

    def stab_ranges(self, keys: Iterable[bytes]) -> list[dict[int, None]]:
        """The members of each range that holds any of `keys`, as the index
        holds them (a range's dict is the same object for as long as the
        range is entered, and changes only through add and discard): the
        caller reads them and must not change them."""
        ordered = sorted(set(keys))
        found: list[_Node] = []
        _stab_sorted(self._root, ordered, 0, len(ordered), found)
        return [node.members for node in found]

    def ranges(self) -> list[tuple[bytes, bytes | None, list[int]]]:
        """Every entry in order, with its members (for tests and debugging)."""
        out: list[tuple[bytes, bytes | None, list[int]]] = []
        stack: list[_Node] = []
        node = self._root
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            out.append((node.lo, node.hi, list(node.members)))
            node = node.right
        return out

    def validate(self) -> None:
        """Checks the treap's order, heap and reach invariants."""
        entries = self.ranges()
        orders = [(lo, _rank(hi)) for lo, hi, _ in entries]
        assert orders == sorted(orders) and len(set(orders)) == len(orders), "treap out of order"
        assert len(entries) == len(self._entries)
        assert all(members for _, _, members in entries), "an entry with no members"
        _check_node(self._root)


def _check_node(node: _Node | None) -> tuple:
    """Checks heap order and `reach` below `node`; returns its reach."""
    if node is None:
        return (-1,)
    reach = node.order[1]
    for child in (node.left, node.right):
        if child is not None:
            assert child.priority <= node.priority, "treap heap order broken"
            reach = max(reach, _check_node(child))
    assert node.reach == reach, "reach out of date"
    return reach
