"""The Convex sync session as a sans-I/O state machine (PROTOCOL.md 2-5, 13).

`SyncSession` is one WebSocket's protocol state. It reads and writes nothing:
the shell (wire/sync.py) feeds it parsed client messages, subscription
Updates, call outcomes and the time, and carries out the effects it returns:
`Send` a message, `ModifyQueries`, `RunMutation(s)`, `RunAction`,
`ResolveToken`, `SetIdentity`, `RequestUpdate`, `Close`.

Theory of operation
-------------------

Versions (the client checks every Transition's `startVersion`, so this is
where bugs wedge clients; PROTOCOL.md 3.2 and 13.1):

- `current` = {querySet, identity, ts} is the last `endVersion` sent, starting
  at {0, 0, 0} on every socket.
- `received_query_set` / `received_identity` count what the client sent.
- A ModifyQuerySet or an Authenticate becomes a *pending version*: the
  version number and how many `modify` / `set_identity` calls the
  subscription layer must have answered before it counts as applied. Each
  Update says how many it reflects (`modify_count`, `identity_count`,
  engine/subscriptions.py), so a merged Update applies several versions.
- A Transition goes out for every Update: start = `current`, end =
  {latest applied query-set version, latest applied identity version,
  Update.ts}; then `current` = end. Only one place builds Transitions, so two
  can never be computed from the same `current`.

Rules (numbered as the tests refer to them):

1. `Connect` comes first and once; `maxObservedTimestamp` above the node's
   latest ts is refused (the backend's "linearizability violation").
2. A ModifyQuerySet must have `baseVersion == received_query_set` and
   `newVersion > baseVersion`; an `Add` of a live id or a `Remove` of an
   unknown one is a protocol error. Protocol errors send `FatalError` and
   close (PROTOCOL.md 3.7): they are deterministic client bugs.
3. An `Add` whose path or args are bad does not reach the subscription layer:
   it is answered by a `QueryFailed` in the next Transition, as a function
   error, so one bad query does not take the socket down.
4. Mutations of one session run one at a time in arrival order, and their
   responses go out in that order; a batch (the Eddy extension
   `MutationBatch`) is one turn of that lane. A mutation's turn ends when its
   commit is *decided* (`mutation_decided`: admitted at a ts, or it wrote
   nothing), not when it is durable: the next one starts then, runs on a
   snapshot that includes the previous one's writes (the runner runs at the
   newest admitted ts), and the two usually share a group commit. Responses
   still wait for durability and go out in order (a finished mutation behind
   an unanswered one waits for it). So a session's mutations execute
   serially, as PROTOCOL.md 4 requires, without one fsync per mutation per
   session. Only a plain mutation starts behind an unanswered one; a batch,
   or a turn with refused or repeated items, waits for every earlier answer.
   A request already answered for this (sessionId, requestId) is answered
   again from the node-wide `MutationResults` without running. Actions run
   concurrently.
5. After a MutationResponse a Transition with ts >= the mutation's ts must
   follow (`RequestUpdate`, once no mutation is started and unanswered), and
   a Transition that includes a mutation's writes never precedes its
   response (PROTOCOL.md 4): an Update is held (merged with later ones)
   while some started, unanswered mutation is not yet decided or was
   committed at or before the Update's ts, and released as soon as none is.
6. An Authenticate must have `baseVersion == received_identity`; the shell
   resolves the token; a rejected token sends `AuthError` and closes.
7. A JSON `Ping` goes out after `ping_interval_ms` without any message sent.
8. After `Close` every input is ignored.

Time comes in as `now_ms` (wall-clock milliseconds) on every call; the core
never reads a clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Union

from engine.errors import EddyError
from engine.functions import canonical_path
from engine.subscriptions import REMOVED
from wire.messages import (  # noqa: F401  (re-exported: the core's vocabulary)
    Connect, QueryAdd, QueryRemove, ModifyQuerySet, Mutation, Action, MutationBatch,
    Authenticate, Event, ClientMessage, StateVersion, INITIAL_VERSION, QueryUpdated,
    QueryFailed, QueryRemoved, Transition, MutationResponse, ActionResponse, AuthError,
    FatalError, Ping, ServerMessage, CallSucceeded, CallFailed, CallOutcome,
)
from wire.mutation_results import MutationResults  # noqa: F401  (re-exported)

# PROTOCOL.md 5.2: npm reconnects after 60 s without a message, Rust after 30 s;
# the backend pings after 15 s of silence, which keeps both comfortably alive.
ping_interval_ms = 15_000
# The backend queues at most 1,000 mutations per connection (worker.rs); a
# client past that is flooding, not waiting.
queued_mutations_max = 1000
# Concurrent actions per session: each holds a task and possibly a long
# external call for up to 10 minutes; 64 is far beyond what a UI issues and
# bounds what one socket can pin.
running_actions_max = 64
# Mutations in one MutationBatch frame: the frame size bound caps bytes, this
# caps per-item overhead (one response each).
batch_mutations_max = 1000
U32_MAX = 2**32 - 1

# Close codes (RFC 6455): 1008 for a client that broke the protocol, 1011
# for a state the server cannot continue from, 1013 for "try again later".
CLOSE_PROTOCOL = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_NORMAL = 1000


# ------------------------------------------------------------------- effects
# (Slotted, not frozen, as wire/messages.py says: several are made per mutation.)

@dataclass(slots=True)
class Send:
    message: ServerMessage


@dataclass(slots=True)
class ModifyQueries:
    adds: list[tuple[int, str, dict, str | None]]  # (query id, canonical path, args, journal)
    removes: list[int]


@dataclass(slots=True)
class RunMutation:
    request_id: int
    path: str
    args: dict
    caller: Any


@dataclass(slots=True)
class RunMutations:
    """A batch: run every item (they are independent), answer with all outcomes."""

    items: list[tuple[int, str, dict]]  # (request id, canonical path, args)
    caller: Any


@dataclass(slots=True)
class RunAction:
    request_id: int
    path: str
    args: dict
    caller: Any


@dataclass(slots=True)
class ResolveToken:
    """Check a token; answer with `token_resolved(caller)` or `token_rejected(message)`."""

    token_type: str
    value: str | None
    impersonating: dict | None


@dataclass(slots=True)
class SetIdentity:
    identity: Any
    # Whether live queries may be internal functions (an admin key was given).
    admin: bool = False


@dataclass(slots=True)
class RequestUpdate:
    min_ts: int


@dataclass(slots=True)
class Close:
    reason: str
    code: int = CLOSE_PROTOCOL


Effect = Union[Send, ModifyQueries, RunMutation, RunMutations, RunAction,
               ResolveToken, SetIdentity, RequestUpdate, Close]


# -------------------------------------------------------------- the session

@dataclass
class _Query:
    path: str | None  # canonical; None when the Add was refused (rule 3)
    journal: str | None


@dataclass(slots=True)
class _PendingVersion:
    version: int
    calls: int  # applied once an Update reflects this many calls (modify or set_identity)


@dataclass
class _QueuedMutation:
    items: list[tuple[int, str | None, Any, str | None]]  # (request id, path, args, error)
    batch: bool


@dataclass
class _Turn:
    """A started turn of the mutation lane (rule 4), until it is answered.

    `decided` is set by `mutation_decided` or by the outcomes arriving;
    `commit_ts` is the ts of its writes once known (None: none, or not yet);
    `outcomes` is set when it finished (item order), None while it runs.
    """

    items: list[tuple[int, str | None, Any, str | None]]  # (request id, path, args, None)
    batch: bool
    decided: bool = False
    commit_ts: int | None = None
    outcomes: list[CallOutcome] | None = None


class ProtocolViolation(Exception):
    """Raised inside the core for a client error; becomes FatalError + close."""


class SyncSession:
    """One socket's sync protocol state (see the module docstring for the rules).

    Every public method returns the effects to carry out, in order.
    """

    def __init__(self, results: MutationResults, *, now_ms: float = 0.0) -> None:
        self.results = results
        # Set by Connect; cleared never (a socket has one session).
        self.session_id: str | None = None
        self.connection_count = 0
        self.last_close_reason: str | None = None
        self.client_clock_skew_ms: float | None = None
        # The last endVersion sent; starts over on every socket.
        self.current = INITIAL_VERSION
        self.received_query_set = 0
        self.received_identity = 0
        self.applied_query_set = 0
        self.applied_identity = 0
        # Live queries as received (ids of Adds not yet Removed).
        self.queries: dict[int, _Query] = {}
        # Calls made to the subscription layer (ModifyQueries, SetIdentity effects).
        self.modify_calls = 0
        self.identity_calls = 0
        # Versions received but not yet reflected in a Transition, oldest first.
        self.pending_query_sets: collections.deque[_PendingVersion] = collections.deque()
        self.pending_identities: collections.deque[_PendingVersion] = collections.deque()
        # Modifications the core makes itself (rule 3), by query id: (query-set
        # version, modification); sent once a Transition reaches that version.
        self.local: dict[int, tuple[int, QueryFailed | QueryRemoved]] = {}
        # Who calls functions: set by the shell through token_resolved.
        self.caller: Any = None
        # The mutation lane (rule 4).
        self.mutation_queue: collections.deque[_QueuedMutation] = collections.deque()
        # Turns started and not yet answered, oldest first; at most the newest
        # is undecided (rule 4). Popped when answered.
        self.started: collections.deque[_Turn] = collections.deque()
        self.running_actions: set[int] = set()
        # Updates held while a started mutation may be in them (rule 5), merged.
        self.held_ts: int | None = None
        self.held_results: dict[int, Any] = {}
        self.held_counts = (0, 0)  # (modify_count, identity_count) of the newest held
        # A Transition with ts >= this is owed after a MutationResponse; None when not.
        self.owed_ts: int | None = None
        # Set while a token is with the shell; nothing else may be fed meanwhile.
        self.resolving_token = False
        self.last_sent_ms = now_ms
        self.closed = False
        self.close_reason: str | None = None

    # ----- invariants

    def validate(self) -> None:
        """Checks the invariants; called by tests after every step."""
        assert self.current.query_set == self.applied_query_set
        assert self.current.identity == self.applied_identity
        assert self.applied_query_set <= self.received_query_set
        assert self.applied_identity <= self.received_identity
        assert all(p.version > self.applied_query_set for p in self.pending_query_sets)
        assert all(p.version > self.applied_identity for p in self.pending_identities)
        assert all(p.calls <= self.modify_calls for p in self.pending_query_sets)
        assert all(p.calls <= self.identity_calls for p in self.pending_identities)
        assert all(query_id in self.queries or isinstance(item, QueryRemoved)
                   for query_id, (_, item) in self.local.items())
        assert len(self.mutation_queue) + len(self.started) <= queued_mutations_max + 1
        assert len(self.running_actions) <= running_actions_max
        assert all(turn.decided for turn in list(self.started)[:-1])
        assert all(not turn.batch for turn in self.started) or len(self.started) == 1
        if self.held_ts is not None:
            assert not self._may_send(self.held_ts)

    # ----- client messages

    def receive(self, message: ClientMessage, *, now_ms: float, latest_ts: int) -> list[Effect]:
        """Feeds one parsed client message.

        Args:
            message: from the codec.
            now_ms: wall-clock milliseconds.
            latest_ts: the node's newest durable ts (checked against a
                reconnecting client's `maxObservedTimestamp`).
        """
        if self.closed:
            return []
        assert not self.resolving_token, "feed token_resolved/token_rejected first"
        try:
            if self.session_id is None:
                if not isinstance(message, Connect):
                    raise ProtocolViolation(
                        f"The first message must be Connect, got {type(message).__name__}.")
                return self._connect(message, now_ms, latest_ts)
            handler = _HANDLERS.get(type(message))
            if handler is None:
                raise ProtocolViolation(f"Unexpected {type(message).__name__} message.")
            return self._stamp(handler(self, message), now_ms)
        except ProtocolViolation as error:
            return self.fail(str(error), now_ms=now_ms)

    def fail(self, reason: str, *, now_ms: float) -> list[Effect]:
        """A protocol error (also for frames the codec could not parse):
        FatalError, then close."""
        if self.closed:
            return []
        return self._stamp([Send(FatalError(reason)), *self._close(reason, CLOSE_PROTOCOL)],
                           now_ms)

    def _connect(self, message: Connect, now_ms: float, latest_ts: int) -> list[Effect]:
        self.session_id = message.session_id
        self.connection_count = message.connection_count
        self.last_close_reason = message.last_close_reason
        if message.client_ts:
            self.client_clock_skew_ms = message.client_ts - now_ms
        if message.max_observed_ts is not None and message.max_observed_ts > latest_ts:
            # Not a FatalError: npm would stop for good, and the cause is the
            # server's (its data went back in time), not the client's.
            return self._close(
                f"InvalidMaxObservedTimestamp: the client has seen ts {message.max_observed_ts}, "
                f"after this server's latest ts {latest_ts} (linearizability violation)",
                CLOSE_INTERNAL)
        return []

    def _modify_query_set(self, message: ModifyQuerySet) -> list[Effect]:
        if message.base_version != self.received_query_set:
            raise ProtocolViolation(
                f"BaseVersionMismatch: ModifyQuerySet baseVersion {message.base_version} "
                f"but the server has query set version {self.received_query_set}.")
        if message.new_version <= message.base_version:
            raise ProtocolViolation(
                f"ModifyQuerySet newVersion {message.new_version} must be greater than "
                f"baseVersion {message.base_version}.")
        # One ModifyQueries per run of modifications that touch distinct ids,
        # so an Add and a Remove of the same id reach the subscriptions in order.
        effects: list[Effect] = []
        adds, removes = [], []
        touched: set[int] = set()
        for modification in message.modifications:
            query_id = modification.query_id
            if query_id in touched:
                effects.append(ModifyQueries(adds, removes))
                adds, removes, touched = [], [], set()
            touched.add(query_id)
            if isinstance(modification, QueryAdd):
                if query_id in self.queries:
                    raise ProtocolViolation(f"DuplicateQueryId: query {query_id} is already in "
                                            "the query set.")
                path, args, error = _check_call(modification.udf_path, modification.args,
                                                modification.component_path)
                self.queries[query_id] = _Query(path, modification.journal)
                if error is None:
                    adds.append((query_id, path, args, modification.journal))
                    self.local.pop(query_id, None)
                else:
                    self.local[query_id] = (message.new_version,
                                            QueryFailed(query_id, error, [], None))
            else:
                query = self.queries.pop(query_id, None)
                if query is None:
                    raise ProtocolViolation(f"QueryIdNotFound: cannot remove query {query_id}: "
                                            "it is not in the query set.")
                if query.path is None:
                    self.local[query_id] = (message.new_version, QueryRemoved(query_id))
                else:
                    removes.append(query_id)
        # Rule 2 of the subscription contract: even an empty modify is answered.
        effects.append(ModifyQueries(adds, removes))
        self.modify_calls += sum(isinstance(effect, ModifyQueries) for effect in effects)
        self.received_query_set = message.new_version
        self.pending_query_sets.append(_PendingVersion(message.new_version, self.modify_calls))
        return effects

    def _mutation(self, message: Mutation) -> list[Effect]:
        return self._enqueue([message], batch=False)

    def _mutation_batch(self, message: MutationBatch) -> list[Effect]:
        if not message.mutations:
            return []
        if len(message.mutations) > batch_mutations_max:
            raise ProtocolViolation(f"A MutationBatch holds at most {batch_mutations_max} "
                                    f"mutations, got {len(message.mutations)}.")
        return self._enqueue(message.mutations, batch=True)

    def _enqueue(self, mutations: list[Mutation], batch: bool) -> list[Effect]:
        if len(self.mutation_queue) + max(0, len(self.started) - 1) >= queued_mutations_max:
            return self._close(f"TooManyConcurrentRequests: more than {queued_mutations_max} "
                               "mutations queued on one connection", CLOSE_TRY_AGAIN)
        items = []
        for mutation in mutations:
            path, args, error = _check_call(mutation.udf_path, mutation.args,
                                            mutation.component_path)
            items.append((mutation.request_id, path, args, error))
        self.mutation_queue.append(_QueuedMutation(items, batch))
        return self._start_mutations()

    def _action(self, message: Action) -> list[Effect]:
        path, args, error = _check_call(message.udf_path, message.args, message.component_path)
        if error is None and len(self.running_actions) >= running_actions_max:
            error = (f"TooManyConcurrentRequests: at most {running_actions_max} actions run at "
                     "once on one connection.")
        if error is not None:
            return [Send(ActionResponse(message.request_id, False, error, []))]
        if message.request_id in self.running_actions:
            raise ProtocolViolation(f"Action request {message.request_id} is already running.")
        self.running_actions.add(message.request_id)
        return [RunAction(message.request_id, path, args, self.caller)]

    def _authenticate(self, message: Authenticate) -> list[Effect]:
        if message.base_version != self.received_identity:
            raise ProtocolViolation(
                f"BaseVersionMismatch: Authenticate baseVersion {message.base_version} "
                f"but the server has identity version {self.received_identity}.")
        self.received_identity += 1
        self.resolving_token = True
        return [ResolveToken(message.token_type, message.value, message.impersonating)]

    def _event(self, message: Event) -> list[Effect]:
        return []  # Telemetry only (PROTOCOL.md 2.5).

    # ----- answers from the shell

    def token_resolved(self, caller: Any, identity: Any, *, now_ms: float) -> list[Effect]:
        """The token of the last Authenticate is valid: `caller` runs functions,
        `identity` goes to the subscription layer."""
        assert self.resolving_token
        self.resolving_token = False
        if self.closed:
            return []
        self.caller = caller
        self.identity_calls += 1
        self.pending_identities.append(_PendingVersion(self.received_identity,
                                                       self.identity_calls))
        return [SetIdentity(identity, bool(getattr(caller, "admin", False)))]

    def token_rejected(self, message: str, *, now_ms: float) -> list[Effect]:
        """The token of the last Authenticate is not valid: AuthError, then close."""
        assert self.resolving_token
        self.resolving_token = False
        if self.closed:
            return []
        error = AuthError(message, self.current.identity, auth_update_attempted=True)
        return self._stamp([Send(error), *self._close(f"AuthError: {message}", CLOSE_NORMAL)],
                           now_ms)

    def token_expired(self, *, now_ms: float) -> list[Effect]:
        """The identity in force expired mid-session: AuthError with
        authUpdateAttempted false, then close (PROTOCOL.md 12)."""
        if self.closed:
            return []
        error = AuthError("The authentication token has expired.", self.current.identity,
                          auth_update_attempted=False)
        return self._stamp([Send(error), *self._close("AuthError: token expired", CLOSE_NORMAL)],
                           now_ms)

    def mutation_decided(self, request_id: int, commit_ts: int | None, *,
                         now_ms: float) -> list[Effect]:
        """The running mutation's commit is decided (rule 4): admitted at
        `commit_ts`, or None if it wrote nothing. Its answer follows with
        `mutation_done` once durable; the next mutation may start now."""
        if self.closed:
            return []
        turn = self.started[-1]
        assert not turn.batch and not turn.decided and turn.items[0][0] == request_id
        turn.decided, turn.commit_ts = True, commit_ts
        effects = self._release_held(now_ms)
        effects += self._start_mutations()
        return self._stamp(effects, now_ms)

    def mutation_done(self, request_id: int, outcome: CallOutcome, *,
                      now_ms: float) -> list[Effect]:
        """A started mutation finished (the shell ran a RunMutation)."""
        if self.closed:
            return self._forget_started()
        turn = self.started[0]  # nearly always: mutations are answered in order
        if turn.batch or turn.items[0][0] != request_id:
            turn = next(turn for turn in self.started
                        if not turn.batch and turn.items[0][0] == request_id)
        return self._finished(turn, [outcome], now_ms)

    def mutations_done(self, outcomes: list[CallOutcome], *, now_ms: float) -> list[Effect]:
        """The running mutation or batch finished; outcomes in item order."""
        if self.closed:
            return self._forget_started()
        return self._finished(self.started[-1], outcomes, now_ms)

    def _forget_started(self) -> list[Effect]:
        # Closed: nothing more is answered (the results are in MutationResults).
        self.started.clear()
        self.held_ts, self.held_results = None, {}
        return []

    def _finished(self, turn: _Turn, outcomes: list[CallOutcome],
                  now_ms: float) -> list[Effect]:
        assert turn.outcomes is None and len(outcomes) == len(turn.items)
        turn.outcomes = outcomes
        turn.decided = True
        written = [outcome.ts for outcome in outcomes if isinstance(outcome, CallSucceeded)]
        turn.commit_ts = min(written, default=None)
        effects: list[Effect] = []
        while self.started and self.started[0].outcomes is not None:
            answered = self.started.popleft()
            for (request_id, _, _, _), outcome in zip(answered.items, answered.outcomes):
                effects += self._answer_mutation(request_id, outcome)
        effects += self._release_held(now_ms)
        effects += self._start_mutations()
        return self._stamp(effects, now_ms)

    def action_done(self, request_id: int, outcome: CallOutcome, *,
                    now_ms: float) -> list[Effect]:
        """A running action finished."""
        assert request_id in self.running_actions
        self.running_actions.discard(request_id)
        if self.closed:
            return []
        if isinstance(outcome, CallSucceeded):
            response = ActionResponse(request_id, True, outcome.value, list(outcome.log_lines))
        else:
            response = ActionResponse(request_id, False, outcome.message, list(outcome.log_lines),
                                      outcome.has_data, outcome.data, outcome.code)
        return self._stamp([Send(response)], now_ms)

    def update_received(self, update: Any, *, now_ms: float) -> list[Effect]:
        """An Update from the session's subscriptions (engine/subscriptions.py)."""
        if self.closed:
            return []
        counts = (update.modify_count, update.identity_count)
        if self.held_ts is not None or (self.started and not self._may_send(update.ts)):
            # Rule 5: hold it; the responses of the mutations in it go first.
            self.held_ts = max(self.held_ts or 0, update.ts)
            self.held_results.update(update.results)
            self.held_counts = counts
            return self._stamp(self._release_held(now_ms), now_ms)
        self.last_sent_ms = now_ms  # a Transition goes out (what _stamp would note)
        return self._transition(update.ts, update.results, counts, now_ms)

    # ----- time

    def next_ping_ms(self) -> float:
        """When `tick` will next have a Ping to send, if nothing is sent before."""
        return self.last_sent_ms + ping_interval_ms

    def tick(self, *, now_ms: float) -> list[Effect]:
        """Rule 7: a Ping after `ping_interval_ms` of silence."""
        if self.closed or now_ms < self.next_ping_ms():
            return []
        return self._stamp([Send(Ping())], now_ms)

    # ----- helpers

    def _stamp(self, effects: list[Effect], now_ms: float) -> list[Effect]:
        for effect in effects:  # a loop, not any(): this runs several times per mutation
            if isinstance(effect, Send):
                self.last_sent_ms = now_ms
                break
        return effects

    def close(self, reason: str, code: int = CLOSE_NORMAL) -> list[Effect]:
        """The shell ends the session (a client too slow, a server error):
        no more input is taken."""
        if self.closed:
            return []
        return self._close(reason, code)

    def _close(self, reason: str, code: int) -> list[Effect]:
        self.closed = True
        self.close_reason = reason
        return [Close(reason, code)]

    def _may_send(self, ts: int) -> bool:
        """Rule 5: whether a Transition at `ts` may go out now."""
        return all(turn.decided and (turn.commit_ts is None or turn.commit_ts > ts)
                   for turn in self.started)

    def _lane_open_for(self, queued: _QueuedMutation) -> bool:
        """Rule 4: whether `queued` may start now."""
        if not self.started:
            return True
        if not self.started[-1].decided or queued.batch:
            return False
        # Behind an unanswered mutation only a plain one starts, so that no
        # answer given at once overtakes an earlier one.
        request_id, _, _, error = queued.items[0]
        return error is None and self.results.get(self.session_id, request_id) is None

    def _start_mutations(self) -> list[Effect]:
        """Starts the next queued mutation, answering refused or repeated ones at once."""
        if not self.mutation_queue:  # the usual case, after each decision and answer
            if not self.started and self.owed_ts is not None:
                return [RequestUpdate(self.owed_ts)]
            return []
        effects: list[Effect] = []
        while self.mutation_queue and self._lane_open_for(self.mutation_queue[0]):
            queued = self.mutation_queue.popleft()
            to_run = []
            for request_id, path, args, error in queued.items:
                stored = self.results.get(self.session_id, request_id)
                if error is not None:
                    effects += self._answer_mutation(request_id, CallFailed(error))
                elif stored is not None:
                    effects += self._answer_mutation(request_id, stored)
                else:
                    to_run.append((request_id, path, args))
            if not to_run:
                continue
            self.started.append(_Turn([(*item, None) for item in to_run], queued.batch))
            if queued.batch:
                effects.append(RunMutations(to_run, self.caller))
            else:
                effects.append(RunMutation(*to_run[0], self.caller))
        if not self.started and self.owed_ts is not None:
            effects.append(RequestUpdate(self.owed_ts))
        return effects

    def _answer_mutation(self, request_id: int, outcome: CallOutcome) -> list[Effect]:
        if isinstance(outcome, CallSucceeded):
            self.results.put(self.session_id, request_id, outcome)
            response = MutationResponse(request_id, True, outcome.value, outcome.ts,
                                        list(outcome.log_lines))
            owed = outcome.ts
        else:
            response = MutationResponse(request_id, False, outcome.message, None,
                                        list(outcome.log_lines), outcome.has_data, outcome.data,
                                        outcome.code)
            # The Python client waits for the next Transition after a
            # ConvexError failure too (PROTOCOL.md 4): any ts will do.
            owed = self.current.ts
        self.owed_ts = max(self.owed_ts or 0, owed)
        return [Send(response)]

    def _release_held(self, now_ms: float) -> list[Effect]:
        if self.held_ts is None or not self._may_send(self.held_ts):
            return []
        ts, results = self.held_ts, self.held_results
        self.held_ts, self.held_results = None, {}
        return self._transition(ts, results, self.held_counts, now_ms)

    def _transition(self, ts: int, results: dict[int, Any], counts: tuple[int, int],
                    now_ms: float) -> list[Effect]:
        assert ts >= self.current.ts, (ts, self.current)
        if self.pending_query_sets or self.pending_identities:
            self._apply_pending(*counts)
        # This loop runs for every query of every session a change reaches,
        # so it does the least per result; results sharing an outcome (one
        # leaderboard watched through several queries) come together, and
        # what an outcome gives every result is read once for them.
        modifications: dict[int, QueryUpdated | QueryFailed | QueryRemoved] = {}
        queries = self.queries
        last: Any = None
        journal = None
        made: dict = {}
        for query_id, outcome in results.items():
            if outcome is not last:
                if outcome is REMOVED:
                    modifications[query_id] = QueryRemoved(query_id)
                    continue
                last, journal = outcome, outcome.journal
                # An engine QueryOutcome keeps each message it was sent as,
                # by query id, for every session it goes to (its `messages`).
                made = getattr(outcome, "messages", None)
                if made is None:
                    made = {}
            query = queries.get(query_id)
            if query is None or query.path is None:
                continue  # removed since: its removal follows
            query.journal = journal
            message = made.get(query_id)
            if message is None:
                message = made[query_id] = _query_modification(query_id, outcome)
            modifications[query_id] = message
        if self.local:
            for query_id, (version, item) in list(self.local.items()):
                if version <= self.applied_query_set:
                    modifications[query_id] = item
                    del self.local[query_id]
        end = StateVersion(self.applied_query_set, self.applied_identity, ts)
        ordered = list(modifications.values())
        if len(ordered) > 1:
            query_ids = list(modifications)
            if query_ids != sorted(query_ids):
                ordered = [modifications[query_id] for query_id in sorted(query_ids)]
        transition = Transition(self.current, end, ordered, self.client_clock_skew_ms,
                                int(now_ms * 1_000_000))
        self.current = end
        if self.owed_ts is not None and ts >= self.owed_ts:
            self.owed_ts = None
        return [Send(transition)]

    def _apply_pending(self, modify_count: int, identity_count: int) -> None:
        """Marks the versions an Update reflects as applied, oldest first."""
        while self.pending_query_sets and self.pending_query_sets[0].calls <= modify_count:
            self.applied_query_set = self.pending_query_sets.popleft().version
        while self.pending_identities and self.pending_identities[0].calls <= identity_count:
            self.applied_identity = self.pending_identities.popleft().version


_HANDLERS = {
    ModifyQuerySet: SyncSession._modify_query_set,
    Mutation: SyncSession._mutation,
    MutationBatch: SyncSession._mutation_batch,
    Action: SyncSession._action,
    Authenticate: SyncSession._authenticate,
    Event: SyncSession._event,
}


class _PackedValue:
    """A QueryUpdated's `source`: its value's msgpack, not the outcome, which
    keeps its messages: a cycle left every replaced outcome to the collector."""

    __slots__ = ("_packed",)

    def __init__(self, packed: bytes) -> None:
        self._packed = packed

    def packed_value(self) -> bytes:
        return self._packed


def _query_modification(query_id: int, outcome: Any) -> QueryUpdated | QueryFailed:
    """What a Transition says of query `query_id` given its new outcome."""
    log_lines = outcome.log_lines
    if outcome.error is None:
        return QueryUpdated(query_id, outcome.value, list(log_lines) if log_lines else [],
                            outcome.journal,
                            _PackedValue(outcome.packed_value())
                            if hasattr(outcome, "packed_value") else None)
    message, data, has_data = outcome.error
    return QueryFailed(query_id, message, list(log_lines), outcome.journal, has_data,
                       data if has_data else None)


def _check_call(udf_path: Any, args: Any,
                component_path: str | None) -> tuple[str | None, dict | None, str | None]:
    """Canonical path and argument object of a call, or the error message to answer with."""
    if component_path:
        return None, None, (f"Component path {component_path!r}: components are not supported; "
                            "call functions of the root app.")
    try:
        path = canonical_path(udf_path)
    except EddyError as error:
        return None, None, error.message
    if (not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict)):
        return None, None, "args must be an array holding exactly one object."
    return path, args[0], None
