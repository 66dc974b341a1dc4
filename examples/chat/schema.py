"""The chat app's tables: channels, and messages posted in them.

`messages.by_channel` serves "the messages of one channel, in order" (every
index ends with `_creationTime` and `_id`, so messages of a channel come out
in the order they were sent). `search_body` is declared now and served by the
search capability when it lands.
"""

from engine import define_schema, define_table, v

schema = define_schema({
    "channels": define_table({
        "name": v.string(),
    }).index("by_name", ["name"]),
    "messages": define_table({
        "channel": v.id("channels"),
        "author": v.string(),
        "body": v.string(),
    })
    .index("by_channel", ["channel"])
    .search_index("search_body", search_field="body", filter_fields=["channel"]),
})
