"""Live queries: the registry of subscriptions and each session's query set.

Theory of operation. A subscription is one query kept current: the key
(canonical path, args, identity, journal) names it, and every session that
subscribes identically shares it (DESIGN.md section 4), so it is evaluated
once however many sessions hold it. The registry is pure; the actor around it
(actors/subscriptions.py) runs queries and feeds it commits. Rules:

1. Every subscription in the registry is current at `registry.current_ts`:
   its last outcome equals the query run at that ts. The registry's ts only
   rises (`advance`), after every subscription a commit touched was re-run.
2. A subscription's read set is indexed per database index in an
   `IntervalIndex`, so a commit's write keys find the subscriptions to re-run
   without looking at the others (`stab`).
3. A subscription lives while some (session, query id) holds it; the last
   `release` drops it and its ranges.
4. A paginated subscription is re-run with the journal of its previous run
   (PROTOCOL.md 10.3), so its page stays pinned. Two sessions that add the same
   query with the same journal share the pinned page.
4a. Every read of a subscription's last run is a view (engine/views.py) held
   in the registry's `ViewSet` and listed in `Subscription.views`; identical
   reads of several subscriptions share one view. A subscription whose last
   full run qualified keeps a `FastPath` (engine/view_reads.py rule 4): its
   next results come from its view without running the function.

A session (`SessionState`) holds what the connection asked for and what it
was sent:

5. `modify` and `set_identity` take effect at once in `desired` and queue the
   change in `inbox`; the actor serves the inbox later, at the registry's ts.
6. Updates not yet taken are merged into one (`deliver`): newer outcomes
   replace older ones and the ts rises, so a slow session holds at most one
   outcome per query id it has had.
7. A session's Updates never go back in time: `deliver` refuses an older ts.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import operator
from typing import Any, Iterable

from engine import values
from engine.errors import EddyError, ErrorCode
from engine.functions import canonical_path
from engine.intervals import IntervalIndex
from engine.keys import encode_key
from engine.readsets import IndexName, ReadSet, WriteKeys, merge_ranges
from engine.shard import index_key
from engine.transaction import TABLES_INDEX
from engine.view_reads import FastPath, Read
from engine.views import View, ViewKey, ViewSet


class _Removed:
    def __repr__(self) -> str:
        return "REMOVED"


# The result of a query id that the session removed.
REMOVED = _Removed()

# (canonical path, canonical args, canonical identity and admin flag, journal)
SubscriptionKey = tuple[str, bytes, bytes, "str | None"]


@dataclasses.dataclass
class QueryOutcome:
    """One run of a query at `ts`.

    `error` is None or `(message, data, has_data)`; `has_data` is true only
    for `AppError`, whose data reaches the client as Convex's errorData.
    `journal` is the end cursor of the query's one paginated read, or None.
    """

    ts: int
    value: Any = None
    error: tuple[str, Any, bool] | None = None
    log_lines: list[str] = dataclasses.field(default_factory=list)
    journal: str | None = None
    read_set: ReadSet = dataclasses.field(default_factory=ReadSet, repr=False, compare=False)
    _fingerprint: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    # The run's ViewReader (engine/view_reads.py) when it ran against views;
    # the subscription actor takes its reads and clears it.
    reader: Any = dataclasses.field(default=None, repr=False, compare=False)
    _ranges: list | None = dataclasses.field(default=None, repr=False, compare=False)
    _packed_value: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    # query id -> the message a session sends for this outcome under that
    # id, made by the first session that sends it and shared by every other
    # (wire/session.py): one outcome goes to every session watching it, and
    # sessions often use the same query ids (each client numbers its own
    # queries from 0). The messages are values: no one may change them.
    messages: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def fingerprint(self) -> bytes:
        """Bytes equal for two outcomes exactly when a client would see the same thing."""
        if self._fingerprint is None:
            self._fingerprint = canonical_bytes(
                [self.value, list(self.error) if self.error else None, self.log_lines, self.journal],
                sort_keys=False)
        return self._fingerprint

    def packed_value(self) -> bytes:
        """`values.pack(self.value)`, computed once: an outcome shared by many
        sessions goes out in each of their msgpack Transitions. Cut from the
        fingerprint (which packs the value first) where it is msgpack.

        Raises:
            EddyError: INVALID_VALUE if the value cannot be packed.
        """
        if self._packed_value is None:
            fingerprint = self.fingerprint()
            tail = b""
            if self.error is None and fingerprint[:1] == _FINGERPRINT_HEAD:
                tail = _PACKED_NONE + values.pack(self.log_lines) + values.pack(self.journal)
            if tail and fingerprint.endswith(tail):
                self._packed_value = fingerprint[1:-len(tail)]
            else:
                self._packed_value = values.pack(self.value)
        return self._packed_value

    def same_result(self, other: "QueryOutcome | None") -> bool:
        return other is not None and (other is self or self.fingerprint() == other.fingerprint())

    def ranges(self) -> list[tuple[IndexName, bytes, bytes | None]]:
        """The read set as merged ranges, computed once (an outcome the fast
        path shares between subscriptions is indexed for each)."""
        if self._ranges is None:
            self._ranges = _ranges_of(self.read_set)
        return self._ranges


def msgpack_array_header(length: int) -> bytes:
    """msgpack's header of an array of `length` items."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


_FINGERPRINT_HEAD = b"\x94"  # the fingerprint is a msgpack array of 4
_PACKED_NONE = values.pack(None)


@dataclasses.dataclass
class Update:
    """What one session is told at `ts` (docs/internals.md, "Subscriptions").

    `results` maps query ids to their new outcome, or REMOVED. `modify_count`
    and `identity_count` are how many `modify` and `set_identity` calls of the
    session this Update reflects, counted from the session's start, so the
    sync protocol can name the query-set and identity versions it ends at.
    """

    ts: int
    results: dict[int, Any] = dataclasses.field(default_factory=dict)
    modify_count: int = 0
    identity_count: int = 0


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """A query as a session added it."""

    path: str
    args: Any
    journal: str | None = None


def canonical_bytes(value: Any, sort_keys: bool = True) -> bytes:
    """A byte string equal for equal Eddy values (ints and floats kept apart).

    Objects are compared with their fields sorted when `sort_keys`, so
    `{a, b}` and `{b, a}` name the same subscription.
    """
    try:
        return values.pack(_sorted_fields(value) if sort_keys else value)
    except EddyError:
        # Not an Eddy value (the function will reject it); still a stable key.
        return repr(value).encode()


def _sorted_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_fields(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_fields(item) for item in value]
    return value


def subscription_key(spec: QuerySpec, identity: Any, admin: bool = False) -> SubscriptionKey:
    """The registry key; an admin caller (who may run internal functions)
    never shares with an outside one."""
    try:
        path = canonical_path(spec.path)
    except EddyError:
        path = spec.path  # a bad path: the run reports it; the key needs only to be stable
    args = spec.args
    if isinstance(args, list) and len(args) == 1:
        args = args[0]
    caller = canonical_bytes(identity) + (b"\x00admin" if admin else b"")
    return (path, canonical_bytes(args), caller, spec.journal)


class Subscription:
    """One shared live query.

    Fields:
        id: fixed; orders subscriptions deterministically.
        key, spec, identity, admin: fixed at creation.
        holders: (session id, query id) -> None; changed by acquire/release.
        outcome: the last run's outcome; None until the first run.
        run_journal: the journal the next run uses: the one added with, then
            each run's own journal (rule 4).
        ranges: (index, lo, hi) entered in the interval indexes; replaced by
            every `record`.
        views: keys of the views its last run read (rule 4a), in the
            registry's ViewSet; replaced by `hold_views`, emptied on release.
        fast: its FastPath, or None; set by each full run, cleared when a
            full run does not qualify or the app's code changes.
        prepared: the actor's cache of its resolved function and checked
            args (actors/live.py PreparedCall), or None until its first run;
            the cache checks its own validity.
    """

    __slots__ = ("id", "key", "spec", "identity", "admin", "holders", "outcome", "run_journal",
                 "ranges", "views", "fast", "prepared")

    def __init__(self, id: int, key: SubscriptionKey, spec: QuerySpec, identity: Any,
                 admin: bool = False) -> None:
        self.id = id
        self.key = key
        self.spec = spec
        self.identity = identity
        self.admin = admin
        self.holders: dict[tuple[int, int], None] = {}
        self.outcome: QueryOutcome | None = None
        self.run_journal = spec.journal
        self.ranges: list[tuple[IndexName, bytes, bytes | None]] = []
        self.views: list[ViewKey] = []
        self.fast: FastPath | None = None
        self.prepared: Any = None


class SubscriptionRegistry:
    """Every live subscription of a node and the interval index of their reads.

    Fields:
        current_ts: rule 1; raised by `advance`.
        subscriptions: key -> Subscription; changed by acquire/release.
        indexes: database index -> IntervalIndex of subscription ids.
        evaluation_count: outcomes recorded (every query run and fast-path update).
        hit_count: subscriptions a stab returned.
        views: every subscription's views (rule 4a), current at `current_ts`
            once a group's changes are applied.
        view_evaluation_count: re-evaluations that ran the function against
            its views; fast_path_count: updates made without running it;
            fallback_count: reads of re-evaluations no view served (counted
            by the actor).
        generation: raised by every change of which subscriptions exist and
            who holds them, what they hold in the interval indexes, their
            views and fast paths, and by `record`; not by `record_many`, whose changes
            (outcomes, and ranges through `_move_ranges`, which raises it)
            its own memo accounts for. What is remembered between changes
            (`_stab_memo`, `_uniform`, the actor's grouping of hits) is
            valid while it is unchanged.
        _stab_memo: (the one range's members dict a stab hit, generation,
            the subscriptions `stab` returned for it), or None.
        _uniform: (a list `record_many` recorded, generation, the outcome
            and ranges every subscription in it now holds), or None.
    """

    def __init__(self, current_ts: int) -> None:
        self.current_ts = current_ts
        self.subscriptions: dict[SubscriptionKey, Subscription] = {}
        self._by_id: dict[int, Subscription] = {}
        self.indexes: dict[IndexName, IntervalIndex] = {}
        self._next_id = 1
        self.evaluation_count = 0
        self.hit_count = 0
        self.views = ViewSet(current_ts)
        self.view_evaluation_count = 0
        self.fast_path_count = 0
        self.fallback_count = 0
        self.generation = 0
        self._stab_memo: tuple | None = None
        self._uniform: tuple | None = None

    def validate(self) -> None:
        users: dict[ViewKey, int] = {}
        for key, subscription in self.subscriptions.items():
            assert subscription.key == key and self._by_id[subscription.id] is subscription
            assert subscription.holders, "a subscription no one holds"
            assert subscription.outcome is None or subscription.outcome.ts <= self.current_ts
            assert len(set(subscription.views)) == len(subscription.views)
            for view_key in subscription.views:
                users[view_key] = users.get(view_key, 0) + 1
            assert subscription.fast is None or len(subscription.views) == 1
        assert users == {k: v.users for k, v in self.views.views.items()}, "view users out of step"
        self.views.validate()
        assert len(self._by_id) == len(self.subscriptions)
        for index in self.indexes.values():
            index.validate()
            for _, _, members in index.ranges():
                assert all(m in self._by_id for m in members), "a dropped subscription is indexed"

    def acquire(self, spec: QuerySpec, identity: Any, holder: tuple[int, int],
                admin: bool = False) -> Subscription:
        """The subscription for (spec, identity, admin), made if new (its outcome then None)."""
        key = subscription_key(spec, identity, admin)
        subscription = self.subscriptions.get(key)
        if subscription is None:
            subscription = Subscription(self._next_id, key, spec, identity, admin)
            self._next_id += 1
            self.subscriptions[key] = subscription
            self._by_id[subscription.id] = subscription
        subscription.holders[holder] = None
        self.generation += 1
        return subscription

    def release(self, subscription: Subscription, holder: tuple[int, int]) -> None:
        """Drops `holder`; the last one drops the subscription (rule 3)."""
        subscription.holders.pop(holder, None)
        self.generation += 1
        if subscription.holders or self.subscriptions.get(subscription.key) is not subscription:
            return
        self._set_ranges(subscription, [])
        self.hold_views(subscription, [])
        del self.subscriptions[subscription.key]
        del self._by_id[subscription.id]

    def record(self, subscription: Subscription, outcome: QueryOutcome) -> bool:
        """Stores a run's outcome and re-indexes its reads. Returns whether the
        result a client sees changed."""
        assert outcome.ts >= self.current_ts, "an outcome older than the registry"
        self.evaluation_count += 1
        self.generation += 1
        changed = not outcome.same_result(subscription.outcome)
        subscription.outcome = outcome
        if outcome.journal is not None:
            subscription.run_journal = outcome.journal
        if self.subscriptions.get(subscription.key) is subscription:
            self._set_ranges(subscription, outcome.ranges())
        return changed

    def record_many(self, subscriptions: list[Subscription], outcome: QueryOutcome) -> list[Subscription]:
        """`record` of one outcome for several live subscriptions (a shared
        fast-path result): equal old outcomes are compared once and equal old
        ranges move in the interval indexes together. Returns those changed
        (`subscriptions` itself when all did: read it, do not change it)."""
        assert outcome.ts >= self.current_ts, "an outcome older than the registry"
        self.evaluation_count += len(subscriptions)
        ranges = outcome.ranges()
        uniform = self._uniform
        if uniform is not None and uniform[0] is subscriptions and uniform[1] == self.generation:
            # The very list recorded last time (the same hits, remembered by
            # `stab`), nothing changed since: they all hold its outcome and
            # ranges, and all are live, without looking at each again.
            old, old_ranges = uniform[2], uniform[3]
        else:
            assert all(map(_holders_of, subscriptions)), "recording a released subscription"
            # Usually they all held one old outcome and one old ranges list
            # (the last shared result): then nothing per subscription runs
            # in Python (the maps below run in C).
            old = old_ranges = None
            self._uniform = None  # the outcomes of some subscriptions change
            if (len(set(map(id, map(_outcome_of, subscriptions)))) == 1
                    and len(set(map(id, map(_ranges_of_subscription, subscriptions)))) == 1):
                old, old_ranges = subscriptions[0].outcome, subscriptions[0].ranges
            else:
                return self._record_each(subscriptions, outcome, ranges)
        changed = [] if outcome.same_result(old) else subscriptions
        _set_each(subscriptions, "outcome", outcome)
        if old_ranges is not ranges and old_ranges != ranges:
            _set_each(subscriptions, "ranges", ranges)
            self._move_ranges(list(map(_id_of, subscriptions)), old_ranges, ranges)
            old_ranges = ranges
        # (Equal ranges stay the list they hold: one pass over them less.)
        # Remembered for many subscriptions only: for one there is nothing to save.
        self._uniform = ((subscriptions, self.generation, outcome, old_ranges)
                         if len(subscriptions) > 1 else None)
        return changed

    def _record_each(self, subscriptions: list[Subscription], outcome: QueryOutcome,
                     ranges: list) -> list[Subscription]:
        """`record_many` of subscriptions holding different old outcomes or ranges."""
        changed = []
        # This loop runs once per subscription of a shared result (10,000 for
        # one document read by 10,000 subscriptions), so it does the least
        # per subscription: the comparison and the range move are per
        # distinct old outcome and old ranges.
        # Usually they all held one old outcome and ranges (the last shared
        # result), so the one before is checked by identity first.
        same_as: dict[int, bool] = {}
        moves: dict[int, tuple[list, list[int]]] = {}
        last_old: Any = same_as  # matches no outcome
        last_ranges: Any = same_as
        same = False
        move: list[int] = []
        for subscription in subscriptions:
            old = subscription.outcome
            if old is not last_old:
                same = same_as.get(id(old))
                if same is None:
                    same = same_as[id(old)] = outcome.same_result(old)
                last_old = old
            if not same:
                changed.append(subscription)
            subscription.outcome = outcome
            old_ranges = subscription.ranges
            if old_ranges is not ranges:
                if old_ranges is not last_ranges:
                    found = moves.get(id(old_ranges))
                    if found is None:
                        found = moves[id(old_ranges)] = (old_ranges, [])
                    move, last_ranges = found[1], old_ranges
                move.append(subscription.id)
                subscription.ranges = ranges
        for old_ranges, members in moves.values():
            self._move_ranges(members, old_ranges, ranges)
        return changed

    def _move_ranges(self, members: list[int], old: list, new: list) -> None:
        if old == new:
            return
        self.generation += 1
        old_set, new_set = set(old), set(new)
        # Adds first: a range moving within one index then never empties it
        # (a new IntervalIndex seeds its own generator, per move).
        for index, lo, hi in new:
            if (index, lo, hi) not in old_set:
                interval_index = self.indexes.get(index)
                if interval_index is None:
                    interval_index = self.indexes[index] = IntervalIndex(seed=len(self.indexes))
                interval_index.add_many(lo, hi, members)
        for index, lo, hi in old:
            if (index, lo, hi) not in new_set:
                interval_index = self.indexes[index]
                interval_index.discard_many(lo, hi, members)
                if not len(interval_index):
                    del self.indexes[index]

    def hold_views(self, subscription: Subscription, reads: list[Read]) -> None:
        """Makes `reads` (a run's, at `views.ts`) the subscription's views
        (rule 4a): acquires the new ones, then releases the old."""
        if self.subscriptions.get(subscription.key) is not subscription:
            reads = []  # released meanwhile: holds nothing
        keys: dict[ViewKey, None] = {}
        for read in reads:
            if read.key not in keys:
                # The view's own key object: subscriptions sharing a view then
                # hold one key object, which the actor compares by identity.
                keys[self.views.acquire(read.key, read.rows, read.exhausted).key] = None
        for key in subscription.views:
            self.views.release(key)
        subscription.views = list(keys)
        if len(keys) != 1:
            subscription.fast = None
        # The caller may set `fast` next (the actor does): a grouping of
        # hits made before is stale either way.
        self.generation += 1

    def previous_views(self, subscription: Subscription) -> dict:
        """range key -> View for the subscription's views, to serve its next run."""
        views = self.views.views
        return {key[:4]: views[key] for key in subscription.views}

    def drop_views(self) -> None:
        """Forgets every view and fast path (the app's code or indexes changed)."""
        for subscription in self._by_id.values():
            subscription.views = []
            subscription.fast = None
        self.views.clear()
        self.generation += 1

    def stab(self, write_keys: WriteKeys) -> list[Subscription]:
        """Subscriptions whose reads hold one of `write_keys`, by id (rule 2).

        The list is the registry's when the keys hit one range (the same
        list as the last time they did, while `generation` is unchanged, so
        that what was worked out for those hits holds): read it, do not
        change it.
        """
        held: list[dict[int, None]] = []
        for index, keys in write_keys.items():
            interval_index = self.indexes.get(index)
            if interval_index is not None and keys:
                held += interval_index.stab_ranges(keys)
        if len(held) == 1:
            # One range hit (one leaderboard, many watchers): its members
            # change only with `generation`, so the last answer stands.
            memo = self._stab_memo
            if memo is not None and memo[0] is held[0] and memo[1] == self.generation:
                self.hit_count += len(memo[2])
                return memo[2]
            found = held[0]
        else:
            found = {}
            for members in held:
                found.update(members)
        self.hit_count += len(found)
        subscriptions = list(map(self._by_id.__getitem__, sorted(found)))
        if len(held) == 1:
            self._stab_memo = (held[0], self.generation, subscriptions)
        return subscriptions

    def advance(self, ts: int) -> None:
        """Rule 1: every subscription is now current at `ts`."""
        assert ts >= self.current_ts, "the registry's ts went back"
        self.current_ts = ts
        self.views.advance(ts)

    def all(self) -> list[Subscription]:
        return list(self._by_id.values())

    def _set_ranges(self, subscription: Subscription,
                    ranges: list[tuple[IndexName, bytes, bytes | None]]) -> None:
        if ranges is subscription.ranges or ranges == subscription.ranges:
            subscription.ranges = ranges
            return
        self._move_ranges([subscription.id], subscription.ranges, ranges)
        subscription.ranges = ranges


_outcome_of = operator.attrgetter("outcome")
_ranges_of_subscription = operator.attrgetter("ranges")
_id_of = operator.attrgetter("id")
_holders_of = operator.attrgetter("holders")


def _set_each(objects: list, name: str, value: Any) -> None:
    """`setattr(o, name, value)` for each of `objects`, looped in C."""
    collections.deque(map(setattr, objects, itertools.repeat(name), itertools.repeat(value)),
                      maxlen=0)


def _ranges_of(read_set: ReadSet) -> list[tuple[IndexName, bytes, bytes | None]]:
    return [(index, lo, hi)
            for index, ranges in sorted(read_set.ranges.items())
            for lo, hi in merge_ranges(ranges)]


class SessionState:
    """One connection's query set (rules 5-7). Plain object; the actor serves it.

    Fields:
        id, admin: fixed.
        identity: the identity queries run as; set by `set_identity`.
        desired: query id -> QuerySpec the client holds; changed at once by `modify`.
        bound: query id -> Subscription serving it; changed only by the actor.
        inbox: query id -> QuerySpec or REMOVED, changes not yet served;
            emptied by `take_inbox`.
        rebind_all: set by `set_identity`: every query must be re-run.
        modify_count, identity_count: calls received so far.
        served_modify_count, served_identity_count: the counts when the actor
            last took the inbox: what its next Update reflects.
        answered_modify_count, answered_identity_count: the counts the last
            delivered Update reflected; while below the served ones an Update
            is due even if nothing changed (rule 2 of docs/internals.md).
        requested_ts: the largest ts `request_update` asked for and not yet delivered.
        pending: the Update not yet taken, or None; merged by `deliver` (rule 6).
        pending_count: how many Updates were merged into `pending`.
        last_ts: ts of the newest Update delivered (rule 7).
        closed: set by `close`; the actor then releases everything.
    """

    def __init__(self, id: int, admin: bool = False) -> None:
        self.id = id
        self.admin = admin
        self.identity: Any = None
        self.desired: dict[int, QuerySpec] = {}
        self.bound: dict[int, Subscription] = {}
        self.inbox: dict[int, Any] = {}
        self.rebind_all = False
        self.modify_count = 0
        self.identity_count = 0
        self.served_modify_count = 0
        self.served_identity_count = 0
        self.answered_modify_count = 0
        self.answered_identity_count = 0
        self.requested_ts: int | None = None
        self.pending: Update | None = None
        self.pending_count = 0
        self.last_ts = -1
        self.closed = False

    def validate(self) -> None:
        for query_id, change in self.inbox.items():
            assert change is REMOVED or self.desired.get(query_id) == change, "inbox out of step"
        if self.pending is not None:
            assert self.pending.ts == self.last_ts
            for query_id, result in self.pending.results.items():
                # Rule 6: one entry per query id, and a live one only for a
                # query id the session holds or is about to be told is gone.
                assert result is REMOVED or query_id in self.desired or query_id in self.inbox
        for query_id, subscription in self.bound.items():
            assert (self.id, query_id) in subscription.holders
        assert self.answered_modify_count <= self.served_modify_count <= self.modify_count

    def modify(self, adds: Iterable[tuple[int, str, Any, str | None]],
               removes: Iterable[int]) -> None:
        """Removes, then adds, query ids; all or nothing.

        Raises:
            EddyError(PROTOCOL_ERROR): an add of a query id already present
                (after the removes), a remove of one that is not, or a
                session already closed.
        """
        adds, removes = list(adds), list(removes)
        self._check_modify(adds, removes)
        for query_id in removes:
            del self.desired[query_id]
            self.inbox[query_id] = REMOVED
        for query_id, path, args, journal in adds:
            spec = QuerySpec(path, args, journal)
            self.desired[query_id] = spec
            self.inbox[query_id] = spec
        self.modify_count += 1

    def _check_modify(self, adds: list, removes: list) -> None:
        if self.closed:
            raise EddyError(ErrorCode.PROTOCOL_ERROR, "The session is closed.")
        # Checked against `desired` and what this call changes in it, not a
        # copy of it: a session adding its queries one modify at a time must
        # not pay for all those it holds on each (1,000 each was quadratic).
        desired = self.desired
        removed: set[int] = set()
        for query_id in removes:
            if query_id not in desired or query_id in removed:
                raise EddyError(ErrorCode.PROTOCOL_ERROR, f"Remove of unknown query id {query_id}.",
                                query_id=query_id)
            removed.add(query_id)
        added: set[int] = set()
        for query_id, *_ in adds:
            if query_id in added or (query_id in desired and query_id not in removed):
                raise EddyError(ErrorCode.PROTOCOL_ERROR, f"Add of query id {query_id}, "
                                "which is already present.", query_id=query_id)
            added.add(query_id)

    def set_identity(self, identity: Any, admin: bool | None = None) -> None:
        self.identity = identity
        if admin is not None:
            self.admin = admin
        self.identity_count += 1
        self.rebind_all = True

    def request_update(self, min_ts: int) -> None:
        if self.requested_ts is None or min_ts > self.requested_ts:
            self.requested_ts = min_ts

    def close(self) -> None:
        self.closed = True

    def needs_service(self) -> bool:
        """Whether the actor has changes of this session to apply."""
        return (bool(self.inbox) or self.rebind_all or self.closed
                or self.modify_count != self.served_modify_count)

    def take_inbox(self) -> dict[int, Any]:
        """The changes to serve: the inbox, plus every desired query after an
        identity change; clears both."""
        changes = self.inbox
        if self.rebind_all:
            changes = {**{q: s for q, s in self.desired.items()}, **changes}
        self.inbox = {}
        self.rebind_all = False
        self.served_modify_count = self.modify_count
        self.served_identity_count = self.identity_count
        return changes

    def update_due(self, ts: int) -> bool:
        """Whether an Update at `ts` is owed even with no outcome in it."""
        return (self.served_modify_count != self.answered_modify_count
                or self.served_identity_count != self.answered_identity_count
                or self.requested_ts is not None and self.requested_ts <= ts)

    def deliver(self, ts: int, results: dict[int, Any]) -> None:
        """Merges an Update at `ts` into the pending one (rules 6, 7). Takes
        `results`: the caller hands over a dict it no longer uses."""
        assert ts >= self.last_ts, "an Update older than one already delivered"
        pending = self.pending
        if pending is None:
            self.pending = Update(ts, results, self.served_modify_count, self.served_identity_count)
            self.pending_count = 1
        else:
            pending.ts = ts
            pending.results.update(results)
            pending.modify_count = self.served_modify_count
            pending.identity_count = self.served_identity_count
            self.pending_count += 1
        self.answered_modify_count = self.served_modify_count
        self.answered_identity_count = self.served_identity_count
        self.last_ts = ts
        if self.requested_ts is not None and self.requested_ts <= ts:
            self.requested_ts = None

    def take_update(self) -> Update | None:
        update, self.pending, self.pending_count = self.pending, None, 0
        return update


def commit_write_keys(catalog, commit, into: WriteKeys | None = None) -> WriteKeys:
    """The keys a commit removed or added in every index it touched.

    For each document written: its key in each index of its table before the
    commit (the version just below `commit.ts`) and after it; and the name of
    each table the commit created, in the tables pseudo-index (a query of a
    table that did not exist read that name). Both keys count even when they
    are equal: the document under the key changed (engine/shard.py).
    """
    write_keys: WriteKeys = {} if into is None else into
    for number, writes in commit.writes.items():
        shard = catalog.shards[number]
        indexes = [(name, index.fields, write_keys.setdefault((number, name), []))
                   for name, index in shard.indexes.items()]
        for internal_id, packed in writes:
            before = shard.get(internal_id, commit.ts - 1)
            old = None if before is None else values.unpack(before)
            new = None if packed is None else values.unpack(packed)
            for _, fields, touched in indexes:
                old_key = None if old is None else index_key(old, fields)
                if old_key is not None:
                    touched.append(old_key)
                new_key = None if new is None else index_key(new, fields)
                if new_key is not None and new_key != old_key:
                    touched.append(new_key)
    if commit.created_tables:
        write_keys.setdefault(TABLES_INDEX, []).extend(
            encode_key(name) for name, _ in commit.created_tables)
    return write_keys
