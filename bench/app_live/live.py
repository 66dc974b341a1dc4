"""The live-query benchmarks' functions (bench/bench_live.py).

Queries take an optional `viewer`: it changes nothing in the result but
makes each subscription distinct (Eddy shares identical subscriptions,
evaluating them once), so a benchmark can ask for N separate evaluations.
"""

from engine import mutation, query, v

LAST_COUNT = 10  # "last 10 messages in a channel" (Convex's ObserveInsert)
TOP_COUNT = 10  # "top 10 by score"
VIEWER = v.optional(v.int64())


@mutation(args={"channel": v.int64(), "body": v.string(), "sent_ns": v.int64()})
async def send(ctx, channel, body, sent_ns):
    """Posts one message."""
    return await ctx.db.insert("messages", {"channel": channel, "body": body,
                                            "sent_ns": sent_ns})


@query(args={"channel": v.int64(), "viewer": VIEWER})
async def last_messages(ctx, channel, viewer=None):
    """The channel's last 10 messages, newest first."""
    return await (ctx.db.query("messages")
                  .with_index("by_channel", lambda q: q.eq("channel", channel))
                  .order("desc").take(LAST_COUNT))


@mutation(args={"keys": v.array(v.int64())})
async def insert_points(ctx, keys):
    """One `points` document per key, in one transaction; returns how many."""
    for k in keys:
        await ctx.db.insert("points", {"k": k})
    return len(keys)


@query(args={"lo": v.int64(), "hi": v.int64(), "viewer": VIEWER})
async def point_range(ctx, lo, hi, viewer=None):
    """The points with lo <= k < hi."""
    return await (ctx.db.query("points")
                  .with_index("by_k", lambda q: q.gte("k", lo).lt("k", hi))
                  .collect())


@mutation(args={"first": v.int64(), "count": v.int64(), "score_max": v.int64()})
async def seed_scores(ctx, first, count, score_max):
    """Players first..first+count-1 with pseudo-random scores below score_max
    (a multiplicative hash of the player number, so every run seeds the same)."""
    for player in range(first, first + count):
        await ctx.db.insert("scores", {"player": player,
                                       "score": player * 2654435761 % score_max})
    return count


@mutation(args={"player": v.id("scores"), "score": v.int64()})
async def set_score(ctx, player, score):
    """Sets one player's score."""
    await ctx.db.patch(player, {"score": score})


@query(args={"viewer": VIEWER})
async def top_scores(ctx, viewer=None):
    """The 10 highest scores, highest first."""
    return await ctx.db.query("scores").with_index("by_score").order("desc").take(TOP_COUNT)


@query(args={"viewer": VIEWER})
async def nothing(ctx, viewer=None):
    """Reads nothing: the fixed cost of a query call, to subtract."""
    return None


@mutation(args={})
async def create_doc(ctx):
    """One `docs` document; returns its id."""
    return await ctx.db.insert("docs", {"n": 0})


@mutation(args={"doc": v.id("docs"), "n": v.int64()})
async def set_doc(ctx, doc, n):
    """Writes `n` into the document."""
    await ctx.db.patch(doc, {"n": n})


@query(args={"doc": v.id("docs"), "viewer": VIEWER})
async def get_doc(ctx, doc, viewer=None):
    """The document."""
    return await ctx.db.get(doc)
