"""Simulation speed (issue 4): the reference scenario's simulated seconds per
wall second, a sweep's seeds per minute, and (optionally) how many of the
test suite's seeds replay identically in fresh processes.

Reference scenario: `eddy sim run --seed N --faults none --duration 30s`.
One node (`open_node` from actors/node.py, as in production: one sequencer,
one subscription actor, one in-memory shard per table of the simulator's
reference app, 5 tables), the simulated disk and network, and 8 clients:
client n runs workload n mod 5 of bank, counters, list-append, leaderboard
and hot-keys (hot-keys' client and every other bank client speak the sync
protocol over the simulated network; the leaderboard client holds sessions
checked by the update oracle). Each client waits 100 ms on average
(exponentially distributed) between one call's answer and its next call
(sim/run.py, `reference_think_s`). Every checker runs.

Baseline, measured in the same invocation and interleaved seed by seed: the
same runs with every checker off (`RunOptions(checks=False)`: the update
oracle reads its Updates without comparing them, and nothing is checked
after the run). What the two differ by is the cost of checking; the rest is
the node, the simulated world and trio's scheduler.

Sweep: `eddy sim sweep --seeds 1-60 --jobs 2 --duration 30s` (swarm faults:
each seed draws its own mix), in seeds per wall minute; baseline: the same
sweep with the checkers off.

Determinism (`--determinism fast` or `all`): every seed the simulator tests
run (`make test-fast`'s or `make test`'s part of tests/sim), recorded as run
options while pytest runs them, is run again in two fresh processes with
other PYTHONHASHSEED values and heap layouts (`eddy sim determinism`), and
counted identical or not.

Benchmarks are not engine code: they read the wall clock directly. The
machine may be shared: process CPU time is printed beside wall time.

Usage:
    python bench/bench_sim.py [--seeds 3,4,5] [--sweep-seeds 1-60] [--jobs 2]
                              [--think 100ms] [--determinism fast|all]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sim.run import RunOptions, reference_think_s, run  # noqa: E402
from sim.sweep import parse_seeds, sweep  # noqa: E402

# Where the recording pytest plugin (below) appends the run options it sees.
RECORD_VARIABLE = "EDDY_BENCH_SIM_RECORD"


def reference_runs(seeds: list[int], think_s: float) -> dict[str, list[float]]:
    """Runs each seed with checkers on and off, interleaved; totals per side."""
    totals = {side: [0.0, 0.0, 0.0, 0] for side in ("checked", "unchecked")}
    for seed in seeds:
        for side, checks in (("checked", True), ("unchecked", False)):
            started_cpu = time.process_time()
            result = run(RunOptions(seed=seed, faults=[], duration_s=30.0, think_s=think_s,
                                    checks=checks))
            if result.failure:
                raise SystemExit(f"seed {seed} failed: {result.explanation}\n"
                                 f"replay: {result.options.replay_command()}")
            total = totals[side]
            total[0] += result.sim_s
            total[1] += result.wall_s
            total[2] += time.process_time() - started_cpu
            total[3] += result.commit_count
    return totals


def sweep_rate(seeds: list[int], jobs: int, think_s: float, checks: bool) -> tuple[float, int]:
    """(seeds per wall minute, failures) of a 30-simulated-second swarm sweep."""
    started = time.perf_counter()
    outcomes = sweep(RunOptions(seed=0, duration_s=30.0, think_s=think_s, checks=checks),
                     seeds, jobs, None, report=lambda line: None)
    wall_s = time.perf_counter() - started
    return len(outcomes) * 60 / wall_s, sum(1 for o in outcomes if o.failure)


# ----- determinism of the test suite's seeds ---------------------------------

def pytest_configure(config) -> None:
    """As a pytest plugin (`-p bench_sim`): records every run's options."""
    import sim.run
    record_path = os.environ[RECORD_VARIABLE]
    original = sim.run.run

    def recording(options):
        if options.checks and not options.keep_events:
            with open(record_path, "a") as f:
                f.write(json.dumps(_cli_args(options)) + "\n")
        return original(options)
    # Modules imported already (sim.sweep, by this one) hold the original.
    for module in [m for name, m in sys.modules.items() if name.startswith("sim.")]:
        if getattr(module, "run", None) is original:
            module.run = recording


def _cli_args(options: RunOptions) -> list[str]:
    """`eddy sim run` arguments that make the same run."""
    faults = "swarm" if options.faults is None else (",".join(options.faults) or "none")
    args = ["--seed", str(options.seed), "--workload", options.workload, "--faults", faults,
            "--duration", f"{options.duration_s!r}s", "--clients", str(options.clients),
            "--think", f"{options.think_s!r}s"]
    if options.app_dir:
        args += ["--app", options.app_dir]
    if options.bug:
        args += ["--bug", options.bug]
    if options.calls is not None:
        args += ["--calls", ",".join(f"{c}:{i}" for c, i in sorted(options.calls)) or "none"]
    if options.fault_events is not None:
        args += ["--fault-events",
                 ",".join(f"{k}:{n}" for k, n in sorted(options.fault_events)) or "none"]
    return args


def recorded_seeds(which: str) -> list[list[str]]:
    """The distinct runs tests/sim makes (`fast`: without the slow suites)."""
    with tempfile.TemporaryDirectory() as folder:
        record_path = os.path.join(folder, "runs.jsonl")
        open(record_path, "w").close()
        env = dict(os.environ, **{RECORD_VARIABLE: record_path},
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "bench"), str(REPO_ROOT)]))
        command = [sys.executable, "-m", "pytest", "-q", "-p", "bench_sim", "tests/sim",
                   "--ignore=tests/sim/test_realproc.py"]
        if which == "fast":
            command += ["-m", "not slow"]
        subprocess.run(command, cwd=REPO_ROOT, env=env, check=False, capture_output=True)
        with open(record_path) as f:
            lines = f.read().splitlines()
    return [json.loads(line) for line in dict.fromkeys(lines)]


def _identical(args: list[str]) -> tuple[list[str], str | None]:
    from sim.determinism import check
    try:
        difference, _ = check(args)
    except RuntimeError as error:
        difference = str(error)
    return args, difference


def determinism(which: str, jobs: int) -> None:
    started = time.perf_counter()
    runs = recorded_seeds(which)
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        outcomes = pool.map(_identical, runs, chunksize=1)
    different = [(args, difference) for args, difference in outcomes if difference]
    print(f"determinism ({which}): {len(runs) - len(different)} of {len(runs)} runs of tests/sim "
          f"identical under other PYTHONHASHSEED values and heaps "
          f"({time.perf_counter() - started:.0f} s)")
    for args, difference in different:
        print(f"  DIFFERENT: eddy sim determinism {' '.join(args)}\n    {difference[:500]}")


# ----- report -----------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="3,4,5", help="reference-scenario seeds (default 3,4,5)")
    parser.add_argument("--sweep-seeds", default="1-60", help="sweep seeds (default 1-60; none: skip)")
    parser.add_argument("--jobs", type=int, default=2, help="sweep processes (default 2)")
    parser.add_argument("--think", type=float, default=reference_think_s * 1000,
                        help=f"mean think time in ms (default {reference_think_s * 1000:g})")
    parser.add_argument("--determinism", choices=["fast", "all"], default=None,
                        help="also replay the seeds of tests/sim (fast: make test-fast's)")
    args = parser.parse_args()
    think_s = args.think / 1000
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"think time {args.think:g} ms")
    totals = reference_runs(parse_seeds(args.seeds), think_s)
    print()
    print("| reference scenario (30 s, no faults, 8 clients) | sim s per wall s | "
          "sim s per CPU s | commits per sim s |")
    print("| --- | --- | --- | --- |")
    for side, label in (("unchecked", "baseline: checkers off"), ("checked", "every checker on")):
        sim_s, wall_s, cpu_s, commits = totals[side]
        print(f"| {label} | {sim_s / wall_s:.1f} | {sim_s / cpu_s:.1f} | {commits / sim_s:.0f} |")
    checked, unchecked = totals["checked"], totals["unchecked"]
    print(f"checking costs {100 * (1 - unchecked[1] / checked[1]):.0f}% of the checked runs' wall time")
    if args.sweep_seeds != "none":
        seeds = parse_seeds(args.sweep_seeds)
        print()
        print(f"| sweep: {len(seeds)} seeds of 30 s, swarm faults, {args.jobs} jobs | seeds per minute "
              f"| failed |")
        print("| --- | --- | --- |")
        for label, checks in (("baseline: checkers off", False), ("every checker on", True)):
            rate, failed = sweep_rate(seeds, args.jobs, think_s, checks)
            print(f"| {label} | {rate:.0f} | {failed} |")
    if args.determinism:
        print()
        determinism(args.determinism, args.jobs)


if __name__ == "__main__":
    main()
