"""The subscription actor: keeps every live query of a node current.

Theory of operation. One `SubscriptionActor` per node (`node.subscriptions`)
owns the registry of shared subscriptions and every session's query set
(engine/subscriptions.py). It is fed from two sides:

- The sequencer's `on_publish` hook hands it each durable group of commits.
  The hook never blocks: it queues the group and wakes the actor.
- Sessions (`SessionQueries`, one per connection) change their query set or
  identity, or ask for an Update at a ts; these are plain calls that record
  the change and wake the actor.

The actor's loop, one task, so the registry has one writer:

1. Take every queued group; with T the last ts, stab the interval indexes
   with the groups' write keys, apply the group's changes to the views of
   the subscriptions hit (engine/views.py: each distinct view once, refilled
   from the shards at T where a limited one lost rows), bring those
   subscriptions to T (a fast-path one straight from its view, shared by
   every subscription with the same view and terminal; any other by running
   its function against its views), re-index their reads, raise the
   registry to T, and deliver to each session holding a changed one (or
   waiting for ts <= T) one Update at T.
2. Serve the sessions with changes: bind added queries (a new subscription
   runs at the registry's ts, which is the durable ts once the queue is
   empty; a shared one is already current there), release removed ones, and
   deliver the Update that answers them.

Every Update of a session is at the registry's ts when it is delivered, and
that ts only rises, so a session never goes back in time, and every query it
holds is current at its Update's ts (docs/internals.md, "Subscriptions").
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, Iterable

import trio

from engine import limits, values
from engine.commits import Commit
from engine.readsets import ReadSet, WriteKeys
from engine.subscriptions import (REMOVED, QueryOutcome, SessionState, Subscription,
                                  SubscriptionRegistry, Update, commit_write_keys,
                                  msgpack_array_header)
from engine.view_reads import Read, fast_result, get_result
from engine.views import after, commit_changes

from actors.live import PreparedCall, run_query_at

__all__ = ["REMOVED", "SessionQueries", "SubscriptionActor", "SubscriptionStatistics", "Update"]

# Durable groups that may wait for the actor in its channel. The hook runs
# inside the sequencer's durability loop and must not block it, so when the
# channel is full further commits go to `_backlog`, which the actor takes as
# one group: work per group does not grow with lag (write keys are
# deduplicated by the stab, and each hit subscription runs once at the last
# ts), and the commits held there are already held by the shards' MVCC
# versions. 64 groups is about 64 fsyncs of lag, a few hundred milliseconds.
published_groups_max = 64


@dataclasses.dataclass
class SubscriptionStatistics:
    subscription_count: int
    session_count: int
    evaluation_count: int  # query runs, first runs included
    hit_count: int  # subscriptions returned by interval-index stabs
    current_ts: int
    published_groups_waiting: int
    view_count: int = 0  # distinct views held by live queries
    view_evaluation_count: int = 0  # re-evaluations that ran the function against views
    fast_path_count: int = 0  # updates made from a view without running the function
    refill_count: int = 0  # limited views refilled from a shard after losing rows
    fallback_count: int = 0  # reads of re-evaluations that no view served


class SessionQueries:
    """One connection's live queries. Made by `SubscriptionActor.open_session`.

    The calls that change the query set never block; the Update that answers
    them comes from `wait_update`, or, for an owner that set `listener`,
    from `take_update_nowait` when the listener is called.
    """

    def __init__(self, hub: SubscriptionActor, state: SessionState) -> None:
        self._hub = hub
        self.state = state
        # Tasks blocked in wait_update (embedded sessions, tests), woken by
        # the actor's delivery with a bare reschedule: a ParkingLot costs
        # about three times as much per wake-up, once per session per change.
        self._waiters: list[trio.lowlevel.Task] = []
        # Called with no arguments by the actor's loop right after each
        # delivery, instead of a task being woken to take the Update: a
        # connection (wire/sync.py) takes it there and then. Set by the
        # owner; None until then. It runs inside the actor's loop, so it must
        # not block, and it must not raise (an exception would end the actor
        # and with it the node).
        self.listener: Callable[[], None] | None = None

    def set_identity(self, identity: Any, admin: bool | None = None) -> None:
        """Runs every query again as `identity` (a dict or None), and as an
        admin caller if `admin` says so; answered by an Update."""
        self.state.set_identity(identity, admin)
        self._hub._wake(self)

    def modify(self, adds: Iterable[tuple[int, str, Any, str | None]] = (),
               removes: Iterable[int] = ()) -> None:
        """Removes, then adds, queries; answered by an Update even if nothing changed.

        Args:
            adds: (query id, path, args, journal) each.
            removes: query ids.

        Raises:
            EddyError(PROTOCOL_ERROR): a duplicate add, an unknown remove or a
                closed session; nothing was changed.
        """
        self.state.modify(adds, removes)
        self._hub._wake(self)

    def request_update(self, min_ts: int) -> None:
        """Promises an Update at ts >= `min_ts`, empty if nothing changed."""
        self.state.request_update(min_ts)
        self._hub._wake(self)

    @property
    def pending_updates(self) -> int:
        """How many Updates are merged into the one `wait_update` would return now."""
        return self.state.pending_count

    @property
    def has_update(self) -> bool:
        """Whether an Update waits to be taken."""
        return self.state.pending is not None

    def take_update_nowait(self) -> Update | None:
        """The pending Update (every merged one not yet taken), or None. Never blocks."""
        return self.state.take_update()

    async def wait_update(self) -> Update:
        """The next Update (all merged Updates not yet taken). A checkpoint.

        Blocks until there is one. Cancellation takes nothing: the Update stays
        for the next call.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        blocked = False
        while self.state.pending is None:
            task = trio.lowlevel.current_task()
            waiters = self._waiters
            waiters.append(task)

            def abort(_: Any) -> trio.lowlevel.Abort:
                # Cancelled while waiting: forget the task (the delivery may
                # have swapped the list meanwhile; it then holds no task).
                if task in self._waiters:
                    self._waiters.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
            blocked = True
        update = self.state.take_update()
        if not blocked:
            # A call that did not block still yields once (a checkpoint); one
            # that blocked already did, and a second trip through the
            # scheduler per Update was a share of every Transition's cost.
            await trio.lowlevel.cancel_shielded_checkpoint()
        return update

    def close(self) -> None:
        """Releases the session's subscriptions (soon, in the actor). Idempotent."""
        if not self.state.closed:
            self.state.close()
            self._hub._wake(self)


class SubscriptionActor:
    """See the module docstring.

    Fields:
        registry: the shared subscriptions (engine core).
        _sessions: session id -> SessionQueries; added by open_session,
            removed once a closed session is served.
        _dirty: ids of sessions with changes to serve.
        _waiting: ids of sessions waiting for a requested ts above the registry's.
        _send, _receive: the channel of published groups; `_backlog` holds
            commits that arrived while it was full (see published_groups_max).
        _rerun_all: set by `rerun_all` (new app code); the next loop re-runs
            every subscription.
        validate_each_step: tests set it to check every invariant at the top
            of each loop iteration (STYLE.md); off in production, where it
            would cost a walk over every subscription.
        use_views: on by default; off, every hit subscription re-runs its
            function against the shards (what bench/bench_views.py compares
            with). Set it before the first subscription.
    """

    def __init__(self, node) -> None:
        self.node = node
        self.registry = SubscriptionRegistry(node.sequencer.durable_ts)
        self._sessions: dict[int, SessionQueries] = {}
        self._next_session_id = 1
        self._dirty: dict[int, None] = {}
        self._waiting: dict[int, None] = {}
        self._send, self._receive = trio.open_memory_channel[list[Commit]](published_groups_max)
        self._backlog: list[Commit] = []
        self._rerun_all = False
        # [hits list, registry generation, group key, their query ids by
        # session or None until needed] of the last stab whose hits formed
        # one fast group: the registry returns the same list for the same
        # hits while its generation stands (SubscriptionRegistry.stab), and
        # then they still form that group, held by the same sessions.
        self._grouped: list | None = None
        self._work = trio.lowlevel.ParkingLot()
        # Whether the loop is parked on `_work` and not yet woken: `_wake`
        # runs once per session per mutation answered, mostly after the
        # loop was woken for the same commits, and an unpark_all with no
        # one parked still costs four Python calls.
        self._parked = False
        self.validate_each_step = False
        self.use_views = True
        node.sequencer.on_publish.append(self._on_publish)

    # ----- the API ---------------------------------------------------------

    def open_session(self, admin: bool = False) -> SessionQueries:
        """A new, empty session; `admin` lets its queries be internal functions."""
        session = SessionQueries(self, SessionState(self._next_session_id, admin))
        self._next_session_id += 1
        self._sessions[session.state.id] = session
        return session

    @property
    def held_session_count(self) -> int:
        """The sessions this actor holds: open ones, and a closed one until the
        loop has released it. O(1), unlike statistics()'s walk."""
        return len(self._sessions)

    def rerun_all(self) -> None:
        """Re-runs every subscription at the registry's ts (the app's code changed)."""
        self._rerun_all = True
        self._unpark()

    def statistics(self) -> SubscriptionStatistics:
        registry = self.registry
        return SubscriptionStatistics(
            subscription_count=len(registry.subscriptions),
            session_count=sum(1 for s in self._sessions.values() if not s.state.closed),
            evaluation_count=registry.evaluation_count, hit_count=registry.hit_count,
            current_ts=registry.current_ts,
            published_groups_waiting=self._receive.statistics().current_buffer_used
            + (1 if self._backlog else 0),
            view_count=len(registry.views), view_evaluation_count=registry.view_evaluation_count,
            fast_path_count=registry.fast_path_count, refill_count=registry.views.refill_count,
            fallback_count=registry.fallback_count)

    def validate(self) -> None:
        self.registry.validate()
        for session in self._sessions.values():
            session.state.validate()

    # ----- feeding ---------------------------------------------------------

    def _on_publish(self, group: list[Commit]) -> None:
        # Never blocks (the sequencer calls this from its durability loop).
        if not self._backlog:
            try:
                self._send.send_nowait(group)
            except trio.WouldBlock:
                self._backlog.extend(group)
        else:
            self._backlog.extend(group)
        self._unpark()

    def _wake(self, session: SessionQueries) -> None:
        state = session.state
        if state.needs_service() or state.update_due(self.registry.current_ts):
            self._dirty[state.id] = None
        elif state.requested_ts is not None:
            self._waiting[state.id] = None
        if self._parked:
            self._unpark()

    def _unpark(self) -> None:
        if self._parked:
            self._parked = False
            self._work.unpark_all()

    def _take_published(self) -> list[Commit]:
        commits: list[Commit] = []
        while True:
            try:
                commits.extend(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        commits.extend(self._backlog)
        self._backlog = []
        return commits

    # ----- the loop --------------------------------------------------------

    async def run(self) -> None:
        """The actor's loop (module docstring). Never returns; cancel to stop.

        Cancellation may stop it in the middle of re-running a group: the
        node is closing then, and nothing it holds is durable state.
        """
        while True:
            if self.validate_each_step:
                self.validate()
            commits = self._take_published()
            if commits:
                hits = self._hit_by(commits)
                if self.use_views:
                    self._update_views(commits, hits)
                await self._advance(commits[-1].ts, hits)
            elif self._rerun_all:
                self._rerun_all = False
                self.registry.drop_views()  # new code, perhaps new indexes
                await self._advance(self.registry.current_ts, _Hits({}, self.registry.all()))
            if self._dirty:
                await self._serve_sessions()
            if not (self._dirty or self._rerun_all or self._backlog
                    or self._receive.statistics().current_buffer_used):
                self._parked = True
                try:
                    await self._work.park()
                finally:
                    self._parked = False

    def _hit_by(self, commits: list[Commit]) -> _Hits:
        """The subscriptions the commits touch, grouped for `_advance`."""
        if len(commits) == 1 and commits[0].write_keys is not None:
            # One commit (the usual group): admit's own keys, as they are.
            return self._group(self.registry.stab(commits[0].write_keys))
        write_keys: WriteKeys = {}
        for commit in commits:
            if commit.write_keys is None:
                commit_write_keys(self.node.catalog, commit, write_keys)
            else:  # admit's own keys: no need to unpack the documents again
                for index, keys in commit.write_keys.items():
                    write_keys.setdefault(index, []).extend(keys)
        return self._group(self.registry.stab(write_keys))

    def _group(self, hits: list[Subscription]) -> _Hits:
        """`_group_hits`, or the grouping of the same hits last time while
        nothing that decides it (fast paths, views, the subscriptions) changed."""
        generation = self.registry.generation
        grouped = self._grouped
        if grouped is not None and grouped[0] is hits and grouped[1] == generation:
            return _Hits({grouped[2]: hits}, [])
        found = _group_hits(hits)
        groups = found.fast_groups
        self._grouped = None
        if len(groups) == 1 and not found.others:
            key, group = next(iter(groups.items()))
            if group is hits:  # one group of every hit, as _group_hits made it
                self._grouped = [hits, generation, key, None]
        return found

    def _update_views(self, commits: list[Commit], hits: _Hits) -> None:
        """Step 1: brings the views of `hits` to the group's last ts."""
        registry = self.registry
        ts = commits[-1].ts
        tables = {number for commit in commits for number in commit.writes}
        held = registry.views.views
        # Many hits share a view (one document read by 10,000
        # subscriptions): a fast group holds one, the others are few.
        keys = {key[0] for key in hits.fast_groups}
        keys.update(key for subscription in hits.others for key in subscription.views)
        views = {key: held[key] for key in keys if key[0][0] in tables}
        if views:
            catalog = self.node.catalog
            changes = commit_changes(catalog, commits, {key[0] for key in views}, hits.written)
            registry.views.update(views.values(), changes, catalog, ts)
        registry.views.advance(ts)

    async def _advance(self, ts: int, hits: _Hits) -> None:
        """Step 1: brings `hits` to `ts` from their views, then delivers what changed."""
        registry = self.registry
        changed: list[Subscription] = []
        others = hits.others
        for group in hits.fast_groups.values():
            if not self._fast_update(group, ts, changed, hits.written):
                others.extend(group)
        for subscription in others:
            if registry.record(subscription, await self._evaluate(subscription, ts)):
                changed.append(subscription)
        registry.advance(ts)
        results = self._session_results(changed, hits)
        for session_id in list(self._waiting) if self._waiting else ():
            session = self._sessions.get(session_id)
            requested_ts = None if session is None else session.state.requested_ts
            if requested_ts is None or requested_ts <= ts:
                del self._waiting[session_id]
                if requested_ts is not None:
                    results.setdefault(session_id, {})
        sessions = self._sessions
        for session_id, session_results in results.items():
            self._deliver(sessions[session_id], ts, session_results)

    def _session_results(self, changed: list[Subscription], hits: _Hits) -> dict[int, dict]:
        """session id -> {query id: outcome} of the `changed` subscriptions,
        sessions and query ids in the order the subscriptions come."""
        grouped = self._grouped
        if (grouped is not None and not hits.others and grouped[1] == self.registry.generation
                and changed == grouped[0]):
            # Every hit of the remembered group changed, to the one outcome
            # they share: by session, the query ids worked out the first
            # time (holders change only with the generation).
            outcome = changed[0].outcome
            if grouped[3] is None:
                grouped[3] = _query_ids_by_session(changed)
            return {session_id: dict.fromkeys(query_ids, outcome)
                    for session_id, query_ids in grouped[3]}
        results: dict[int, dict[int, Any]] = {}
        for subscription in changed:
            outcome = subscription.outcome
            for session_id, query_id in subscription.holders:
                session_results = results.get(session_id)
                if session_results is None:
                    results[session_id] = {query_id: outcome}
                else:
                    session_results[query_id] = outcome
        return results

    async def _evaluate(self, subscription: Subscription, ts: int) -> QueryOutcome:
        """Runs the subscription's function at `ts` against its views (or any
        view of a range it reads), and makes its reads its new views."""
        registry = self.registry
        spec = subscription.spec
        prepared = subscription.prepared
        if prepared is None:
            prepared = subscription.prepared = PreparedCall()
        if not self.use_views:
            return await run_query_at(self.node, spec.path, spec.args, subscription.identity, ts,
                                      subscription.run_journal, admin=subscription.admin,
                                      prepared=prepared)
        previous = registry.previous_views(subscription)
        outcome = await run_query_at(self.node, spec.path, spec.args, subscription.identity, ts,
                                     subscription.run_journal, admin=subscription.admin,
                                     views=registry.views, previous=previous, prepared=prepared)
        reader, outcome.reader = outcome.reader, None
        if previous:
            registry.view_evaluation_count += 1
            registry.fallback_count += 0 if reader is None else reader.fallback_count
        registry.hold_views(subscription, [] if reader is None else reader.reads)
        subscription.fast = None if reader is None or len(subscription.views) != 1 else reader.fast
        return outcome

    def _fast_update(self, group: list[Subscription], ts: int, changed: list,
                     written: dict | None = None) -> bool:
        """The fast path (engine/view_reads.py rule 4) for subscriptions sharing
        one view and terminal: their result from the view, without running the
        function (`written`: the group's new documents, unpacked). Returns
        False when the function must run instead."""
        registry = self.registry
        first = group[0]
        view_key = first.views[0]
        found = _fast_evaluation(registry.views.views[view_key], first.fast, ts, written)
        if found is False:
            return False
        outcome, read = found
        if read.key != view_key:
            for subscription in group:
                registry.hold_views(subscription, [read])
        registry.fast_path_count += len(group)
        changed.extend(registry.record_many(group, outcome))
        return True

    async def _serve_sessions(self) -> None:
        """Step 2, for every session with changes, at the registry's ts."""
        while self._dirty:
            session_id = next(iter(self._dirty))
            del self._dirty[session_id]
            session = self._sessions.get(session_id)
            if session is not None:
                await self._serve(session)

    async def _serve(self, session: SessionQueries) -> None:
        state = session.state
        ts = self.registry.current_ts
        if state.closed:
            for query_id, subscription in state.bound.items():
                self.registry.release(subscription, (state.id, query_id))
            state.bound.clear()
            del self._sessions[state.id]
            self._waiting.pop(state.id, None)
            return
        results: dict[int, Any] = {}
        for query_id, change in state.take_inbox().items():
            results[query_id] = await self._bind(state, query_id, change, ts)
        if results or state.update_due(ts):
            self._deliver(session, ts, results)
        if state.requested_ts is not None:
            self._waiting[state.id] = None

    async def _bind(self, state: SessionState, query_id: int, change, ts: int):
        """Points `query_id` at its new subscription (running it if new);
        returns the outcome to send, or REMOVED."""
        holder = (state.id, query_id)
        old = state.bound.pop(query_id, None)
        new = None
        if change is not REMOVED:
            new = self.registry.acquire(change, state.identity, holder, state.admin)
            state.bound[query_id] = new
        if old is not None and old is not new:
            self.registry.release(old, holder)
        if new is None:
            return REMOVED
        if new.outcome is None:
            self.registry.record(new, await self._evaluate(new, ts))
        return new.outcome

    def _deliver(self, session: SessionQueries, ts: int, results: dict[int, Any]) -> None:
        session.state.deliver(ts, results)
        listener = session.listener
        if listener is not None:
            listener()
        waiters = session._waiters
        if waiters:
            session._waiters = []
            for task in waiters:
                trio.lowlevel.reschedule(task)


def _query_ids_by_session(subscriptions: list[Subscription]) -> list[tuple[int, list[int]]]:
    """(session id, query ids) of the holders of `subscriptions`, in the order
    `_session_results` meets them."""
    by_session: dict[int, list[int]] = {}
    for subscription in subscriptions:
        for session_id, query_id in subscription.holders:
            by_session.setdefault(session_id, []).append(query_id)
    return list(by_session.items())


_fast_of = operator.attrgetter("fast")
_share_of = operator.attrgetter("share")
_views_of = operator.attrgetter("views")
_first = operator.itemgetter(0)


@dataclasses.dataclass
class _Hits:
    """The subscriptions a group of commits touched, as `_advance` brings them
    up: fast-path ones grouped by (view key, FastPath.share, owner), each
    group sharing one result; the others run their functions."""

    fast_groups: dict[tuple, list[Subscription]]
    others: list[Subscription]
    # The group's new documents (packed -> document) that view maintenance
    # unpacked; filled by `_update_views`.
    written: dict = dataclasses.field(default_factory=dict)


def _group_hits(hits: list[Subscription]) -> _Hits:
    # Most often every hit shares one view and one plain terminal (one
    # leaderboard, many watchers): found with maps that loop in C.
    if hits:
        fasts = list(map(_fast_of, hits))
        if None not in fasts:
            shares = set(map(_share_of, fasts))
            if len(shares) == 1:
                share = shares.pop()
                if not share[2] and len(set(map(id, map(_first, map(_views_of, hits))))) == 1:
                    return _Hits({(hits[0].views[0], share, None): hits}, [])
    fast_groups: dict[tuple, list[Subscription]] = {}
    others = []
    # This loop runs per subscription hit. Hits sharing a view come in runs
    # (their view keys are the ViewSet's own key object, see `hold_views`),
    # so a hit like the one before joins its group without building and
    # hashing the group key.
    last_view = last_share = group = None
    for subscription in hits:
        fast = subscription.fast
        if fast is None:
            others.append(subscription)
            continue
        share = fast.share  # FastPath.cache_key, inlined
        view_key = subscription.views[0]
        if view_key is not last_view or share != last_share or share[2]:
            key = (view_key, share, subscription.id if share[2] else None)
            group = fast_groups.get(key)
            if group is None:
                group = fast_groups[key] = []
            last_view, last_share = view_key, share
        group.append(subscription)
    return _Hits(fast_groups, others)


# A take of at most this many rows cannot exceed the return value limit
# (each document is at most document_bytes_max plus its system fields), so
# the fast path skips sizing it.
_fast_unsized_rows_max = limits.value_bytes_max // (limits.document_bytes_max + 1024)


def _fast_evaluation(view, fast, ts: int, written: dict | None = None):
    """(outcome, the read it makes) for a fast path over `view`, or False."""
    if fast.is_get:
        return _fast_get(view, ts)
    rows = list(view.scan_rows())
    result = fast_result(fast, rows, view.complete, view.documents, written)
    if result is None:
        return False
    documents, consumed, last_key = result
    if len(documents) > _fast_unsized_rows_max and \
            values.check_value(documents) > limits.value_bytes_max:
        return False  # the function's run reports the limit
    (index, lo, hi, descending, _) = view.key
    if consumed is not None:
        del rows[consumed:]
        lo, hi = (last_key, hi) if descending else (lo, after(last_key))
    read_set = ReadSet()
    read_set.add(index, lo, hi)
    read = Read(view.key[:4] + (consumed,), rows, consumed is None, True)
    outcome = QueryOutcome(ts=ts, value=documents, read_set=read_set)
    # One range: its merged form (QueryOutcome.ranges) without merging.
    outcome._ranges = [(index, lo, hi)] if read_set.ranges else []
    if not fast.filtered:
        # The value is the rows as stored, so its fingerprint (the msgpack of
        # [value, error, log lines, journal]) is their packed forms joined:
        # no need to pack the documents again.
        packed_value = msgpack_array_header(len(rows)) + b"".join(packed for _, _, packed in rows)
        outcome._packed_value = packed_value
        outcome._fingerprint = _FINGERPRINT_HEAD + packed_value + _FINGERPRINT_TAIL
    return outcome, read


def _fast_get(view, ts: int):
    """`_fast_evaluation` of a get (engine/view_reads.py rule 4): the point
    view's document, read as ViewReader.get reads it."""
    document, row = get_result(view)
    (index, lo, hi, _, _) = view.key
    read_set = ReadSet()
    read_set.add(index, lo, hi)
    read = Read(view.key, [] if row is None else [row], True, False)
    outcome = QueryOutcome(ts=ts, value=document, read_set=read_set)
    # The value is the document as stored: its packed form is its msgpack.
    outcome._fingerprint = _FINGERPRINT_HEAD + (_PACKED_NONE if row is None else row[2]) + \
        _FINGERPRINT_TAIL
    return outcome, read


_FINGERPRINT_HEAD = b"\x94"  # a msgpack array of 4
_FINGERPRINT_TAIL = values.pack(None) + values.pack([]) + values.pack(None)
_PACKED_NONE = values.pack(None)
