"""The history benchmark's queries (bench/bench_history.py writes the log itself)."""

from engine import query, v


@query(args={"count": v.int64()})
async def first(ctx, count):
    """The first `count` counters by name, with their values."""
    return [[c["name"], c["value"]]
            for c in await ctx.db.query("counters").with_index("by_name").take(count)]


@query(args={"id": v.id("counters")})
async def value(ctx, id):
    counter = await ctx.db.get(id)
    return None if counter is None else counter["value"]
