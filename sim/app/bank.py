"""Bank transfers between named accounts: the total is conserved."""

from engine import mutation, query, v

from _pause import pause


async def _account(ctx, name):
    return await ctx.db.query("accounts").with_index("by_name", lambda q: q.eq("name", name)).unique()


@mutation(args={"names": v.array(v.string()), "balance": v.int64()})
async def open_accounts(ctx, names, balance):
    for name in names:
        if await _account(ctx, name) is None:
            await ctx.db.insert("accounts", {"name": name, "balance": balance})


@mutation(args={"src": v.string(), "dst": v.string(), "amount": v.int64(), "pause_ms": v.int64()})
async def transfer(ctx, src, dst, amount, pause_ms):
    """Moves `amount` if `src` holds it; returns whether it did."""
    source = await _account(ctx, src)
    await pause(pause_ms)
    if source["balance"] < amount:
        return False
    destination = await _account(ctx, dst)
    await pause(pause_ms)
    await ctx.db.patch(source["_id"], {"balance": source["balance"] - amount})
    destination = await _account(ctx, dst)
    await ctx.db.patch(destination["_id"], {"balance": destination["balance"] + amount})
    return True


@query
async def balances(ctx):
    return {a["name"]: a["balance"] for a in await ctx.db.query("accounts").collect()}
