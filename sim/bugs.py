"""Planted bugs: known ways Eddy could be wrong, to prove the checkers catch them.

`EDDY_SIM_BUG=<name>` (or `eddy sim run --bug NAME`) plants one, and only
inside the simulator: each bug is applied by `plant` to a freshly opened node
of a simulated World, by replacing one of that node's parts on the instance
(a method or a collaborator of one object, never a class or a module).
Nothing in engine/, actors/ or wire/ knows about planted bugs, so the
production path cannot take one (and no flag there can be left on by
mistake).

Each entry says what it breaks and which checker should catch it. Bugs that
act at random draw from their own substream of the run's seed, so a planted
run replays exactly like any other.
"""

from __future__ import annotations

import bisect
import os
import types

ENVIRONMENT_VARIABLE = "EDDY_SIM_BUG"

BUGS = {
    "skipped-read-validation":
        "the sequencer admits every commit without checking its read set against "
        "later commits (lost updates; caught by conserved totals, counters and the "
        "serializability checker)",
    "ack-before-fsync":
        "the sequencer writes commit groups without syncing them, so an "
        "acknowledged commit can vanish in a power loss (caught by the durability "
        "checker, or at the restart by the stale-storage check: the data folder "
        "is older than what the node had published)",
    "timestamp-reuse-after-restart":
        "after a restart the sequencer forgets the last ts and trusts the clock, "
        "which may have gone back (caught by the commit-order checker)",
    "multi-shard-non-atomic":
        "the sequencer writes a group whose commits span several tables in two "
        "batches, the first table's log entries and the commit records, then the "
        "other tables' entries, so a crash or an I/O error between them leaves a "
        "commit half on disk (caught by the atomicity checker; workload leaderboard "
        "writes two tables per commit)",
    "dropped-subscription-delta":
        "each subscription actor now and then leaves one changed query out of the "
        "Update it delivers to a session, so the client keeps a stale value (caught "
        "by the subscription oracle: the value differs from a query at the Update's "
        "ts; workload leaderboard)",
    "deltas-out-of-order":
        "a session's queue now and then holds an Update back and hands it out "
        "after the next, newer one, so the client sees ts go back and older results "
        "after newer ones (caught by the subscription oracle; workload leaderboard)",
    "take-refill-off-by-one":
        "a take(n) view that lost rows refills one row too few from the shard and "
        "then believes it covers its whole range, so the live query returns n-1 "
        "rows while n exist (caught by the subscription oracle; workload "
        "leaderboard)",
    "lost-mutation-dedup":
        "the sync endpoint forgets every mutation result, so a mutation a client "
        "re-sends after a broken connection (with its original request id) runs "
        "again instead of being answered from its stored result (caught by the "
        "exactly-once checker: one call committed twice in one incarnation; needs "
        "protocol clients over the simulated network, e.g. workload hot-keys)",
}

# How often the random bugs strike: per delivery with results (dropped delta),
# per delivery to a session with no untaken Update (out of order).
drop_probability = 0.05
reorder_probability = 0.05


def selected_bug(explicit: str | None = None) -> str | None:
    """The bug to plant: `explicit`, else $EDDY_SIM_BUG, else None.

    Raises:
        ValueError: an unknown name.
    """
    name = explicit or os.environ.get(ENVIRONMENT_VARIABLE) or None
    if name is not None and name not in BUGS:
        raise ValueError(f"unknown bug {name!r}; `eddy sim bugs` lists them")
    return name


def plant(name: str | None, node, world) -> None:
    """Plants bug `name` into a node just opened on the simulated `world`."""
    if name is None:
        return
    # One substream per incarnation (its opening ts tells them apart).
    rng = world.stream("bug", name, node.sequencer.durable_ts)
    if name == "skipped-read-validation":
        node.sequencer.state.conflicts = lambda snapshot_ts, read_set: None
    elif name == "ack-before-fsync":
        node.sequencer.store = _UnsyncedStore(node.sequencer.store)
    elif name == "timestamp-reuse-after-restart":
        node.sequencer.state.last_ts = 0
    elif name == "multi-shard-non-atomic":
        node.sequencer.store = _SplitStore(node.sequencer.store)
    elif name == "dropped-subscription-delta":
        for actor in node.subscriptions.actors:  # every subscription actor of the node
            _drop_deltas(actor, rng)
    elif name == "deltas-out-of-order":
        for actor in node.subscriptions.actors:
            _reorder_updates(actor, rng)
    elif name == "take-refill-off-by-one":
        for actor in node.subscriptions.actors:
            views = actor.registry.views
            views.update = types.MethodType(_update_with_short_refill, views)
    elif name in SERVER_BUGS:
        pass  # planted into the sync endpoint by plant_server
    else:
        raise ValueError(f"unknown bug {name!r}")


# Bugs of the sync endpoint (wire/sync.py's SyncServer), which the simulator
# makes per node incarnation (sim/clients.py) after the node opened.
SERVER_BUGS = ("lost-mutation-dedup",)


def plant_server(name: str | None, server, world) -> None:
    """Plants bug `name` into a sync endpoint just made for a simulated node."""
    if name == "lost-mutation-dedup":
        server.results = _ForgetfulResults()


class _ForgetfulResults:
    """wire.mutation_results.MutationResults that keeps nothing."""

    bytes = 0

    def __len__(self) -> int:
        return 0

    def get(self, session_id, request_id):
        return None

    def put(self, session_id, request_id, outcome) -> None:
        pass


class _UnsyncedStore:
    """The node's store with every write made unsynced."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def write(self, ops, sync: bool) -> None:
        await self._store.write(ops, sync=False)


class _SplitStore:
    """The node's store, writing a batch that spans several tables' logs in
    two batches: commit records, meta and the lowest table's log entries
    first, the other tables' log entries second (each synced)."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def write(self, ops, sync: bool) -> None:
        tables = sorted({key[:4] for cf, key, _ in ops if cf == "log"})
        if len(tables) < 2:
            await self._store.write(ops, sync=sync)
            return
        first = [op for op in ops if op[0] != "log" or op[1][:4] == tables[0]]
        second = [op for op in ops if op[0] == "log" and op[1][:4] != tables[0]]
        await self._store.write(first, sync=sync)
        # A crash or a storage error here leaves the group's commits half there.
        await self._store.write(second, sync=sync)


def _drop_deltas(actor, rng) -> None:
    deliver = actor._deliver

    def dropping_deliver(session, ts, results):
        live = sorted(query_id for query_id, outcome in results.items()
                      if getattr(outcome, "ts", None) is not None)
        if live and rng.random() < drop_probability:
            del results[rng.choice(live)]
        deliver(session, ts, results)

    actor._deliver = dropping_deliver


def _reorder_updates(actor, rng) -> None:
    """Sessions opened from now on may get a newer Update before an older one."""
    open_session = actor.open_session

    def open_reordering_session(*args, **kwargs):
        session = open_session(*args, **kwargs)
        state = session.state
        deliver, take_update = state.deliver, state.take_update
        held = []  # an Update delivered but held back
        queued = []  # the held Update, to be taken after the newer one

        def reordering_deliver(ts, results):
            was_pending = state.pending is not None
            deliver(ts, results)
            if held:
                # The newer Update goes first; the held, older one after it.
                queued.append(held.pop())
            elif not was_pending and not queued and rng.random() < reorder_probability:
                held.append(state.pending)
                state.pending, state.pending_count = None, 0

        def reordering_take_update():
            update = take_update()
            if queued:
                state.pending, state.pending_count = queued.pop(), 1
            return update

        state.deliver, state.take_update = reordering_deliver, reordering_take_update
        return session

    actor.open_session = open_reordering_session


def _update_with_short_refill(self, views, changes, catalog, ts):
    """engine.views.ViewSet.update with View.refill replaced by `_short_refill`."""
    changed = []
    for view in views:
        index_changes = changes.get(view.index)
        if not index_changes:
            continue
        touched = view.apply(index_changes)
        missing = view.settle()
        if missing:
            shard = catalog.shards[view.index[0]]
            self.refill_count += _short_refill(view, shard.indexes[view.index[1]], ts, shard)
            touched = True
        if touched:
            changed.append(view)
    return changed


def _short_refill(view, index, ts, shard) -> int:
    """engine.views.View.refill, off by one: it reads one row fewer than are missing."""
    missing = view.limit - len(view.keys) - 1  # the planted off-by-one
    lo, hi = view.rest_range()
    found = 0
    if missing > 0:
        for key, internal_id in index.scan(lo, hi, ts, view.descending):
            view.rows[key] = (internal_id, shard.get(internal_id, ts))
            view.key_of[internal_id] = key
            bisect.insort(view.keys, key)
            found += 1
            if found == missing:
                break
    if found < missing:
        view.edge = None
    else:
        view._set_edge()
    view.version += 1
    return found
