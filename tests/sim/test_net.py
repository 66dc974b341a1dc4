"""The simulated network (sim/net.py): an ordered, reliable stream over a link
that loses, duplicates and reorders datagrams; partitions that break
connections; clogs that delay; flow control that blocks a sender; replay."""

from __future__ import annotations

import pytest
import trio

from sim import net
from sim.net import ConnectionBroken, ConnectionClosed, ConnectionRefused, SimNetwork
from sim.trace import Trace
from sim.world import SimWorld, run_simulated


def _simulate(body, seed: int = 1):
    """Runs `body(network)` with a network whose node accepts into a list."""
    async def main():
        network = SimNetwork(SimWorld(seed), Trace())
        accepted = []
        network.accept = accepted.append
        async with trio.open_nursery() as nursery:
            nursery.start_soon(network.run)
            result = await body(network, accepted)
            nursery.cancel_scope.cancel()
        return result, network
    return run_simulated(main, seed)


async def _echo_count(network, accepted, frames: int, fault=None):
    client = await network.connect(0)
    server = accepted[0]
    if fault:
        fault(network.link(0), trio.current_time())
    received = []

    async def read():
        for _ in range(frames):
            received.append(await server.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        for n in range(frames):
            await client.send(n.to_bytes(4, "big"))
    return [int.from_bytes(frame, "big") for frame in received]


def test_frames_arrive_in_order_despite_loss_duplication_and_reordering():
    def fault(link, now):
        link.loss_until, link.loss = now + 100, 0.3
        link.duplication_until, link.duplication = now + 100, 0.3
        link.reorder_until, link.reorder_s = now + 100, 0.05

    received, network = _simulate(lambda n, a: _echo_count(n, a, 300, fault))
    assert received == list(range(300))
    for kind in ("datagrams lost", "datagrams duplicated", "datagrams reordered",
                 "duplicates dropped"):
        assert network.counts.get(kind, 0) > 0, kind


def test_a_clog_delays_frames_without_losing_them():
    async def body(network, accepted):
        client = await network.connect(0)
        network.link(0).clogged_until = trio.current_time() + 2.0
        sent = trio.current_time()
        await client.send(b"x")
        assert await accepted[0].receive() == b"x"
        return trio.current_time() - sent

    waited, network = _simulate(body)
    assert waited >= 2.0
    assert network.counts.get("datagrams lost", 0) == 0


def test_a_long_partition_breaks_the_connection_on_both_sides():
    async def body(network, accepted):
        client = await network.connect(0)
        network.link(0).partitioned_until = trio.current_time() + 60.0
        await client.send(b"lost")
        with pytest.raises(ConnectionBroken):
            await accepted[0].receive()
        with pytest.raises(ConnectionBroken):
            await client.receive()
        # Connecting into the partition times out.
        with pytest.raises(ConnectionRefused):
            await network.connect(0)
        return trio.current_time()

    broken_at, _ = _simulate(body)
    # About 6 s of retransmissions, then the connect timeout.
    assert 5.0 < broken_at < 5.0 + 2 * net.rto_s_min * 2 ** net.retransmissions_max


def test_a_short_partition_is_survived_by_retransmission():
    async def body(network, accepted):
        client = await network.connect(0)
        network.link(0).partitioned_until = trio.current_time() + 0.5
        await client.send(b"late")
        return await accepted[0].receive()

    frame, network = _simulate(body)
    assert frame == b"late"
    assert network.counts["datagrams lost"] >= 1


def test_no_listener_refuses_connections():
    async def body(network, accepted):
        network.accept = None
        with pytest.raises(ConnectionRefused):
            await network.connect(0)
    _simulate(body)


def test_a_sender_blocks_when_its_peer_does_not_read():
    async def body(network, accepted):
        client = await network.connect(0)
        sent = 0
        with trio.move_on_after(5.0):
            while True:
                await client.send(b"f")
                sent += 1
        assert sent == net.window_frames
        await accepted[0].receive()
        with trio.fail_after(1.0):
            await client.send(b"one more")
    _simulate(body)


def test_a_frozen_consumer_reads_nothing_until_it_thaws_or_heals():
    async def body(network, accepted):
        client = await network.connect(0)
        await accepted[0].send(b"hello")
        link = network.link(0)
        link.frozen_until = trio.current_time() + 100.0
        start = trio.current_time()

        async def heal_later():
            await trio.sleep(3.0)
            network.heal()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(heal_later)
            assert await client.receive() == b"hello"
        return trio.current_time() - start

    waited, _ = _simulate(body)
    assert 3.0 <= waited < 3.5


def test_close_is_ordered_after_the_frames_before_it():
    async def body(network, accepted):
        client = await network.connect(0)
        server = accepted[0]
        await server.send(b"last words")
        server.close(1013, "ClientTooSlow")
        assert await client.receive() == b"last words"
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
        assert closed.value.code == 1013
        with pytest.raises(ConnectionClosed):
            await server.send(b"after close")
    _simulate(body)


def test_a_dead_node_breaks_every_connection():
    async def body(network, accepted):
        clients = [await network.connect(n) for n in range(3)]
        network.break_all("node process died")
        for client in clients:
            with pytest.raises(ConnectionBroken):
                await client.receive()
    _simulate(body)


def test_the_same_seed_delivers_the_same_way():
    def fault(link, now):
        link.loss_until, link.loss = now + 100, 0.2
        link.reorder_until, link.reorder_s = now + 100, 0.05

    def once(seed):
        async def body(network, accepted):
            await _echo_count(network, accepted, 100, fault)
            return trio.current_time()
        finished, network = _simulate(body, seed)
        return finished, sorted(network.counts.items())

    assert once(7) == once(7)
    assert once(7) != once(8)
