"""The harness's own protocol checker (protocol.py) flags what it must: these
run without a server, so a checker that silently passes everything is caught."""

from __future__ import annotations

from tests.e2e.official.protocol import summarize, violations

ZERO = "AAAAAAAAAAA="
TS_5 = "BQAAAAAAAAA="
TS_9 = "CQAAAAAAAAA="


def transition(start_qs: int, start_ts: str, end_qs: int, end_ts: str, socket: int = 1,
               modifications: str = "[]") -> dict:
    return summarize(socket, "in", (
        '{"type":"Transition","startVersion":{"querySet":%d,"identity":0,"ts":"%s"},'
        '"endVersion":{"querySet":%d,"identity":0,"ts":"%s"},"modifications":%s}'
        % (start_qs, start_ts, end_qs, end_ts, modifications)))


def out(text: str, socket: int = 1) -> dict:
    return summarize(socket, "out", text)


def test_a_correct_exchange_passes():
    """A ModifyQuerySet answered in order, a mutation answered then covered: no violation."""
    messages = [
        out('{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[]}'),
        transition(0, ZERO, 1, TS_5, modifications=(
            '[{"type":"QueryUpdated","queryId":0,"value":1,"logLines":[],"journal":null}]')),
        out('{"type":"Mutation","requestId":0,"udfPath":"a:b","args":[{}]}'),
        summarize(1, "in", '{"type":"MutationResponse","requestId":0,"success":true,'
                           '"result":null,"ts":"%s","logLines":[]}' % TS_9),
        transition(1, TS_5, 1, TS_9),
    ]
    assert violations(messages) == []


def test_wrong_start_version_uncovered_mutation_and_missing_fields_are_flagged():
    """A skipped version, a mutation never covered by a Transition, missing logLines/journal and a FatalError are each reported."""
    messages = [
        out('{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[]}'),
        transition(0, ZERO, 1, TS_5, modifications='[{"type":"QueryUpdated","queryId":0}]'),
        transition(0, ZERO, 1, TS_5),
        out('{"type":"Mutation","requestId":0,"udfPath":"a:b","args":[{}]}'),
        summarize(1, "in", '{"type":"MutationResponse","requestId":0,"success":true,'
                           '"result":null,"ts":"%s","logLines":[]}' % TS_9),
        summarize(1, "in", '{"type":"ActionResponse","requestId":7,"success":true,'
                           '"result":null,"logLines":[]}'),
        summarize(1, "in", '{"type":"FatalError","error":"x"}'),
    ]
    found = "\n".join(violations(messages))
    assert "no logLines array" in found
    assert "has no journal" in found
    assert "is not the current version" in found
    assert "requestId 7 was not sent" in found
    assert "FatalError" in found
    assert "never followed by a Transition" in found


def test_a_socket_that_ends_excuses_an_uncovered_mutation():
    """A mutation answered just before its socket ended is not flagged (the client re-sends it)."""
    messages = [
        out('{"type":"Mutation","requestId":0,"udfPath":"a:b","args":[{}]}'),
        summarize(1, "in", '{"type":"MutationResponse","requestId":0,"success":true,'
                           '"result":null,"ts":"%s","logLines":[]}' % TS_9),
        {"socket": 1, "dir": "end", "type": "<end>"},
    ]
    assert violations(messages) == []
