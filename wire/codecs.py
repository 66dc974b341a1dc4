"""Body shapes of Convex's HTTP API: JSON text, arguments, results, timestamps.

Pure functions with no I/O, shared by the HTTP API (wire/http.py) and, later,
the sync protocol's text frames. Everything here raises `EddyError` with a
caller code on bad input; wire/http.py decides which HTTP status that is.

The shapes (PROTOCOL.md sections 3.1, 6 and 8.1):

- Arguments arrive as a convex-encoded object, or as an array holding exactly
  one such object (npm's positional form). Anything else is `BAD_REQUEST`.
- A result goes out in one of two formats: `convex_encoded_json` (alias
  `convex_json`), which keeps int64, bytes and special floats apart with
  `$integer`/`$bytes`/`$float` wrappers, or `json` (alias
  `convex_clean_json`), which flattens them into plain JSON.
- A timestamp (u64 nanoseconds) travels as standard padded base64 of its 8
  little-endian bytes: always 12 characters.
- Floats always carry a decimal point (`2.0`): the legacy Python HTTP client
  rejects an integer literal where it expects a float.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import operator
from typing import Any

import msgpack

from engine.errors import EddyError, ErrorCode
from engine.subscriptions import msgpack_array_header
from engine.values import check_value, from_convex_json, pack, to_clean_json, to_convex_json, unpack
from wire import messages as session

TS_MAX = 2**63 - 1  # PROTOCOL.md 3.1: a timestamp fits in a signed 64-bit integer.


class Format(enum.Enum):
    """How a value is written into a response body."""

    ENCODED = "convex_encoded_json"
    CLEAN = "json"


_FORMAT_NAMES = {
    "convex_encoded_json": Format.ENCODED,
    "convex_json": Format.ENCODED,
    "json": Format.CLEAN,
    "convex_clean_json": Format.CLEAN,
}


# JSON text.

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes | str, what: str = "The request body") -> Any:
    """Parses JSON text strictly (no `NaN`/`Infinity` literals).

    Args:
        data: the text, or UTF-8 bytes.
        what: names the text in the error message.

    Raises:
        EddyError: `MALFORMED_JSON` naming what is wrong.
    """
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        # UnicodeDecodeError and JSONDecodeError are both ValueErrors; a
        # pathologically nested body hits the recursion limit instead.
        raise EddyError(ErrorCode.MALFORMED_JSON,
                        f"{what} is not valid JSON: {error}") from None


def dump_json(obj: Any) -> bytes:
    """Serializes a JSON-ready object compactly as UTF-8.

    `allow_nan=False` makes a special float that escaped the value encoders a
    loud error rather than invalid JSON on the wire.
    """
    return json.dumps(obj, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


# Formats and values.

def parse_format(name: Any, default: Format) -> Format:
    """Resolves a request's `format` field.

    Args:
        name: the field as sent; None when absent.
        default: the format used when the field is absent.

    Raises:
        EddyError: `BAD_REQUEST` for an unknown format name.
    """
    if name is None:
        return default
    if isinstance(name, str) and name in _FORMAT_NAMES:
        return _FORMAT_NAMES[name]
    known = ", ".join(sorted(_FORMAT_NAMES))
    raise EddyError(ErrorCode.BAD_REQUEST,
                    f"Unknown format {name!r}; expected one of: {known}.")


def encode_value(value: Any, fmt: Format) -> Any:
    """An Eddy value as a JSON-ready object in the given format."""
    if fmt is Format.ENCODED:
        return to_convex_json(value)
    return to_clean_json(value)


def decode_value(obj: Any) -> Any:
    """A convex-encoded JSON object as an Eddy value.

    Raises:
        EddyError: `INVALID_VALUE` when the encoding is wrong (a bad
            `$integer`, a removed `$set`, a number too large for a float).
    """
    try:
        return from_convex_json(obj)
    except EddyError:
        raise
    except (ValueError, TypeError, OverflowError) as error:
        raise EddyError(ErrorCode.INVALID_VALUE,
                        f"Could not decode a convex-encoded value: {error}") from None


def decode_args(raw: Any) -> dict[str, Any]:
    """A request's `args` field as the dict a function receives.

    Args:
        raw: the field as parsed from JSON: an object, an array of exactly
            one object, or None (absent: no arguments).

    Raises:
        EddyError: `BAD_REQUEST` for any other shape; `INVALID_VALUE` for a
            malformed convex-encoded value inside.
    """
    if raw is None:
        return {}
    if isinstance(raw, list):
        if len(raw) != 1:
            raise EddyError(ErrorCode.BAD_REQUEST,
                            "args must be an object or an array holding exactly one "
                            f"object; got an array of {len(raw)} elements.")
        raw = raw[0]
    args = decode_value(raw)
    if not isinstance(args, dict):
        raise EddyError(ErrorCode.BAD_REQUEST,
                        "args must be an object or an array holding exactly one object.")
    return args


# Timestamps.

def encode_ts(ts: int) -> str:
    """A timestamp as base64 of its 8 little-endian bytes (PROTOCOL.md 3.1)."""
    assert 0 <= ts <= TS_MAX, ts
    return base64.b64encode(ts.to_bytes(8, "little")).decode("ascii")


def decode_ts(text: Any) -> int:
    """Parses an encoded timestamp; accepts the URL-safe alphabet as npm does.

    Raises:
        EddyError: `INVALID_TIMESTAMP` unless it is 8 bytes of base64 holding
            a value at most 2**63 - 1.
    """
    if not isinstance(text, str):
        raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                        f"A timestamp must be a base64 string, got {type(text).__name__}.")
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    ts = int.from_bytes(data, "little")
    if len(data) != 8 or ts > TS_MAX:
        raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                        f"{text!r} is not a timestamp (base64 of 8 little-endian bytes).")
    return ts


# Response bodies ("UdfResponse" in Convex's backend).

def success_body(value: Any, log_lines: list[str], fmt: Format) -> dict[str, Any]:
    """The body of a call that returned a value."""
    return {"status": "success", "value": encode_value(value, fmt),
            "logLines": list(log_lines)}


def error_body(message: str, fmt: Format, *, code: str | None = None,
               has_data: bool = False, data: Any = None,
               log_lines: list[str] | None = None) -> dict[str, Any]:
    """The body of a call whose function failed (sent with HTTP 200).

    Args:
        message: the error's message, shown to the caller.
        fmt: the format `data` is encoded in.
        code: Eddy's stable code, an addition Convex's clients ignore.
        has_data: True only for an application error: clients turn a present
            `errorData` (even null) into a ConvexError (PROTOCOL.md 11).
        data: the application error's data.
        log_lines: lines the function logged before it failed.
    """
    body: dict[str, Any] = {"status": "error", "errorMessage": message}
    if code is not None:
        body["code"] = code
    if has_data:
        body["errorData"] = encode_value(data, fmt)
    body["logLines"] = list(log_lines or [])
    return body


def request_error_body(code: str, message: str) -> dict[str, Any]:
    """The body of a request-level failure (sent with a non-2xx status)."""
    return {"code": code, "message": message}


# Sync protocol frames (PROTOCOL.md 2, 3): one message per frame.
#
# Two codecs carry the same messages (the dataclasses of wire/session.py):
# JSON text frames with convex-encoded values and base64 timestamps, for the
# official clients, and msgpack binary frames with native values (int64 and
# bytes kept, timestamps as integers), for Eddy's own client. Both go through
# one field mapping; a `_Style` says how values and timestamps are written.
# Anything malformed raises `EddyError(PROTOCOL_ERROR)` with a message that
# names the field; the session answers it with FatalError and a close.

class _Style:
    """How values and timestamps look inside a frame."""

    def __init__(self, name: str, encode_value: Any, decode_value: Any,
                 encode_ts: Any, decode_ts: Any) -> None:
        self.name = name
        self.encode_value = encode_value
        self.decode_value = decode_value
        self.encode_ts = encode_ts
        self.decode_ts = decode_ts


def _native_value(value: Any) -> Any:
    # msgpack can carry what Eddy values cannot (bytes keys, ext types).
    check_value(value)
    return value


def _native_ts(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= TS_MAX:
        raise EddyError(ErrorCode.INVALID_TIMESTAMP, f"{value!r} is not a timestamp.")
    return value


JSON_STYLE = _Style("json", to_convex_json, decode_value, encode_ts, decode_ts)
NATIVE_STYLE = _Style("msgpack", lambda value: value, _native_value,
                      lambda ts: ts, _native_ts)
# Eddy's client reading the server's msgpack frames: the values in them were
# checked by the server before it packed them, and walking every query
# result again was the largest cost of a subscriber with many live queries.
# Frames from clients are always read with NATIVE_STYLE.
SERVER_NATIVE_STYLE = _Style("msgpack", lambda value: value, lambda value: value,
                             lambda ts: ts, _native_ts)


def _protocol_error(message: str) -> EddyError:
    return EddyError(ErrorCode.PROTOCOL_ERROR, message)


class _Fields:
    """Typed access to one message's fields; errors name the message and field."""

    def __init__(self, obj: dict[str, Any], style: _Style) -> None:
        self.obj = obj
        self.style = style
        self.kind = obj.get("type")

    def _fail(self, name: str, expected: str) -> EddyError:
        return _protocol_error(f"{self.kind}.{name} must be {expected}, "
                               f"got {self.obj.get(name)!r:.80}.")

    def u32(self, name: str) -> int:
        value = self.obj.get(name)
        # Python clients send 1.0 for 1 (PROTOCOL.md 2.2); npm and Rust send integers.
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is not int or not 0 <= value <= 2**32 - 1:
            raise self._fail(name, "an integer from 0 to 2^32-1")
        return value

    def text(self, name: str, *, optional: bool = False) -> str | None:
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self._fail(name, "a string")
        return value

    def number(self, name: str) -> float | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if type(value) not in (int, float):
            raise self._fail(name, "a number")
        return float(value)

    def ts(self, name: str, *, optional: bool = False) -> int | None:
        value = self.obj.get(name)
        if value is None and optional:
            return None
        try:
            return self.style.decode_ts(value)
        except EddyError as error:
            raise _protocol_error(f"{self.kind}.{name}: {error.message}") from None

    def value(self, name: str) -> Any:
        try:
            return self.style.decode_value(self.obj.get(name))
        except EddyError as error:
            raise _protocol_error(f"{self.kind}.{name}: {error.message}") from None

    def array(self, name: str) -> list[Any]:
        value = self.obj.get(name)
        if not isinstance(value, list):
            raise self._fail(name, "an array")
        return value

    def obj_or_none(self, name: str) -> dict | None:
        value = self.obj.get(name)
        if value is not None and not isinstance(value, dict):
            raise self._fail(name, "an object")
        return value


def _decode_modification(obj: Any, style: _Style) -> Any:
    if not isinstance(obj, dict):
        raise _protocol_error("ModifyQuerySet.modifications must hold objects.")
    fields = _Fields(obj, style)
    if fields.kind == "Add":
        return session.QueryAdd(fields.u32("queryId"), fields.text("udfPath"),
                                fields.value("args"), fields.text("journal", optional=True),
                                fields.text("componentPath", optional=True))
    if fields.kind == "Remove":
        return session.QueryRemove(fields.u32("queryId"))
    raise _protocol_error(f"Unknown query set modification type {fields.kind!r:.40}.")


def _decode_call(cls: Any, fields: _Fields) -> Any:
    return cls(fields.u32("requestId"), fields.text("udfPath"), fields.value("args"),
               fields.text("componentPath", optional=True))


def decode_client_message(obj: Any, style: _Style) -> Any:
    """A client message (a wire/session.py dataclass) from its parsed frame.

    Raises:
        EddyError: `PROTOCOL_ERROR` for an unknown type or a malformed field.
    """
    if not isinstance(obj, dict):
        raise _protocol_error("A sync message must be an object with a `type` field.")
    fields = _Fields(obj, style)
    kind = fields.kind
    if kind == "Connect":
        return session.Connect(fields.text("sessionId"), fields.u32("connectionCount"),
                               fields.text("lastCloseReason", optional=True),
                               fields.ts("maxObservedTimestamp", optional=True),
                               fields.number("clientTs"))
    if kind == "ModifyQuerySet":
        return session.ModifyQuerySet(
            fields.u32("baseVersion"), fields.u32("newVersion"),
            [_decode_modification(item, style) for item in fields.array("modifications")])
    if kind == "Mutation":
        return _decode_call(session.Mutation, fields)
    if kind == "Action":
        return _decode_call(session.Action, fields)
    if kind == "MutationBatch" and style is NATIVE_STYLE:
        items = []
        for item in fields.array("mutations"):
            if not isinstance(item, dict):
                raise _protocol_error("MutationBatch.mutations must hold objects.")
            items.append(_decode_call(session.Mutation, _Fields({"type": "Mutation", **item},
                                                                style)))
        return session.MutationBatch(items)
    if kind == "Authenticate":
        token_type = fields.text("tokenType")
        if token_type not in ("User", "Admin", "None"):
            raise fields._fail("tokenType", '"User", "Admin" or "None"')
        impersonating = fields.obj_or_none("impersonating") or fields.obj_or_none("acting_as")
        value = None if token_type == "None" else fields.text("value")
        return session.Authenticate(fields.u32("baseVersion"), token_type, value, impersonating)
    if kind == "Event":
        return session.Event(str(obj.get("eventType")), obj.get("event"))
    raise _protocol_error(f"Unknown message type {kind!r:.40}.")


def encode_client_message(message: Any, style: _Style) -> dict[str, Any]:
    """A client message as a frame object (used by Eddy's client and by tests)."""
    kind = type(message).__name__
    if isinstance(message, session.Connect):
        obj = {"type": kind, "sessionId": message.session_id,
               "connectionCount": message.connection_count,
               "lastCloseReason": message.last_close_reason,
               "clientTs": message.client_ts or 0}
        if message.max_observed_ts is not None:
            obj["maxObservedTimestamp"] = style.encode_ts(message.max_observed_ts)
        return obj
    if isinstance(message, session.ModifyQuerySet):
        return {"type": kind, "baseVersion": message.base_version,
                "newVersion": message.new_version,
                "modifications": [_encode_modification(item, style)
                                  for item in message.modifications]}
    if isinstance(message, (session.Mutation, session.Action)):
        return {"type": kind, "requestId": message.request_id, "udfPath": message.udf_path,
                "args": style.encode_value(message.args)}
    if isinstance(message, session.MutationBatch):
        return {"type": kind, "mutations": [
            {"requestId": item.request_id, "udfPath": item.udf_path,
             "args": style.encode_value(item.args)} for item in message.mutations]}
    if isinstance(message, session.Authenticate):
        obj = {"type": kind, "baseVersion": message.base_version,
               "tokenType": message.token_type}
        if message.value is not None:
            obj["value"] = message.value
        if message.impersonating is not None:
            obj["impersonating"] = message.impersonating
        return obj
    if isinstance(message, session.Event):
        return {"type": kind, "eventType": message.event_type, "event": message.event}
    raise TypeError(f"not a client message: {message!r}")


def _encode_modification(item: Any, style: _Style) -> dict[str, Any]:
    if isinstance(item, session.QueryAdd):
        obj = {"type": "Add", "queryId": item.query_id, "udfPath": item.udf_path,
               "args": style.encode_value(item.args)}
        if item.journal is not None:
            obj["journal"] = item.journal
        return obj
    return {"type": "Remove", "queryId": item.query_id}


def _encode_version(version: Any, style: _Style) -> dict[str, Any]:
    return {"querySet": version.query_set, "identity": version.identity,
            "ts": style.encode_ts(version.ts)}


def _encode_error_data(obj: dict[str, Any], has_data: bool, data: Any, style: _Style) -> None:
    # errorData only for an application error, absent otherwise (PROTOCOL.md 11).
    if has_data:
        obj["errorData"] = style.encode_value(data)


def _encode_error_code(obj: dict[str, Any], code: str | None, style: _Style) -> None:
    # Eddy's stable code of a refused call, for Eddy's own client: msgpack
    # frames only, so Convex's JSON frames keep exactly Convex's fields.
    if code is not None and style.name == "msgpack":
        obj["errorCode"] = code


def _encode_state_modification(item: Any, style: _Style) -> dict[str, Any]:
    if isinstance(item, session.QueryUpdated):
        return {"type": "QueryUpdated", "queryId": item.query_id,
                "value": style.encode_value(item.value), "logLines": list(item.log_lines),
                "journal": item.journal}
    if isinstance(item, session.QueryFailed):
        obj = {"type": "QueryFailed", "queryId": item.query_id,
               "errorMessage": item.error_message, "logLines": list(item.log_lines),
               "journal": item.journal}
        _encode_error_data(obj, item.has_error_data, item.error_data, style)
        return obj
    return {"type": "QueryRemoved", "queryId": item.query_id}


def encode_server_message(message: Any, style: _Style) -> dict[str, Any]:
    """A server message (a wire/session.py dataclass) as a frame object."""
    if isinstance(message, session.Transition):
        return {"type": "Transition",
                "startVersion": _encode_version(message.start_version, style),
                "endVersion": _encode_version(message.end_version, style),
                "modifications": [_encode_state_modification(item, style)
                                  for item in message.modifications],
                "clientClockSkew": message.client_clock_skew,
                "serverTs": message.server_ts}
    if isinstance(message, session.MutationResponse):
        obj = {"type": "MutationResponse", "requestId": message.request_id,
               "success": message.success,
               "result": style.encode_value(message.result) if message.success else message.result,
               "ts": None if message.ts is None else style.encode_ts(message.ts),
               "logLines": list(message.log_lines)}
        _encode_error_data(obj, message.has_error_data, message.error_data, style)
        _encode_error_code(obj, message.error_code, style)
        return obj
    if isinstance(message, session.ActionResponse):
        obj = {"type": "ActionResponse", "requestId": message.request_id,
               "success": message.success,
               "result": style.encode_value(message.result) if message.success else message.result,
               "logLines": list(message.log_lines)}
        _encode_error_data(obj, message.has_error_data, message.error_data, style)
        _encode_error_code(obj, message.error_code, style)
        return obj
    if isinstance(message, session.AuthError):
        return {"type": "AuthError", "error": message.error, "baseVersion": message.base_version,
                "authUpdateAttempted": message.auth_update_attempted}
    if isinstance(message, session.FatalError):
        return {"type": "FatalError", "error": message.error}
    if isinstance(message, session.Ping):
        return {"type": "Ping"}
    raise TypeError(f"not a server message: {message!r}")


def _decode_version(obj: Any, style: _Style) -> Any:
    if not isinstance(obj, dict):
        raise _protocol_error("A state version must be an object.")
    fields = _Fields({"type": "StateVersion", **obj}, style)
    return session.StateVersion(fields.u32("querySet"), fields.u32("identity"), fields.ts("ts"))


def _decode_state_modification(obj: Any, style: _Style) -> Any:
    fields = _Fields(obj, style)
    kind = fields.kind
    if kind == "QueryUpdated":
        return session.QueryUpdated(fields.u32("queryId"), fields.value("value"),
                                    list(obj.get("logLines") or []), obj.get("journal"))
    if kind == "QueryFailed":
        has_data = "errorData" in obj
        return session.QueryFailed(fields.u32("queryId"), fields.text("errorMessage"),
                                   list(obj.get("logLines") or []), obj.get("journal"),
                                   has_data, fields.value("errorData") if has_data else None)
    if kind == "QueryRemoved":
        return session.QueryRemoved(fields.u32("queryId"))
    raise _protocol_error(f"Unknown state modification type {kind!r:.40}.")


def decode_server_message(obj: Any, style: _Style) -> Any:
    """A server message from its frame object (Eddy's client side).

    Raises:
        EddyError: `PROTOCOL_ERROR` for an unknown type or a malformed field.
    """
    if not isinstance(obj, dict):
        raise _protocol_error("A sync message must be an object with a `type` field.")
    fields = _Fields(obj, style)
    kind = fields.kind
    if kind == "Transition":
        return session.Transition(
            _decode_version(obj.get("startVersion"), style),
            _decode_version(obj.get("endVersion"), style),
            [_decode_state_modification(item, style) for item in fields.array("modifications")],
            obj.get("clientClockSkew"), obj.get("serverTs"))
    if kind in ("MutationResponse", "ActionResponse"):
        success = obj.get("success") is True
        has_data = "errorData" in obj
        result = fields.value("result") if success else str(obj.get("result"))
        code = obj.get("errorCode")
        common = dict(request_id=fields.u32("requestId"), success=success, result=result,
                      log_lines=list(obj.get("logLines") or []), has_error_data=has_data,
                      error_data=fields.value("errorData") if has_data else None,
                      error_code=code if type(code) is str else None)
        if kind == "ActionResponse":
            return session.ActionResponse(**common)
        return session.MutationResponse(ts=fields.ts("ts", optional=True), **common)
    if kind == "AuthError":
        return session.AuthError(str(obj.get("error")), fields.u32("baseVersion"),
                                 obj.get("authUpdateAttempted") is True)
    if kind == "FatalError":
        return session.FatalError(str(obj.get("error")))
    if kind == "Ping":
        return session.Ping()
    raise _protocol_error(f"Unknown message type {kind!r:.40}.")


def load_json_frame(text: str | bytes) -> Any:
    """Parses a JSON text frame into an object, or raises `PROTOCOL_ERROR`."""
    try:
        return parse_json(text, "The frame")
    except EddyError as error:
        raise _protocol_error(error.message) from None


def dump_json_frame(obj: Any) -> str:
    """A frame object as JSON text."""
    return dump_json(obj).decode("utf-8")


def load_msgpack_frame(data: bytes) -> Any:
    """Parses a msgpack binary frame into an object, or raises `PROTOCOL_ERROR`."""
    try:
        return unpack(data)
    except EddyError as error:
        raise _protocol_error(error.message) from None


def dump_msgpack_frame(obj: Any) -> bytes:
    """A frame object as msgpack bytes."""
    return pack(obj)


def dump_server_frame(message: Any, style: _Style) -> str | bytes:
    """A server message as the frame `style` sends: JSON text, or msgpack bytes.

    A msgpack Transition is written field by field so that each QueryUpdated
    whose outcome holds its packed value (QueryUpdated.source) carries those
    bytes as they are: one result shared by many sessions is packed once,
    not once per Transition. The frame decodes to what
    `encode_server_message` gives.
    """
    if style is JSON_STYLE:
        return dump_json_frame(encode_server_message(message, style))
    if style.name != "msgpack" or not isinstance(message, session.Transition):
        if type(message) is session.MutationResponse and message.success and style is NATIVE_STYLE:
            # Once per mutation: `encode_server_message`'s map, built in line.
            return pack({"type": "MutationResponse", "requestId": message.request_id,
                         "success": True, "result": message.result, "ts": message.ts,
                         "logLines": list(message.log_lines)})
        return dump_msgpack_frame(encode_server_message(message, style))
    # Runs once per Transition per session, and its loop once per result in
    # it: the constant pieces are precomputed, a result is three appends.
    modifications = message.modifications
    parts = [_TRANSITION_HEAD, _packed_version(message.start_version, style), _END_VERSION_KEY,
             _packed_version(message.end_version, style), _MODIFICATIONS_KEY,
             msgpack_array_header(len(modifications))]
    # Sessions told of one change one after another often carry the very
    # same modifications (one shared outcome's messages under the same query
    # ids, wire/session.py): the last list's bytes are kept with the
    # messages themselves, which are values, so the same objects in the same
    # order are the same bytes.
    last_style, last_modifications, last_bytes = _last_modifications
    if (style is last_style and len(modifications) == len(last_modifications) and modifications
            and all(map(operator.is_, modifications, last_modifications))):
        parts.append(last_bytes)
    else:
        start = len(parts)
        _append_modifications(parts, modifications, style)
        last_bytes = b"".join(parts[start:])
        del parts[start:]
        parts.append(last_bytes)
        _last_modifications[:] = (style, tuple(modifications), last_bytes)
    parts.append(_CLOCK_SKEW_KEY)
    parts.append(_pack_number(message.client_clock_skew))
    parts.append(_SERVER_TS_KEY)
    parts.append(_pack_number(message.server_ts))
    return b"".join(parts)


# (style, the modifications of the last msgpack Transition written, their
# bytes): see dump_server_frame. Holding the messages keeps their identities
# from being reused while the entry stands.
_last_modifications: list = [None, (), b""]


def _append_modifications(parts: list, modifications: list, style: _Style) -> None:
    """The msgpack of each of a Transition's modifications, appended to `parts`."""
    append = parts.append
    last_source = packed_value = None
    for item in modifications:
        source = getattr(item, "source", None)
        if source is None:
            append(pack(_encode_state_modification(item, style)))
            continue
        query_id = item.query_id
        append(_UPDATED_HEADS[query_id] if 0 <= query_id < _UPDATED_HEADS_COUNT
               else _UPDATED_HEAD + pack(query_id) + _VALUE_KEY)
        if source is not last_source:  # results sharing an outcome come together
            last_source, packed_value = source, source.packed_value()
        append(packed_value)
        if not item.log_lines and item.journal is None:
            append(_UPDATED_PLAIN_TAIL)
        else:
            append(_LOG_LINES_KEY + pack(list(item.log_lines)) + _JOURNAL_KEY + pack(item.journal))


def _packed_version(version: Any, style: _Style) -> bytes:
    """`pack(_encode_version(version, style))`, without the dict."""
    query_set, identity = version.query_set, version.identity
    return b"".join((_VERSION_HEAD,
                     _FIXINTS[query_set] if 0 <= query_set < 128 else _pack_number(query_set),
                     _IDENTITY_KEY,
                     _FIXINTS[identity] if 0 <= identity < 128 else _pack_number(identity),
                     _TS_KEY, _pack_number(version.ts) if style is NATIVE_STYLE
                     else pack(style.encode_ts(version.ts))))


# msgpack of the numbers in a Transition's envelope (versions, ts, clock skew,
# server ts): `values.pack`'s Packer settings, called straight from C, as
# numbers of the session's own making cannot fail to pack.
_pack_number = msgpack.Packer(use_bin_type=True).pack


# The constant pieces of a msgpack Transition (`dump_server_frame`), in the
# field order of `encode_server_message`: maps of 6 and 5 entries.
_TRANSITION_HEAD = b"\x86" + pack("type") + pack("Transition") + pack("startVersion")
_END_VERSION_KEY = pack("endVersion")
_MODIFICATIONS_KEY = pack("modifications")
_CLOCK_SKEW_KEY = pack("clientClockSkew")
_SERVER_TS_KEY = pack("serverTs")
_UPDATED_HEAD = b"\x85" + pack("type") + pack("QueryUpdated") + pack("queryId")
_VALUE_KEY = pack("value")
_LOG_LINES_KEY = pack("logLines")
_JOURNAL_KEY = pack("journal")
_FIXINTS = [pack(n) for n in range(128)]  # msgpack's one-byte ints: most query ids
_UPDATED_PLAIN_TAIL = _LOG_LINES_KEY + pack([]) + _JOURNAL_KEY + pack(None)
# A QueryUpdated up to its value, for the query ids most sessions use.
_UPDATED_HEADS_COUNT = 1024
_UPDATED_HEADS = [_UPDATED_HEAD + pack(query_id) + _VALUE_KEY
                  for query_id in range(_UPDATED_HEADS_COUNT)]
# A StateVersion map of 3 entries, in `_encode_version`'s order.
_VERSION_HEAD = b"\x83" + pack("querySet")
_IDENTITY_KEY = pack("identity")
_TS_KEY = pack("ts")
