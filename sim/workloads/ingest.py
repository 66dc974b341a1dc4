"""Ingestion bursts: now and then a client sends many inserts at once.

Between single inserts, a step is now and then a burst of 20-200 events
(sim/app/ingest.py) in one of these shapes:

- one mutation inserting the whole burst (one transaction);
- batches of 5-50 events, one mutation each, all in flight together;
- one mutation per event, all in flight together;
- (msgpack clients) those batches or single mutations sent in one
  `MutationBatch` frame, the way `wire.client.Client.mutations` sends them:
  the node runs the frame's items concurrently, sharing group commits.

The clients speak the sync protocol (sim/clients.py), so a burst in flight
when a connection breaks or the node dies is re-sent, request by request,
with its request ids, and the node must answer each re-send from its results
rather than run it again. Each client also holds live queries on the table
(a count over a slice of a stream's ranks, `take(n)` views by rank and by
its own newest events) and changes them now and then. After the heal each
client reads its own events back. Checks: sim/checkers/ingest.py (no loss, no duplicate, all or
nothing, counts never go back) and the subscription oracle, which checks
every live result against a time-travel query at its ts.
"""

from __future__ import annotations

import trio

from wire.codecs import NATIVE_STYLE

from sim.checkers import ingest, models
from sim.workloads import Check

STREAMS = ["s0", "s1", "s2", "s3"]
RANK_MAX = 999
BURST_EVENTS_MIN, BURST_EVENTS_MAX = 20, 200
CHUNK_EVENTS_MIN, CHUNK_EVENTS_MAX = 5, 50
# The share of steps that are bursts: "now and then". At the reference think
# time a client bursts about every 1.5 simulated seconds.
burst_share = 0.06
# A client stops bursting (single inserts go on) past this many events, so
# that its final read of its own events stays far below
# documents_scanned_max (engine/limits.py, 32,000) in runs of many minutes.
client_events_max = 2_500
VIEW_N_MAX = 5
# A live count covers a slice of a stream's ranks, at most this wide (a
# tenth of them): the node re-runs it at each insert into that slice and the
# oracle at each ts it was delivered at, so a whole stream would dominate
# the run's time as the table grows.
COUNT_RANKS_MAX = 100


def _count(rng) -> tuple[str, dict]:
    lo = rng.randrange(RANK_MAX + 1 - COUNT_RANKS_MAX)
    return "ingest:count", {"stream": rng.choice(STREAMS), "lo": lo,
                            "hi": lo + rng.randint(1, COUNT_RANKS_MAX)}


def _query(client_id: int, rng) -> tuple[str, dict]:
    kind = rng.random()
    if kind < 0.4:
        return _count(rng)
    if kind < 0.7:
        return "ingest:lowest", {"stream": rng.choice(STREAMS), "n": rng.randint(1, VIEW_N_MAX)}
    return "ingest:latest", {"client": client_id, "n": rng.randint(1, VIEW_N_MAX)}


class IngestWorkload:
    name = "ingest"
    # Its clients speak the sync protocol (sim/run.py makes them so).
    protocol = True
    # The subscription oracle's reference answers its queries from a model
    # of the events table (sim/checkers/models.py).
    reference_model = models.EventsModel

    def __init__(self) -> None:
        self._next_seq: dict[int, int] = {}
        self._live: dict[int, list[int]] = {}
        self.log = None  # the protocol clients' SubscriptionLog, seen at the first step

    async def setup(self, client) -> None:
        pass

    async def step(self, client) -> None:
        rng, protocol = client.rng, client.protocol
        self.log = protocol.log
        live = self._live.setdefault(client.id, [])
        if not live:
            # A count and the two take(n) views, held from the start.
            for path, args in (_count(rng), ("ingest:lowest", {"stream": rng.choice(STREAMS), "n": 3}),
                               ("ingest:latest", {"client": client.id, "n": 3})):
                live.append(protocol.subscribe(path, args))
            return
        roll = rng.random()
        if roll < burst_share and self._next_seq.get(client.id, 0) < client_events_max:
            await self._burst(client)
        elif roll < 0.15:
            protocol.unsubscribe(live.pop(rng.randrange(len(live))))
            live.append(protocol.subscribe(*_query(client.id, rng)))
        elif roll < 0.25:
            await client.call("query", *_query(client.id, rng))
        else:
            event = self._event(client, rng.choice(STREAMS))
            await client.call("mutation", "ingest:insert", {"client": client.id, **event})

    def _event(self, client, stream: str) -> dict:
        seq = self._next_seq.get(client.id, 0)
        self._next_seq[client.id] = seq + 1
        return {"seq": seq, "stream": stream, "rank": client.rng.randint(0, RANK_MAX)}

    async def _burst(self, client) -> None:
        """20-200 events at once, in one of the shapes the module docstring lists."""
        rng = client.rng
        stream = rng.choice(STREAMS)  # a burst comes mostly from one source
        events = [self._event(client, stream if rng.random() < 0.8 else rng.choice(STREAMS))
                  for _ in range(rng.randint(BURST_EVENTS_MIN, BURST_EVENTS_MAX))]
        shape = rng.choice(["one", "batches", "singles"])
        if shape == "one":
            await client.call("mutation", "ingest:insert_batch", {"client": client.id, "events": events})
            return
        if shape == "singles":
            calls = [("ingest:insert", {"client": client.id, **event}) for event in events]
        else:
            calls = []
            while events:
                size = rng.randint(CHUNK_EVENTS_MIN, CHUNK_EVENTS_MAX)
                calls.append(("ingest:insert_batch", {"client": client.id, "events": events[:size]}))
                events = events[size:]
        # MutationBatch is a msgpack-only extension (wire/codecs.py).
        if client.protocol.style is NATIVE_STYLE and rng.random() < 0.5:
            await call_in_one_frame(client, calls)
        else:
            await in_flight(client, calls)

    async def finish(self, client) -> None:
        await client.call("query", "ingest:keys", {"client": client.id})

    def wrote(self, operation) -> bool:
        return operation.path in ingest.INSERT_PATHS

    def check(self, record) -> list[Check]:
        checks = ingest.check(record.history, record.healed_s)
        if self.log is not None:
            checks.append(ingest.check_counts_rise(self.log.snapshots))
        return checks


async def in_flight(client, calls: list[tuple[str, dict]]) -> None:
    """Makes every call at once and waits for all (each `client.call` records its own)."""
    async with trio.open_nursery() as nursery:
        for path, args in calls:
            nursery.start_soon(client.call, "mutation", path, args)


async def call_in_one_frame(client, calls: list[tuple[str, dict]]) -> None:
    """Sends mutations from a protocol client as one MutationBatch frame and
    waits for every answer, each recorded by `client.call` as usual: while
    the calls start, `client.protocol` is `protocol.one_frame(...)`, which holds back
    their frames and sends them together once the last one is there."""
    protocol = client.protocol
    client.protocol = protocol.one_frame(len(calls))
    try:
        await in_flight(client, calls)
    finally:
        client.protocol = protocol
