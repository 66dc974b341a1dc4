"""The simulated network between simulated clients and the node: message level.

Theory of operation. Each client has one `Link` to the node: its latency
(a base, jitter, and a slow tail), and the faults currently on it (packet
loss, duplication, reordering, a partition, a clog, a slow consumer), all
drawn from the run's seed (`SimWorld.stream("net", ...)`) and timed by trio's
virtual clock. A `SimConnection` over a link is what a WebSocket over TCP is
to the sync protocol: an ordered, reliable stream of frames that can break.
It is built the way TCP builds one, from datagrams that the link may lose,
duplicate, delay and reorder:

- every frame is a datagram with a sequence number; the receiver delivers in
  order, holds frames that overtook a missing one (head-of-line blocking), and
  drops duplicates;
- a lost datagram (dropped by loss, or sent into a partition) is sent again
  after a retransmission timeout that doubles each time; after
  `retransmissions_max` losses in a row the connection breaks, as TCP gives
  up on a peer that stopped answering;
- a clogged link holds every datagram until the clog clears (delayed, not
  lost); a partition drops them;
- the sender may have at most `window_frames` frames that the peer has not
  read yet; past that `send` blocks (flow control), so a slow consumer pushes
  back on the node's writer, which closes it as too slow (wire/sync.py);
- a node process that dies breaks its connections (the kernel resets them);
  a client sees that one latency later.

So faults change *when* frames arrive and whether connections survive; the
protocol sees what it would see over a real socket, and its reconnect logic
(re-sent mutations, restored subscriptions) is what the faults exercise.

One task (`SimNetwork.run`) delivers every datagram: it pops timed events
from a heap ordered by (virtual time, sequence number), so ties are broken by
the order events were scheduled and a run replays exactly.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import math
import random
from typing import Any, Callable

import trio

from sim.timers import Waiter, sleep

# TCP-like retransmission: 200 ms first, doubling; 5 losses in a row (about
# 6 s of silence) break the connection.
rto_s_min = 0.2
retransmissions_max = 5
# Frames a sender may have unread by its peer before `send` blocks.
window_frames = 32
# A connect that gets no answer (a partition) fails after this long.
connect_timeout_s = 3.0

NET_FAULT_KINDS = ("partition", "clog", "packet_loss", "duplication", "reorder",
                   "slow_consumer", "conn_reset")


class ConnectionBroken(Exception):
    """The connection broke (reset, timed out, or its server process died)."""


class ConnectionRefused(Exception):
    """Nothing accepts connections (the node is down), or the connect timed out."""


class ConnectionClosed(Exception):
    """The peer closed the connection with a close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed with code {code}: {reason}")
        self.code = code
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class _CloseFrame:
    code: int
    reason: str


@dataclasses.dataclass
class LinkProfile:
    """A link's healthy behaviour, drawn per link from the seed."""

    latency_s: float  # base one-way latency
    jitter_s: float  # uniform extra
    tail_probability: float  # chance that a datagram takes the slow tail
    tail_s: float  # mean of the slow tail's extra (exponential)
    loss: float  # background loss probability
    duplication: float  # background duplication probability


class Link:
    """The path between one client and the node, and the faults on it.

    Fault fields hold the virtual time until which each fault lasts (0: off),
    so a fault ends by itself; `SimNetwork.heal` clears them all.
    """

    def __init__(self, client_id: int, rng: random.Random) -> None:
        self.client_id = client_id
        self.rng = rng
        self.profile = LinkProfile(
            latency_s=rng.choice([0.0002, 0.001, 0.005, 0.02]),
            jitter_s=rng.choice([0.0, 0.0005, 0.003]),
            tail_probability=rng.choice([0.0, 0.001, 0.01]),
            tail_s=rng.choice([0.02, 0.1, 0.5]),
            loss=rng.choice([0.0, 0.0, 0.001]),
            duplication=rng.choice([0.0, 0.0, 0.001]))
        self.partitioned_until = 0.0
        self.clogged_until = 0.0
        self.loss_until, self.loss = 0.0, 0.0
        self.duplication_until, self.duplication = 0.0, 0.0
        self.reorder_until, self.reorder_s = 0.0, 0.0
        # Slow consumer: the client reads each frame `reader_delay_s` late,
        # or not at all until `frozen_until` (a suspended laptop, a busy tab).
        self.slow_until, self.reader_delay_s = 0.0, 0.0
        self.frozen_until = 0.0
        self.connections: list[SimConnection] = []

    def delay(self, now: float) -> float:
        """One datagram's one-way latency."""
        profile, rng = self.profile, self.rng
        delay = profile.latency_s + rng.uniform(0.0, profile.jitter_s)
        if profile.tail_probability and rng.random() < profile.tail_probability:
            delay += rng.expovariate(1 / profile.tail_s)
        if now < self.reorder_until:
            delay += rng.uniform(0.0, self.reorder_s)
        return delay

    def lost(self, now: float) -> bool:
        if now < self.partitioned_until:
            return True
        loss = self.profile.loss + (self.loss if now < self.loss_until else 0.0)
        return loss > 0.0 and self.rng.random() < loss

    def duplicated(self, now: float) -> bool:
        duplication = self.profile.duplication + (
            self.duplication if now < self.duplication_until else 0.0)
        return duplication > 0.0 and self.rng.random() < duplication

    def heal(self) -> None:
        self.partitioned_until = self.clogged_until = 0.0
        self.loss_until = self.duplication_until = self.reorder_until = 0.0
        self.slow_until = self.frozen_until = 0.0


class _Direction:
    """One direction of a connection: the sender's sequence numbers, the
    receiver's reassembly, and the window between them."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.expected = 0
        self.out_of_order: dict[int, Any] = {}
        self.inbox: collections.deque = collections.deque()
        self.readable = trio.Event()
        self.unread = 0  # sent and not yet read by the receiver
        self.writable = trio.Event()
        self.send_closed = False


class SimConnection:
    """One connection over a link (see the module docstring). Made by
    `SimNetwork.connect`; each side holds an `Endpoint`."""

    def __init__(self, network: SimNetwork, link: Link, number: int) -> None:
        self.network = network
        self.link = link
        self.number = number
        self.to_server = _Direction()
        self.to_client = _Direction()
        self.broken: str | None = None
        self.client = Endpoint(self, self.to_server, self.to_client, is_client=True)
        self.server = Endpoint(self, self.to_client, self.to_server, is_client=False)

    def break_(self, reason: str) -> None:
        """Both sides see the connection broken (their pending reads and sends fail)."""
        if self.broken is not None:
            return
        self.broken = reason
        for direction in (self.to_server, self.to_client):
            direction.readable.set()
            direction.writable.set()
        if self in self.link.connections:
            self.link.connections.remove(self)
        self.network.count("connections broken")
        self.network.trace.event("net_break", self.link.client_id, self.number, reason)


class Endpoint:
    """One side of a SimConnection: `send`, `receive`, `close`, `abort`."""

    def __init__(self, connection: SimConnection, outgoing: _Direction, incoming: _Direction,
                 is_client: bool) -> None:
        self.connection = connection
        self.outgoing = outgoing
        self.incoming = incoming
        self.is_client = is_client

    async def send(self, frame: bytes) -> None:
        """Sends one frame; blocks while the peer has `window_frames` unread.

        Raises:
            ConnectionBroken: the connection broke.
            ConnectionClosed: this side closed it already.
        """
        connection, out = self.connection, self.outgoing
        while True:
            if connection.broken is not None:
                raise ConnectionBroken(connection.broken)
            if out.send_closed:
                raise ConnectionClosed(1000, "closed by this side")
            if out.unread < window_frames:
                break
            out.writable = trio.Event()
            await out.writable.wait()
        self._put(frame)
        await trio.lowlevel.checkpoint()

    def _put(self, frame: Any) -> None:
        out = self.outgoing
        out.unread += 1
        seq = out.next_seq
        out.next_seq += 1
        self.connection.network._transmit(self.connection, out, seq, frame, 0)

    async def receive(self) -> bytes:
        """The next frame, in order.

        Raises:
            ConnectionBroken: the connection broke (frames delivered before
                the break are still returned first).
            ConnectionClosed: the peer closed it.
        """
        connection, incoming = self.connection, self.incoming
        if self.is_client:
            await self._consume_slowly()
        while not incoming.inbox:
            if connection.broken is not None:
                raise ConnectionBroken(connection.broken)
            incoming.readable = trio.Event()
            await incoming.readable.wait()
        frame = incoming.inbox.popleft()
        incoming.unread -= 1
        incoming.writable.set()
        if isinstance(frame, _CloseFrame):
            incoming.inbox.appendleft(frame)  # every later receive sees the close too
            incoming.unread += 1
            raise ConnectionClosed(frame.code, frame.reason)
        return frame

    async def _consume_slowly(self) -> None:
        link = self.connection.link
        # Frozen: re-checked in small steps, so a heal thaws the reader.
        while trio.current_time() < link.frozen_until:
            await sleep(min(0.25, link.frozen_until - trio.current_time()))
        if trio.current_time() < link.slow_until:
            await sleep(link.reader_delay_s)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Sends a close frame after everything already sent; later sends fail."""
        if self.outgoing.send_closed or self.connection.broken is not None:
            return
        self._put(_CloseFrame(code, reason))
        self.outgoing.send_closed = True

    def abort(self, reason: str) -> None:
        """Drops the connection at once (a reset)."""
        self.connection.break_(reason)


class SimNetwork:
    """Links, connections and the delivery task (see the module docstring).

    Fields:
        accept: the node's listener: called with the server Endpoint of each
            new connection, or None while no node listens.
        counts: what happened to datagrams and connections, by kind.
    """

    def __init__(self, world, trace) -> None:
        self.world = world
        self.trace = trace
        self.links: dict[int, Link] = {}
        self.accept: Callable[[Endpoint], None] | None = None
        self.counts: dict[str, int] = {}
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._event_number = 0
        self._wake = Waiter()  # the delivery loop's wait (`run`)
        self._connection_number = 0

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def link(self, client_id: int) -> Link:
        link = self.links.get(client_id)
        if link is None:
            link = self.links[client_id] = Link(client_id, self.world.stream("net", "link", client_id))
        return link

    # ----- connections

    async def connect(self, client_id: int) -> Endpoint:
        """Opens a connection from a client to the node: the client's Endpoint.

        Takes a round trip. Raises ConnectionRefused when no node listens or
        the link is partitioned (after `connect_timeout_s`).
        """
        link = self.link(client_id)
        await sleep(link.delay(trio.current_time()))
        if trio.current_time() < link.partitioned_until:
            await sleep(connect_timeout_s)
            self.count("connects timed out")
            raise ConnectionRefused("connect timed out")
        if self.accept is None:
            await sleep(link.delay(trio.current_time()))
            self.count("connects refused")
            raise ConnectionRefused("connection refused")
        self._connection_number += 1
        connection = SimConnection(self, link, self._connection_number)
        link.connections.append(connection)
        self.accept(connection.server)
        await sleep(link.delay(trio.current_time()))
        if connection.broken is not None:
            raise ConnectionBroken(connection.broken)
        self.count("connections")
        return connection.client

    def break_all(self, reason: str) -> None:
        """Every connection breaks, seen by clients one latency later (the
        node's process died and its kernel reset them)."""
        now = trio.current_time()
        for link in self.links.values():
            for connection in list(link.connections):
                self._schedule(now + link.delay(now), connection.break_, (reason,))

    # ----- faults

    def inject(self, kind: str, rng: random.Random) -> bool:
        """Injects one network fault of `kind` (sim/faults.py calls it)."""
        if not self.links:
            return False
        now = trio.current_time()
        links = [self.links[client_id] for client_id in sorted(self.links)]
        # Sometimes the node itself is cut off: every link at once.
        chosen = links if rng.random() < 0.1 else [rng.choice(links)]
        if kind == "conn_reset":
            live = [c for link in chosen for c in link.connections]
            if not live:
                return False
            rng.choice(live).break_("reset")
            return True
        duration = rng.choice([0.05, 0.2, 1.0, 4.0])
        for link in chosen:
            if kind == "partition":
                link.partitioned_until = max(link.partitioned_until, now + duration)
            elif kind == "clog":
                link.clogged_until = max(link.clogged_until, now + duration)
            elif kind == "packet_loss":
                link.loss_until, link.loss = now + duration, rng.choice([0.05, 0.2, 0.5])
            elif kind == "duplication":
                link.duplication_until, link.duplication = now + duration, rng.choice([0.05, 0.3])
            elif kind == "reorder":
                link.reorder_until, link.reorder_s = now + duration, rng.choice([0.005, 0.05, 0.3])
            elif kind == "slow_consumer":
                if rng.random() < 0.3:
                    link.frozen_until = now + rng.choice([1.0, 4.0, 12.0])
                else:
                    link.slow_until, link.reader_delay_s = now + duration, rng.choice([0.01, 0.1])
            else:
                raise AssertionError(kind)
        return True

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    # ----- datagrams

    def _schedule(self, when: float, callback: Callable, args: tuple) -> None:
        self._event_number += 1
        if not self._heap or when < self._heap[0][0]:
            self._wake.wake()
        heapq.heappush(self._heap, (when, self._event_number, callback, args))

    def _transmit(self, connection: SimConnection, direction: _Direction, seq: int,
                  frame: Any, attempt: int) -> None:
        """Sends datagram `seq` now (attempt 0 is the first send)."""
        if connection.broken is not None:
            return
        link = connection.link
        now = trio.current_time()
        self.count("datagrams")
        if link.lost(now):
            self.count("datagrams lost")
            if attempt >= retransmissions_max:
                self._schedule(now + rto_s_min * 2 ** attempt, connection.break_,
                               ("timed out: peer unreachable",))
            else:
                self._schedule(now + rto_s_min * 2 ** attempt, self._transmit,
                               (connection, direction, seq, frame, attempt + 1))
            return
        leaves = max(now, link.clogged_until)
        self._schedule(leaves + link.delay(now), self._arrive, (connection, direction, seq, frame))
        if link.duplicated(now):
            self.count("datagrams duplicated")
            self._schedule(leaves + link.delay(now), self._arrive,
                           (connection, direction, seq, frame))

    def _arrive(self, connection: SimConnection, direction: _Direction, seq: int,
                frame: Any) -> None:
        if connection.broken is not None:
            return
        if seq < direction.expected or seq in direction.out_of_order:
            self.count("duplicates dropped")
            return
        if seq > direction.expected:
            self.count("datagrams reordered")
        direction.out_of_order[seq] = frame
        while direction.expected in direction.out_of_order:
            direction.inbox.append(direction.out_of_order.pop(direction.expected))
            direction.expected += 1
            direction.readable.set()

    async def run(self) -> None:
        """Delivers datagrams until cancelled."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, callback, args = heapq.heappop(heap)
                callback(*args)
            # Until the next datagram is due, or an earlier one is scheduled.
            await self._wake.wait(heap[0][0] if heap else math.inf)
