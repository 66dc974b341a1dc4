"""The sync session core (wire/session.py) driven with plain calls, and the
frame codecs (wire/codecs.py): versions, ordering, de-duplication, pings and
every kind of bad input."""

from __future__ import annotations

import json

import pytest

from engine.errors import EddyError, ErrorCode
from engine.subscriptions import REMOVED, QueryOutcome, Update
from wire import codecs
from wire import session as s
from wire.codecs import JSON_STYLE, NATIVE_STYLE

LATEST_TS = 1_000


class Harness:
    """A session plus what it asked for; checks the invariants after every step."""

    def __init__(self, results: s.MutationResults | None = None, session_id: str = "sid") -> None:
        self.results = results if results is not None else s.MutationResults()
        self.core = s.SyncSession(self.results, now_ms=0)
        self.now_ms = 0.0
        self.modify_calls = 0
        self.identity_calls = 0
        if session_id is not None:
            assert self.feed(s.Connect(session_id, 0, "InitialConnect", None, 5.0)) == []

    def step(self, effects: list[s.Effect]) -> list[s.Effect]:
        self.core.validate()
        for effect in effects:
            if isinstance(effect, s.ModifyQueries):
                self.modify_calls += 1
            if isinstance(effect, s.SetIdentity):
                self.identity_calls += 1
        return effects

    def feed(self, message, latest_ts: int = LATEST_TS) -> list[s.Effect]:
        return self.step(self.core.receive(message, now_ms=self.now_ms, latest_ts=latest_ts))

    def update(self, ts: int, results: dict | None = None, *, modify_count: int | None = None,
               identity_count: int | None = None) -> list[s.Effect]:
        update = Update(ts, dict(results or {}),
                        self.modify_calls if modify_count is None else modify_count,
                        self.identity_calls if identity_count is None else identity_count)
        return self.step(self.core.update_received(update, now_ms=self.now_ms))

    def mutation_done(self, request_id: int, outcome) -> list[s.Effect]:
        return self.step(self.core.mutation_done(request_id, outcome, now_ms=self.now_ms))


def sent(effects: list[s.Effect]) -> list:
    return [effect.message for effect in effects if isinstance(effect, s.Send)]


def only(effects: list[s.Effect], kind: type) -> list:
    return [effect for effect in effects if isinstance(effect, kind)]


def add(query_id: int, path: str = "messages:list", args=None, journal=None) -> s.QueryAdd:
    return s.QueryAdd(query_id, path, [args or {}], journal)


def modify(base: int, *mods) -> s.ModifyQuerySet:
    return s.ModifyQuerySet(base, base + 1, list(mods))


def outcome(ts: int, value, journal=None) -> QueryOutcome:
    return QueryOutcome(ts, value, None, ["[LOG] 'x'"], journal)


def assert_closed_fatally(effects: list[s.Effect], words: str) -> None:
    messages = sent(effects)
    assert isinstance(messages[0], s.FatalError) and words in messages[0].error, messages
    assert only(effects, s.Close) and only(effects, s.Close)[0].code == s.CLOSE_PROTOCOL


# ----------------------------------------------------------------- versions

def test_first_transition_starts_at_zero_and_reflects_the_query_set():
    """A ModifyQuerySet asks the subscriptions for the queries and its Transition
    goes from {0,0,0} to {1,0,ts} with the results."""
    h = Harness()
    effects = h.feed(modify(0, add(0, "messages", {"channel": "a"}), add(1, "messages.js:list")))
    assert only(effects, s.ModifyQueries) == [s.ModifyQueries(
        [(0, "messages:default", {"channel": "a"}, None), (1, "messages:list", {}, None)], [])]
    [transition] = sent(h.update(7, {0: outcome(7, [1]), 1: outcome(7, "b", journal="j")}))
    assert transition.start_version == s.StateVersion(0, 0, 0)
    assert transition.end_version == s.StateVersion(1, 0, 7)
    assert transition.modifications == [s.QueryUpdated(0, [1], ["[LOG] 'x'"], None),
                                        s.QueryUpdated(1, "b", ["[LOG] 'x'"], "j")]
    assert transition.client_clock_skew == 5.0
    assert h.core.queries[1].journal == "j"


def test_an_outcome_and_its_shared_messages_are_freed_without_the_collector():
    """An outcome keeps the messages made from it (QueryOutcome.messages), so
    no message may point back at it: a cycle there left every replaced
    outcome to the garbage collector (ObserveInsert's p99 tripled)."""
    import gc
    import weakref
    h = Harness()
    h.feed(modify(0, add(0, "messages", {"channel": "a"})))
    first = outcome(7, [1])
    [transition] = sent(h.update(7, {0: first}))
    assert transition.modifications[0].source.packed_value() == first.packed_value()
    gone = weakref.ref(first)
    collector_was_on = gc.isenabled()
    gc.disable()
    try:
        del first, transition
        h.update(8, {0: outcome(8, [2])})
        assert gone() is None, gc.get_referrers(gone())
    finally:
        if collector_was_on:
            gc.enable()


def test_every_transition_starts_where_the_last_ended():
    """Start versions chain: each Transition's start equals the previous end."""
    h = Harness()
    h.feed(modify(0, add(0)))
    ends = []
    for ts in (3, 3, 9, 12):
        [transition] = sent(h.update(ts, {0: outcome(ts, ts)}))
        if ends:
            assert transition.start_version == ends[-1]
        ends.append(transition.end_version)
    assert ends[-1] == s.StateVersion(1, 0, 12)


def test_query_set_version_waits_for_the_update_that_reflects_it():
    """An Update computed before a modify keeps the old querySet version; the
    next one, reflecting the modify, raises it."""
    h = Harness()
    h.feed(modify(0, add(0)))
    h.update(5, {0: outcome(5, 1)})
    h.feed(modify(1, add(1)))
    [early] = sent(h.update(6, {0: outcome(6, 2)}, modify_count=1))
    assert early.end_version.query_set == 1
    [late] = sent(h.update(6, {1: outcome(6, 3)}))
    assert late.end_version.query_set == 2


def test_merged_update_applies_several_versions():
    """Two ModifyQuerySets answered by one merged Update end at the newest version."""
    h = Harness()
    h.feed(modify(0, add(0)))
    h.feed(modify(1, add(1), s.QueryRemove(0)))
    [transition] = sent(h.update(4, {0: REMOVED, 1: outcome(4, "x")}))
    assert transition.end_version.query_set == 2
    assert transition.modifications == [s.QueryRemoved(0),
                                        s.QueryUpdated(1, "x", ["[LOG] 'x'"], None)]


def test_add_then_remove_of_one_id_in_one_message_reach_the_subscriptions_in_order():
    """Add 0 then Remove 0 in one message become two modify calls (the
    subscriptions apply removes before adds within one call)."""
    h = Harness()
    effects = h.feed(modify(0, add(0), s.QueryRemove(0)))
    assert only(effects, s.ModifyQueries) == [
        s.ModifyQueries([(0, "messages:list", {}, None)], []), s.ModifyQueries([], [0])]
    assert sent(h.update(3, {0: REMOVED}))[0].end_version.query_set == 1


def test_result_for_a_removed_query_is_left_out():
    """An Update computed before a Remove does not resurrect the removed query."""
    h = Harness()
    h.feed(modify(0, add(0)))
    h.update(2, {0: outcome(2, 1)})
    h.feed(modify(1, s.QueryRemove(0)))
    [transition] = sent(h.update(3, {0: outcome(3, 2)}, modify_count=1))
    assert transition.modifications == [] and transition.end_version.query_set == 1


def test_empty_modify_query_set_gets_a_transition():
    """A reconnect with no queries (0 -> 1, no modifications) is still answered."""
    h = Harness()
    assert only(h.feed(modify(0)), s.ModifyQueries) == [s.ModifyQueries([], [])]
    [transition] = sent(h.update(1))
    assert transition.end_version == s.StateVersion(1, 0, 1)


def test_bad_path_or_args_fail_the_query_not_the_socket():
    """An Add with a bad path or args becomes a QueryFailed at its version and
    a later Remove a QueryRemoved; the subscriptions never see it."""
    h = Harness()
    effects = h.feed(modify(0, s.QueryAdd(0, "bad path!", [{}]), s.QueryAdd(1, "m:f", {"no": 1}),
                            add(2)))
    assert only(effects, s.ModifyQueries)[0].adds == [(2, "messages:list", {}, None)]
    [transition] = sent(h.update(2, {2: outcome(2, 0)}))
    kinds = [type(item).__name__ for item in transition.modifications]
    assert kinds == ["QueryFailed", "QueryFailed", "QueryUpdated"]
    assert "args" in transition.modifications[1].error_message
    h.feed(modify(1, s.QueryRemove(0)))
    [transition] = sent(h.update(3))
    assert transition.modifications == [s.QueryRemoved(0)]


def test_query_failure_carries_error_data_only_for_app_errors():
    """QueryFailed has errorData only when the outcome's error has data."""
    h = Harness()
    h.feed(modify(0, add(0), add(1)))
    [transition] = sent(h.update(2, {
        0: QueryOutcome(2, None, ("boom", None, False), [], None),
        1: QueryOutcome(2, None, ("app", {"code": 1}, True), [], None)}))
    plain, app = transition.modifications
    assert not plain.has_error_data and app.has_error_data and app.error_data == {"code": 1}
    assert "errorData" not in codecs.encode_server_message(transition, JSON_STYLE)[
        "modifications"][0]


# ---------------------------------------------------------------- mutations

def test_mutation_response_then_transition_at_or_after_its_ts():
    """A mutation runs, its response goes out, and a Transition with ts >= the
    commit ts is requested and sent."""
    h = Harness()
    [run] = only(h.feed(s.Mutation(0, "messages:send", [{"body": "hi"}])), s.RunMutation)
    assert (run.request_id, run.path, run.args) == (0, "messages:send", {"body": "hi"})
    effects = h.mutation_done(0, s.CallSucceeded("id1", 50, ["[LOG] 'sent'"]))
    [response] = sent(effects)
    assert response == s.MutationResponse(0, True, "id1", 50, ["[LOG] 'sent'"])
    assert only(effects, s.RequestUpdate) == [s.RequestUpdate(50)]
    [transition] = sent(h.update(50))
    assert transition.end_version.ts == 50
    assert h.core.owed_ts is None


def test_updates_during_a_mutation_wait_for_its_response():
    """A Transition computed while a mutation runs is sent after its response
    (so it never shows the writes before the client knows the mutation's ts)."""
    h = Harness()
    h.feed(modify(0, add(0)))
    h.update(1, {0: outcome(1, 0)})
    h.feed(s.Mutation(0, "m:f", [{}]))
    assert h.update(5, {0: outcome(5, 1)}) == []
    effects = h.mutation_done(0, s.CallSucceeded(None, 5))
    response, transition = sent(effects)
    assert isinstance(response, s.MutationResponse) and transition.end_version.ts == 5
    assert only(effects, s.RequestUpdate) == []  # the held Transition already covers ts 5


def test_mutations_run_one_at_a_time_in_arrival_order():
    """A second mutation starts only after the first is answered; actions run at once."""
    h = Harness()
    assert only(h.feed(s.Mutation(0, "m:a", [{}])), s.RunMutation)
    assert only(h.feed(s.Mutation(1, "m:b", [{}])), s.RunMutation) == []
    assert only(h.feed(s.Action(2, "m:act", [{}])), s.RunAction)
    assert only(h.feed(s.Action(3, "m:act", [{}])), s.RunAction)
    effects = h.mutation_done(0, s.CallSucceeded(1, 10))
    [run] = only(effects, s.RunMutation)
    assert run.request_id == 1 and only(effects, s.RequestUpdate) == []
    effects = h.mutation_done(1, s.CallFailed("nope"))
    [response] = sent(effects)
    assert response == s.MutationResponse(1, False, "nope", None, [])
    assert only(effects, s.RequestUpdate) == [s.RequestUpdate(10)]


def test_next_mutation_starts_once_the_previous_is_decided_and_answers_keep_order():
    """A session's second mutation starts when the first is admitted (not yet
    durable); if it finishes first, its response still waits for the first's."""
    h = Harness()
    assert only(h.feed(s.Mutation(0, "m:a", [{}])), s.RunMutation)
    assert only(h.feed(s.Mutation(1, "m:b", [{}])), s.RunMutation) == []
    [run] = only(h.step(h.core.mutation_decided(0, 10, now_ms=0)), s.RunMutation)
    assert run.request_id == 1
    h.step(h.core.mutation_decided(1, 11, now_ms=0))
    assert sent(h.mutation_done(1, s.CallSucceeded("b", 11))) == []
    effects = h.mutation_done(0, s.CallSucceeded("a", 10))
    assert [m.request_id for m in sent(effects)] == [0, 1]
    assert only(effects, s.RequestUpdate) == [s.RequestUpdate(11)]


def test_updates_wait_only_for_the_mutations_they_include():
    """An Update older than every started mutation's commit goes out at once;
    one that includes an unanswered mutation's writes waits for its response."""
    h = Harness()
    h.feed(modify(0, add(0)))
    h.update(1, {0: outcome(1, 0)})
    h.feed(s.Mutation(0, "m:f", [{}]))
    h.step(h.core.mutation_decided(0, 10, now_ms=0))
    [early] = sent(h.update(9, {0: outcome(9, 1)}))
    assert early.end_version.ts == 9
    assert h.update(10, {0: outcome(10, 2)}) == []
    response, transition = sent(h.mutation_done(0, s.CallSucceeded(None, 10)))
    assert isinstance(response, s.MutationResponse) and transition.end_version.ts == 10


def test_a_batch_or_a_repeated_request_waits_for_every_earlier_answer():
    """Only a plain mutation starts behind an unanswered one, so no answer
    given at once overtakes an earlier response."""
    h = Harness()
    h.feed(s.Mutation(0, "m:a", [{}]))
    h.step(h.core.mutation_decided(0, 10, now_ms=0))
    effects = h.feed(s.MutationBatch([s.Mutation(1, "m:a", [{}])]))
    assert only(effects, s.RunMutations) == [] and sent(effects) == []
    effects = h.mutation_done(0, s.CallSucceeded("a", 10))
    assert [m.request_id for m in sent(effects)] == [0] and only(effects, s.RunMutations)


def test_failed_mutation_with_app_error_carries_error_data():
    """errorData is sent for an AppError failure only; a Transition is still owed."""
    h = Harness()
    h.feed(s.Mutation(0, "m:f", [{}]))
    effects = h.mutation_done(0, s.CallFailed("bad", [], True, {"why": "x"}))
    [response] = sent(effects)
    assert response.has_error_data and response.error_data == {"why": "x"}
    assert codecs.encode_server_message(response, JSON_STYLE)["errorData"] == {"why": "x"}
    assert only(effects, s.RequestUpdate) == [s.RequestUpdate(0)]


def test_repeated_request_is_answered_from_the_store_across_sockets():
    """npm re-sends an answered mutation on a new socket with the same
    (sessionId, requestId): the stored result and ts come back, nothing runs."""
    results = s.MutationResults()
    first = Harness(results)
    first.feed(s.Mutation(4, "m:f", [{}]))
    first.mutation_done(4, s.CallSucceeded("v", 77, ["[LOG] 'once'"]))
    second = Harness(results)
    effects = second.feed(s.Mutation(4, "m:f", [{}]))
    assert only(effects, s.RunMutation) == []
    assert sent(effects) == [s.MutationResponse(4, True, "v", 77, ["[LOG] 'once'"])]
    assert only(effects, s.RequestUpdate) == [s.RequestUpdate(77)]
    other = Harness(results, session_id="other")
    assert only(other.feed(s.Mutation(4, "m:f", [{}])), s.RunMutation)


def test_mutation_results_store_is_bounded():
    """The store evicts its oldest entries past its count and byte bounds."""
    store = s.MutationResults(entries_max=3, bytes_max=10_000)
    for request_id in range(5):
        store.put("a", request_id, s.CallSucceeded("x", request_id))
    assert len(store) == 3 and store.get("a", 0) is None and store.get("a", 4).ts == 4
    store.put("a", 9, s.CallSucceeded("y" * 20_000, 9))
    assert len(store) == 0 and store.bytes == 0


def test_mutation_batch_is_one_turn_of_the_lane():
    """A MutationBatch runs as one RunMutations; responses come in item order."""
    h = Harness()
    batch = s.MutationBatch([s.Mutation(0, "m:a", [{"n": 1}]), s.Mutation(1, "bad path!", [{}]),
                             s.Mutation(2, "m:a", [{"n": 2}])])
    [run] = only(h.feed(batch), s.RunMutations)
    assert [item[0] for item in run.items] == [0, 2]
    effects = h.step(h.core.mutations_done([s.CallSucceeded(1, 5), s.CallSucceeded(2, 6)],
                                           now_ms=0))
    assert [m.request_id for m in sent(effects)] == [0, 2]
    assert only(effects, s.RequestUpdate) == [s.RequestUpdate(6)]


def test_too_many_queued_mutations_close_the_socket():
    """Past queued_mutations_max the socket is closed with a retryable reason."""
    h = Harness()
    for request_id in range(s.queued_mutations_max + 1):
        effects = h.feed(s.Mutation(request_id, "m:f", [{}]))
    [close] = only(h.feed(s.Mutation(99_999, "m:f", [{}])) or effects, s.Close)
    assert close.code == s.CLOSE_TRY_AGAIN and "TooManyConcurrentRequests" in close.reason


def test_action_response_and_bad_action():
    """An action is answered when done; a bad path is answered at once."""
    h = Harness()
    h.feed(s.Action(1, "m:act", [{}]))
    [response] = sent(h.step(h.core.action_done(1, s.CallSucceeded(3, 0), now_ms=0)))
    assert response == s.ActionResponse(1, True, 3, [])
    [refused] = sent(h.feed(s.Action(2, "::", [{}])))
    assert not refused.success


# --------------------------------------------------------------------- auth

def test_authenticate_bumps_identity_once_the_update_reflects_it():
    """A valid token sets the identity; the Transition reflecting it has identity 1."""
    h = Harness()
    h.feed(modify(0, add(0)))
    h.update(1, {0: outcome(1, "anon")})
    [resolve] = only(h.feed(s.Authenticate(0, "User", "jwt")), s.ResolveToken)
    assert resolve.value == "jwt"
    effects = h.step(h.core.token_resolved("caller", {"subject": "u"}, now_ms=0))
    assert effects == [s.SetIdentity({"subject": "u"})]
    [stale] = sent(h.update(2, {}, identity_count=0))
    assert stale.end_version.identity == 0
    [transition] = sent(h.update(2, {0: outcome(2, "u")}))
    assert transition.end_version.identity == 1
    assert only(h.feed(s.Mutation(0, "m:f", [{}])), s.RunMutation)[0].caller == "caller"


def test_rejected_token_sends_auth_error_and_closes():
    """A bad token: AuthError with the applied identity version, then close."""
    h = Harness()
    h.feed(s.Authenticate(0, "User", "forged"))
    effects = h.step(h.core.token_rejected("bad signature", now_ms=0))
    assert sent(effects) == [s.AuthError("bad signature", 0, True)]
    assert only(effects, s.Close)


def test_authenticate_with_wrong_base_version_is_fatal():
    """Authenticate baseVersion must equal the identity versions received."""
    h = Harness()
    assert_closed_fatally(h.feed(s.Authenticate(1, "None")), "BaseVersionMismatch")


# -------------------------------------------------------------- bad input

def test_wrong_base_version_is_fatal_and_closes():
    """ModifyQuerySet with a baseVersion other than the received one: FatalError + close."""
    h = Harness()
    h.feed(modify(0, add(0)))
    assert_closed_fatally(h.feed(modify(0, add(1))), "BaseVersionMismatch")
    assert h.feed(modify(1, add(2))) == []  # rule 8: closed


def test_new_version_must_grow():
    """newVersion <= baseVersion is a protocol error."""
    h = Harness()
    assert_closed_fatally(h.feed(s.ModifyQuerySet(0, 0, [])), "newVersion")


def test_duplicate_add_is_fatal():
    """Adding a query id that is already live is a protocol error."""
    h = Harness()
    h.feed(modify(0, add(0)))
    assert_closed_fatally(h.feed(modify(1, add(0))), "DuplicateQueryId")


def test_remove_of_unknown_query_id_is_fatal():
    """Removing a query id that is not live is a protocol error."""
    h = Harness()
    assert_closed_fatally(h.feed(modify(0, s.QueryRemove(3))), "QueryIdNotFound")


def test_first_message_must_be_connect_and_only_once():
    """Anything before Connect, or a second Connect, is a protocol error."""
    h = Harness(session_id=None)
    assert_closed_fatally(h.feed(modify(0)), "first message must be Connect")
    h = Harness()
    assert_closed_fatally(h.feed(s.Connect("x", 1, None, None, None)), "Unexpected Connect")


def test_max_observed_timestamp_after_latest_is_refused():
    """A client that saw a ts this node never reached is closed (not FatalError)."""
    h = Harness(session_id=None)
    effects = h.feed(s.Connect("sid", 1, "x", LATEST_TS + 1, None))
    assert sent(effects) == []
    [close] = only(effects, s.Close)
    assert "InvalidMaxObservedTimestamp" in close.reason and close.code == s.CLOSE_INTERNAL
    ok = Harness(session_id=None)
    assert ok.feed(s.Connect("sid", 1, "x", LATEST_TS, None)) == []


def test_events_are_ignored():
    """Event messages (telemetry) produce nothing."""
    assert Harness().feed(s.Event("ClientConnect", {"marks": []})) == []


@pytest.mark.parametrize("frame, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"type": "Bogus"}', "Unknown message type"),
    ('{"type": "ModifyQuerySet", "baseVersion": -1, "newVersion": 1, "modifications": []}',
     "baseVersion"),
    ('{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
     '"modifications": [{"type": "Swap"}]}', "Unknown query set modification"),
    ('{"type": "Mutation", "requestId": 1.5, "udfPath": "m:f", "args": [{}]}', "requestId"),
    ('{"type": "Mutation", "requestId": 1, "udfPath": "m:f", "args": [{"$set": []}]}', "args"),
    ('{"type": "Connect", "sessionId": "s", "connectionCount": 0, '
     '"maxObservedTimestamp": "nope"}', "maxObservedTimestamp"),
    ('{"type": "Authenticate", "baseVersion": 0, "tokenType": "Magic"}', "tokenType"),
    ('{"type": "MutationBatch", "mutations": []}', "Unknown message type"),
])
def test_malformed_json_frames_are_protocol_errors(frame, words):
    """Each malformed frame raises PROTOCOL_ERROR naming the problem; the
    session answers it with FatalError and a close."""
    with pytest.raises(EddyError) as info:
        codecs.decode_client_message(codecs.load_json_frame(frame), JSON_STYLE)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR and words in info.value.message
    h = Harness()
    assert_closed_fatally(h.step(h.core.fail(info.value.message, now_ms=0)), words)


def test_malformed_msgpack_frames_are_protocol_errors():
    """Garbage bytes and non-Eddy values in msgpack are protocol errors."""
    with pytest.raises(EddyError):
        codecs.load_msgpack_frame(b"\xc1\xc1")
    frame = codecs.dump_msgpack_frame({"type": "Mutation", "requestId": 1, "udfPath": "m:f",
                                       "args": [{"$bad": 1}]})
    with pytest.raises(EddyError) as info:
        codecs.decode_client_message(codecs.load_msgpack_frame(frame), NATIVE_STYLE)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


# ------------------------------------------------------------------- codecs

def test_json_frames_match_the_convex_wire_format():
    """Client JSON parses (Python's 1.0 ids too) and server messages encode with
    base64 ts, serverTs as a number, convex-encoded values, logLines and journal."""
    raw = ('{"type":"ModifyQuerySet","baseVersion":0.0,"newVersion":1,"modifications":['
           '{"type":"Add","queryId":0,"udfPath":"m:f","args":[{"n":{"$integer":"BQAAAAAAAAA="}}],'
           '"journal":null}]}')
    message = codecs.decode_client_message(codecs.load_json_frame(raw), JSON_STYLE)
    assert message == s.ModifyQuerySet(0, 1, [s.QueryAdd(0, "m:f", [{"n": 5}], None)])
    transition = s.Transition(s.StateVersion(0, 0, 0), s.StateVersion(1, 0, 5),
                              [s.QueryUpdated(0, b"\x01", [], None)], None, 123)
    obj = json.loads(codecs.dump_json_frame(codecs.encode_server_message(transition, JSON_STYLE)))
    assert obj == {"type": "Transition",
                   "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
                   "endVersion": {"querySet": 1, "identity": 0, "ts": "BQAAAAAAAAA="},
                   "modifications": [{"type": "QueryUpdated", "queryId": 0,
                                      "value": {"$bytes": "AQ=="}, "logLines": [],
                                      "journal": None}],
                   "clientClockSkew": None, "serverTs": 123}
    response = codecs.encode_server_message(s.MutationResponse(1, True, 2.0, 5, []), JSON_STYLE)
    assert response["ts"] == "BQAAAAAAAAA=" and response["result"] == 2.0


def test_msgpack_frames_round_trip_with_native_values():
    """The msgpack codec keeps ints, bytes and ts ints, in both directions."""
    for message in [s.Mutation(3, "m:f", [{"n": 5, "b": b"\x00"}]),
                    s.MutationBatch([s.Mutation(1, "m:f", [{}]), s.Mutation(2, "m:g", [{}])]),
                    s.Connect("sid", 2, "closed", 99, 1.0)]:
        frame = codecs.dump_msgpack_frame(codecs.encode_client_message(message, NATIVE_STYLE))
        assert codecs.decode_client_message(codecs.load_msgpack_frame(frame),
                                            NATIVE_STYLE) == message
    for message in [s.Transition(s.StateVersion(0, 0, 0), s.StateVersion(1, 0, 2**62),
                                 [s.QueryUpdated(0, 7, ["l"], "j"), s.QueryRemoved(1),
                                  s.QueryFailed(2, "e", [], None, True, {"x": 1})], 1.5, 9),
                    s.MutationResponse(1, False, "bad", None, [], True, None),
                    s.ActionResponse(2, True, b"\x01", []), s.Ping(), s.FatalError("x"),
                    s.AuthError("e", 1, False)]:
        frame = codecs.dump_msgpack_frame(codecs.encode_server_message(message, NATIVE_STYLE))
        assert codecs.decode_server_message(codecs.load_msgpack_frame(frame),
                                            NATIVE_STYLE) == message


def test_msgpack_transitions_splice_packed_outcomes_byte_for_byte():
    """A msgpack Transition written with the outcomes' packed values is the
    very frame that packing the encoded message gives."""
    from engine.values import pack
    fast = QueryOutcome(5, [{"a": 1}, {"b": [1.5, b"x"]}])
    fast._fingerprint = (b"\x94" + pack(fast.value) + pack(None) + pack([]) + pack(None))
    outcomes = [fast, QueryOutcome(5, {"k": "v"}, log_lines=["[LOG] 'x'"], journal="j"),
                QueryOutcome(5, list(range(20)))]
    modifications = [s.QueryUpdated(i, o.value, list(o.log_lines), o.journal, o)
                     for i, o in enumerate(outcomes)]
    modifications += [s.QueryUpdated(7, "plain", [], None), s.QueryRemoved(8),
                      s.QueryFailed(9, "e", [], None, True, {"x": 1})]
    transition = s.Transition(s.StateVersion(0, 0, 0), s.StateVersion(1, 2, 2**62),
                              modifications, 1.5, 9)
    frame = codecs.dump_server_frame(transition, NATIVE_STYLE)
    assert frame == codecs.dump_msgpack_frame(codecs.encode_server_message(transition,
                                                                           NATIVE_STYLE))
    assert [o.packed_value() for o in outcomes] == [pack(o.value) for o in outcomes]
    assert codecs.decode_server_message(codecs.load_msgpack_frame(frame),
                                        NATIVE_STYLE) == transition
    text = codecs.dump_server_frame(transition, JSON_STYLE)
    assert text == codecs.dump_json_frame(codecs.encode_server_message(transition, JSON_STYLE))


def test_mutation_responses_are_the_frames_packing_the_encoded_message_gives():
    """`dump_server_frame` builds a successful msgpack MutationResponse's map
    in line; it is byte for byte what encoding and packing it gives, and so
    are the failures and the JSON frames it leaves to the general path."""
    for message in [s.MutationResponse(7, True, "id123", 2**62, ["[LOG] x"]),
                    s.MutationResponse(8, True, {"n": 1, "b": b"\x00"}, 5, []),
                    s.MutationResponse(9, False, "bad", None, [], True, {"why": 1}, "AppError")]:
        assert codecs.dump_server_frame(message, NATIVE_STYLE) == codecs.dump_msgpack_frame(
            codecs.encode_server_message(message, NATIVE_STYLE))
        assert codecs.dump_server_frame(message, JSON_STYLE) == codecs.dump_json_frame(
            codecs.encode_server_message(message, JSON_STYLE))


def test_sessions_sharing_an_outcomes_messages_get_the_same_frames_as_packing_gives():
    """The messages of one shared outcome, sent to several sessions one after
    another (their bytes kept between frames), and a session with other
    query ids after them, each get the frame that packing the message gives."""
    from engine.values import pack
    shared = QueryOutcome(5, [{"a": 1}])
    shared._fingerprint = b"\x94" + pack(shared.value) + pack(None) + pack([]) + pack(None)
    other = QueryOutcome(6, [{"b": 2}])
    sessions = []
    for _ in range(3):
        h = Harness()
        h.feed(modify(0, add(0), add(1)))
        sessions.append(h)
    late = Harness()
    late.feed(modify(0, add(0), add(2)))
    updates = [(h, {0: shared, 1: shared}) for h in sessions] + [(late, {0: shared, 2: other})]
    transitions = [sent(h.update(10, results))[0] for h, results in updates]
    assert transitions[0].modifications[0] is transitions[1].modifications[0]  # shared
    for transition in transitions:
        assert codecs.dump_server_frame(transition, NATIVE_STYLE) == codecs.dump_msgpack_frame(
            codecs.encode_server_message(transition, NATIVE_STYLE))


# --------------------------------------------------------------------- time

def test_ping_after_fifteen_seconds_of_silence():
    """tick sends a Ping only once ping_interval_ms passed without any message."""
    h = Harness()
    assert h.core.tick(now_ms=14_999) == []
    assert sent(h.core.tick(now_ms=15_000)) == [s.Ping()]
    assert h.core.next_ping_ms() == 30_000
    h.now_ms = 20_000
    h.feed(s.Action(0, "::", [{}]))  # refused at once: a message went out
    assert h.core.tick(now_ms=30_000) == []
    assert sent(h.core.tick(now_ms=35_000)) == [s.Ping()]
