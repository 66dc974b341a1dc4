"""The simulator's reference app: the tables its built-in workloads use
(sim/workloads/). Every workload keeps to its own table, so any mix of
workloads can run against one node."""

from engine import define_schema, define_table, v

schema = define_schema({
    "accounts": define_table({"name": v.string(), "balance": v.int64()}).index("by_name", ["name"]),
    "counters": define_table({"name": v.string(), "value": v.int64()}).index("by_name", ["name"]),
    "lists": define_table({"key": v.string(), "items": v.array(v.int64())}).index("by_key", ["key"]),
    # leaderboard (sim/app/leaderboard.py): every write spans both tables.
    "scores": define_table({"board": v.string(), "player": v.string(), "points": v.int64()})
    .index("by_board_points", ["board", "points"]).index("by_player", ["board", "player"]),
    "score_log": define_table({"board": v.string(), "player": v.string(), "points": v.int64()}),
    # ingest (sim/app/ingest.py): (client, seq) is unique per event.
    "events": define_table({"client": v.int64(), "seq": v.int64(), "batch": v.int64(),
                            "stream": v.string(), "rank": v.int64()})
    .index("by_key", ["client", "seq"]).index("by_stream_rank", ["stream", "rank"]),
})
