"""Leaderboards: scores on boards, read as live take(n) views, written in
commits that span two tables.

Every write touches two tables in one commit: the player's row in `scores`
and an entry in `score_log` (so a group commit of these spans two shards;
planted bug `multi-shard-non-atomic` splits such a commit). The live
queries `top` and `bottom` read the first n rows of a board's index range
(a limited view that refills when a row is removed or moves out: planted
bug `take-refill-off-by-one`).
"""

from engine import mutation, query, v

from _pause import pause


async def _score(ctx, board, player):
    return await ctx.db.query("scores").with_index(
        "by_player", lambda q: q.eq("board", board).eq("player", player)).unique()


@mutation(args={"board": v.string(), "player": v.string(), "points": v.int64(), "pause_ms": v.int64()})
async def score(ctx, board, player, points, pause_ms):
    """Sets the player's points (a row that moves within the board's range)."""
    row = await _score(ctx, board, player)
    await pause(pause_ms)
    if row is None:
        await ctx.db.insert("scores", {"board": board, "player": player, "points": points})
    else:
        await ctx.db.patch(row["_id"], {"points": points})
    await ctx.db.insert("score_log", {"board": board, "player": player, "points": points})
    return points


@mutation(args={"board": v.string(), "player": v.string()})
async def remove(ctx, board, player):
    """Removes the player from the board (a row that leaves the range); returns whether it was there."""
    row = await _score(ctx, board, player)
    await ctx.db.insert("score_log", {"board": board, "player": player, "points": -1})
    if row is None:
        return False
    await ctx.db.delete(row["_id"])
    return True


@query(args={"board": v.string(), "n": v.int64()})
async def top(ctx, board, n):
    """The n lowest scores of the board (ascending points): a limited view."""
    rows = await ctx.db.query("scores").with_index(
        "by_board_points", lambda q: q.eq("board", board)).take(n)
    return [[row["player"], row["points"]] for row in rows]


@query(args={"board": v.string(), "n": v.int64()})
async def bottom(ctx, board, n):
    """The n highest scores of the board (descending): a limited view read backwards."""
    rows = await ctx.db.query("scores").with_index(
        "by_board_points", lambda q: q.eq("board", board)).order("desc").take(n)
    return [[row["player"], row["points"]] for row in rows]


@query(args={"board": v.string()})
async def everyone(ctx, board):
    return sorted([row["player"], row["points"]] for row in await ctx.db.query("scores").with_index(
        "by_board_points", lambda q: q.eq("board", board)).collect())


@query(args={})
async def ranked(ctx):
    """Every board's rows in index order (by board, then ascending points), as
    [board, player, points]: `top`, `bottom` and `everyone` each take a part
    of one board's. The update oracle's reference reads it once per ts
    (sim/workloads/leaderboard.py)."""
    return [[row["board"], row["player"], row["points"]]
            for row in await ctx.db.query("scores").with_index("by_board_points").collect()]
