"""Eddy's Python client: the sync protocol with msgpack binary frames.

    from wire import connect

    async with connect("http://127.0.0.1:3210") as client:
        await client.mutation("messages:send", {"body": "hi"})
        print(await client.query("messages:list"))
        async with client.subscribe("messages:list") as sub:
            async for messages in sub:
                print(messages)
        await client.mutations([("messages:send", {"body": str(i)}) for i in range(1000)])

How it works. One background task owns the socket. On every (re)connect it
sends `Connect` (the same sessionId for the client's whole life, so the
server de-duplicates re-sent mutations as it does for npm), `Authenticate`
if a token is set, one `ModifyQuerySet` re-adding every live subscription,
then every mutation and action not yet answered, in their original order.
If the socket breaks, or nothing arrives for `inactivity_s_max`, it
reconnects with exponential backoff (`backoff_s_min` doubling to
`backoff_s_max`, with jitter). Values are native (int64 stays `int`, bytes
stay `bytes`); timestamps are ints.

Resolution rules (as npm's): a successful mutation resolves once a
Transition at or after its commit ts arrived, so subscriptions already show
it; a failed one and every action resolve on their response.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable

import trio

from engine.errors import EddyError
from wire import codecs, messages as m
from wire.client_ws import (FairSlots, HandshakeError, WebSocketClosed, client_frame,
                            open_websocket)
from wire.codecs import NATIVE_STYLE, SERVER_NATIVE_STYLE
from wire.websocket import OPCODE_BINARY

logger = logging.getLogger("eddy.client")

__all__ = ["Client", "ClientError", "HandshakeError", "Subscription", "connect"]

# Reconnect backoff: 100 ms first, as the Rust client, doubling to 15 s.
backoff_s_min = 0.1
backoff_s_max = 15.0
# The server pings after 15 s of silence; 30 s without a frame means it is gone
# (the Rust client's rule).
inactivity_s_max = 30.0
# Connecting and the WebSocket handshake: the same rule as a silent server.
handshake_s_max = inactivity_s_max
# A frame moves the inactivity deadline only once this share of
# inactivity_s_max has passed since it last did: moving it costs more than a
# frame's other bookkeeping, and a second of slack on 30 s changes nothing.
inactivity_refresh_share = 1 / 30
# Frames this client accepts: one large query result plus envelope.
message_bytes_max = 64 * 1024 * 1024
# Mutation requests (a MutationBatch counts as one) awaiting their answer at
# once. The server closes a connection that queues more than
# wire.session.queued_mutations_max (1,000); half of it leaves room for the
# reconnect burst, which re-sends every unanswered one, so a busy client
# never loops between overflowing the queue and re-sending it.
mutations_in_flight_max = 500
_U32_MAX = 2**32 - 1  # request ids (PROTOCOL.md 2.2)


class ClientError(Exception):
    """A function failed.

    Attributes:
        message: the server's message, for humans.
        code: Eddy's stable code of the failure (an `engine.errors.ErrorCode`
            value such as "FunctionNotFound", the HTTP API's `code`), or None
            when the server names none: an `AppError` the app raised, a
            crash in app code (see docs/python-client.md).
        data: the app's `AppError` data (Convex's ConvexError), None otherwise;
        has_data: tells the two apart.
    """

    def __init__(self, message: str, data: Any = None, has_data: bool = False,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        self.has_data = has_data
        self.code = code


def sync_url(url: str) -> str:
    """`http(s)://host[:port]/...` -> `ws(s)://host[:port]/api/sync` (as the Rust client)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a URL: {url!r}")
    ws_scheme = {"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}.get(scheme.lower())
    if ws_scheme is None:
        raise ValueError(f"unsupported scheme {scheme!r} in {url!r}")
    host = rest.split("/", 1)[0]
    return f"{ws_scheme}://{host}/api/sync"


@dataclass
class _Request:
    message: Any  # Mutation or Action, re-sent after a reconnect until answered
    done: trio.Event = field(default_factory=trio.Event)
    outcome: Any = None  # ("ok", value) or ("error", ClientError)
    commit_ts: int | None = None  # a successful mutation, waiting for its Transition
    batch: int | None = None  # the MutationBatch it was sent in, re-sent together


@dataclass
class _Query:
    path: str
    args: dict
    journal: str | None = None
    version: int = 0  # bumped on every new result
    value: Any = None
    error: ClientError | None = None
    changed: trio.Event = field(default_factory=trio.Event)


class Subscription:
    """A live query; iterate it for each new value (intermediate values may be
    skipped if the reader is slower than the updates)."""

    def __init__(self, query: _Query) -> None:
        self._query = query
        self._seen = 0

    @property
    def value(self) -> Any:
        """The latest value (raises ClientError if the latest result is an error)."""
        if self._query.error is not None:
            raise self._query.error
        return self._query.value

    async def next(self) -> Any:
        """Waits for a value newer than the last one returned. A checkpoint."""
        while self._query.version <= self._seen:
            await self._query.changed.wait()
        self._seen = self._query.version
        return self.value

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.next()


class Client:
    """A connection to an Eddy server; made by `connect` (module docstring)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = sync_url(url)
        self.session_id = str(uuid.uuid4())
        self.token = token
        self._next_request_id = 0
        self._next_query_id = 0
        self._queries: dict[int, _Query] = {}
        self._requests: dict[int, _Request] = {}
        # Successful mutations waiting for a Transition at or after their
        # commit ts: request id -> commit ts (a subset of _requests, so a
        # Transition looks at these only, not at every request in flight).
        self._committed: dict[int, int] = {}
        # The open connection's ClientWebSocket, None between connections.
        self._ws: Any = None
        self._connection_count = 0
        self._last_close_reason = "InitialConnect"
        self._max_observed_ts: int | None = None
        self._query_set_version = 0
        self._identity_version = 0
        self._version_ts = 0
        self.connected = trio.Event()
        self.reconnect_count = 0
        self._mutation_slots = FairSlots(mutations_in_flight_max)
        self._next_batch = 0

    # ----- calls

    async def query(self, path: str, args: dict | None = None) -> Any:
        """Runs a query once (subscribe, take the first result, unsubscribe)."""
        async with self.subscribe(path, args) as sub:
            return await sub.next()

    async def mutation(self, path: str, args: dict | None = None) -> Any:
        """Runs a mutation; returns once subscriptions reflect it. Raises ClientError.

        A checkpoint. Waits for a slot while `mutations_in_flight_max` are
        unanswered. Cancelled, the mutation may still run (once: re-sends
        are de-duplicated by the server).
        """
        slots = self._mutation_slots
        # A free slot is taken without a checkpoint (Semaphore.acquire would
        # yield to the scheduler once per mutation); waiting for the answer
        # is the checkpoint.
        if not slots.take_nowait():
            await slots.take()
        try:
            request = self._request(m.Mutation(self._take_request_id(), path, [args or {}]))
            await self._send(request.message)
            await request.done.wait()  # `_wait`, one call less on every mutation's path
        finally:
            slots.give()
        kind, payload = request.outcome
        if kind == "error":
            raise payload
        return payload

    async def action(self, path: str, args: dict | None = None) -> Any:
        """Runs an action. Raises ClientError."""
        request = self._request(m.Action(self._take_request_id(), path, [args or {}]))
        await self._send(request.message)
        return await self._wait(request)

    async def mutations(self, calls: Iterable[tuple[str, dict | None]], *,
                        return_exceptions: bool = False) -> list[Any]:
        """Sends many independent mutations in one frame (Eddy's MutationBatch).

        They run concurrently on the server (sharing group commits); results
        come back in order. With `return_exceptions`, failures are returned
        as ClientError items; otherwise the first failure is raised after all
        are done.
        """
        items = [m.Mutation(self._take_request_id(), path, [args or {}]) for path, args in calls]
        if not items:
            return []
        await self._mutation_slots.take()
        try:
            batch = self._next_batch
            self._next_batch += 1
            requests = [self._request(item) for item in items]
            for request in requests:
                request.batch = batch
            await self._send(m.MutationBatch(items))
            results: list[Any] = []
            for request in requests:
                try:
                    results.append(await self._wait(request))
                except ClientError as error:
                    results.append(error)
        finally:
            self._mutation_slots.give()
        if not return_exceptions:
            for result in results:
                if isinstance(result, ClientError):
                    raise result
        return results

    @contextlib.asynccontextmanager
    async def subscribe(self, path: str, args: dict | None = None
                        ) -> AsyncIterator[Subscription]:
        """A live query for the duration of the block."""
        query_id = self._next_query_id
        self._next_query_id += 1
        query = self._queries[query_id] = _Query(path, args or {})
        await self._modify([m.QueryAdd(query_id, path, [query.args])])
        try:
            yield Subscription(query)
        finally:
            del self._queries[query_id]
            with trio.CancelScope(shield=True):
                await self._modify([m.QueryRemove(query_id)])

    async def set_auth(self, token: str) -> None:
        """Authenticates as the user the JWT proves (kept across reconnects)."""
        self.token = token
        await self._authenticate()

    async def clear_auth(self) -> None:
        """Goes back to no identity."""
        self.token = None
        await self._authenticate()

    # ----- plumbing

    def _take_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id

    def _request(self, message: Any) -> _Request:
        request = self._requests[message.request_id] = _Request(message)
        return request

    async def _wait(self, request: _Request) -> Any:
        await request.done.wait()
        kind, payload = request.outcome
        if kind == "error":
            raise payload
        return payload

    async def _send(self, message: Any) -> None:
        """Sends now if connected; otherwise the reconnect sends what is needed.

        Not a checkpoint when the kernel takes the frame at once. Frames go
        out in the order callers reached this method (the socket's send lock
        is fair, and nothing awaits before taking it), which keeps query-set
        versions in order.
        """
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send_frame(_frame(message))
        except trio.BrokenResourceError:
            # The connection task notices and reconnects; its burst re-sends
            # what still needs an answer.
            pass

    async def _modify(self, modifications: list[Any]) -> None:
        if self._ws is None:
            return  # The reconnect re-adds every live query.
        base = self._query_set_version
        self._query_set_version += 1
        await self._send(m.ModifyQuerySet(base, base + 1, modifications))

    async def _authenticate(self) -> None:
        if self._ws is None:
            return
        base = self._identity_version
        self._identity_version += 1
        if self.token is None:
            message = m.Authenticate(base, "None")
        else:
            message = m.Authenticate(base, "User", self.token)
        await self._send(message)

    # ----- the connection task

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED, *,
                  fail_first: bool = False) -> None:
        """Keeps a connection open, reconnecting with backoff; runs until cancelled.

        With `fail_first`, a first connection that cannot be opened raises
        (OSError, HandshakeError) instead of being retried.
        """
        backoff_s = backoff_s_min
        started = False
        while True:
            try:
                async with open_websocket(self.url, headers=[("Convex-Client", "eddy-0.1.0")],
                                          message_bytes_max=message_bytes_max,
                                          handshake_s_max=handshake_s_max) as ws:
                    await self._open(ws)
                    if not started:
                        started = True
                        task_status.started()
                    backoff_s = backoff_s_min
                    await self._read(ws)
            except (OSError, HandshakeError) as error:
                if fail_first and not started:
                    raise
                self._lost(error, backoff_s)
            except (WebSocketClosed, trio.BrokenResourceError, _Reconnect) as error:
                self._lost(error, backoff_s)
            finally:
                self._ws = None
                self.connected = trio.Event()
            await trio.sleep(backoff_s * random.uniform(0.5, 1.0))
            backoff_s = min(backoff_s * 2, backoff_s_max)
            self.reconnect_count += 1

    def _lost(self, error: BaseException, backoff_s: float) -> None:
        self._last_close_reason = _describe(error)
        logger.info("sync connection lost (%s); reconnecting in %.1f s",
                    self._last_close_reason, backoff_s)

    async def _open(self, ws: Any) -> None:
        """Sends the reconnect burst (module docstring) as one write, so that
        no other frame slips in between."""
        # Everything up to the send happens at once, and the send takes the
        # socket's send lock before any checkpoint: a subscribe or a call
        # made after this point goes out after the burst.
        burst = [m.Connect(self.session_id, self._connection_count,
                           self._last_close_reason, self._max_observed_ts, 0.0)]
        self._connection_count += 1
        self._identity_version = 0
        if self.token is not None:
            burst.append(m.Authenticate(0, "User", self.token))
            self._identity_version = 1
        burst.append(m.ModifyQuerySet(0, 1, [
            m.QueryAdd(query_id, query.path, [query.args], query.journal)
            for query_id, query in self._queries.items()]))
        self._query_set_version = 1
        self._version_ts = 0
        burst += _resend(request for request in self._requests.values()
                         if request.outcome is None or request.commit_ts is not None)
        self._ws = ws
        await ws.send_frame(b"".join(_frame(message) for message in burst))
        self.connected.set()

    async def _read(self, ws: Any) -> None:
        # One scope for the connection's life whose deadline frames move
        # forward, at most once per inactivity_refresh_share of the limit (a
        # silent server is noticed after the limit less at most that share):
        # a scope per frame was a share of a subscriber's cost per Transition.
        refresh_s = inactivity_s_max * inactivity_refresh_share
        # The run's clock itself: trio.current_time() is four Python calls.
        current_time = trio.lowlevel.current_clock().current_time
        with trio.CancelScope() as scope:
            refreshed = current_time()
            scope.deadline = refreshed + inactivity_s_max
            while True:
                frames = await ws.receive_messages()
                now = current_time()
                if now - refreshed >= refresh_s:
                    refreshed, scope.deadline = now, now + inactivity_s_max
                for frame in frames:
                    self._read_frame(frame)
        raise _Reconnect(f"InactiveServer: nothing for {inactivity_s_max:g} s")

    def _read_frame(self, frame: Any) -> None:
        if isinstance(frame, str):
            raise _Reconnect("the server sent a text frame to a msgpack client")
        try:
            obj = codecs.load_msgpack_frame(frame)
            # Every mutation's answer is a MutationResponse and a Transition
            # that changes no result: those two are read here, without the
            # codec's field-by-field decoding (a third of the client's CPU
            # per mutation); anything else, or anything unusual in them, goes
            # through the codec, which also names what is malformed.
            kind = obj.get("type") if type(obj) is dict else None
            if kind == "Transition":
                ts = _plain_transition_ts(obj)
                if ts is not None:
                    self._advance(ts)
                    return
            elif kind == "MutationResponse":
                response = _plain_mutation_response(obj)
                if response is not None:
                    self._response(response)
                    return
            message = codecs.decode_server_message(obj, SERVER_NATIVE_STYLE)
        except EddyError as error:
            raise _Reconnect(f"bad frame from the server: {error.message}") from None
        self._handle(message)

    def _handle(self, message: Any) -> None:
        if isinstance(message, m.Transition):
            self._transition(message)
        elif isinstance(message, (m.MutationResponse, m.ActionResponse)):
            self._response(message)
        elif isinstance(message, m.FatalError):
            raise _Reconnect(f"FatalError: {message.error}")
        elif isinstance(message, m.AuthError):
            raise _Reconnect(f"AuthError: {message.error}")

    def _transition(self, transition: Any) -> None:
        for item in transition.modifications:
            query = self._queries.get(item.query_id)
            if query is None or isinstance(item, m.QueryRemoved):
                continue
            query.journal = item.journal
            if isinstance(item, m.QueryUpdated):
                query.value, query.error = item.value, None
            else:
                query.value = None
                query.error = ClientError(item.error_message, item.error_data,
                                          item.has_error_data,
                                          getattr(item, "error_code", None))
            query.version += 1
            query.changed.set()
            query.changed = trio.Event()
        self._advance(transition.end_version.ts)

    def _advance(self, ts: int) -> None:
        """A Transition to `ts` arrived: mutations committed at or before it resolve."""
        self._version_ts = ts
        self._max_observed_ts = max(self._max_observed_ts or 0, ts)
        for request_id, commit_ts in list(self._committed.items()):
            if commit_ts <= ts:
                self._finish(request_id, ("ok", self._requests[request_id].outcome[1]))

    def _response(self, response: Any) -> None:
        request = self._requests.get(response.request_id)
        if request is None:
            return  # A duplicate answer to a re-sent request (`_finish` forgot it).
        if not response.success:
            error = ClientError(str(response.result), response.error_data,
                                response.has_error_data, getattr(response, "error_code", None))
            self._finish(response.request_id, ("error", error))
        elif isinstance(response, m.ActionResponse):
            self._finish(response.request_id, ("ok", response.result))
        else:
            request.outcome = ("ok", response.result)
            request.commit_ts = response.ts
            self._max_observed_ts = max(self._max_observed_ts or 0, response.ts)
            if response.ts <= self._version_ts:
                self._finish(response.request_id, request.outcome)
            else:
                self._committed[response.request_id] = response.ts

    def _finish(self, request_id: int, outcome: Any) -> None:
        request = self._requests.pop(request_id)
        self._committed.pop(request_id, None)
        request.outcome = outcome
        request.commit_ts = None
        request.done.set()


def _plain_transition_ts(obj: dict) -> int | None:
    """The end ts of a well-formed Transition that changes no query result, or
    None (decode it in full)."""
    end = obj.get("endVersion")
    if obj.get("modifications") != [] or type(end) is not dict \
            or type(obj.get("startVersion")) is not dict:
        return None
    ts = end.get("ts")
    return ts if type(ts) is int and 0 <= ts <= codecs.TS_MAX else None


def _plain_mutation_response(obj: dict) -> Any:
    """A well-formed successful MutationResponse, or None (decode it in full)."""
    request_id, ts, log_lines = obj.get("requestId"), obj.get("ts"), obj.get("logLines")
    if obj.get("success") is not True or "errorData" in obj \
            or type(request_id) is not int or not 0 <= request_id <= _U32_MAX \
            or type(ts) is not int or not 0 <= ts <= codecs.TS_MAX \
            or type(log_lines) is not list:
        return None
    return m.MutationResponse(request_id, True, obj.get("result"), ts, log_lines)


def _frame(message: Any) -> bytes:
    """A client message as a masked binary frame."""
    if type(message) is m.Mutation:
        # Every mutation's frame: the codec's object for it
        # (`encode_client_message`), without its dispatch on the type.
        obj = {"type": "Mutation", "requestId": message.request_id,
               "udfPath": message.udf_path, "args": message.args}
    else:
        obj = codecs.encode_client_message(message, NATIVE_STYLE)
    return client_frame(OPCODE_BINARY, codecs.dump_msgpack_frame(obj))


def _resend(requests: Iterable[_Request]) -> list[Any]:
    """The messages that re-send `requests`, in order; items of one
    MutationBatch go together again, so they stay one entry of the server's
    queue."""
    messages: list[Any] = []
    for request in requests:
        previous = messages[-1] if messages else None
        if request.batch is not None and isinstance(previous, _Batch) \
                and previous.batch == request.batch:
            previous.items.append(request.message)
        elif request.batch is not None:
            messages.append(_Batch(request.batch, [request.message]))
        else:
            messages.append(request.message)
    return [m.MutationBatch(message.items) if isinstance(message, _Batch) else message
            for message in messages]


@dataclass
class _Batch:
    batch: int
    items: list[Any]


class _Reconnect(Exception):
    """The connection must be dropped and opened again."""


def _describe(error: BaseException) -> str:
    if isinstance(error, (WebSocketClosed, _Reconnect)):
        # "closed with code N: reason", or the client's own reason
        # ("InactiveServer: ...", "FatalError: ..."), as PROTOCOL.md 3.1 names them.
        return str(error)
    return f"{type(error).__name__}: {error}"


@contextlib.asynccontextmanager
async def connect(url: str, *, token: str | None = None) -> AsyncIterator[Client]:
    """Opens a client on `url` (the deployment's http(s) URL) for the block.

    Waits until the first connection is open (raising OSError/HandshakeError
    if the server cannot be reached at all); later losses reconnect in the
    background. Leaving the block closes the connection and abandons
    unanswered calls.
    """
    client = Client(url, token)
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        # Fail fast if the server is not there at all; after that, reconnect
        # forever. The failure is raised outside the nursery, so that it is
        # the error itself, not an ExceptionGroup holding it.
        try:
            await nursery.start(functools.partial(client.run, fail_first=True))
        except (OSError, HandshakeError) as error:
            failure = error
        else:
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
