"""Many seeds at once: `eddy sim sweep` runs seeds in worker processes and
lists the failures, each with the command that replays it."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time

from sim.run import EXIT_CODES, RunOptions, run

# Seeds a worker process runs before it is replaced: open_node tunes the
# process's garbage collector, and a fresh process keeps memory flat.
seeds_per_worker_max = 25


@dataclasses.dataclass
class SeedOutcome:
    seed: int
    failure: str | None
    explanation: str
    trace: str
    sim_s: float
    wall_s: float
    replay: str


def parse_seeds(text: str) -> list[int]:
    """`1-100`, `7`, `1,5,9-12` -> the seeds, in order.

    Raises:
        ValueError: not a seed list.
    """
    seeds = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def _run_one(options: RunOptions) -> SeedOutcome:
    result = run(options)
    return SeedOutcome(options.seed, result.failure, result.explanation.split("\n")[0][:500],
                       result.trace, result.sim_s, result.wall_s, options.replay_command())


def sweep(template: RunOptions, seeds: list[int], jobs: int, budget_s: float | None,
          report=print) -> list[SeedOutcome]:
    """Runs `seeds` with `template`'s other options on `jobs` processes.

    Stops starting seeds once `budget_s` wall seconds have passed; `report` is
    called with a line per failure as it comes in.
    """
    started = time.perf_counter()
    outcomes: list[SeedOutcome] = []
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(jobs, maxtasksperchild=seeds_per_worker_max) as pool:
        pending = []
        for seed in seeds:
            pending.append(pool.apply_async(_run_one, (dataclasses.replace(template, seed=seed),)))
        for future in pending:
            remaining = None if budget_s is None else max(budget_s - (time.perf_counter() - started), 0)
            try:
                outcome = future.get(timeout=remaining)
            except multiprocessing.TimeoutError:
                report(f"budget of {budget_s:g}s spent; stopping")
                pool.terminate()
                break
            outcomes.append(outcome)
            if outcome.failure:
                report(f"seed {outcome.seed}: {outcome.failure.upper()} (exit {EXIT_CODES[outcome.failure]}): "
                       f"{outcome.explanation}\n  replay: {outcome.replay}")
    return outcomes
