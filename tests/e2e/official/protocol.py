"""Checks of the sync messages a client saw, against the rules of
/work/shared/PROTOCOL.md that the official clients depend on.

Both recorders produce the same summaries (one dict per message, with the
socket number, `dir` "in" for server to client and "out" for client to
server, the `type`, and the version-carrying fields): lib.mjs's
`summarize` for the npm client, `summarize` here for the FrameTap in front
of the PyPI client. `violations` returns every broken rule as a sentence
naming the socket and the message; a test fails on any.

Rules (PROTOCOL.md section):
1. A Transition's startVersion equals the socket's current version (the last
   endVersion; querySet 0, identity 0, ts 0 on a new socket) (3.2, 13.1).
2. endVersion never goes below startVersion in any field, and its querySet
   is a version the client sent (3.2).
3. Every modification carries a `logLines` array; QueryUpdated and
   QueryFailed carry `journal`; one modification per queryId (3.2).
4. A successful MutationResponse carries `ts`; every response carries a
   `logLines` array and answers a requestId the client sent on that socket
   (3.4, 14c.5).
5. After a successful MutationResponse with ts T, a Transition with
   endVersion.ts >= T follows on the same socket, unless the socket ends
   first (4, 14a.5). (Without it the client's call never returns, so this
   rule names the cause when a script times out.)
6. The server sends only message types the clients know, and never
   FatalError (it stops the npm client for good) nor TransitionChunk (1.3,
   3.3, 3.7).
"""

from __future__ import annotations

import base64
import json
from typing import Any

SERVER_TYPES = {"Transition", "MutationResponse", "ActionResponse", "AuthError", "Ping"}
SUMMARY_KEYS = ("startVersion", "endVersion", "requestId", "success", "ts", "baseVersion",
                "newVersion")


def summarize(socket: int, direction: str, text: str) -> dict[str, Any]:
    """The summary of one text frame, as lib.mjs's `summarize` makes it."""
    try:
        message = json.loads(text)
    except ValueError:
        return {"socket": socket, "dir": direction, "type": "<not JSON>"}
    if not isinstance(message, dict):
        return {"socket": socket, "dir": direction, "type": "<not an object>"}
    summary = {"socket": socket, "dir": direction, "type": message.get("type")}
    summary.update({key: message[key] for key in SUMMARY_KEYS if key in message})
    if "logLines" in message:
        summary["logLines"] = isinstance(message["logLines"], list)
    if message.get("type") == "Transition" and isinstance(message.get("modifications"), list):
        summary["modifications"] = [
            {"type": item.get("type"), "queryId": item.get("queryId"),
             "logLines": isinstance(item.get("logLines"), list), "journal": "journal" in item}
            for item in message["modifications"] if isinstance(item, dict)]
    return summary


def decode_ts(encoded: Any) -> int | None:
    """An EncodedTS (base64 of 8 little-endian bytes) as an int, or None."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (TypeError, ValueError):
        return None
    return int.from_bytes(raw, "little") if len(raw) == 8 else None


class SocketState:
    def __init__(self) -> None:
        self.version = (0, 0, 0)
        self.query_set_sent = {0}
        self.request_ids: set[Any] = set()
        self.uncovered: list[tuple[Any, int]] = []  # (requestId, ts) awaiting a Transition


def violations(messages: list[dict[str, Any]]) -> list[str]:
    """Every rule (module docstring) that the recorded messages break."""
    found: list[str] = []
    sockets: dict[int, SocketState] = {}
    for index, message in enumerate(messages):
        state = sockets.setdefault(message["socket"], SocketState())
        where = f"socket {message['socket']} message {index} ({message.get('type')})"
        if message["dir"] == "end":
            state.uncovered = []  # The socket ended; the client re-sends on a new one.
        elif message["dir"] == "out":
            note_client_message(state, message)
        else:
            found += check_server_message(state, message, where)
    for number, state in sockets.items():
        for request_id, ts in state.uncovered:
            found.append(f"socket {number}: MutationResponse {request_id} (ts {ts}) was never "
                         "followed by a Transition with endVersion.ts >= its ts (rule 5)")
    return found


def note_client_message(state: SocketState, message: dict[str, Any]) -> None:
    if message.get("type") == "ModifyQuerySet" and isinstance(message.get("newVersion"), int):
        state.query_set_sent.add(message["newVersion"])
    elif message.get("type") in ("Mutation", "Action"):
        state.request_ids.add(message.get("requestId"))


def check_server_message(state: SocketState, message: dict[str, Any], where: str) -> list[str]:
    kind = message.get("type")
    if kind not in SERVER_TYPES:
        return [f"{where}: the server sent a {kind} message (rule 6)"]
    if kind == "Transition":
        return check_transition(state, message, where)
    if kind in ("MutationResponse", "ActionResponse"):
        return check_response(state, message, where)
    return []


def version_tuple(version: Any) -> tuple[int, int, int] | None:
    if not isinstance(version, dict):
        return None
    ts = decode_ts(version.get("ts"))
    if ts is None:
        return None
    return (version.get("querySet"), version.get("identity"), ts)


def check_transition(state: SocketState, message: dict[str, Any], where: str) -> list[str]:
    found = []
    start, end = version_tuple(message.get("startVersion")), version_tuple(message.get("endVersion"))
    if start is None or end is None:
        return [f"{where}: startVersion/endVersion missing or with a bad ts: "
                f"{message.get('startVersion')} -> {message.get('endVersion')}"]
    if start != state.version:
        found.append(f"{where}: startVersion {start} is not the current version "
                     f"{state.version} (rule 1)")
    if any(e < s for s, e in zip(start, end)):
        found.append(f"{where}: endVersion {end} goes below startVersion {start} (rule 2)")
    if end[0] not in state.query_set_sent:
        found.append(f"{where}: endVersion.querySet {end[0]} was never sent by the client "
                     "(rule 2)")
    seen_ids = set()
    for item in message.get("modifications", []):
        if not item["logLines"] and item["type"] != "QueryRemoved":
            found.append(f"{where}: {item['type']} {item['queryId']} has no logLines array "
                         "(rule 3)")
        if item["type"] in ("QueryUpdated", "QueryFailed") and not item["journal"]:
            found.append(f"{where}: {item['type']} {item['queryId']} has no journal (rule 3)")
        if item["queryId"] in seen_ids:
            found.append(f"{where}: two modifications for query {item['queryId']} (rule 3)")
        seen_ids.add(item["queryId"])
    state.version = end
    state.uncovered = [(request_id, ts) for request_id, ts in state.uncovered if ts > end[2]]
    return found


def check_response(state: SocketState, message: dict[str, Any], where: str) -> list[str]:
    found = []
    if message.get("logLines") is not True:
        found.append(f"{where}: no logLines array (rule 4)")
    if message.get("requestId") not in state.request_ids:
        found.append(f"{where}: requestId {message.get('requestId')} was not sent on this "
                     "socket (rule 4)")
    if message["type"] == "MutationResponse" and message.get("success") is True:
        ts = decode_ts(message.get("ts"))
        if ts is None:
            found.append(f"{where}: a successful MutationResponse without a valid ts: "
                         f"{message.get('ts')!r} (rule 4)")
        elif ts > state.version[2]:
            state.uncovered.append((message.get("requestId"), ts))
    return found

