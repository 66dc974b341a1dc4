"""Channels: `channels:create` and `channels:list`."""

from engine import AppError, mutation, query, v

NAME_CHARS_MAX = 64  # Long enough for any sensible name; short enough for a sidebar.


@mutation(args={"name": v.string()})
async def create(ctx, name):
    """Creates a channel and returns its id.

    Raises:
        AppError: the name is empty, too long or already taken. The error's data
            is a dict with a `code`, which reaches the caller as `errorData`.
    """
    name = name.strip()
    if not name or len(name) > NAME_CHARS_MAX:
        raise AppError({"code": "BadChannelName",
                        "message": f"a channel name has 1 to {NAME_CHARS_MAX} characters"})
    existing = await (ctx.db.query("channels")
                      .with_index("by_name", lambda q: q.eq("name", name))
                      .first())
    if existing is not None:
        raise AppError({"code": "ChannelExists", "channelId": existing["_id"]})
    return await ctx.db.insert("channels", {"name": name})


@query(args={})
async def list(ctx):
    """Every channel, by name."""
    return await ctx.db.query("channels").with_index("by_name").collect()
