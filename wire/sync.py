"""The sync protocol's shell: one `SyncSession` per WebSocket on the ASGI app.

After hypercorn's handshake, a plain-TCP connection leaves hypercorn for
Eddy's own WebSocket (wire/websocket.py, `own_websocket`): its reader parses
frames where it reads them, and a frame out goes to the socket from the task
that made it when nothing waits before it and the kernel takes it at once.
TLS and HTTP/2 connections, and the simulator's, keep ASGI messages.

`SyncServer.serve(scope, receive, send)` runs one connection as a handful of
trio tasks in one nursery, all feeding the same sans-I/O core
(wire/session.py) and carrying out its effects:

- the reader decodes frames (JSON text frames for Convex's clients, msgpack
  binary frames for Eddy's; the first frame picks the codec for replies) and
  feeds messages. On the own WebSocket, once the connection is idle, its
  socket is read by the server's one `ReadinessPoller` task instead
  (`_read_in_poller`, `_on_readable`), which feeds each whole message where
  it reads it: no task switch and no re-arming of trio's registration per
  message. The reader task takes the socket back for what needs awaiting:
  a ping to answer, a close, a protocol violation, the end of the stream,
  an Authenticate to resolve before the next message runs;
- the writer drains the bounded outgoing queue into the socket (on the own
  WebSocket only frames that had to wait reach it);
- Updates need no task of their own: the connection's `SessionQueries`
  (node.subscriptions) calls `_on_update` from the subscription actor's loop
  right after each delivery, and the Update is fed to the core there and
  then, its Transition encoded and queued for the writer, while fewer than
  `unsent_transitions_max` Transitions wait to be written; past that it stays
  with the subscription layer, which merges later ones into it, and the
  writer takes it when a Transition is written. So a slow reader costs one
  pending Update, not a backlog, and an Update costs one task switch (the
  writer's), not two;
- the pinger wakes when the core's next Ping is due (read lazily: frames
  sent do not wake it);
- a mutation the runner can decide at once (nothing holds the serial lane,
  the disk has room, the function never suspends: nearly all) runs where it
  is fed, with no task of its own (`_mutate_now`, the runner's
  `mutation_now`), and is answered from the sequencer's `when_durable`
  callback once its group is on disk. Its successful MutationResponse waits
  for the Transition its RequestUpdate asks for, a pass of the subscription
  actor later, and goes out in the same write (a client takes a mutation as
  done only once it has both; a failure goes at once: npm's client rejects
  on it alone). Any other mutation, a batch and an action each run in a
  task of their own; a session's next mutation starts once the previous
  one's commit is decided (wire/session.py rule 4). The simulator's server
  runs every mutation in a task (`inline_mutations=False`).

Feeding the core and carrying out its effects never awaits, so effects of
one input are applied before the next input is fed.

Limits and slow clients. A frame over `sync_message_bytes_max` is answered
with FatalError and a close. The outgoing queue holds at most
`outgoing_frames_max` frames, and a single send may take at most
`send_stall_s_max`; a client that overflows the first or stalls the second is
closed with reason `ClientTooSlow` (close code 1013, "try again later"): it
reconnects and resynchronises from scratch, and no other session waits for
it.

Mutation results outlive sockets: `SyncServer.results` is node-wide (npm
re-sends answered mutations after a reconnect, PROTOCOL.md 5.1), and a
mutation whose socket closes still runs to the end (shielded) so that its
result is recorded. `in_flight` makes a re-send that arrives while the
first attempt still runs wait for it instead of running twice.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import time
from typing import Any

import trio

from engine import limits
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed
from wire import codecs, session as core, websocket
from wire.calls import ANONYMOUS, Caller, CloseConnection, call_outcome, failed_outcome
from wire.codecs import JSON_STYLE, NATIVE_STYLE

logger = logging.getLogger("eddy.sync")

# `/api/sync` (Rust and Python clients) and `/api/<client version>/sync` (npm).
SYNC_PATH = re.compile(r"^/api/(?:(?P<version>[^/]+)/)?sync/?$")

# A frame carries at most one 16 MiB argument object plus its envelope, the
# same bound as an HTTP request body. JSON text may inflate bytes by a third
# (base64), so Convex JSON clients sending large bytes values hit the value
# limit first, as they would over HTTP.
sync_message_bytes_max = limits.http_body_bytes_max
# Frames waiting to be written: enough for every response the core can owe at
# once (a full mutation queue, the running actions) plus the Transitions and
# Pings; past that the client is not reading.
unsent_transitions_max = 2  # as Convex's backend (SYNC_MAX_SEND_TRANSITION_COUNT)
outgoing_frames_max = (core.queued_mutations_max * 2 + core.running_actions_max
                       + unsent_transitions_max + 16)
# A send that cannot finish in 30 s means the client stopped reading; the
# Python client itself gives up on a silent server after 30 s.
send_stall_s_max = 30.0
# Closing politely to a client that does not read must not hang the task.
close_timeout_s = 1.0
# How long after a token's `exp` the session re-checks it: past the verifier's
# clock-skew leeway (actors.auth.clock_skew_ms_max), plus a little.
expiry_check_delay_ms = 6_000


def sync_path_version(path: str) -> tuple[bool, str | None]:
    """Whether `path` is a sync endpoint, and the client version it names."""
    match = SYNC_PATH.match(path)
    if match is None:
        return False, None
    return True, match.group("version")


def now_ms() -> float:
    """Wall-clock milliseconds: the core's only time (Ping spacing, clock skew)."""
    return time.time() * 1000.0


class SyncServer:
    """The sync endpoint of one ASGI app: node-wide state shared by its connections.

    Args:
        node_provider: returns the node (called once per connection).
        send_stall_s: how long one send may block before the client is
            closed as too slow (tests shorten it).
        own_websocket: whether a plain-TCP WebSocket leaves hypercorn after
            its handshake for Eddy's own framing (wire/websocket.py); False
            keeps hypercorn's WSStream and wsproto for every frame.
        inline_mutations: whether a mutation the runner can decide at once
            runs with no task of its own (`Connection._mutate_now`); False
            runs every mutation in a task (`_run_mutation`), as the
            simulator's server does: its checkers watch `_mutate`.
    """

    def __init__(self, node_provider: Any, *, send_stall_s: float = send_stall_s_max,
                 clock_ms: Any = None, own_websocket: bool = True,
                 inline_mutations: bool = True) -> None:
        self.node_provider = node_provider
        self.send_stall_s = send_stall_s
        self.own_websocket = own_websocket
        # The core's wall clock in milliseconds (`now_ms`); the simulator
        # passes its virtual World clock (sim/clients.py).
        self.now_ms = clock_ms or now_ms
        self.results = core.MutationResults()
        # Reads the sockets of own-WebSocket connections (Connection._read_in_poller).
        self.poller = websocket.ReadinessPoller()
        # (sessionId, requestId) of each mutation running -> the Event its
        # re-sends wait on, made by the first of them (None until one waits).
        self.in_flight: dict[tuple[str, int], trio.Event | None] = {}
        # Whether mutations the runner can decide at once run with no task of
        # their own (Connection._mutate_now).
        self.inline_mutations = inline_mutations
        self.connection_count = 0

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serves one WebSocket until either side closes it.

        A checkpoint; returns when the connection is over. Cancelling it
        drops the connection (running mutations still finish, shielded).
        """
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        _, version = sync_path_version(scope["path"])
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers", [])}
        # Imported here: the simulator drives Connection without hypercorn,
        # and importing hypercorn costs it about 0.1 s per process.
        from wire import hypercorn_patch

        handover = hypercorn_patch.take_over(send) if self.own_websocket else None
        try:
            # No subprotocol: neither official client asks for one (PROTOCOL.md 1.2).
            await send({"type": "websocket.accept"})
            transport = None
            if handover is not None:
                hypercorn_patch.accepted(send)
                transport = websocket.SocketWebSocket(
                    handover, message_bytes_max=handover.message_bytes_max)
                receive, send = transport.receive, transport.send
            connection = Connection(self, self.node_provider(), receive, send,
                                    client=headers.get("convex-client"), client_version=version)
            connection.transport = transport
            self.connection_count += 1
            try:
                await connection.run()
            finally:
                self.connection_count -= 1
        finally:
            if handover is not None:
                handover.finished.set()  # hypercorn closes the connection


class Connection:
    """One WebSocket's tasks around its `SyncSession` (see the module docstring)."""

    def __init__(self, server: SyncServer, node: Any, receive: Any, send: Any, *,
                 client: str | None, client_version: str | None) -> None:
        self.server = server
        self.node = node
        self.receive = receive
        self.send = send
        # Recorded for logs: "python-0.8.1" from the header, or npm's URL version.
        self.client = client or (f"npm-{client_version}" if client_version else None)
        self.now_ms = server.now_ms
        self.session = core.SyncSession(server.results, now_ms=self.now_ms())
        self.queries = node.subscriptions.open_session()
        self.queries.listener = self._on_update
        self.style: codecs._Style | None = None  # chosen by the first frame
        self.outgoing_send, self.outgoing_receive = trio.open_memory_channel(outgoing_frames_max)
        self.unsent_transitions = 0
        self.ping_due_changed = trio.Event()
        self.close_frame: tuple[int, str] | None = None
        self.token_to_resolve: core.ResolveToken | None = None
        # Expiry of the user token in force (ms since the epoch); set when a
        # token is accepted, cleared once the session is ended for it.
        self.expires_at_ms: int | None = None
        self.nursery: trio.Nursery | None = None
        # The socket itself when the connection left hypercorn (SyncServer.serve):
        # frames are then framed here and sent at once when the kernel takes
        # them (_queue_frame); the writer sends only what had to wait.
        self.transport: websocket.SocketWebSocket | None = None
        # Frames (or their unsent ends) queued for the writer and not yet
        # written, on the own WebSocket; while any are, new frames queue too.
        self.frames_queued = 0
        # Set when the reader task must take the socket back from the poller.
        self.resume_reading = trio.Event()
        # Whether `_feed` carries out effects that end with a RequestUpdate,
        # and the answers held for the Transition it asks for (`_queue`).
        self.corking = False
        self.corked: list[bytes] = []

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._read)
                nursery.start_soon(self._write)
                nursery.start_soon(self._ping)
        finally:
            self.queries.listener = None
            self.queries.close()
            if self.close_frame is not None:
                await self._send_close(*self.close_frame)

    # ----- feeding the core

    def _feed(self, effects: list[core.Effect]) -> None:
        """Carries out effects; never awaits.

        A mutation the runner can decide at once (`_mutate_now`) runs after
        the other effects, as if its decision were the next input fed.
        A successful MutationResponse that a RequestUpdate follows waits for
        the Transition it asks for, to share its write (`_queue`).
        """
        if not effects:
            return
        run_now = None
        self.corking = len(effects) > 1 and type(effects[-1]) is core.RequestUpdate
        for effect in effects:
            if isinstance(effect, core.Send):
                self._queue(effect.message)
            elif isinstance(effect, core.ModifyQueries):
                self.queries.modify(effect.adds, effect.removes)
            elif isinstance(effect, core.RequestUpdate):
                self.queries.request_update(effect.min_ts)
            elif isinstance(effect, core.SetIdentity):
                self.queries.set_identity(effect.identity, admin=effect.admin)
            elif isinstance(effect, core.RunMutation):
                if self.server.inline_mutations:
                    if run_now is None:
                        run_now = []
                    run_now.append(effect)
                else:
                    self.nursery.start_soon(self._run_mutation, effect)
            elif isinstance(effect, core.RunMutations):
                self.nursery.start_soon(self._run_batch, effect)
            elif isinstance(effect, core.RunAction):
                self.nursery.start_soon(self._run_action, effect)
            elif isinstance(effect, core.ResolveToken):
                # The reader resolves it before it feeds the next message.
                self.token_to_resolve = effect
            elif isinstance(effect, core.Close):
                self._close(effect.code, effect.reason)
            else:  # pragma: no cover
                raise AssertionError(f"unknown effect {effect!r}")
        self.corking = False
        if run_now is not None:
            for effect in run_now:
                if not self._mutate_now(effect):
                    self.nursery.start_soon(self._run_mutation, effect)

    def _queue(self, message: Any) -> None:
        if self.close_frame is not None:
            return
        frame = codecs.dump_server_frame(message, self.style or JSON_STYLE)
        is_transition = isinstance(message, core.Transition)
        if self.transport is not None:
            data = (websocket.frame_bytes(websocket.OPCODE_BINARY, frame)
                    if type(frame) is bytes else websocket.encode_frame(frame))
            if self.corking and type(message) is core.MutationResponse and message.success \
                    and not self.frames_queued:
                # The Transition this answer's RequestUpdate asks for follows
                # within a pass of the subscription actor, and a client takes
                # a mutation as done only once it has both (PROTOCOL.md 4):
                # one write and one wake-up of the client instead of two.
                # A failure is not held: npm's client rejects on it alone.
                self.corked.append(data)
                return
            self._queue_frame(data, is_transition)
            return
        try:
            self.outgoing_send.send_nowait((frame, is_transition))
        except trio.WouldBlock:
            self._too_slow(f"more than {outgoing_frames_max} messages unsent")
            return
        if is_transition:
            self.unsent_transitions += 1
        # No wake-up of the pinger: a frame sent only moves the next Ping
        # later, and the pinger re-reads the due time when its timer fires.

    def _queue_frame(self, data: Any, is_transition: bool) -> None:
        """On Eddy's own WebSocket: a frame with nothing queued before it goes
        to the socket at once, from whichever task made it (the reader, a
        mutation's task, the subscription actor's loop): no wake-up of the
        writer. What the kernel does not take waits for the writer, and so
        does every frame after it. Never awaits."""
        if self.corked:
            data = b"".join([*self.corked, data])
            self.corked.clear()
        if not self.frames_queued:
            sent = self.transport.send_nowait(data)
            if sent is None:  # the peer is gone, as a disconnect
                self.session.closed = True
                self.nursery.cancel_scope.cancel()
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        try:
            self.outgoing_send.send_nowait((data, is_transition))
        except trio.WouldBlock:
            self._too_slow(f"more than {outgoing_frames_max} messages unsent")
            return
        self.frames_queued += 1
        if is_transition:
            self.unsent_transitions += 1

    def _close(self, code: int, reason: str) -> None:
        """Stops the connection after the frames already queued are written."""
        if self.close_frame is not None:
            return
        if self.corked:  # answers go out before the close
            self._queue_frame(b"", False)
        self.close_frame = (code, reason)
        if code != core.CLOSE_NORMAL:
            logger.info("closing sync session %s (%s): %s", self.session.session_id,
                        self.client, reason)
        # The writer writes what is queued, then cancels the connection.
        self.outgoing_send.close()

    def _too_slow(self, why: str) -> None:
        reason = f"ClientTooSlow: {why}; reconnect to resynchronise"
        self.session.close(reason, core.CLOSE_TRY_AGAIN)
        self.close_frame = (core.CLOSE_TRY_AGAIN, reason)
        logger.warning("closing sync session %s (%s): %s", self.session.session_id,
                       self.client, reason)
        self.nursery.cancel_scope.cancel()

    async def _send_close(self, code: int, reason: str) -> None:
        # Close reasons are at most 123 bytes (RFC 6455).
        reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        with trio.move_on_after(close_timeout_s) as scope:
            scope.shield = True
            try:
                await self.send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:  # The peer is gone; nothing to tell it.
                logger.debug("close frame not sent", exc_info=True)

    # ----- tasks

    async def _read(self) -> None:
        transport = self.transport
        poller = self.server.poller if transport is not None else None
        while True:
            if self.token_to_resolve is not None:
                # Messages after an Authenticate run as the identity it sets.
                effect, self.token_to_resolve = self.token_to_resolve, None
                await self._resolve_token(effect)
            elif poller is not None and transport.pollable:
                await self._read_in_poller(poller)
                continue
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                self.session.closed = True
                self.nursery.cancel_scope.cancel()
                return
            if message["type"] != "websocket.receive":
                continue
            self._feed(self._decode_and_receive(message))

    async def _read_in_poller(self, poller: websocket.ReadinessPoller) -> None:
        """Lets the server's poller read this socket (`_on_readable`) until
        something needs this task: a ping to answer, a close, a protocol
        violation, the end of the stream, or an Authenticate to resolve."""
        self.resume_reading = trio.Event()
        fd = self.transport.fileno
        poller.watch(fd, self._on_readable)
        try:
            await self.resume_reading.wait()
        finally:
            poller.unwatch(fd)

    def _on_readable(self) -> None:
        """The poller's call when the socket has bytes: each whole message is
        fed as `_read` feeds it; never awaits."""
        transport = self.transport
        if self.resume_reading.is_set():
            return
        try:
            if not transport.read_nowait():
                return
            while not self.session.closed:
                message = transport.next_message_nowait()
                if message is None:
                    break
                self._feed(self._decode_and_receive(message))
                if self.token_to_resolve is not None:
                    break
        except Exception:
            self._failed("a message could not be handled")
            return
        if transport.needs_receive or self.token_to_resolve is not None:
            self.resume_reading.set()

    def _decode_and_receive(self, message: dict[str, Any]) -> list[core.Effect]:
        text, data = message.get("text"), message.get("bytes")
        style = JSON_STYLE if text is not None else NATIVE_STYLE
        if self.style is None:
            self.style = style
        size = len(text) if text is not None else len(data or b"")
        try:
            if size > sync_message_bytes_max:
                raise EddyError(ErrorCode.PROTOCOL_ERROR,
                                f"MessageTooLarge: a message is at most "
                                f"{sync_message_bytes_max} bytes, this one is {size}.")
            obj = (codecs.load_json_frame(text) if text is not None
                   else codecs.load_msgpack_frame(data or b""))
            parsed = codecs.decode_client_message(obj, style)
        except EddyError as error:
            return self.session.fail(error.message, now_ms=self.now_ms())
        return self.session.receive(parsed, now_ms=self.now_ms(), latest_ts=self.node.latest_ts)

    async def _write(self) -> None:
        if self.transport is not None:
            await self._write_frames()
            return
        # One cancel scope for the writer's life whose deadline is moved
        # before each send, rather than a scope per frame: opening and closing
        # scopes was a large share of the scheduler's time per mutation. The
        # deadline is lifted while the writer waits for frames, so only a
        # send that takes too long trips it.
        stall_s = self.server.send_stall_s
        with trio.CancelScope() as scope:
            async for frame, is_transition in self.outgoing_receive:
                key = "text" if isinstance(frame, str) else "bytes"
                scope.deadline = trio.current_time() + stall_s
                await self.send({"type": "websocket.send", key: frame})
                scope.deadline = math.inf
                if is_transition:
                    self.unsent_transitions -= 1
                    if self.queries.has_update:
                        self._on_update()  # it waited for room
            # The channel was closed by _close: everything queued is written.
            self.nursery.cancel_scope.cancel()
            return
        self._too_slow(f"one message took over {stall_s:g} s to send")

    async def _write_frames(self) -> None:
        """The writer on Eddy's own WebSocket: only frames the kernel did not
        take at once reach it (_queue_frame). Every frame queued by the time
        it wakes goes out in one send, and only a send that waits has a stall
        deadline (SocketWebSocket.send_frames), none set and lifted per frame."""
        transport = self.transport
        stall_s = self.server.send_stall_s
        receive_nowait = self.outgoing_receive.receive_nowait
        async for data, is_transition in self.outgoing_receive:
            frames = [data]
            transitions = 1 if is_transition else 0
            while True:
                try:
                    data, is_transition = receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                frames.append(data)
                if is_transition:
                    transitions += 1
            outcome = await transport.send_frames(frames, stall_s)
            if outcome is not websocket.SENT:
                if outcome is websocket.STALLED:
                    self._too_slow(f"one message took over {stall_s:g} s to send")
                else:  # the peer is gone, as a disconnect
                    self.session.closed = True
                    self.nursery.cancel_scope.cancel()
                return
            self.frames_queued -= len(frames)
            if transitions:
                self.unsent_transitions -= transitions
                if self.queries.has_update:
                    self._on_update()  # it waited for room
        # The channel was closed by _close: everything queued is written.
        self.nursery.cancel_scope.cancel()

    def _on_update(self) -> None:
        """Feeds the core the pending Update while fewer than
        `unsent_transitions_max` Transitions wait to be written.

        Called by the subscription actor's loop after a delivery, and by the
        writer when a Transition is written. Never awaits; never raises (an
        exception here would end the subscription actor): a failure ends
        only this connection.
        """
        # The subscription layer's SessionState directly (`has_update` and
        # `take_update_nowait` read it): this runs per session per change.
        state = self.queries.state
        try:
            while self.unsent_transitions < unsent_transitions_max and state.pending is not None:
                update = state.take_update()
                self._feed(self.session.update_received(update, now_ms=self.now_ms()))
        except Exception:
            self._failed("an Update could not be sent")

    def _failed(self, what: str) -> None:
        """Ends this connection after an unexpected error in a call that must
        not raise (it runs in the subscription actor's loop, the sequencer's
        or the poller's): logged, and the client reconnects."""
        logger.exception("sync session %s (%s): %s", self.session.session_id, self.client, what)
        self.session.close("InternalServerError", core.CLOSE_INTERNAL)
        self._close(core.CLOSE_INTERNAL, f"InternalServerError: {what}")
        self.resume_reading.set()  # the reader task ends with the connection

    async def _ping(self) -> None:
        """Sends Pings when the core says so, and ends a session whose token expired.

        The due time is read lazily: frames sent meanwhile only push the next
        Ping later, so the timer firing early costs one look at the core, and
        nothing wakes this task per frame. Only an earlier due time (a new
        token's expiry) sets `ping_due_changed`.
        """
        while True:
            self.ping_due_changed = trio.Event()
            due_ms = self.session.next_ping_ms()
            if self.expires_at_ms is not None:
                # Checked a little after expiry: the verifier allows for clock skew.
                due_ms = min(due_ms, self.expires_at_ms + expiry_check_delay_ms)
            delay_s = max(0.0, (due_ms - self.now_ms()) / 1000.0)
            with trio.move_on_after(delay_s):
                await self.ping_due_changed.wait()
            if self.expires_at_ms is not None and self.node.auth.is_expired(self.expires_at_ms):
                self.expires_at_ms = None
                self._feed(self.session.token_expired(now_ms=self.now_ms()))
            self._feed(self.session.tick(now_ms=self.now_ms()))

    async def _resolve_token(self, effect: core.ResolveToken) -> None:
        try:
            caller = await self._caller_for(effect)
        except EddyError as error:
            self._feed(self.session.token_rejected(error.message, now_ms=self.now_ms()))
        else:
            self.expires_at_ms = caller.expires_at_ms
            self.ping_due_changed.set()  # the expiry check may be due sooner now
            self._feed(self.session.token_resolved(caller, caller.identity, now_ms=self.now_ms()))

    async def _caller_for(self, effect: core.ResolveToken) -> Caller:
        """The caller a token proves (PROTOCOL.md 12); raises EddyError(UNAUTHENTICATED)."""
        if effect.token_type == "None":
            return ANONYMOUS
        if effect.token_type == "Admin":
            if not _same_key(effect.value or "", self.node.admin_key):
                raise EddyError(ErrorCode.BAD_ADMIN_KEY,
                                "The admin key is not valid for this deployment.")
            identity = None
            if effect.impersonating is not None:
                from actors.auth import identity_from_impersonation
                identity = identity_from_impersonation(effect.impersonating)
            return Caller(admin=True, identity=identity)
        verified = await self.node.auth.verify_token_async(effect.value)
        return Caller(admin=False, identity=verified.identity,
                      expires_at_ms=verified.expires_at_ms)

    async def _run_mutation(self, effect: core.RunMutation) -> None:
        request_id = effect.request_id

        def decided(commit_ts: int | None) -> None:
            # Rule 4: the session's next mutation may start on top of this one.
            self._feed(self.session.mutation_decided(request_id, commit_ts, now_ms=self.now_ms()))

        outcome = await self._mutate(request_id, effect.path, effect.args, effect.caller,
                                     decided)
        if outcome is not None:
            self._feed(self.session.mutation_done(effect.request_id, outcome, now_ms=self.now_ms()))

    def _mutate_now(self, effect: core.RunMutation) -> bool:
        """Runs a mutation the runner can decide at once, with no task of its
        own: answered from `SequencerActor.when_durable` (the runner's
        `mutation_now`). False if it cannot, or if the shell may have an
        answer already (a re-send): nothing happened, and `_run_mutation`
        runs it. What `_mutate` promises holds: run at most once per
        (sessionId, requestId), and finished and recorded even if the
        socket goes (nothing here depends on the connection's tasks)."""
        server = self.server
        request_id = effect.request_id
        key = (self.session.session_id, request_id)
        if key in server.in_flight or server.results.get(*key) is not None or \
                self.node.logged_mutation_result(*key) is not None:
            return False
        caller = effect.caller or ANONYMOUS
        try:
            decided = self.node.runner.mutation_now(effect.path, effect.args,
                                                    identity=caller.identity, admin=caller.admin,
                                                    request=key)
        except (AppError, FunctionCrashed, EddyError) as error:
            try:
                outcome = failed_outcome(error, "mutation", effect.path)
            except CloseConnection as close:
                self._close(close.code, close.reason)
                return True
            self._feed(self.session.mutation_done(request_id, outcome, now_ms=self.now_ms()))
            return True
        if decided is None:
            return False
        server.in_flight[key] = None

        def durable() -> None:
            waiting = server.in_flight.pop(key)
            if waiting is not None:
                waiting.set()
            outcome = core.CallSucceeded(decided.value, decided.durable_ts,
                                         list(decided.log_lines))
            server.results.put(*key, outcome)
            try:
                self._feed(self.session.mutation_done(request_id, outcome, now_ms=self.now_ms()))
            except Exception:
                self._failed("a mutation's answer could not be sent")

        sequencer = self.node.sequencer
        if sequencer.durable_ts >= decided.durable_ts:
            durable()  # wrote nothing, and what it read is durable: the answer is due
            return True
        # Registered first, so that it comes before any answer of a mutation
        # the decision starts (rule 4: the session's next mutation may start
        # on top of this one).
        sequencer.when_durable(decided.durable_ts, durable)
        self._feed(self.session.mutation_decided(request_id, decided.commit_ts,
                                                 now_ms=self.now_ms()))
        return True

    async def _run_batch(self, effect: core.RunMutations) -> None:
        # The items are independent (the client asked for them together), so
        # they run concurrently and share group commits; answers keep order.
        outcomes: list[Any] = [None] * len(effect.items)

        async def one(index: int, request_id: int, path: str, args: dict) -> None:
            outcomes[index] = await self._mutate(request_id, path, args, effect.caller)

        async with trio.open_nursery() as nursery:
            for index, (request_id, path, args) in enumerate(effect.items):
                nursery.start_soon(one, index, request_id, path, args)
        if all(outcome is not None for outcome in outcomes):
            self._feed(self.session.mutations_done(outcomes, now_ms=self.now_ms()))

    async def _mutate(self, request_id: int, path: str, args: dict, caller: Any,
                      on_decided: Any = None) -> core.CallOutcome | None:
        """Runs one mutation at most once per (sessionId, requestId), node-wide.

        Shielded: a mutation whose socket goes away still finishes (within
        its own time limit) and its result is recorded for a re-send.
        Returns None when the connection must close instead (already arranged).
        """
        key = (self.session.session_id, request_id)
        with self._mutation_shield():
            in_flight = self.server.in_flight
            while key in in_flight:
                waiting = in_flight[key]
                if waiting is None:
                    waiting = in_flight[key] = trio.Event()
                await waiting.wait()
            stored = self.server.results.get(*key)
            if stored is not None:
                return stored
            logged = self.node.logged_mutation_result(*key)
            if logged is not None:  # ran before the node restarted
                return core.CallSucceeded(logged[0], logged[1], [])
            in_flight[key] = None
            try:
                outcome = await call_outcome(self.node, "mutation", path, args,
                                             caller or ANONYMOUS, on_decided, key)
            except CloseConnection as error:
                self._close(error.code, error.reason)
                return None
            finally:
                waiting = in_flight.pop(key)
                if waiting is not None:
                    waiting.set()
            if isinstance(outcome, core.CallSucceeded):
                self.server.results.put(*key, outcome)
            return outcome

    def _mutation_shield(self) -> trio.CancelScope:
        """The scope a mutation runs in: shielded from the connection's end.
        (The simulator's subclass also cancels it when the node process dies.)"""
        return trio.CancelScope(shield=True)

    async def _run_action(self, effect: core.RunAction) -> None:
        try:
            outcome = await call_outcome(self.node, "action", effect.path, effect.args,
                                         effect.caller or ANONYMOUS)
        except CloseConnection as error:
            self._close(error.code, error.reason)
            return
        self._feed(self.session.action_done(effect.request_id, outcome, now_ms=self.now_ms()))


def _same_key(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
