"""Leaderboards: live take(n) queries on hot boards, and commits spanning two tables.

Writers set and remove players' scores (sim/app/leaderboard.py): each write
is one commit into two tables (`scores` and `score_log`), and moves or
removes rows inside the boards' index ranges, so the limited views of the
live `top`/`bottom` queries lose rows and refill. Subscribers hold sessions
with those queries on the node's subscription actors (node.subscriptions
gives each to the one holding fewest; the reference scenario runs two, so
these sessions and the protocol clients' connections land on both) and
check every Update against time-travel queries at its ts
(sim/checkers/update_oracle.py); a session lives a random while, and dies
with its node.

Every client writes; the first, third, ... client of the workload to step
also holds a session while it writes (so one client alone still has one).
"""

from __future__ import annotations

import trio

from sim.checkers import models
from sim.checkers.update_oracle import UpdateOracle
from sim.timers import sleep
from sim.workloads import Check

BOARDS = ["b0", "b1"]
PLAYERS = [f"p{n}" for n in range(8)]
POINTS_MAX = 40
# How long a final session may wait for its Update at the latest ts (the
# node is healed by then: an answer takes milliseconds).
final_wait_s = 10.0


def live_queries() -> dict[int, tuple[str, dict]]:
    queries = {}
    for board in BOARDS:
        for n in (1, 3, 5):
            queries[len(queries) + 1] = ("leaderboard:top", {"board": board, "n": n})
        queries[len(queries) + 1] = ("leaderboard:bottom", {"board": board, "n": 2})
        queries[len(queries) + 1] = ("leaderboard:everyone", {"board": board})
    return queries


# The update oracle's derived answers (sim/checkers/reference.py): `top`,
# `bottom` and `everyone` are each a part of one board's rows in index order,
# and `leaderboard:ranked` reads every board's in that order, so one
# time-travel read per ts answers all ten queries a session holds.

def _ranked(args, derive):
    board = args["board"]
    return "leaderboard:ranked", {}, lambda rows: derive(
        [[player, points] for row_board, player, points in rows if row_board == board])


def _top(args):
    n = args["n"]
    return _ranked(args, lambda rows: (True, rows[:n])) if n >= 0 else None


def _bottom(args):
    n = args["n"]
    return _ranked(args, lambda rows: (True, rows[::-1][:n])) if n >= 0 else None


def _everyone(args):
    return _ranked(args, lambda rows: (True, sorted(rows)))


REFERENCE_QUERIES = {"leaderboard:top": _top, "leaderboard:bottom": _bottom,
                     "leaderboard:everyone": _everyone}


class LeaderboardWorkload:
    name = "leaderboard"
    reference_queries = REFERENCE_QUERIES
    reference_model = models.ScoresModel

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}
        self.oracle = UpdateOracle("leaderboard")
        self.sessions = 0

    def _subscribes(self, client) -> bool:
        """Whether the client holds sessions: the first, third, ... client of
        this workload to step (so even a single client of it has one)."""
        if client.id not in self.roles:
            self.roles[client.id] = "subscriber" if len(self.roles) % 2 == 0 else "writer"
        return self.roles[client.id] == "subscriber"

    async def setup(self, client) -> None:
        pass

    async def step(self, client) -> None:
        """A round: for a random while, writes, and (subscribers) one session checked throughout."""
        life_s = client.rng.uniform(0.3, 2.0)
        if not self._subscribes(client):
            await self._write(client)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._subscribe, client, life_s)
            deadline = trio.current_time() + life_s
            while trio.current_time() < deadline:
                await self._write(client)
                await sleep(client.rng.expovariate(1 / client.think_s))

    async def _write(self, client) -> None:
        rng = client.rng
        board, player = rng.choice(BOARDS), rng.choice(PLAYERS)
        draw = rng.random()
        if draw < 0.6:
            await client.call("mutation", "leaderboard:score",
                              {"board": board, "player": player, "points": rng.randint(0, POINTS_MAX),
                               "pause_ms": rng.choice([0, 1])})
        elif draw < 0.9:
            await client.call("mutation", "leaderboard:remove", {"board": board, "player": player})
        else:
            await client.call("query", "leaderboard:top", {"board": board, "n": 3})

    async def _subscribe(self, client, life_s: float | None, final: bool = False) -> None:
        """One session: add the live queries, check Updates for `life_s`
        (or, `final`, until an Update at the node's latest ts)."""
        queries = live_queries()
        self.sessions += 1
        label = f"client {client.id} session {self.sessions}"
        pause = client.host.world.pause
        async with client.host.attached() as node:
            await pause.wait_running()
            session = node.subscriptions.open_session()
            try:
                session.modify(adds=[(query_id, path, args, None)
                                     for query_id, (path, args) in sorted(queries.items())])
                until_ts = None
                if final:
                    until_ts = node.latest_ts
                    session.request_update(until_ts)
                with trio.move_on_after(life_s if life_s is not None else final_wait_s) as waited:
                    await self.oracle.follow(node, session, queries, label, client.trace, until_ts,
                                             pause)
                if final and waited.cancelled_caught:
                    self.oracle.stuck.append(f"{label} got no Update at ts >= {until_ts} within "
                                             f"{final_wait_s:g}s of asking for one")
            finally:
                session.close()

    async def finish(self, client) -> None:
        if self._subscribes(client):
            # After the heal: one more session must see the final state.
            await self._subscribe(client, life_s=None, final=True)
        for board in BOARDS:
            await client.call("query", "leaderboard:everyone", {"board": board})

    def wrote(self, operation) -> bool:
        return operation.path in ("leaderboard:score", "leaderboard:remove")

    def check(self, record) -> list[Check]:
        checks = self.oracle.check()
        finals = [op for op in record.history
                  if op.path == "leaderboard:everyone" and op.status == "ok"]
        for op in finals:
            players = [player for player, _ in op.value]
            if len(players) != len(set(players)):
                checks.append(Check("leaderboard: a player appears once per board", False,
                                    f"client {op.client} read board {op.args['board']} at ts {op.ts}: "
                                    f"{op.value}"))
                return checks
        checks.append(Check("leaderboard: a player appears once per board", True,
                            f"{len(finals)} final reads"))
        return checks
