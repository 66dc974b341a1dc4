"""Ingestion bursts: events inserted many at a time (sim/workloads/ingest.py).

Every event carries a key unique over the whole run, (client, seq), and
`batch`, the seq of the first event of the mutation that inserted it, so the
checker (sim/checkers/ingest.py) can tell from the final table an
acknowledged insert that was lost, one that ran twice, and a batch that
landed in part. Inserts are blind (no look for an existing key first): a
mutation the node runs twice leaves two events with one key, which is what
the checker is there to see. The live queries are a count over a range of
an index and `take(n)` views over the `events` table's two indexes; with
inserts only, a count never goes down.
"""

from engine import mutation, query, v

EVENT = v.object({"seq": v.int64(), "stream": v.string(), "rank": v.int64()})


def _event(client, batch, event):
    return {"client": client, "seq": event["seq"], "batch": batch, "stream": event["stream"],
            "rank": event["rank"]}


@mutation(args={"client": v.int64(), "seq": v.int64(), "stream": v.string(), "rank": v.int64()})
async def insert(ctx, client, seq, stream, rank):
    """One event in its own mutation; returns how many it inserted (1)."""
    await ctx.db.insert("events", _event(client, seq, {"seq": seq, "stream": stream, "rank": rank}))
    return 1


@mutation(args={"client": v.int64(), "events": v.array(EVENT)})
async def insert_batch(ctx, client, events):
    """Many events in one mutation (all or none commit); returns how many."""
    for event in events:
        await ctx.db.insert("events", _event(client, events[0]["seq"], event))
    return len(events)


def _stream(stream):
    return lambda q: q.eq("stream", stream)


@query(args={"stream": v.string(), "lo": v.int64(), "hi": v.int64()})
async def count(ctx, stream, lo, hi):
    """How many events of the stream have a rank in [lo, hi): a count over
    a slice of the index, so that a run's growing table keeps it cheap."""
    rows = await ctx.db.query("events").with_index(
        "by_stream_rank", lambda q: q.eq("stream", stream).gte("rank", lo).lt("rank", hi)).collect()
    return len(rows)


@query(args={"stream": v.string(), "n": v.int64()})
async def lowest(ctx, stream, n):
    """The n events of the stream with the lowest rank: a limited view that
    new events enter (and push others out of) anywhere in its range."""
    rows = await ctx.db.query("events").with_index("by_stream_rank", _stream(stream)).take(n)
    return [[row["client"], row["seq"], row["rank"]] for row in rows]


@query(args={"client": v.int64(), "n": v.int64()})
async def latest(ctx, client, n):
    """The client's n newest events (highest seq): a limited view read backwards."""
    rows = await ctx.db.query("events").with_index(
        "by_key", lambda q: q.eq("client", client)).order("desc").take(n)
    return [row["seq"] for row in rows]


@query(args={"client": v.int64()})
async def keys(ctx, client):
    """Every event of the client as [seq, batch], in seq order (a key twice: two rows)."""
    rows = await ctx.db.query("events").with_index("by_key", lambda q: q.eq("client", client)).collect()
    return [[row["seq"], row["batch"]] for row in rows]
