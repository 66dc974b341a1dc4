"""Messages: send, list the latest, page through a channel's history.

Function paths: `messages:send`, `messages:list`, `messages:page`, plus the
internal `messages:clear` (callable only with the admin key or from another
function) and the action `messages:announce`.
"""

from engine import (
    AppError,
    action,
    internal_mutation,
    mutation,
    pagination_opts,
    query,
    v,
)

BODY_CHARS_MAX = 2000  # A chat message, not a document; bigger bodies are a mistake.
LATEST_COUNT = 50  # What `messages:list` shows: one screen of history.


@mutation(args={"channel": v.id("channels"), "author": v.string(), "body": v.string()})
async def send(ctx, channel, author, body):
    """Posts a message and returns its id.

    Raises:
        AppError: the channel does not exist, or the body is empty or too long.
    """
    if await ctx.db.get(channel) is None:
        raise AppError({"code": "NoSuchChannel", "channel": channel})
    if not body.strip():
        raise AppError("a message needs a body")
    if len(body) > BODY_CHARS_MAX:
        raise AppError({"code": "MessageTooLong", "limit": BODY_CHARS_MAX})
    return await ctx.db.insert("messages", {"channel": channel, "author": author, "body": body})


@query(args={"channel": v.id("channels")})
async def list(ctx, channel):
    """The channel's latest messages, oldest first."""
    latest = await (ctx.db.query("messages")
                    .with_index("by_channel", lambda q: q.eq("channel", channel))
                    .order("desc")
                    .take(LATEST_COUNT))
    return latest[::-1]


@query(args={"channel": v.id("channels"), "paginationOpts": pagination_opts})
async def page(ctx, channel, paginationOpts):  # noqa: N803 (Convex's argument name)
    """One page of the channel's history, newest first.

    Convex's clients (`usePaginatedQuery`) call this with
    `{"channel": ..., "paginationOpts": {"numItems": 20, "cursor": null}}` and
    get back `{"page", "isDone", "continueCursor", ...}`.
    """
    return await (ctx.db.query("messages")
                  .with_index("by_channel", lambda q: q.eq("channel", channel))
                  .order("desc")
                  .paginate(paginationOpts))


@internal_mutation(args={"channel": v.id("channels")})
async def clear(ctx, channel):
    """Deletes every message of a channel; returns how many. Internal: admins only."""
    # Collect first, then delete: the deletes never disturb the scan.
    messages = await (ctx.db.query("messages")
                      .with_index("by_channel", lambda q: q.eq("channel", channel))
                      .collect())
    for message in messages:
        await ctx.db.delete(message["_id"])
    return len(messages)


@action(args={"body": v.string()})
async def announce(ctx, body):
    """Posts `body` as "system" in every channel; returns the new message ids.

    An action runs outside any transaction: each `send` is its own mutation.
    """
    channels = await ctx.run_query("channels:list", {})
    return [await ctx.run_mutation(send, {"channel": c["_id"], "author": "system", "body": body})
            for c in channels]
