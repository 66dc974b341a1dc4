"""Issue 3's ObserveInsert scenario for bench/bench_live.py: insert to
subscribed "last 10 messages" query updated (see bench_live.py's docstring).

The Eddy side writes from the benchmark process; its subscribers live there
too (the default) or in `--subscriber-processes` processes of their own,
their connections dealt round, as bench_ws.py spreads its callers. Both are
honest load generators; on this 2-core machine the separate processes made
the latency worse, not better (docs/performance.md section 6), so the
default keeps one process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import common
from bench_ws import open_clients, open_eddy
from common import Row, Unavailable
from live_common import SUBSCRIBE_S_MAX, Figure, Subscribers, now_ns, percentile

APP_LIVE_DIR = Path(__file__).resolve().parent / "app_live"


def _observe_specs(args, connections: set[int] | None = None) -> list[tuple[int, int, dict]]:
    """(subscription index, connection, args) of every subscription, or of
    those on `connections`: subscription i watches channel i % channels,
    on connection (i // channels) % connections."""
    specs = []
    for i in range(args.subscriptions):
        connection = (i // args.channels) % args.connections
        if connections is None or connection in connections:
            channel = i % args.channels
            specs.append((i, connection, {"channel": channel} if args.shared
                          else {"channel": channel, "viewer": i}))
    return specs


class _Arrivals:
    """What one process's subscribers saw: (sent_ns, received_ns) of each
    message the first time each subscriber saw it (a value holds the last 10
    messages, so an older message may come again)."""

    def __init__(self, count: int) -> None:
        self.pairs: list[tuple[int, int]] = []
        self.last_seen = [0] * count

    def on_value(self, index: int, value) -> None:
        received = now_ns()
        seen = self.last_seen[index]
        newest = seen
        for message in value:
            sent = message["sent_ns"]
            if sent > seen:
                newest = max(newest, sent)
                self.pairs.append((sent, received))
        self.last_seen[index] = newest


async def _hold_subscriptions(clients: list, args, connections: list[int],
                              arrivals: _Arrivals, nursery) -> None:
    """Subscribes the share of `connections` (client k is connection
    connections[k]); returns once every subscription has its first value
    (the subscriptions stay in `nursery`)."""
    slot = {connection: k for k, connection in enumerate(connections)}
    subscribers = Subscribers(clients, arrivals.on_value)
    await subscribers.add_all(nursery, (
        (slot[connection], "live:last_messages", query_args)
        for _, connection, query_args in _observe_specs(args, set(connections))))


def _subscriber_process(url: str, args, connections: list[int], ready, stop, results) -> None:
    """One subscriber process (`--subscriber-processes`): holds the
    subscriptions of `connections` until `stop` is set, then puts its
    arrivals (only subscriptions of this process are indexed) and its CPU
    share of one core."""
    import trio

    async def main():
        arrivals = _Arrivals(args.subscriptions)
        async with open_clients(url, len(connections)) as clients, \
                trio.open_nursery() as nursery:
            await _hold_subscriptions(clients, args, connections, arrivals, nursery)
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            await trio.to_thread.run_sync(ready.wait)
            await trio.to_thread.run_sync(stop.wait)
            load = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
            nursery.cancel_scope.cancel()
        return arrivals.pairs, load, None

    try:
        results.put(trio.run(main))
    except BaseException as error:  # Reported by the parent.
        ready.abort()
        results.put(([], 0.0, f"{type(error).__name__}: {error}"))


def observe_insert_eddy(args, server) -> dict:
    """The Eddy side: subscribers in this process (`--subscriber-processes 0`)
    or spread over that many processes (their connections dealt round), the
    writer always in this process."""
    import multiprocessing

    import trio

    process_count = min(args.subscriber_processes, args.connections)
    local = _Arrivals(args.subscriptions)
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(process_count + 1)
    stop = context.Event()
    results = context.Queue()
    processes = [context.Process(target=_subscriber_process, args=(
        server.url, args, list(range(p, args.connections, process_count)), ready, stop, results))
        for p in range(process_count)]
    for process in processes:
        process.start()
    sent_count = [0]
    window: list[_MonotonicWindow] = []

    async def main() -> None:
        async with open_clients(server.url, args.connections if not process_count else 0) \
                as clients, open_clients(server.url, args.writers) as writers, \
                trio.open_nursery() as nursery:
            if not process_count:
                await _hold_subscriptions(clients, args, list(range(args.connections)), local,
                                          nursery)
            await trio.to_thread.run_sync(ready.wait, SUBSCRIBE_S_MAX)
            # Messages carry CLOCK_MONOTONIC nanoseconds: the window uses it too.
            start = time.monotonic()
            window.append(_MonotonicWindow(start + args.warmup,
                                           start + args.warmup + args.seconds))

            async def send(sequence: int) -> None:
                sent = now_ns()
                # A connection's mutations run one after another (as Convex's),
                # so the inserts go round-robin over --writers connections.
                await writers[sequence % args.writers].mutation("live:send", {
                    "channel": sequence % args.channels, "body": f"message {sequence}",
                    "sent_ns": sent})
                if window[0].measure_start * 1e9 <= sent < window[0].end * 1e9:
                    sent_count[0] += 1

            async with trio.open_nursery() as senders:
                sequence = 0
                while True:
                    due = start + sequence / args.rate
                    if due >= window[0].end:
                        break
                    await trio.sleep_until(trio.current_time() + max(0.0, due - time.monotonic()))
                    senders.start_soon(send, sequence)
                    sequence += 1
            await trio.sleep(1.0)  # Stragglers.
            nursery.cancel_scope.cancel()

    cpu_start, wall_start = server.cpu_s(), time.perf_counter()
    client_start = time.process_time()
    try:
        trio.run(main)
    except BaseException:
        ready.abort()  # subscriber processes still subscribing give up
        raise
    finally:
        stop.set()
    wall = time.perf_counter() - wall_start
    load = (server.cpu_s() - cpu_start) / wall
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()
    failures = [error for _, _, error in outcomes if error]
    if failures:
        raise RuntimeError(f"{failures[0]}; server said: {server.log_tail()}")
    pairs = local.pairs + [pair for arrived, _, _ in outcomes for pair in arrived]
    lo, hi = window[0].measure_start * 1e9, window[0].end * 1e9
    per_insert = args.subscriptions // args.channels
    return {"latencies_ms": [(received - sent) / 1e6 for sent, received in pairs
                             if lo <= sent < hi],
            "inserts": sent_count[0], "expected": sent_count[0] * per_insert,
            "server_load": load,
            "client_loads": [(time.process_time() - client_start) / wall]
            + [share for _, share, _ in outcomes]}


@dataclass
class _MonotonicWindow:
    measure_start: float
    end: float


def observe_insert_postgres(args) -> dict:
    import psycopg

    import postgres

    listener_count = max(1, args.subscriptions // args.channels)
    latencies_ms: list[float] = []
    lock = threading.Lock()
    with postgres.open_postgres(args.dir, quiet=True) as server:
        with psycopg.connect(server.conninfo, autocommit=True) as setup:
            setup.execute("CREATE TABLE messages (id bigserial PRIMARY KEY, channel int NOT NULL,"
                          " body text NOT NULL, sent_ns bigint NOT NULL)")
            setup.execute("CREATE INDEX messages_by_channel ON messages (channel, id)")
        start = time.monotonic() + 2.0  # Listeners connect meanwhile.
        measure_start, end = start + args.warmup, start + args.warmup + args.seconds
        stop = threading.Event()
        listening = threading.Barrier(listener_count + 1)

        def listen() -> None:
            with psycopg.connect(server.conninfo, autocommit=True) as connection:
                for channel in range(args.channels):
                    connection.execute(f"LISTEN ch{channel}")
                listening.wait()
                while not stop.is_set():
                    for notify in connection.notifies(timeout=0.2):
                        received = now_ns()
                        sent = int(notify.payload)
                        if measure_start * 1e9 <= sent < end * 1e9:
                            with lock:
                                latencies_ms.append((received - sent) / 1e6)

        writer_count = args.writers
        sent_counts = [0] * writer_count

        def write(writer: int) -> None:
            with psycopg.connect(server.conninfo, autocommit=True) as connection:
                sequence = writer
                while True:
                    due = start + sequence / args.rate
                    if due >= end:
                        return
                    time.sleep(max(0.0, due - time.monotonic()))
                    sent = now_ns()
                    channel = sequence % args.channels
                    with connection.transaction():
                        connection.execute("INSERT INTO messages (channel, body, sent_ns) "
                                           "VALUES (%s, %s, %s)",
                                           (channel, f"message {sequence}", sent))
                        connection.execute("SELECT pg_notify(%s, %s)", (f"ch{channel}", str(sent)))
                    if measure_start * 1e9 <= sent < end * 1e9:
                        sent_counts[writer] += 1
                    sequence += writer_count

        listeners = [threading.Thread(target=listen, daemon=True) for _ in range(listener_count)]
        for thread in listeners:
            thread.start()
        listening.wait()
        writers = [threading.Thread(target=write, args=(w,)) for w in range(writer_count)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        time.sleep(1.0)
        stop.set()
        for thread in listeners:
            thread.join()
    inserts = sum(sent_counts)
    return {"latencies_ms": latencies_ms, "inserts": inserts,
            "expected": inserts * listener_count, "listeners": listener_count}


def observe_insert(args, scratch: Path) -> None:
    baseline = observe_insert_postgres(args)
    eddy = None
    if not args.skip_eddy:
        try:
            with open_eddy(APP_LIVE_DIR, scratch, "observe-insert",
                           args.profile_server) as server:
                eddy = observe_insert_eddy(args, server)
        except Exception as error:
            eddy = common.eddy_unavailable(error, args.debug)

    def figure(side, fraction):
        if side is None or isinstance(side, Unavailable):
            return side
        if not side["latencies_ms"]:
            return Unavailable("no samples")
        return Figure(percentile(side["latencies_ms"], fraction), "ms")

    rows = []
    for name, fraction, target in (("p50", 0.5, "<= 3 ms"), ("p99", 0.99, "<= 20 ms"),
                                   ("max", 1.0, "-")):
        base, mine = figure(baseline, fraction), figure(eddy, fraction)
        ratio = (f"{mine.value / base.value:.1f}x" if isinstance(base, Figure)
                 and isinstance(mine, Figure) and base.value else "-")
        rows.append(Row(f"insert -> update, {name}", base, mine, target=target,
                        ratio_text=ratio))
    notes = [f"{args.subscriptions:,} subscriptions over {args.channels} channels and "
             f"{args.connections} connections ({'shared' if args.shared else 'distinct'}), "
             f"{args.rate:,} inserts/s for {args.seconds:g} s after {args.warmup:g} s warm-up",
             f"writers: {args.writers} connections (Eddy) / threads (PostgreSQL), round-robin",
             f"baseline: PostgreSQL INSERT + pg_notify in one transaction, "
             f"{baseline['listeners']} listener connections each LISTENing on all "
             f"{args.channels} channels; {len(baseline['latencies_ms']):,} samples of "
             f"{baseline['expected']:,} expected ({baseline['inserts']:,} inserts)"]
    if isinstance(eddy, dict):
        notes.append(f"eddy: {len(eddy['latencies_ms']):,} samples of {eddy['expected']:,} "
                     f"expected ({eddy['inserts']:,} inserts); server CPU "
                     f"{eddy['server_load']:.0%} of one core; benchmark CPU: writer process "
                     + ", ".join(f"{load:.0%}" for load in eddy["client_loads"][:1])
                     + (f", {len(eddy['client_loads']) - 1} subscriber processes "
                        + ", ".join(f"{load:.0%}" for load in eddy["client_loads"][1:])
                        if len(eddy["client_loads"]) > 1 else " (subscribers in it too)"))
    common.print_report("ObserveInsert: insert to subscribed 'last 10 messages' updated",
                        rows, notes)
