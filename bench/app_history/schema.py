"""The history benchmark's table: counters that every commit bumps."""

from engine import define_schema, define_table, v

schema = define_schema({
    "counters": define_table({"name": v.string(), "value": v.int64()}).index("by_name", ["name"]),
})
