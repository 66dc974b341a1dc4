"""Hot keys: a few keys (rows `h0`..`h7` of the counters table) that every
client subscribes to and writes, for the subscription oracle
(sim/workloads/hot_keys.py). Its queries cover a point read, a range, a
`take(n)` over an index (which refills when rows are deleted) and a sum."""

from engine import mutation, query, v


async def _row(ctx, key):
    return await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", key)).unique()


def _hot(q):
    return q.gte("name", "h").lt("name", "i")


@mutation(args={"key": v.string(), "value": v.int64()})
async def set(ctx, key, value):
    row = await _row(ctx, key)
    if row is None:
        await ctx.db.insert("counters", {"name": key, "value": value})
    else:
        await ctx.db.patch(row["_id"], {"value": value})
    return value


@mutation(args={"key": v.string(), "delta": v.int64()})
async def add(ctx, key, delta):
    row = await _row(ctx, key)
    if row is None:
        await ctx.db.insert("counters", {"name": key, "value": delta})
        return delta
    await ctx.db.patch(row["_id"], {"value": row["value"] + delta})
    return row["value"] + delta


@mutation(args={"key": v.string()})
async def remove(ctx, key):
    row = await _row(ctx, key)
    if row is not None:
        await ctx.db.delete(row["_id"])
    return row is not None


@mutation(args={})
async def noop(ctx):
    """Writes nothing: a client's barrier (its Transition must follow)."""
    return None


@query(args={"key": v.string()})
async def get(ctx, key):
    row = await _row(ctx, key)
    return None if row is None else row["value"]


@query(args={"lo": v.string(), "hi": v.string()})
async def between(ctx, lo, hi):
    rows = await ctx.db.query("counters").with_index(
        "by_name", lambda q: q.gte("name", lo).lt("name", hi)).collect()
    return [[row["name"], row["value"]] for row in rows]


@query(args={"n": v.int64()})
async def first(ctx, n):
    rows = await ctx.db.query("counters").with_index("by_name", _hot).take(n)
    return [[row["name"], row["value"]] for row in rows]


@query(args={"n": v.int64()})
async def last(ctx, n):
    rows = await ctx.db.query("counters").with_index("by_name", _hot).order("desc").take(n)
    return [[row["name"], row["value"]] for row in rows]


@query(args={})
async def total(ctx):
    rows = await ctx.db.query("counters").with_index("by_name", _hot).collect()
    return sum(row["value"] for row in rows)
