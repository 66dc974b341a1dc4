"""Incremental views against re-running: a "top 10 by score" live query over
100,000 rows (issue 3, "Incremental against re-running").

Both sides run on one node in one invocation. `subscribers` sessions, each
with its own identity (so each holds a distinct subscription, as logged-in
users watching one leaderboard do), subscribe to `scores:top {count: 10}`
(an index on score, `order("desc").take(10)`). Then `changes` mutations each
move a random row into the top 10 (or delete a row inside it, forcing a
refill), one at a time, each awaited until every session has its Update.

Measured: the subscription actor's CPU (thread time, in the actor's own
steps: stab, view maintenance, evaluation, re-indexing, delivery) per
affected subscription per change. Baseline: the same actor with views off,
re-running every affected subscription's function against the shards.
Target: views at least 50x below re-running.

Usage:
    python bench/bench_views.py [--rows 100000] [--subscribers 100] [--changes 300]
"""

from __future__ import annotations

import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Row  # noqa: E402

SCHEMA = '''
from engine import define_schema, define_table, v
schema = define_schema({
    "scores": define_table({"player": v.string(), "score": v.int64()}).index("by_score", ["score"]),
})
'''

FUNCTIONS = '''
from engine import mutation, query, v

@query(args={"count": v.int64()})
async def top(ctx, count):
    return await ctx.db.query("scores").with_index("by_score").order("desc").take(count)

@mutation(args={"rows": v.array(v.object({"player": v.string(), "score": v.int64()}))})
async def load(ctx, rows):
    return [await ctx.db.insert("scores", row) for row in rows]

@mutation(args={"id": v.id("scores"), "score": v.int64()})
async def set_score(ctx, id, score):
    await ctx.db.patch(id, {"score": score})

@mutation(args={"id": v.id("scores")})
async def remove(ctx, id):
    await ctx.db.delete(id)
'''

LOAD_BATCH = 1000
SCORE_MAX = 1_000_000_000


@dataclasses.dataclass
class Micros:
    """CPU microseconds per affected subscription per change."""

    value: float

    def __str__(self) -> str:
        return f"{self.value:,.1f} us"


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the table")
    parser.add_argument("--subscribers", type=int, default=100,
                        help="distinct subscriptions to the top 10")
    parser.add_argument("--changes", type=int, default=300, help="changes measured per side")


def write_app(folder: Path) -> Path:
    app = folder / "app"
    app.mkdir()
    (app / "schema.py").write_text(SCHEMA)
    (app / "scores.py").write_text(FUNCTIONS)
    return app


class ActorClock:
    """Adds up process CPU spent in the subscription actor's steps."""

    def __init__(self, actor) -> None:
        self.seconds = 0.0
        for name in ("_hit_by", "_update_views"):
            self._wrap_sync(actor, name)
        self._wrap_async(actor, "_advance")

    def _wrap_sync(self, actor, name: str) -> None:
        inner = getattr(actor, name)

        def timed(*args):
            start = time.thread_time()
            try:
                return inner(*args)
            finally:
                self.seconds += time.thread_time() - start
        setattr(actor, name, timed)

    def _wrap_async(self, actor, name: str) -> None:
        inner = getattr(actor, name)

        async def timed(*args):
            # The query functions here never yield, so the whole step runs
            # in this task without interleaving: process time is its own.
            start = time.thread_time()
            try:
                return await inner(*args)
            finally:
                self.seconds += time.thread_time() - start
        setattr(actor, name, timed)


async def measure(args, use_views: bool) -> tuple[float, dict]:
    """CPU microseconds per affected subscription per change, and statistics."""
    import trio

    open_node = common.load_open_node()
    with tempfile.TemporaryDirectory() as scratch:
        app = write_app(Path(scratch))
        async with open_node(str(app), str(Path(scratch) / "data")) as node:
            actor = node.subscriptions.actors[0]  # the node's one subscription actor
            actor.use_views = use_views
            rng = random.Random(7)
            ids = []
            for start in range(0, args.rows, LOAD_BATCH):
                rows = [{"player": f"p{i}", "score": rng.randrange(SCORE_MAX)}
                        for i in range(start, min(args.rows, start + LOAD_BATCH))]
                ids += await node.mutation("scores:load", {"rows": rows})
            sessions = []
            for user in range(args.subscribers):
                session = actor.open_session()
                session.set_identity({"subject": f"user{user}"})
                session.modify(adds=[(0, "scores:top", {"count": 10}, None)])
                sessions.append(session)
            for session in sessions:
                await session.wait_update()
            clock = ActorClock(actor)
            hits_before = actor.registry.hit_count
            top_score = SCORE_MAX
            for change in range(args.changes):
                if change % 4 == 3:  # a delete inside the top 10: a refill
                    top = await node.query("scores:top", {"count": 10})
                    victim = rng.choice(top)["_id"]
                    await node.mutation("scores:remove", {"id": victim})
                    ids.remove(victim)
                else:  # a row rises into the top 10
                    top_score += rng.randrange(1, 100)
                    await node.mutation("scores:set_score",
                                        {"id": rng.choice(ids), "score": top_score})
                # Every change alters the top 10, so every session gets an
                # Update with it (no request_update, whose bookkeeping would
                # be measured too).
                ts = node.latest_ts
                for session in sessions:
                    while (await session.wait_update()).ts < ts:
                        pass
            hits = actor.registry.hit_count - hits_before
            statistics = dataclasses.asdict(actor.statistics())
            del trio
            return clock.seconds * 1e6 / max(1, hits), {**statistics, "hits": hits}


def main() -> None:
    import trio

    args = common.parse_args(__doc__.splitlines()[0], add_arguments)
    rows: list[Row] = []
    notes = [common.describe_machine()]
    try:
        rerun_us, rerun_stats = trio.run(measure, args, False)
        views_us, views_stats = trio.run(measure, args, True)
        ratio = rerun_us / views_us if views_us else float("inf")
        rows.append(Row(f"top 10 of {args.rows:,} rows, {args.subscribers} subscriptions: "
                        "CPU per affected subscription per change",
                        Micros(rerun_us), Micros(views_us), ">= 50x below re-running",
                        ratio_text=f"{ratio:.0f}x below"))
        notes.append(f"re-running: {rerun_stats['hits']:,} subscription updates, "
                     f"{rerun_stats['evaluation_count']:,} function runs")
        notes.append(f"views: {views_stats['hits']:,} subscription updates, "
                     f"{views_stats['fast_path_count']:,} fast-path updates, "
                     f"{views_stats['view_evaluation_count']:,} runs against views, "
                     f"{views_stats['refill_count']:,} refills, "
                     f"{views_stats['fallback_count']:,} fallbacks, "
                     f"{views_stats['view_count']:,} views held")
    except Exception as error:  # reported in the table, as every benchmark does
        rows.append(Row("top 10 incremental vs re-running", None,
                        common.eddy_unavailable(error, args.debug)))
    common.print_report("Live query views: incremental against re-running", rows, notes)


if __name__ == "__main__":
    main()
