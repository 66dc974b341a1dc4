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
from typing import Any

from engine.errors import EddyError, ErrorCode
from engine.values import from_convex_json, to_clean_json, to_convex_json

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
