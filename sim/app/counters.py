"""Named counters: each increment returns the value it produced."""

from engine import mutation, query, v

from _pause import pause


@mutation(args={"name": v.string(), "pause_ms": v.int64()})
async def increment(ctx, name, pause_ms):
    counter = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    await pause(pause_ms)
    if counter is None:
        await ctx.db.insert("counters", {"name": name, "value": 1})
        return 1
    await ctx.db.patch(counter["_id"], {"value": counter["value"] + 1})
    return counter["value"] + 1


@query
async def values(ctx):
    return {c["name"]: c["value"] for c in await ctx.db.query("counters").collect()}
