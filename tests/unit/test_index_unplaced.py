"""An index's waiting keys (`IndexState.unplaced`) never change what it holds or
what a scan reads, however single writes, batch inserts and reads interleave.

Single writes (`add`) leave their new keys waiting until the
`unplaced_added_max`th waits or a read places them; batch inserts
(`add_new`) until a read or `unplaced_keys_max`. Each test drives one index
with a random run of those steps, the limits made small so that every
placing rule fires, and compares it after each step with what it must hold.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import engine.index_state as index_module
from engine.index_state import LIVE, IndexState

steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("add_new"), st.lists(st.binary(min_size=1, max_size=3), max_size=12)),
    st.tuples(st.just("remove"), st.integers(0, 1000)),
    st.tuples(st.just("scan"), st.binary(max_size=2)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(2, 6), st.integers(6, 20))
def test_waiting_keys_change_nothing_a_reader_sees(run, added_max, keys_max):
    """After every step the index holds every key once, sorted where placed,
    and a scan from any key reads what the key lives say."""
    saved = index_module.unplaced_added_max, index_module.unplaced_keys_max
    index_module.unplaced_added_max, index_module.unplaced_keys_max = added_max, keys_max
    try:
        index = IndexState(["x", "_creationTime", "_id"])
        index._sorted._reset(4)  # small sublists: the splits get exercised too
        lives: dict[bytes, list] = {}  # key -> [owner, begin, end, ...], as a model
        for ts, (kind, argument) in enumerate(run, start=1):
            if kind == "add":
                life = lives.setdefault(argument, [b"id-" + argument])
                if len(life) > 1 and life[-1] == LIVE:
                    continue  # only a key that is not live is added
                index.add(argument, b"id-" + argument, ts)
                life += [ts, LIVE]
            elif kind == "add_new":
                new_keys = [key for key in dict.fromkeys(argument) if key not in lives]
                index.add_new(new_keys, [(b"id-" + key, ts, LIVE) for key in new_keys])
                for key in new_keys:
                    lives[key] = [b"id-" + key, ts, LIVE]
            elif kind == "remove":
                live = sorted(key for key, life in lives.items() if life[-1] == LIVE)
                if not live:
                    continue
                key = live[argument % len(live)]
                index.remove(key, ts)
                lives[key][-1] = ts
            else:
                got = list(index.scan(argument, None, ts, False))
                assert got == [(key, lives[key][0]) for key in sorted(lives)
                               if key >= argument and _live_at(lives[key], ts)]
                assert not index.unplaced  # a read places every waiting key
            index._sorted._check()
            assert sorted([*index._sorted, *index.unplaced]) == sorted(lives)
            assert {key: tuple(life) for key, life in lives.items()} == index.life
            assert len(index.unplaced) <= max(added_max, keys_max) + 12
    finally:
        index_module.unplaced_added_max, index_module.unplaced_keys_max = saved


def _live_at(life: list, ts: int) -> bool:
    return any(begin <= ts < end for begin, end in zip(life[1::2], life[2::2]))
