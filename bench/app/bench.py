"""The benchmarks' mutations: `bench:insert`, `bench:insert_batch`,
`bench:create_accounts` and `bench:transfer`."""

from engine import mutation, v

ITEM = v.object({
    "key": v.string(),
    "group": v.optional(v.string()),
    "payload": v.string(),
    "n": v.optional(v.int64()),
})


@mutation(args={"key": v.string(), "payload": v.string()})
async def insert(ctx, key, payload):
    """One ~100-byte item per transaction."""
    return await ctx.db.insert("items", {"key": key, "payload": payload})


@mutation(args={"items": v.array(ITEM)})
async def insert_batch(ctx, items):
    """Many items in one transaction; returns how many."""
    for item in items:
        await ctx.db.insert("items", item)
    return len(items)


@mutation(args={"count": v.int64(), "balance": v.int64()})
async def create_accounts(ctx, count, balance):
    """`count` new accounts holding `balance` each; returns their ids in order."""
    return [await ctx.db.insert("accounts", {"balance": balance}) for _ in range(count)]


@mutation(args={"source": v.id("accounts"), "destination": v.id("accounts"),
                "amount": v.int64()})
async def transfer(ctx, source, destination, amount):
    """Moves `amount` between two accounts: a two-document read-modify-write.

    Balances may go negative: the benchmark measures contention, not rules.
    """
    source_account = await ctx.db.get(source)
    destination_account = await ctx.db.get(destination)
    await ctx.db.patch(source, {"balance": source_account["balance"] - amount})
    await ctx.db.patch(destination, {"balance": destination_account["balance"] + amount})
