"""Live queries (issue 3): latency, precision, incremental cost and fan-out.

Every scenario starts a fresh `eddy dev bench/app_live` as a real process
and drives it with Eddy's Python client (`from wire import connect`, msgpack)
from this process. Server CPU: many-intersections and incremental read each
thread's time on a CPU from /proc/<pid>/task/*/schedstat (nanoseconds;
live_common.ThreadCpu) per write or change and print the mean with a 95%
confidence interval; fan-out and observe-insert read /proc/<pid>/stat
(utime + stime, all threads, 10 ms ticks). Each prints `workload | baseline
| eddy | ratio | target` with its baseline measured in the same run.

Scenarios (`--scenario`, default all):

- observe-insert (Convex's ObserveInsert): `--subscriptions` (1,000) live
  "last 10 messages in a channel" queries over `--channels` (100) channels
  and `--connections` (4) connections, each subscription distinct (a
  `viewer` argument; `--shared` drops it); a writer on its own connection
  sends `--rate` (1,000) inserts/s open-loop, round-robin over the channels
  and over `--writers` (16) connections (one connection's mutations run one
  after another, as in Convex), each carrying its send time (CLOCK_MONOTONIC). Latency: insert sent ->
  the new message seen in a subscriber's value, one sample per subscriber of
  the written channel. The subscribers run in the benchmark process beside
  the writer, or spread over `--subscriber-processes` processes of their own
  (bench/live_observe.py). Baseline: PostgreSQL INSERT + pg_notify in one
  transaction (`--writers` threads), 10 listener connections LISTENing on
  every channel (1,000 LISTEN registrations, 10 notified per insert),
  latency insert sent -> notification received.
  Targets: p50 <= 3 ms, p99 <= 20 ms.
- many-intersections (Convex's ManyIntersections): `--ranges` (20,000)
  subscriptions on distinct ranges [10 i, 10 i + 10) of the `by_k` index,
  then `--writes` (100) writes of 100 documents each, every write inside 10
  of the ranges. Server CPU per write with the subscriptions vs the same
  writes before any subscription existed; the subscriptions whose values
  changed (counted by what the clients receive) vs those the writes touch.
  An embedded node (open_node) repeats one write and reads
  `node.subscriptions.statistics().evaluation_count`, which counts
  re-evaluations that changed nothing too. Target: <= 1.5x CPU, no
  untouched subscription re-evaluated.
- incremental: "top 10 by score" over `--rows` (100,000) rows,
  `--top-subscriptions` (100) distinct subscriptions, `--changes` (200)
  pairs of score changes taking turns: the top player's (every
  subscription's result changes) and a bystander's far below the top 10
  (none changes). Server CPU per affected subscription per change (CPU of
  the top player's change less that of the bystander's right after it,
  pair by pair, divided by the subscriptions) vs re-running the query from
  scratch (server CPU per `POST /api/query` of the query, less that of a
  query that reads nothing, also taking turns). Target >= 50x lower.
- fan-out: one document read by `--fanout` (10,000) distinct subscriptions
  over 100 connections; time from sending the write to the last
  subscription holding the new value, over `--fanout-writes` (5) writes
  (median, max). Also with the subscriptions identical (shared: evaluated
  once). Baseline: PostgreSQL, 100 connections LISTENing; on the
  notification each re-reads the row once per subscription it stands for
  (100), so 10,000 re-reads; time from sending UPDATE + NOTIFY to the last
  re-read. Target <= 500 ms.

Usage:
    python bench/bench_live.py                       # every scenario, defaults
    python bench/bench_live.py --scenario observe-insert --seconds 10
    python bench/bench_live.py --scenario many-intersections --ranges 20000
    python bench/bench_live.py --scenario incremental --rows 100000
    python bench/bench_live.py --scenario fan-out --fanout 10000
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_ws import add_common_arguments, open_clients, open_eddy, process_cpu_s  # noqa: E402
from common import Row, Unavailable  # noqa: E402
from live_common import (SUBSCRIBE_S_MAX, Figure, Subscribers, ThreadCpu,  # noqa: E402
                         http_query_cpu_s, mean_interval, now_ns, ratio_interval)
from live_observe import observe_insert  # noqa: E402

APP_LIVE_DIR = Path(__file__).resolve().parent / "app_live"
SCENARIOS = ["observe-insert", "many-intersections", "incremental", "fan-out"]
UPDATE_S_MAX = 60  # How long a write's updates may take before the run gives up.
SETTLE_S = 0.3  # Quiet time after a write's expected updates, to catch stray ones.
EMBEDDED_WRITES = 50  # many-intersections: writes timed in the embedded node's actor
CHANGE_SETTLE_S = 0.005  # incremental: quiet after each change, its last frames written.
CHANGE_WARMUP_PAIRS = 10  # incremental: pairs of changes run first and not kept
RANGE_WIDTH = 10  # many-intersections: keys per subscribed range
WRITE_DOCUMENTS_COUNT = 100  # many-intersections: documents per write
SEED_BATCH_COUNT = 1000  # incremental: rows inserted per seeding mutation
SCORE_MAX = 1_000_000_000  # incremental: seeded scores are below this


# ---------------------------------------------------------------------------
# many-intersections


def range_args(i: int) -> dict:
    return {"lo": i * RANGE_WIDTH, "hi": (i + 1) * RANGE_WIDTH}


def write_keys(args, write: int) -> list[int]:
    """The 100 keys of write `write`: inside 10 consecutive ranges, spread over
    the whole subscribed key space so that every write touches fresh ranges."""
    ranges_per_write = WRITE_DOCUMENTS_COUNT // RANGE_WIDTH
    stride = max(ranges_per_write, args.ranges // max(1, args.writes))
    first_range = (write * stride) % max(1, args.ranges - ranges_per_write)
    first_key = first_range * RANGE_WIDTH
    return list(range(first_key, first_key + WRITE_DOCUMENTS_COUNT))


def touched_ranges(keys: list[int]) -> set[int]:
    return {k // RANGE_WIDTH for k in keys}


def many_intersections_eddy(args, server) -> dict:
    import trio

    from wire import connect

    update_counts = [0] * args.ranges
    changed: set[int] = set()

    def on_value(index: int, value) -> None:
        update_counts[index] += 1
        if update_counts[index] > 1:
            changed.add(index)

    server_cpu = ThreadCpu(server.pid, process_cpu_s)

    async def timed_writes(writer, keys_of, wait_for=None) -> list[float]:
        """Server CPU seconds per write (write, expected updates, settle)."""
        cpu = []
        for write in range(args.writes):
            keys = keys_of(write)
            before = server_cpu.seconds()
            await writer.mutation("live:insert_points", {"keys": keys})
            if wait_for is not None:
                with trio.fail_after(UPDATE_S_MAX):
                    while not wait_for(keys):
                        await trio.sleep(0.005)
            await trio.sleep(SETTLE_S)
            cpu.append(server_cpu.seconds() - before)
        return cpu

    async def main() -> dict:
        connection_count = max(1, args.ranges // 1000)
        async with connect(server.url) as writer:
            # Without subscriptions: the same writes, far outside the ranges
            # the subscriptions will read (they are empty now anyway).
            offset = (args.ranges + 10) * RANGE_WIDTH
            cpu_without = await timed_writes(
                writer, lambda w: [k + offset for k in write_keys(args, w)])
            async with open_clients(server.url, connection_count) as clients, \
                    trio.open_nursery() as nursery:
                started = time.perf_counter()
                subscribers = Subscribers(clients, on_value)
                await subscribers.add_all(nursery, (
                    (i % connection_count, "live:point_range", range_args(i))
                    for i in range(args.ranges)))
                subscribe_s = time.perf_counter() - started
                await trio.sleep(1.0)
                expected: set[int] = set()

                def arrived(keys: list[int]) -> bool:
                    return touched_ranges(keys) <= changed

                def keys_of(write: int) -> list[int]:
                    keys = write_keys(args, write)
                    expected.update(touched_ranges(keys))
                    return keys

                cpu_with = await timed_writes(writer, keys_of, arrived)
                nursery.cancel_scope.cancel()
        return {"cpu_without": cpu_without, "cpu_with": cpu_with, "changed": set(changed),
                "expected": expected, "subscribe_s": subscribe_s,
                "connections": connection_count, "resolution": server_cpu.resolution}

    return trio.run(main)


def many_intersections_statistics(args, scratch: Path) -> dict:
    """One write on an embedded node holding the same subscriptions; the
    re-evaluations that `statistics()` counts. Then `EMBEDDED_WRITES` more,
    timing the subscription actor's own steps (bench_views.ActorClock:
    thread CPU of the stab, view maintenance, evaluation and delivery)."""
    import trio
    from bench_views import ActorClock

    open_node = common.load_open_node()

    async def main() -> dict:
        async with open_node(str(APP_LIVE_DIR), str(scratch / "embedded")) as node:
            # Create the table first, as the client run's early writes do: a
            # query of a missing table reads its name, which creating it writes.
            await node.mutation("live:insert_points", {"keys": [-1]})
            hub = node.subscriptions
            session = hub.open_session()
            session.modify(adds=[(i, "live:point_range", range_args(i), None)
                                 for i in range(args.ranges)])
            with trio.fail_after(SUBSCRIBE_S_MAX):
                await session.wait_update()
            before = hub.statistics()
            keys = write_keys(args, 0)
            await node.mutation("live:insert_points", {"keys": keys})
            with trio.fail_after(UPDATE_S_MAX):
                update = await session.wait_update()
            after = hub.statistics()
            clock = ActorClock(hub.actors[0])  # the node's one subscription actor
            for write in range(1, 1 + EMBEDDED_WRITES):
                await node.mutation("live:insert_points", {"keys": write_keys(args, write)})
                with trio.fail_after(UPDATE_S_MAX):
                    await session.wait_update()
            session.close()
            return {"evaluations": after.evaluation_count - before.evaluation_count,
                    "hits": after.hit_count - before.hit_count,
                    "changed": len(update.results), "touched": len(touched_ranges(keys)),
                    "actor_us": 1e6 * clock.seconds / EMBEDDED_WRITES}

    return trio.run(main)


def many_intersections(args, scratch: Path) -> None:
    if args.skip_eddy:
        print("many-intersections: the baseline is Eddy without subscriptions; skipped")
        return
    notes = [f"{args.ranges:,} subscriptions on distinct ranges of {RANGE_WIDTH} keys; "
             f"{args.writes} writes of {WRITE_DOCUMENTS_COUNT} documents, each inside "
             f"{WRITE_DOCUMENTS_COUNT // RANGE_WIDTH} ranges; CPU per write includes "
             f"{SETTLE_S * 1000:.0f} ms of quiet after it (both columns)"]
    try:
        with open_eddy(APP_LIVE_DIR, scratch, "many-intersections",
                       args.profile_server) as server:
            measured = many_intersections_eddy(args, server)
        embedded = many_intersections_statistics(args, scratch)
    except Exception as error:
        unavailable = common.eddy_unavailable(error, args.debug)
        common.print_report("ManyIntersections", [Row("CPU per write", unavailable,
                                                      unavailable)])
        return
    without_ms, without_half = (1000 * x for x in mean_interval(measured["cpu_without"]))
    with_ms, with_half = (1000 * x for x in mean_interval(measured["cpu_with"]))
    ratio_low, ratio_high = ratio_interval((with_ms, with_half), (without_ms, without_half))
    untouched = measured["changed"] - measured["expected"]
    missed = measured["expected"] - measured["changed"]
    rows = [
        Row("server CPU per 100-doc write", Figure(without_ms, "ms", 2),
            Figure(with_ms, "ms", 2), target="<= 1.50x",
            ratio_text=f"{with_ms / without_ms:.2f}x" if without_ms else "-"),
        Row("subscriptions updated (clients)", Figure(len(measured["expected"]), ""),
            Figure(len(measured["changed"]), ""), target="= touched",
            ratio_text=f"{len(untouched)} untouched, {len(missed)} missed"),
        Row("re-evaluated per write (statistics())", Figure(embedded["touched"], ""),
            Figure(embedded["evaluations"], ""), target="= touched",
            ratio_text=f"{embedded['evaluations'] - embedded['touched']:+d} vs touched"),
    ]
    notes += [
        "baseline column: the same writes before any subscription existed (CPU), "
        "the subscriptions the writes touch (counts)",
        f"server CPU read at {measured['resolution']} resolution; mean per write with a 95% "
        f"confidence interval: without {without_ms:.2f} +- {without_half:.2f} ms, with "
        f"{with_ms:.2f} +- {with_half:.2f} ms; ratio {ratio_low:.2f}x to {ratio_high:.2f}x",
        f"per-write CPU samples (ms), without: "
        f"{', '.join(f'{1000 * c:.1f}' for c in measured['cpu_without'])}",
        f"per-write CPU samples (ms), with: "
        f"{', '.join(f'{1000 * c:.1f}' for c in measured['cpu_with'])}",
        f"eddy: subscribing took {measured['subscribe_s']:.1f} s over "
        f"{measured['connections']} connections",
        f"statistics(): an embedded node (open_node) with the same {args.ranges:,} "
        f"subscriptions in one session, one write: evaluation_count rose by "
        f"{embedded['evaluations']}, hit_count by {embedded['hits']}, the Update held "
        f"{embedded['changed']} changed queries; over {EMBEDDED_WRITES} more writes its "
        f"subscription actor spent {embedded['actor_us']:.0f} us of thread CPU per write in "
        f"its own steps (stab, views, fast results, deliveries; no Transitions there)",
    ]
    common.print_report("ManyIntersections: one 100-document write under many subscriptions",
                        rows, notes)


# ---------------------------------------------------------------------------
# incremental


def incremental_eddy(args, server) -> dict:
    """Server CPU of score changes, in pairs taking turns: a change of the top
    player (with the subscriptions: every subscription's result changes) and
    one of a bystander far below the top 10 (no subscription's result
    changes, no read set holds its keys), first before any subscription
    exists, then with them. Each change is one sample, taken alone."""
    import trio

    from wire import connect

    latest: dict[int, int] = {}  # subscription -> top score it last saw

    def on_value(index: int, value) -> None:
        latest[index] = value[0]["score"] if value else -1

    server_cpu = ThreadCpu(server.pid, process_cpu_s)

    async def change(writer, player, score: int, wait_all: bool) -> float:
        """Server CPU seconds of one change, its updates delivered."""
        before = server_cpu.seconds()
        await writer.mutation("live:set_score", {"player": player, "score": score})
        if wait_all:
            with trio.fail_after(UPDATE_S_MAX):
                while sum(1 for s in latest.values() if s == score) < args.top_subscriptions:
                    await trio.sleep(0.001)
        # Then until the server is quiet (its last frames written), so each
        # sample holds the whole of its change and nothing of the next.
        await trio.sleep(CHANGE_SETTLE_S)
        return server_cpu.seconds() - before

    async def pairs(writer, top, bystander, first_score: int, count: int,
                    subscribed: bool) -> tuple[list[float], list[float]]:
        """`count` pairs of changes (top player, bystander), after
        CHANGE_WARMUP_PAIRS pairs not kept."""
        tops, bystanders = [], []
        for pair in range(CHANGE_WARMUP_PAIRS + count):
            # The top player stays on top (every seeded score is below
            # SCORE_MAX), the bystander far below the tenth (pair < SCORE_MAX).
            top_cpu = await change(writer, top, first_score + pair, subscribed)
            bystander_cpu = await change(writer, bystander, pair, False)
            if pair >= CHANGE_WARMUP_PAIRS:
                tops.append(top_cpu)
                bystanders.append(bystander_cpu)
        return tops, bystanders

    async def main() -> dict:
        measured = {}
        async with connect(server.url) as writer:
            started = time.perf_counter()
            seeded = 0
            while seeded < args.rows:
                count = min(SEED_BATCH_COUNT, args.rows - seeded)
                await writer.mutation("live:seed_scores", {"first": seeded, "count": count,
                                                           "score_max": SCORE_MAX})
                seeded += count
            measured["seed_s"] = time.perf_counter() - started
            top = await writer.query("live:top_scores", {})
            player, bystander = top[0]["_id"], top[-1]["_id"]  # the bystander leaves at once
            measured["alone"], measured["alone_bystander"] = await pairs(
                writer, player, bystander, SCORE_MAX, args.changes, subscribed=False)
            connection_count = max(1, min(10, args.top_subscriptions))
            async with open_clients(server.url, connection_count) as clients, \
                    trio.open_nursery() as nursery:
                subscribers = Subscribers(clients, on_value)
                await subscribers.add_all(nursery, (
                    (i % connection_count, "live:top_scores", {"viewer": i})
                    for i in range(args.top_subscriptions)))
                await trio.sleep(1.0)
                measured["with"], measured["with_bystander"] = await pairs(
                    writer, player, bystander, 2 * SCORE_MAX, args.changes, subscribed=True)
                nursery.cancel_scope.cancel()
        return measured

    measured = trio.run(main)
    used = http_query_cpu_s(server_cpu, server.port, ["live:top_scores", "live:nothing"],
                            args.queries)
    measured["query_cpu"], measured["nothing_cpu"] = used["live:top_scores"], used["live:nothing"]
    measured["ticks_per_call"] = used["ticks"][0] / (2 * args.queries)
    measured["resolution"] = server_cpu.resolution
    return measured


def incremental(args, scratch: Path) -> None:
    if args.skip_eddy:
        print("incremental: both columns are Eddy's; skipped")
        return
    try:
        with open_eddy(APP_LIVE_DIR, scratch, "incremental", args.profile_server) as server:
            measured = incremental_eddy(args, server)
    except Exception as error:
        unavailable = common.eddy_unavailable(error, args.debug)
        common.print_report("Incremental", [Row("CPU per change", unavailable, unavailable)])
        return
    count = args.top_subscriptions
    # The eddy column, pair by pair: each change of the top player (all
    # `count` results change) less the bystander's change right after it (the
    # same write; no result changes), with the subscriptions held. Two
    # changes a few milliseconds apart see the machine alike, which two
    # phases seconds apart (before and after subscribing) did not.
    with_s, _ = mean_interval(measured["with"])
    with_bystander_s, _ = mean_interval(measured["with_bystander"])
    extra_s, extra_half_s = mean_interval([top - bystander for top, bystander in
                                           zip(measured["with"], measured["with_bystander"])])
    per_subscription_us, per_subscription_half = 1e6 * extra_s / count, 1e6 * extra_half_s / count
    median_us = 1e6 * statistics.median(
        [top - bystander for top, bystander in
         zip(measured["with"], measured["with_bystander"])]) / count
    # Cross-checks: the same pairs before subscribing (the two changes should
    # cost alike), and the estimate across phases (top player with the
    # subscriptions less top player before them).
    alone_s, _ = mean_interval(measured["alone"])
    alone_pair_s, alone_pair_half_s = mean_interval(
        [top - bystander for top, bystander in zip(measured["alone"],
                                                   measured["alone_bystander"])])
    across_us = 1e6 * (with_s - alone_s) / count
    query_s, _ = mean_interval(measured["query_cpu"])
    nothing_s, _ = mean_interval(measured["nothing_cpu"])
    # Pair by pair: each top_scores call less the nothing call after it.
    rerun_s, rerun_half_s = mean_interval([query - nothing for query, nothing in
                                           zip(measured["query_cpu"], measured["nothing_cpu"])])
    rerun_us, rerun_half = 1e6 * rerun_s, 1e6 * rerun_half_s
    rerun_http_us = 1e6 * query_s
    ratio_low, ratio_high = ratio_interval((rerun_us, rerun_half),
                                           (per_subscription_us, per_subscription_half))
    rows = [Row(f"top 10 of {args.rows:,} rows: CPU per sub per change", Figure(rerun_us, "us", 0),
                Figure(per_subscription_us, "us", 1), target=">= 50x lower",
                ratio_text=(f"{rerun_us / per_subscription_us:.2f}x lower"
                            if per_subscription_us > 0 else "-"))]
    notes = [
        f"{args.rows:,} rows (seeded in {measured['seed_s']:.1f} s), "
        f"{args.top_subscriptions} distinct subscriptions, {args.changes} pairs of changes "
        f"(after {CHANGE_WARMUP_PAIRS} not kept), each pair a change of the top player, "
        f"changing every subscription's result, then one of a bystander, changing none",
        f"eddy column: (server CPU per change of the top player {1000 * with_s:.3f} ms - "
        f"of the bystander right after it {1000 * with_bystander_s:.3f} ms, pair by pair) / "
        f"{count} = {per_subscription_us:.2f} +- {per_subscription_half:.2f} us "
        f"(median of the pairs {median_us:.2f} us; each change sampled alone, with "
        f"{1000 * CHANGE_SETTLE_S:.0f} ms of quiet after it)",
        f"cross-checks: before subscribing, top player less bystander "
        f"{1e6 * alone_pair_s:.0f} +- {1e6 * alone_pair_half_s:.0f} us per change (the two "
        f"writes cost alike); across phases, (top player with the subscriptions - before "
        f"them {1000 * alone_s:.3f} ms) / {count} = {across_us:.2f} us (moves with the "
        f"machine between the phases)",
        f"baseline column: re-running the query from scratch: server CPU per POST "
        f"/api/query of live:top_scores {rerun_http_us:.0f} us - of live:nothing "
        f"{1e6 * nothing_s:.0f} us: {rerun_us:.0f} +- {rerun_half:.0f} us "
        f"({args.queries} calls each, taking turns; the difference taken pair by pair); "
        f"in 10 ms ticks the same calls cost {1e6 * measured['ticks_per_call']:.0f} us each, "
        f"schedstat says {1e6 * (query_s + nothing_s) / 2:.0f} us",
        f"server CPU read at {measured['resolution']} resolution; +- is a 95% confidence "
        f"interval of the mean; the ratio lies between {ratio_low:.1f}x and {ratio_high:.1f}x",
        "the eddy column is whatever the node does for a re-evaluation today (reads "
        "served from views kept from the commit deltas, and the fast path of "
        "engine/view_reads.py where it applies)",
    ]
    common.print_report("Incremental vs re-running: top 10 by score", rows, notes)


# ---------------------------------------------------------------------------
# fan-out


def fan_out_eddy(args, server, shared: bool) -> dict:
    import trio

    from wire import connect

    expected_n = [-1]
    holding = [0]
    done = [None]
    all_updated: list = [None]

    def on_value(index: int, value) -> None:
        if value is not None and value["n"] == expected_n[0]:
            holding[0] += 1
            if holding[0] == args.fanout:
                done[0] = now_ns()
                all_updated[0].set()

    async def main() -> dict:
        connection_count = args.fanout_connections
        async with connect(server.url) as writer:
            doc = await writer.mutation("live:create_doc", {})
            async with open_clients(server.url, connection_count) as clients, \
                    trio.open_nursery() as nursery:
                started = time.perf_counter()
                subscribers = Subscribers(clients, on_value)
                await subscribers.add_all(nursery, (
                    (i % connection_count, "live:get_doc",
                     {"doc": doc} if shared else {"doc": doc, "viewer": i})
                    for i in range(args.fanout)))
                subscribe_s = time.perf_counter() - started
                await trio.sleep(1.0)
                times_ms, cpu_ms = [], []
                for write in range(1, args.fanout_writes + 1):
                    expected_n[0], holding[0] = write, 0
                    all_updated[0] = trio.Event()
                    cpu_before = server.cpu_s()
                    sent = now_ns()
                    await writer.mutation("live:set_doc", {"doc": doc, "n": write})
                    with trio.fail_after(UPDATE_S_MAX):
                        await all_updated[0].wait()
                    times_ms.append((done[0] - sent) / 1e6)
                    cpu_ms.append(1000 * (server.cpu_s() - cpu_before))
                    await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
        return {"times_ms": times_ms, "cpu_ms": cpu_ms, "subscribe_s": subscribe_s}

    return trio.run(main)


def fan_out_postgres(args) -> dict:
    import psycopg

    import postgres

    listener_count = args.fanout_connections
    reads_per_listener = args.fanout // listener_count
    times_ms = []
    with postgres.open_postgres(args.dir, quiet=True) as server:
        with psycopg.connect(server.conninfo, autocommit=True) as setup:
            setup.execute("CREATE TABLE docs (id bigint PRIMARY KEY, n bigint NOT NULL)")
            setup.execute("INSERT INTO docs VALUES (1, 0)")
        stop = threading.Event()
        ready = threading.Barrier(listener_count + 1)
        lock = threading.Lock()
        state = {"expected": -1, "done": 0, "finished_ns": 0}
        finished = threading.Event()

        def listen() -> None:
            with psycopg.connect(server.conninfo, autocommit=True) as connection:
                connection.execute("LISTEN doc")
                ready.wait()
                while not stop.is_set():
                    # Collect first: the connection cannot run queries while
                    # its notifies() generator is open.
                    payloads = [int(notify.payload)
                                for notify in connection.notifies(timeout=0.2, stop_after=1)]
                    for expected in payloads:
                        for _ in range(reads_per_listener):
                            (n,), = connection.execute("SELECT n FROM docs WHERE id = 1")
                            assert n >= expected
                        with lock:
                            state["done"] += reads_per_listener
                            if state["done"] == listener_count * reads_per_listener:
                                state["finished_ns"] = now_ns()
                                finished.set()

        listeners = [threading.Thread(target=listen, daemon=True) for _ in range(listener_count)]
        for thread in listeners:
            thread.start()
        ready.wait()
        with psycopg.connect(server.conninfo, autocommit=True) as writer:
            for write in range(1, args.fanout_writes + 1):
                with lock:
                    state["done"] = 0
                finished.clear()
                sent = now_ns()
                with writer.transaction():
                    writer.execute("UPDATE docs SET n = %s WHERE id = 1", (write,))
                    writer.execute("SELECT pg_notify('doc', %s)", (str(write),))
                if not finished.wait(UPDATE_S_MAX):
                    raise RuntimeError("PostgreSQL listeners did not finish")
                times_ms.append((state["finished_ns"] - sent) / 1e6)
                time.sleep(0.5)
        stop.set()
        for thread in listeners:
            thread.join()
    return {"times_ms": times_ms, "reads": listener_count * reads_per_listener}


def fan_out(args, scratch: Path) -> None:
    baseline = fan_out_postgres(args)
    outcomes = {}
    for shared in (False, True):
        if args.skip_eddy:
            outcomes[shared] = Unavailable("--skip-eddy")
            continue
        try:
            name = "fan-out-shared" if shared else "fan-out"
            with open_eddy(APP_LIVE_DIR, scratch, name, args.profile_server) as server:
                outcomes[shared] = fan_out_eddy(args, server, shared)
        except Exception as error:
            outcomes[shared] = common.eddy_unavailable(error, args.debug)
    base = Figure(statistics.median(baseline["times_ms"]), "ms", 0)
    rows = []
    notes = [f"{args.fanout:,} subscriptions to one document over "
             f"{args.fanout_connections} connections; {args.fanout_writes} writes; "
             f"median time from sending the write to the last subscription updated",
             f"baseline: PostgreSQL UPDATE + pg_notify, {args.fanout_connections} listener "
             f"connections re-reading the row {args.fanout // args.fanout_connections} times "
             f"each ({baseline['reads']:,} re-reads) per notification; times (ms): "
             f"{', '.join(f'{t:.0f}' for t in baseline['times_ms'])}"]
    for shared, label in ((False, "distinct subscriptions"), (True, "identical (shared)")):
        outcome = outcomes[shared]
        if isinstance(outcome, dict):
            mine = Figure(statistics.median(outcome["times_ms"]), "ms", 0)
            ratio = f"{mine.value / base.value:.1f}x" if base.value else "-"
            notes.append(f"eddy, {label}: times (ms) "
                         f"{', '.join(f'{t:.0f}' for t in outcome['times_ms'])}; server CPU "
                         f"per write (ms) {', '.join(f'{c:.0f}' for c in outcome['cpu_ms'])}; "
                         f"subscribing took {outcome['subscribe_s']:.1f} s")
        else:
            mine, ratio = outcome, "-"
        rows.append(Row(f"write -> all {args.fanout:,} updated, {label}", base, mine,
                        target="<= 500 ms", ratio_text=ratio))
    common.print_report("Fan-out: one document, many subscriptions", rows, notes)


# ---------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--scenario", choices=SCENARIOS + ["all"], default="all")
    parser.add_argument("--subscriptions", type=int, default=1000, help="observe-insert")
    parser.add_argument("--channels", type=int, default=100, help="observe-insert")
    parser.add_argument("--connections", type=int, default=4,
                        help="observe-insert: subscriber connections")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="observe-insert: inserts per second")
    parser.add_argument("--writers", type=int, default=16,
                        help="observe-insert: writer connections (Eddy) / threads (PostgreSQL)")
    parser.add_argument("--subscriber-processes", type=int, default=0,
                        help="observe-insert: processes of their own the subscriber "
                             "connections are spread over (default 0: in the benchmark "
                             "process, beside the writer)")
    parser.add_argument("--shared", action="store_true",
                        help="observe-insert: identical subscriptions per channel (shared)")
    parser.add_argument("--ranges", type=int, default=20_000, help="many-intersections")
    parser.add_argument("--writes", type=int, default=100,
                        help="many-intersections: writes measured per column")
    parser.add_argument("--rows", type=int, default=100_000, help="incremental")
    parser.add_argument("--top-subscriptions", type=int, default=100, help="incremental")
    parser.add_argument("--changes", type=int, default=200,
                        help="incremental: pairs of changes measured (top player, bystander)")
    parser.add_argument("--queries", type=int, default=1000,
                        help="incremental: HTTP queries per re-run measurement")
    parser.add_argument("--fanout", type=int, default=10_000, help="fan-out: subscriptions")
    parser.add_argument("--fanout-connections", type=int, default=100, help="fan-out")
    parser.add_argument("--fanout-writes", type=int, default=5, help="fan-out")
    add_common_arguments(parser)


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    scenarios = SCENARIOS if args.scenario == "all" else [args.scenario]
    runners = {"observe-insert": observe_insert, "many-intersections": many_intersections,
               "incremental": incremental, "fan-out": fan_out}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="live-") as scratch_text:
        print(common.describe_machine(scratch_text))
        for scenario in scenarios:
            runners[scenario](args, Path(scratch_text))


if __name__ == "__main__":
    main()
