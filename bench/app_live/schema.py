"""The live-query benchmarks' tables (bench/bench_live.py, issue 3).

- `messages`: chat messages, read by "last 10 in a channel" (ObserveInsert).
- `points`: one integer key each, read by range subscriptions (ManyIntersections).
- `scores`: players and scores, read by "top 10 by score" (incremental).
- `docs`: single documents read by many subscriptions (fan-out).
"""

from engine import define_schema, define_table, v

schema = define_schema({
    "messages": define_table({
        "channel": v.int64(),
        "body": v.string(),
        "sent_ns": v.int64(),  # the writer's CLOCK_MONOTONIC when it sent the insert
    }).index("by_channel", ["channel"]),
    "points": define_table({
        "k": v.int64(),
    }).index("by_k", ["k"]),
    "scores": define_table({
        "player": v.int64(),
        "score": v.int64(),
    }).index("by_score", ["score"]),
    "docs": define_table({
        "n": v.int64(),
    }),
})
