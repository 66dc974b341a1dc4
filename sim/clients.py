"""Simulated clients that speak the real sync protocol, and the node's side of it.

Theory of operation. Server side: for each incarnation of the node,
`SimSyncServer` (a `wire.sync.SyncServer`) accepts connections from the
simulated network (sim/net.py) and serves each with the real shell,
`wire.sync.Connection` (here `_SimConnection`), which runs the real sans-I/O
core `wire.session.SyncSession` and carries out its effects against the node
exactly as in production: ModifyQueries on `node.subscriptions` sessions,
RunMutation through the runner with its decided hook, the pump, the pinger,
the ClientTooSlow rules. Only the ends differ: frames come from and go to a
`sim.net.Endpoint` instead of an ASGI WebSocket, the core's clock is the
World's, and a mutation's shield also ends when the node's process dies (a
real process takes its tasks with it). Mutation results (`SyncServer.results`)
live in the server object, so, as in a real process, they do not survive a
crash.

Client side: `ProtocolClient` is a small client state machine, written from
PROTOCOL.md rather than borrowed from wire/client.py so that the two can
disagree: it sends `Connect` (one sessionId for its whole life, the
connection count, the last close reason and `maxObservedTimestamp`), one
`ModifyQuerySet` re-adding every live query, then every mutation not yet
resolved with its original request id, in order. It checks every
Transition's `startVersion` against its own version (PROTOCOL.md 3.2), and
resolves a successful mutation once a Transition at or after its commit ts
arrived (npm's rule), so a resolved mutation is visible in its
subscriptions. Frames are encoded with wire/codecs.py (msgpack for even
client ids, Convex JSON for odd ones) and cross the simulated network, so
the codecs run too. It reconnects with backoff after a broken connection,
a close, a FatalError or 30 s without a frame.

Everything a client receives is recorded in a `SubscriptionLog`, which the
subscription oracle (sim/checkers/subscriptions.py) checks after the run;
the protocol rules a client can check as it goes (start versions, ts never
going back, no FatalError) are recorded there as violations.

`ProtocolSimClient` is a `sim.host.SimClient` whose `call` goes through a
ProtocolClient, so workloads written against `client.call` run over the
protocol unchanged (`info` never happens: the client re-sends until
answered).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

import trio

from engine.errors import EddyError
from wire import codecs, messages as m, sync
from wire.codecs import JSON_STYLE, NATIVE_STYLE, SERVER_NATIVE_STYLE

from sim import bugs
from sim.host import NodeHost, Operation, SimClient
from sim.net import ConnectionBroken, ConnectionClosed, ConnectionRefused, Endpoint, SimNetwork
from sim.timers import sleep

# Reconnect backoff: 100 ms doubling to 2 s (the real clients cap at 15-16 s;
# the liveness phase is 30 s, so the cap is lower here), with jitter.
backoff_s_min = 0.1
backoff_s_max = 2.0
# The Python and Rust clients give up on a silent server after 30 s.
inactivity_s_max = 30.0
# A send that cannot finish in this long closes the client as too slow (the
# production default is 30 s; shorter, so frozen consumers meet the rule).
send_stall_s = 5.0


# ----------------------------------------------------------------- the server

class SimSyncServer(sync.SyncServer):
    """The sync endpoint of one node incarnation (see the module docstring)."""

    def __init__(self, node, world, trace, incarnation: int = 0,
                 log: SubscriptionLog | None = None) -> None:
        super().__init__(lambda: node, send_stall_s=send_stall_s,
                         clock_ms=lambda: world.clock.now_ns() / 1e6, inline_mutations=False)
        self.node = node
        self.pause = world.pause  # the process's pauses (sim/world.py)
        self.incarnation = incarnation
        self.log = log
        self.trace = trace
        self.shields: set[trio.CancelScope] = set()
        self.dead = False
        self.nursery: trio.Nursery | None = None
        bugs.plant_server(getattr(world, "planted_bug", None), self, world)  # sim/bugs.py

    def accept(self, endpoint: Endpoint) -> None:
        self.nursery.start_soon(self._serve, endpoint)

    async def _serve(self, endpoint: Endpoint) -> None:
        connection = _SimConnection(self, self.node, endpoint)
        self.connection_count += 1
        try:
            await connection.run()
        finally:
            self.connection_count -= 1
            endpoint.abort("server connection ended")

    def die(self) -> None:
        """The process died: its mutations stop even where shielded."""
        self.dead = True
        for scope in list(self.shields):
            scope.cancel()


class _SimConnection(sync.Connection):
    """The real shell over a simulated endpoint."""

    def __init__(self, server: SimSyncServer, node, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        super().__init__(server, node, self._asgi_receive, self._asgi_send,
                         client="sim", client_version=None)

    async def _asgi_receive(self) -> dict:
        pause = self.server.pause
        try:
            await pause.wait_running()
            frame = await self.endpoint.receive()
        except (ConnectionBroken, ConnectionClosed):
            return {"type": "websocket.disconnect"}
        await pause.wait_running()  # a frame that came in a pause is read after it
        if isinstance(frame, str):
            return {"type": "websocket.receive", "text": frame}
        return {"type": "websocket.receive", "bytes": frame}

    async def _asgi_send(self, message: dict) -> None:
        await self.server.pause.wait_running()
        if message["type"] == "websocket.close":
            self.endpoint.close(message.get("code", 1000), message.get("reason", ""))
            return
        frame = message.get("bytes")
        if frame is None:
            frame = message["text"]
        try:
            await self.endpoint.send(frame)
        except (ConnectionBroken, ConnectionClosed):
            # The socket is gone: the reader sees the disconnect and ends the session.
            await trio.sleep_forever()

    async def _mutate(self, request_id: int, path: str, args: dict, caller: Any,
                      on_decided: Any = None) -> Any:
        server = self.server
        key = (self.session.session_id, request_id)
        # Whether the shell will run it (rather than answer from its results,
        # or from the log of an earlier incarnation).
        runs = (key not in server.in_flight and server.results.get(*key) is None
                and self.node.logged_mutation_result(*key) is None)
        committed = []

        def decided(ts: int | None) -> None:
            committed.append(ts is not None)
            if on_decided is not None:
                on_decided(ts)
        outcome = await super()._mutate(request_id, path, args, caller, decided)
        # A run that wrote nothing has no effect to repeat (nothing is logged;
        # a re-send after a restart runs it again, and only that answer is
        # seen), so only runs that committed count.
        if runs and any(committed) and server.log is not None and isinstance(outcome, m.CallSucceeded):
            server.log.executions.setdefault(key, []).append((server.incarnation, outcome.ts))
        return outcome

    def _mutation_shield(self) -> trio.CancelScope:
        scope = super()._mutation_shield()
        server = self.server
        if server.dead:
            scope.cancel()
        server.shields.add(scope)
        return _Registered(scope, server.shields)


class _Registered:
    """A cancel scope that leaves `registry` when its block ends."""

    def __init__(self, scope: trio.CancelScope, registry: set) -> None:
        self.scope, self.registry = scope, registry

    def __enter__(self):
        return self.scope.__enter__()

    def __exit__(self, *exc):
        self.registry.discard(self.scope)
        return self.scope.__exit__(*exc)


async def serve_node(host: NodeHost, network: SimNetwork, world, trace,
                     log: SubscriptionLog | None = None) -> None:
    """Listens on the network for each incarnation of the node, until cancelled."""
    while True:
        node = await host.wait_up()
        server = SimSyncServer(node, world, trace, host.incarnation, log)
        try:
            with trio.CancelScope() as scope:
                # Cancelled by the host when this incarnation dies, as its calls are.
                host._calls.add(scope)
                try:
                    async with trio.open_nursery() as nursery:
                        server.nursery = nursery
                        network.accept = server.accept
                        try:
                            await trio.sleep_forever()
                        finally:
                            # Before the nursery waits for its tasks: shielded
                            # mutations die with the process too.
                            network.accept = None
                            server.die()
                finally:
                    host._calls.discard(scope)
        finally:
            network.accept = None
            server.die()
            network.break_all("node process died")
        # Wait for the dead node to be gone before waiting for the next one.
        while host.node is node:
            await sleep(0.001)


# ------------------------------------------------------------ the oracle's log

@dataclasses.dataclass
class Snapshot:
    """What a client held at one version ts: every live query with a result.

    reason: "delivered" (one query's new result), "resolved" (a mutation of
        this client resolved; read-your-writes), "final" (after the heal).
    results: (query id, path, args, ok, value) each; `ok` False: an error
        message in `value`.
    """

    client: int
    connection: int
    reason: str
    ts: int
    results: list[tuple[int, str, dict, bool, Any]]
    request_id: int | None = None
    commit_ts: int | None = None


class SubscriptionLog:
    """Everything protocol clients received that the oracle checks.

    Fields:
        snapshots: see Snapshot.
        violations: rules broken as seen by clients (start version mismatch,
            ts going back, FatalError ...): (client, description).
        final_ts: the node's newest ts once every writer stopped (set by the run).
        executions: (sessionId, requestId) -> (incarnation, commit ts) of each
            time the node ran that mutation to success (a re-send answered
            from MutationResults does not count).
    """

    def __init__(self) -> None:
        self.executions: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self.snapshots: list[Snapshot] = []
        self.violations: list[tuple[int, str]] = []
        self.final_ts: int | None = None
        self.unfinished: list[str] = []
        self.transitions = 0


# ------------------------------------------------------------------ the client

class OneFrame:
    """See ProtocolClient.one_frame."""

    def __init__(self, protocol: "ProtocolClient", count: int) -> None:
        self.protocol = protocol
        self.count = count
        self.items: list[m.Mutation] = []

    async def mutation(self, path: str, args: dict) -> tuple[str, Any, int | None]:
        protocol = self.protocol
        item = m.Mutation(protocol._take_request_id(), path, [args])
        request = protocol.requests[item.request_id] = _Request(item)
        self.items.append(item)
        if len(self.items) == self.count:
            protocol._send(m.MutationBatch(self.items))
        await request.done.wait()
        return request.outcome


@dataclasses.dataclass
class _Request:
    message: Any  # m.Mutation or m.Action
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    outcome: Any = None  # ("ok", value, ts) or ("fail", message, None)
    commit_ts: int | None = None  # answered, waiting for a Transition at or after it


@dataclasses.dataclass
class _Query:
    path: str
    args: dict


class _Reconnect(Exception):
    pass


class ProtocolClient:
    """One simulated client of the sync protocol (see the module docstring).

    Fields:
        queries: the live query set, by query id.
        results: query id -> (ts delivered, ok, value) for the current
            connection (a new connection starts empty, as PROTOCOL.md 3.2 says).
        version: the current StateVersion of this connection.
    """

    def __init__(self, client_id: int, network: SimNetwork, rng: random.Random, trace,
                 log: SubscriptionLog) -> None:
        self.id = client_id
        self.network = network
        self.rng = rng
        self.trace = trace
        self.log = log
        self.style = NATIVE_STYLE if client_id % 2 == 0 else JSON_STYLE
        self.session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.queries: dict[int, _Query] = {}
        self.requests: dict[int, _Request] = {}
        self.committed: dict[int, int] = {}
        self.results: dict[int, tuple[int, bool, Any]] = {}
        self.version = m.INITIAL_VERSION
        self.query_set_version = 0
        self.max_observed_ts: int | None = None
        self.connection_count = 0
        self.last_close_reason = "InitialConnect"
        self.changed = trio.Event()
        self.connected = False
        self._outgoing: trio.MemorySendChannel | None = None
        self._next_request_id = 0
        self._next_query_id = 0
        # Per query id, the ts of its last delivery in this connection.
        self._delivered_ts: dict[int, int] = {}
        # Queries added and not yet answered in this connection: query id ->
        # the query-set version that added it. A Transition reaching that
        # version must carry its result (PROTOCOL.md 3.2).
        self._awaiting: dict[int, int] = {}

    # ----- the API workloads use

    def subscribe(self, path: str, args: dict) -> int:
        query_id = self._next_query_id
        self._next_query_id += 1
        self.queries[query_id] = _Query(path, args)
        self._modify([m.QueryAdd(query_id, path, [args])])
        return query_id

    def unsubscribe(self, query_id: int) -> None:
        del self.queries[query_id]
        self.results.pop(query_id, None)
        self._modify([m.QueryRemove(query_id)])

    async def mutation(self, path: str, args: dict) -> tuple[str, Any, int | None]:
        """Runs a mutation until it resolves: ("ok", value, ts) or ("fail", message, None)."""
        request = self._request(m.Mutation(self._take_request_id(), path, [args]))
        await request.done.wait()
        return request.outcome

    async def action(self, path: str, args: dict) -> tuple[str, Any, int | None]:
        request = self._request(m.Action(self._take_request_id(), path, [args]))
        await request.done.wait()
        return request.outcome

    async def query(self, path: str, args: dict) -> tuple[str, Any, int | None]:
        """A one-shot query: subscribe, take the first result, unsubscribe."""
        query_id = self.subscribe(path, args)
        try:
            while query_id not in self.results:
                await self.changed.wait()
            ts, ok, value = self.results[query_id]
        finally:
            self.unsubscribe(query_id)
        return ("ok" if ok else "fail"), value, ts

    def pending(self) -> int:
        return len(self.requests)

    def one_frame(self, count: int) -> "OneFrame":
        """A stand-in for this client whose next `count` mutations go out
        together as one MutationBatch frame (msgpack only), each answered as
        usual. A batch still unanswered at a reconnect is re-sent one request
        at a time, with the same request ids."""
        return OneFrame(self, count)

    # ----- sending

    def _take_request_id(self) -> int:
        self._next_request_id += 1
        return self._next_request_id - 1

    def _request(self, message: Any) -> _Request:
        request = self.requests[message.request_id] = _Request(message)
        self._send(message)
        return request

    def _modify(self, modifications: list) -> None:
        if self._outgoing is None:
            return  # the reconnect re-adds every live query
        base = self.query_set_version
        self.query_set_version += 1
        for item in modifications:
            if isinstance(item, m.QueryAdd):
                self._awaiting[item.query_id] = base + 1
            else:
                self._awaiting.pop(item.query_id, None)
        self._send(m.ModifyQuerySet(base, base + 1, modifications))

    def _send(self, message: Any) -> None:
        """Queues a message on the live connection (in call order); nothing
        when disconnected: the reconnect burst re-sends what is needed."""
        if self._outgoing is not None:
            self._outgoing.send_nowait(self._encode(message))

    def _encode(self, message: Any) -> bytes | str:
        obj = codecs.encode_client_message(message, self.style)
        if self.style is JSON_STYLE:
            return codecs.dump_json_frame(obj)
        return codecs.dump_msgpack_frame(obj)

    def _decode(self, frame: bytes | str) -> Any:
        if self.style is JSON_STYLE:
            if not isinstance(frame, str):
                raise _Reconnect("a binary frame on a JSON connection")
            return codecs.decode_server_message(codecs.load_json_frame(frame), JSON_STYLE)
        if not isinstance(frame, bytes):
            raise _Reconnect("a text frame on a msgpack connection")
        return codecs.decode_server_message(codecs.load_msgpack_frame(frame), SERVER_NATIVE_STYLE)

    # ----- the connection loop

    async def run(self) -> None:
        """Keeps a connection open, reconnecting with backoff; until cancelled."""
        backoff_s = backoff_s_min
        while True:
            try:
                endpoint = await self.network.connect(self.id)
            except (ConnectionRefused, ConnectionBroken) as error:
                self.last_close_reason = f"{type(error).__name__}: {error}"
            else:
                backoff_s = backoff_s_min
                await self._connected(endpoint)
            await sleep(backoff_s * self.rng.uniform(0.5, 1.0))
            backoff_s = min(backoff_s * 2, backoff_s_max)

    async def _connected(self, endpoint: Endpoint) -> None:
        connection = self.connection_count
        self.trace.event("client_connect", self.id, connection, self.max_observed_ts)
        send_channel, receive_channel = trio.open_memory_channel(float("inf"))
        # The burst (PROTOCOL.md 2.6), queued before anything else can be.
        self.version = m.INITIAL_VERSION
        self.results = {}
        self._delivered_ts = {}
        self._awaiting = {}
        self._outgoing = send_channel
        self._send(m.Connect(self.session_id, self.connection_count, self.last_close_reason,
                             self.max_observed_ts, 0.0))
        self.connection_count += 1
        self.query_set_version = 0
        self._modify([m.QueryAdd(query_id, query.path, [query.args])
                      for query_id, query in self.queries.items()])
        for request_id in sorted(self.requests):
            request = self.requests[request_id]
            if isinstance(request.message, m.Mutation):
                self._send(request.message)  # unanswered, or answered and not yet reflected
            elif request.outcome is None:
                # An action in flight on a lost connection fails (npm's rule).
                self._finish(request_id, ("fail", "Connection lost while action was in flight",
                                          None))
        self.connected = True
        self.first_ts_floor = self.max_observed_ts or 0
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, endpoint, receive_channel)
                try:
                    await self._read(endpoint, connection)
                except (ConnectionBroken, ConnectionClosed, _Reconnect) as error:
                    self.last_close_reason = f"{type(error).__name__}: {error}"
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._outgoing = None
            self.connected = False
            endpoint.close(1000, "client reconnecting")
            self.trace.event("client_disconnect", self.id, connection, self.last_close_reason)

    async def _write(self, endpoint: Endpoint, receive_channel) -> None:
        async for frame in receive_channel:
            try:
                await endpoint.send(frame)
            except (ConnectionBroken, ConnectionClosed):
                return  # the reader sees it too

    async def _read(self, endpoint: Endpoint, connection: int) -> None:
        while True:
            frame = None
            with trio.move_on_after(inactivity_s_max):
                frame = await endpoint.receive()
            if frame is None:
                raise _Reconnect(f"InactiveServer: nothing for {inactivity_s_max:g} s")
            try:
                message = self._decode(frame)
            except EddyError as error:
                self._violation(f"connection {connection}: a frame the codec refused: "
                                f"{error.message}")
                raise _Reconnect("bad frame") from None
            if isinstance(message, m.Transition):
                self._transition(message, connection)
            elif isinstance(message, (m.MutationResponse, m.ActionResponse)):
                self._response(message, connection)
            elif isinstance(message, m.FatalError):
                self._violation(f"connection {connection}: FatalError {message.error!r} sent to a "
                                "client that kept the protocol")
                raise _Reconnect(f"FatalError: {message.error}")
            elif isinstance(message, m.AuthError):
                self._violation(f"connection {connection}: AuthError {message.error!r} without "
                                "any Authenticate")
                raise _Reconnect(f"AuthError: {message.error}")

    def _violation(self, text: str) -> None:
        self.log.violations.append((self.id, text))
        self.trace.event("protocol_violation", self.id, text)

    def _transition(self, transition: m.Transition, connection: int) -> None:
        self.log.transitions += 1
        start, end = transition.start_version, transition.end_version
        if start != self.version:
            self._violation(f"connection {connection}: Transition startVersion {start} but the "
                            f"client is at {self.version} (PROTOCOL.md 3.2)")
            raise _Reconnect("StartVersionMismatch")
        if end.ts < start.ts:
            self._violation(f"connection {connection}: Transition goes back in time from ts "
                            f"{start.ts} to {end.ts}")
        if end.ts < self.first_ts_floor:
            self._violation(f"connection {connection}: Transition at ts {end.ts}, before ts "
                            f"{self.first_ts_floor} that this client had already observed")
        delivered = []
        for item in transition.modifications:
            query_id = item.query_id
            if isinstance(item, m.QueryRemoved):
                self.results.pop(query_id, None)
                continue
            if query_id not in self.queries:
                continue  # removed since; its removal follows
            previous = self._delivered_ts.get(query_id)
            if previous is not None and end.ts <= previous:
                self._violation(f"connection {connection}: query {query_id} "
                                f"({self.queries[query_id].path}) got a result at ts {end.ts} "
                                f"after one at ts {previous}")
            self._delivered_ts[query_id] = end.ts
            if isinstance(item, m.QueryUpdated):
                self.results[query_id] = (end.ts, True, item.value)
            else:
                self.results[query_id] = (end.ts, False, item.error_message)
            delivered.append(query_id)
        for query_id, added_in in list(self._awaiting.items()):
            if query_id in self.results:
                del self._awaiting[query_id]
            elif added_in <= end.query_set:
                del self._awaiting[query_id]
                self._violation(f"connection {connection}: query {query_id} "
                                f"({self.queries[query_id].path}) was added in query-set version "
                                f"{added_in}, but the Transition to version {end.query_set} "
                                "carried no result for it")
        self.version = end
        self.max_observed_ts = max(self.max_observed_ts or 0, end.ts)
        self.trace.event("transition", self.id, connection, end.query_set, end.ts,
                         [(qid, self.results[qid][2]) for qid in delivered])
        if delivered:
            self.log.snapshots.append(Snapshot(
                self.id, connection, "delivered", end.ts,
                [(qid, self.queries[qid].path, self.queries[qid].args, *self.results[qid][1:])
                 for qid in delivered]))
        for request_id, commit_ts in list(self.committed.items()):
            if commit_ts <= end.ts:
                self._resolve_committed(request_id, connection)
        self.changed.set()
        self.changed = trio.Event()

    def _snapshot(self, connection: int, reason: str, **extra) -> None:
        held = [(qid, query.path, query.args, *self.results[qid][1:])
                for qid, query in sorted(self.queries.items()) if qid in self.results]
        self.log.snapshots.append(Snapshot(self.id, connection, reason, self.version.ts, held,
                                           **extra))

    def _resolve_committed(self, request_id: int, connection: int) -> None:
        request = self.requests[request_id]
        self._snapshot(connection, "resolved", request_id=request_id, commit_ts=request.commit_ts)
        self._finish(request_id, request.outcome)

    def _response(self, response: Any, connection: int) -> None:
        request = self.requests.get(response.request_id)
        if request is None or request.outcome is not None:
            return  # a repeated answer to a re-sent mutation
        if not response.success:
            self._finish(response.request_id, ("fail", str(response.result), None))
        elif isinstance(response, m.ActionResponse):
            self._finish(response.request_id, ("ok", response.result, None))
        else:
            request.outcome = ("ok", response.result, response.ts)
            request.commit_ts = response.ts
            self.max_observed_ts = max(self.max_observed_ts or 0, response.ts)
            if response.ts <= self.version.ts:
                self._resolve_committed(response.request_id, connection)
            else:
                self.committed[response.request_id] = response.ts

    def _finish(self, request_id: int, outcome: Any) -> None:
        request = self.requests.pop(request_id)
        self.committed.pop(request_id, None)
        request.outcome = outcome
        request.done.set()

    async def final_snapshot(self, barrier_path: str) -> None:
        """After the heal: a mutation that writes nothing (`barrier_path`)
        brings this client to a ts at or after every write (its Transition
        must follow), then the results it holds are recorded for the oracle."""
        await self.mutation(barrier_path, {})
        while not self.connected or any(qid not in self.results for qid in self.queries):
            await self.changed.wait()
        self._snapshot(self.connection_count - 1, "final")


class ProtocolSimClient(SimClient):
    """A SimClient whose calls go over the sync protocol (module docstring)."""

    def __init__(self, client_id: int, host: NodeHost, rng: random.Random, history: list,
                 trace, protocol: ProtocolClient) -> None:
        super().__init__(client_id, host, rng, history, trace)
        self.protocol = protocol

    async def call(self, kind: str, path: str, args: Any) -> Operation:
        self.call_count += 1
        operation = Operation(self.id, self.call_count, kind, path, args, trio.current_time())
        self.history.append(operation)
        self.trace.event("invoke", self.id, self.call_count, path, args)
        if kind == "mutation":
            status, value, ts = await self.protocol.mutation(path, args)
        elif kind == "action":
            status, value, ts = await self.protocol.action(path, args)
        else:
            status, value, ts = await self.protocol.query(path, args)
        operation.status = status
        if status == "ok":
            operation.value, operation.ts = value, ts
        else:
            operation.error = value
        operation.complete_s = trio.current_time()
        self.trace.event("complete", self.id, self.call_count, operation.status,
                         operation.value, operation.ts, operation.error)
        return operation


class ProtocolStack:
    """The network, the node's sync endpoint and the protocol clients of one run.

    sim/run.py makes one when a workload's clients speak the protocol: it
    `start`s it in the run's nursery, makes clients with `client`, calls
    `finish` once every writer stopped, and adds `check`'s verdicts.
    """

    def __init__(self, world, host: NodeHost, trace, barrier_path: str = "hot:noop") -> None:
        self.world = world
        self.host = host
        self.trace = trace
        self.network = SimNetwork(world, trace)
        self.log = SubscriptionLog()
        self.barrier_path = barrier_path
        self.clients: list[ProtocolClient] = []
        self.protocol_ids: set[int] = set()
        self._scope = trio.CancelScope()

    @classmethod
    def for_run(cls, workloads: list, client_count: int, world, host: NodeHost,
                trace) -> ProtocolStack | None:
        """A stack if some client's workload (client n runs workload n mod
        len(workloads)) speaks the protocol, else None."""
        ids = set()
        for n in range(client_count):
            speaks = getattr(workloads[n % len(workloads)], "protocol", False)
            # "some": every other client of that workload.
            if speaks is True or (speaks == "some" and (n // len(workloads)) % 2 == 1):
                ids.add(n)
        if not ids:
            return None
        # The mutation that writes nothing, for the final barrier: the
        # reference app's, unless a protocol workload names its own.
        barrier = next((w.barrier_path for w in workloads if hasattr(w, "barrier_path")),
                       "hot:noop")
        stack = cls(world, host, trace, barrier)
        stack.protocol_ids = ids
        return stack

    def speaks(self, client_id: int) -> bool:
        return client_id in self.protocol_ids

    def stop(self) -> None:
        self._scope.cancel()

    def client(self, client_id: int, rng: random.Random, history: list) -> ProtocolSimClient:
        protocol = ProtocolClient(client_id, self.network, self.world.stream("protocol", client_id),
                                  self.trace, self.log)
        self.clients.append(protocol)
        self.network.link(client_id)
        return ProtocolSimClient(client_id, self.host, rng, history, self.trace, protocol)

    async def run(self) -> None:
        """The network, the node's endpoint and every client's connection, until `stop`."""
        with self._scope:
            await self._run()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.network.run)
            nursery.start_soon(serve_node, self.host, self.network, self.world, self.trace,
                               self.log)
            for protocol in self.clients:
                nursery.start_soon(protocol.run)

    async def finish(self, deadline_s: float) -> None:
        """Brings every client to the final ts (the faults healed and every
        writer stopped), by virtual time `deadline_s`."""
        node = await self.host.wait_up()
        self.log.final_ts = node.sequencer.durable_ts
        done: set[int] = set()

        async def one(protocol: ProtocolClient) -> None:
            await protocol.final_snapshot(self.barrier_path)
            done.add(protocol.id)

        with trio.move_on_at(deadline_s):
            async with trio.open_nursery() as nursery:
                for protocol in self.clients:
                    nursery.start_soon(one, protocol)
        for protocol in self.clients:
            if protocol.id not in done:
                self.log.unfinished.append(
                    f"client {protocol.id} did not reach the final ts {self.log.final_ts} in time "
                    f"(connected: {protocol.connected}, at ts {protocol.version.ts}, "
                    f"{protocol.pending()} requests unanswered)")
        self.trace.event("protocol_final", self.log.final_ts, sorted(done))

    def questions(self) -> list:
        """What the subscription oracle asks the reference (see `check`)."""
        from sim.checkers import subscriptions
        return subscriptions.questions(self.log)

    async def check(self, answers) -> list:
        """The subscription oracle; `answers` (sim/checkers/reference.py)
        holds the reference's answer to each of `questions()`."""
        from sim.checkers import subscriptions

        async def answer(path: str, args: dict, ts: int):
            return answers.of(path, args, ts)
        return await subscriptions.check(self.log, answer,
                                         [protocol.id for protocol in self.clients])
