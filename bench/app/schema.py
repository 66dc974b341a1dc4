"""The benchmark app's tables.

`items` is what the insert benchmarks write (one index, as the issue's
batched-insert figure asks); `accounts` is what transfers read and write.
"""

from engine import define_schema, define_table, v

schema = define_schema({
    "items": define_table({
        "key": v.string(),
        "group": v.optional(v.string()),
        "payload": v.string(),
        "n": v.optional(v.int64()),
    }).index("by_key", ["key"]),
    "accounts": define_table({
        "balance": v.int64(),
    }),
})
