"""The sync protocol's messages and call outcomes as plain dataclasses.

Client messages (PROTOCOL.md 2) are what the codecs (wire/codecs.py) decode
frames into and the session core (wire/session.py) takes; server messages
(PROTOCOL.md 3) are what the core emits and the codecs encode. Values inside
are Eddy values and timestamps are ints; how they look on the wire is the
codec's business. `MutationBatch` is Eddy's extension for its own client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


# ----------------------------------------------------------- client messages
# (Slotted, not frozen, as the server messages below are: see there.)

@dataclass(slots=True)
class Connect:
    session_id: str
    connection_count: int
    last_close_reason: str | None
    max_observed_ts: int | None
    client_ts: float | None


@dataclass(slots=True)
class QueryAdd:
    query_id: int
    udf_path: str
    args: Any  # as sent: a list holding one object
    journal: str | None = None
    component_path: str | None = None


@dataclass(slots=True)
class QueryRemove:
    query_id: int


@dataclass(slots=True)
class ModifyQuerySet:
    base_version: int
    new_version: int
    modifications: list[QueryAdd | QueryRemove]


@dataclass(slots=True)
class Mutation:
    request_id: int
    udf_path: str
    args: Any
    component_path: str | None = None


@dataclass(slots=True)
class Action:
    request_id: int
    udf_path: str
    args: Any
    component_path: str | None = None


@dataclass(slots=True)
class MutationBatch:
    """Eddy's extension (msgpack codec only): many mutations in one frame."""

    mutations: list[Mutation]


@dataclass(slots=True)
class Authenticate:
    base_version: int
    token_type: str  # "User", "Admin" or "None"
    value: str | None = None
    impersonating: dict | None = None


@dataclass(slots=True)
class Event:
    event_type: str
    event: Any = None


ClientMessage = Union[Connect, ModifyQuerySet, Mutation, Action, MutationBatch,
                      Authenticate, Event]


# ----------------------------------------------------------- server messages

# Every message here is slotted and not frozen: the messages of a Transition
# are made for every session on every change (one QueryUpdated per query per
# session), and half a dozen others for every mutation, and a frozen
# dataclass sets each field through object.__setattr__, about three times the
# cost of building the object plainly (584 against 168 ns for five fields).
# Nothing mutates or hashes them; treat them as values.

@dataclass(slots=True)
class StateVersion:
    query_set: int
    identity: int
    ts: int


INITIAL_VERSION = StateVersion(0, 0, 0)


@dataclass(slots=True)
class QueryUpdated:
    query_id: int
    value: Any
    log_lines: list[str]
    journal: str | None
    # When the value came from a QueryOutcome (engine/subscriptions.py): an
    # object whose `packed_value()` is the value's msgpack, which the msgpack
    # codec splices into the frame instead of packing the value again for
    # every session it goes to (wire/session.py `_PackedValue`). Not part of
    # the message (no equality, no repr).
    source: Any = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class QueryFailed:
    query_id: int
    error_message: str
    log_lines: list[str]
    journal: str | None
    has_error_data: bool = False
    error_data: Any = None


@dataclass(slots=True)
class QueryRemoved:
    query_id: int


@dataclass(slots=True)
class Transition:
    start_version: StateVersion
    end_version: StateVersion
    modifications: list[QueryUpdated | QueryFailed | QueryRemoved]
    client_clock_skew: float | None = None
    server_ts: int | None = None


@dataclass(slots=True)
class MutationResponse:
    request_id: int
    success: bool
    result: Any  # the value, or the error message on failure
    ts: int | None
    log_lines: list[str]
    has_error_data: bool = False
    error_data: Any = None
    # Eddy's stable code of a refused call (msgpack frames only: `errorCode`).
    error_code: str | None = None


@dataclass(slots=True)
class ActionResponse:
    request_id: int
    success: bool
    result: Any
    log_lines: list[str]
    has_error_data: bool = False
    error_data: Any = None
    error_code: str | None = None  # as MutationResponse's


@dataclass(slots=True)
class AuthError:
    error: str
    base_version: int
    auth_update_attempted: bool


@dataclass(slots=True)
class FatalError:
    error: str


@dataclass(slots=True)
class Ping:
    pass


ServerMessage = Union[Transition, MutationResponse, ActionResponse, AuthError,
                      FatalError, Ping]


# ------------------------------------------------------------- call outcomes

@dataclass(slots=True)
class CallSucceeded:
    value: Any
    ts: int
    log_lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CallFailed:
    message: str
    log_lines: list[str] = field(default_factory=list)
    has_data: bool = False  # only for AppError: clients make it a ConvexError
    data: Any = None
    # Eddy's stable code (engine/errors.py) when Eddy refused the call; None
    # for the app's AppError and for a crash in app code.
    code: str | None = None


CallOutcome = Union[CallSucceeded, CallFailed]
