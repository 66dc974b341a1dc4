"""Eddy's one error type and its stable codes.

Every error that crosses a boundary is an `EddyError` carrying an `ErrorCode`
(a stable string, added and never renamed), a human message and optional
details. Codes fall in three families (STYLE.md "Errors"):

- caller: the request itself is wrong (validation, not found, schema, limits).
  Safe to report as a function's outcome; retrying the same request fails again.
- retryable: the node could not do it now (conflict, overload, unavailable).
- protocol: the peer broke the protocol (bad frame, bad version).
- internal: the node itself is wrong (a corrupt record, a broken invariant).

Only `wire/` maps codes to HTTP statuses and Convex error shapes.
`AppError` is different: it is raised by app code on purpose, and its data
reaches the caller as Convex's `errorData`.
"""

from __future__ import annotations

import enum
from typing import Any


class Family(enum.Enum):
    CALLER = "caller"
    RETRYABLE = "retryable"
    PROTOCOL = "protocol"
    INTERNAL = "internal"


class ErrorCode(str, enum.Enum):
    # The caller's fault.
    BAD_REQUEST = "BadRequest"
    MALFORMED_JSON = "BadJsonBody"
    UNSUPPORTED_CONTENT_TYPE = "UnsupportedContentType"
    BODY_TOO_LARGE = "RequestBodyTooLarge"
    INVALID_FUNCTION_PATH = "BadConvexFunctionIdentifier"
    FUNCTION_NOT_FOUND = "FunctionNotFound"
    FUNCTION_KIND_MISMATCH = "FunctionKindMismatch"
    INTERNAL_FUNCTION = "InternalFunctionNotAllowed"
    INVALID_ARGS = "ArgumentValidationError"
    INVALID_RETURN = "ReturnsValidationError"
    INVALID_VALUE = "InvalidValue"
    SCHEMA_VIOLATION = "SchemaValidationError"
    SCHEMA_INVALID = "InvalidSchema"
    INVALID_ID = "InvalidId"
    WRONG_TABLE_ID = "IdForWrongTable"
    DOCUMENT_NOT_FOUND = "DocumentNotFound"
    TABLE_NOT_FOUND = "TableNotFound"
    INDEX_NOT_FOUND = "IndexNotFound"
    INVALID_INDEX_RANGE = "InvalidIndexRange"
    INVALID_FILTER = "InvalidFilter"
    INVALID_CURSOR = "InvalidCursor"
    NOT_UNIQUE = "UniqueQueryReturnedMultiple"
    READ_ONLY = "ReadOnlyTransaction"
    LIMIT_EXCEEDED = "LimitExceeded"
    TIMEOUT = "FunctionTimeout"
    UNAUTHENTICATED = "Unauthenticated"
    BAD_ADMIN_KEY = "BadAdminKey"
    INVALID_TIMESTAMP = "InvalidTimestamp"
    NOT_FOUND = "NotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    # Retryable.
    CONFLICT = "OptimisticConcurrencyControlFailure"
    OVERLOADED = "Overloaded"
    UNAVAILABLE = "Unavailable"
    # Protocol.
    PROTOCOL_ERROR = "ProtocolError"
    # Internal.
    CORRUPT_RECORD = "CorruptRecord"
    STALE_STORAGE = "StaleStorage"
    INTERNAL = "InternalServerError"

    @property
    def family(self) -> Family:
        return _FAMILIES.get(self, Family.CALLER)


_FAMILIES = {
    ErrorCode.CONFLICT: Family.RETRYABLE,
    ErrorCode.OVERLOADED: Family.RETRYABLE,
    ErrorCode.UNAVAILABLE: Family.RETRYABLE,
    ErrorCode.PROTOCOL_ERROR: Family.PROTOCOL,
    ErrorCode.CORRUPT_RECORD: Family.INTERNAL,
    ErrorCode.STALE_STORAGE: Family.INTERNAL,
    ErrorCode.INTERNAL: Family.INTERNAL,
}


class EddyError(Exception):
    """An error with a stable code, a message for humans and optional details."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def family(self) -> Family:
        return self.code.family

    def __repr__(self) -> str:
        return f"EddyError({self.code.value}, {self.message!r})"


class AppError(Exception):
    """An application error whose `data` reaches the caller (Convex's ConvexError).

    Args:
        data: any Eddy value; a string doubles as the message.
    """

    def __init__(self, data: Any = None) -> None:
        message = data if isinstance(data, str) else "ConvexError"
        super().__init__(message)
        self.data = data


class FunctionCrashed(Exception):
    """App code raised something other than `AppError`.

    The message (`"Uncaught ValueError: boom"`) is safe to send; the traceback
    stays in the server log.
    """

    def __init__(self, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback_text = traceback_text
