"""A sync session's calls in the core's terms: who calls (`Caller`), and a
function's outcome as the session core takes it (`call_outcome`,
`failed_outcome`), for wire/sync.py."""

from __future__ import annotations

import logging
from typing import Any

from engine.errors import AppError, EddyError, Family, FunctionCrashed
from wire import session as core

logger = logging.getLogger("eddy.sync")


class Caller:
    """Who runs a session's functions: the admin, or an outside caller with an identity."""

    __slots__ = ("admin", "identity", "expires_at_ms")

    def __init__(self, admin: bool = False, identity: Any = None,
                 expires_at_ms: int | None = None) -> None:
        self.admin = admin
        self.identity = identity
        # When a user token stops being valid (ms since the epoch), or None.
        self.expires_at_ms = expires_at_ms


ANONYMOUS = Caller()


async def call_outcome(node: Any, kind: str, path: str, args: dict, caller: Caller,
                       on_decided: Any = None,
                       request: tuple[str, int] | None = None) -> core.CallOutcome:
    """Runs a function and turns its outcome into the core's terms.

    A checkpoint. Retryable and internal errors are not a function's outcome:
    they raise `CloseConnection` so the client reconnects and re-sends.
    `on_decided` (mutations) is the runner's hook: called with the commit ts
    (None: wrote nothing) once the commit is decided, before durability.
    """
    identity = None if caller is None else caller.identity
    admin = False if caller is None else caller.admin
    try:
        if on_decided is None and request is None:
            result = await node.call(kind, path, args, identity=identity, admin=admin)
        else:
            result = await node.runner.call(kind, path, args, identity=identity, admin=admin,
                                            on_decided=on_decided, request=request)
    except (AppError, FunctionCrashed, EddyError) as error:
        return failed_outcome(error, kind, path)
    return core.CallSucceeded(result.value, result.ts, list(result.log_lines))


def failed_outcome(error: AppError | FunctionCrashed | EddyError, kind: str,
                   path: str) -> core.CallFailed:
    """A call's error in the core's terms (see `call_outcome`).

    Raises:
        CloseConnection: a retryable or internal error.
    """
    if isinstance(error, AppError):
        return core.CallFailed(str(error), _log_lines(error), True, error.data)
    if isinstance(error, FunctionCrashed):
        return core.CallFailed(error.message, _log_lines(error))
    if error.family is Family.CALLER:
        return core.CallFailed(error.message, _log_lines(error), code=error.code.value)
    if error.family is Family.RETRYABLE:
        raise CloseConnection(f"{error.code.value}: {error.message}",
                               core.CLOSE_TRY_AGAIN) from error
    logger.warning("%s %s failed: %r", kind, path, error)
    raise CloseConnection(f"{error.code.value}: {error.message}",
                           core.CLOSE_INTERNAL) from error


def _log_lines(error: Exception) -> list[str]:
    return list(getattr(error, "log_lines", None) or [])


class CloseConnection(Exception):
    """A call's error that ends the connection instead of answering it: the
    client reconnects and re-sends (`code` is the WebSocket close code)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
