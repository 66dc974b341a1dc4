"""Elle's list-append: a transaction of micro-operations on keyed lists.

`txn` runs [["append", key, value] | ["r", key, None], ...] in order and
returns them with each read's list filled in. Appended values are unique per
key (the workload makes them so), which lets the checker recover every
list's version order from the reads (sim/checkers/elle.py).
"""

from engine import mutation, query, v

from _pause import pause

MICRO_OP = v.array(v.union(v.string(), v.int64(), v.null(), v.array(v.int64())))


async def _list(ctx, key):
    return await ctx.db.query("lists").with_index("by_key", lambda q: q.eq("key", key)).unique()


@mutation(args={"ops": v.array(MICRO_OP), "pause_ms": v.int64()})
async def txn(ctx, ops, pause_ms):
    done = []
    for function, key, value in ops:
        row = await _list(ctx, key)
        if function == "r":
            done.append(["r", key, None if row is None else row["items"]])
        elif row is None:
            await ctx.db.insert("lists", {"key": key, "items": [value]})
            done.append(["append", key, value])
        else:
            await ctx.db.patch(row["_id"], {"items": row["items"] + [value]})
            done.append(["append", key, value])
        await pause(pause_ms)
    return done


@query
async def read_all(ctx):
    return {row["key"]: row["items"] for row in await ctx.db.query("lists").collect()}
