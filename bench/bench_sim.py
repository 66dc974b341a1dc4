"""Simulation speed (issue 4): the reference scenario's simulated seconds per
wall second, a sweep's seeds per minute, and (optionally) how many of the
test suite's runs replay identically in fresh processes.

Reference scenario: `eddy sim run --seed N --faults none --duration 30s`.
One node (`open_node` from actors/node.py, as in production: one sequencer,
two subscription actors (`reference_subscription_actors`), one in-memory shard per table of the simulator's
reference app, 6 tables), the simulated disk and network, and 8 clients:
client n runs workload n mod 6 of bank, counters, list-append, leaderboard,
hot-keys and ingest (the hot-keys and ingest clients and one bank client
speak the sync protocol over the simulated network; the leaderboard client
holds sessions checked by the update oracle). Each client waits 100 ms on average (exponentially
distributed) between one call's answer and its next call (sim/run.py,
`reference_think_s`). Every checker runs.

Baseline, measured in the same invocation and interleaved seed by seed: the
same runs with every checker off (`--no-checks`: the update oracle reads its
Updates without comparing them, and nothing is checked after the run). What
the two differ by is the cost of checking; the rest is the node, the
simulated world and trio's scheduler.

Sweep: `eddy sim sweep --seeds 1-60 --jobs 2 --duration 30s` (swarm faults:
each seed draws its own mix), in seeds per wall minute of the command;
baseline: the same sweep with `--no-checks`.

Determinism (`--determinism fast` or `all`): every run the simulator's tests
make (`make test-fast`'s or `make test`'s part of tests/sim, the real-process
tier aside), recorded by the pytest plugin tests/sim/record_runs.py, is run
again by `eddy sim determinism` in two fresh processes with other
PYTHONHASHSEED values and heap layouts, and counted identical or not.
(`eddy sim determinism` runs a shrunk replay's whole seed.)

The simulator is driven through the `eddy sim` command only (DESIGN.md
section 1: nothing but tests and the command line loads sim/). Speed is the
run's own figure (inside `run`, without the interpreter's start); the
machine may be shared, so process CPU time is printed beside wall time.

Usage:
    python bench/bench_sim.py [--seeds 3,4,5] [--sweep-seeds 1-60] [--jobs 2]
                              [--think 100ms] [--determinism fast|all]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EDDY_SIM = [sys.executable, "-m", "wire.cli", "sim"]


def run_seed(seed: int, think: str, checks: bool) -> dict:
    """One reference-scenario run through `eddy sim run --json`; its JSON result."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.json")
        command = EDDY_SIM + ["run", "--seed", str(seed), "--faults", "none", "--duration", "30s",
                              "--think", think, "--json", path] + ([] if checks else ["--no-checks"])
        completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        if completed.returncode != 0 or not os.path.exists(path):
            raise SystemExit(f"seed {seed} failed (exit {completed.returncode}):\n"
                             f"{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
        with open(path) as f:
            return json.load(f)


def reference_runs(seeds: list[int], think: str) -> dict[str, list[float]]:
    """Each seed with checkers on and off, interleaved: (sim s, wall s, CPU s, commits) per side."""
    totals = {side: [0.0, 0.0, 0.0, 0] for side in ("checked", "unchecked")}
    for seed in seeds:
        for side, checks in (("checked", True), ("unchecked", False)):
            result = run_seed(seed, think, checks)
            total = totals[side]
            total[0] += result["sim_s"]
            total[1] += result["wall_s"]
            total[2] += result["cpu_s"]
            total[3] += result["commit_count"]
    return totals


def sweep_rate(seeds: str, jobs: int, think: str, checks: bool) -> tuple[float, str]:
    """(seeds per wall minute of the command, its summary line) of a 30-second swarm sweep."""
    command = EDDY_SIM + ["sweep", "--seeds", seeds, "--jobs", str(jobs), "--duration", "30s",
                          "--think", think] + ([] if checks else ["--no-checks"])
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    summary = next((line for line in completed.stdout.splitlines() if " seeds run, " in line), "")
    count = int(summary.split(" of ")[0]) if summary else 0
    return count * 60 / wall_s, summary


# ----- determinism of the test suite's runs ------------------------------------

def recorded_runs(which: str) -> list[list[str]]:
    """`eddy sim determinism` arguments of every distinct run tests/sim makes."""
    with tempfile.TemporaryDirectory() as folder:
        record_path = os.path.join(folder, "runs.txt")
        open(record_path, "w").close()
        command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.sim.record_runs", "tests/sim",
                   "--ignore=tests/sim/test_realproc.py"] + (["-m", "not slow"] if which == "fast" else [])
        subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, EDDY_SIM_RECORD=record_path),
                       capture_output=True, check=False)
        with open(record_path) as f:
            commands = f.read().splitlines()
    runs = []
    for command in dict.fromkeys(commands):
        words = shlex.split(command)
        bug = [w.split("=", 1)[1] for w in words if w.startswith("EDDY_SIM_BUG=")]
        args = words[words.index("run") + 1:]
        for flag in ("--calls", "--fault-events"):  # `eddy sim determinism` replays the whole seed
            if flag in args:
                del args[args.index(flag):args.index(flag) + 2]
        runs.append(args + (["--bug", bug[0]] if bug else []))
    return [list(args) for args in dict.fromkeys(tuple(args) for args in runs)]


def _identical(args: list[str]) -> str | None:
    completed = subprocess.run(EDDY_SIM + ["determinism", *args], cwd=REPO_ROOT,
                               capture_output=True, text=True)
    return None if completed.returncode == 0 else (completed.stdout + completed.stderr)[-600:]


def determinism(which: str, jobs: int) -> None:
    started = time.perf_counter()
    runs = recorded_runs(which)
    with ThreadPoolExecutor(max(jobs // 2, 1)) as pool:  # each check runs two processes at once
        differences = list(pool.map(_identical, runs))
    different = [(args, d) for args, d in zip(runs, differences) if d]
    print(f"determinism ({which}): {len(runs) - len(different)} of {len(runs)} distinct runs of "
          f"tests/sim identical under other PYTHONHASHSEED values and heaps "
          f"({time.perf_counter() - started:.0f} s)")
    for args, difference in different:
        print(f"  DIFFERENT: eddy sim determinism {' '.join(args)}\n    {difference}")


# ----- report -------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="3,4,5", help="reference-scenario seeds (default 3,4,5)")
    parser.add_argument("--sweep-seeds", default="1-60", help="sweep seeds (default 1-60; none: skip)")
    parser.add_argument("--jobs", type=int, default=2, help="sweep processes (default 2)")
    parser.add_argument("--think", default="100ms", help="mean think time (default 100ms)")
    parser.add_argument("--determinism", choices=["fast", "all"], default=None,
                        help="also replay the runs of tests/sim (fast: make test-fast's)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"think time {args.think}")
    totals = reference_runs([int(seed) for seed in args.seeds.split(",")], args.think)
    print()
    print("| reference scenario (30 s, no faults, 8 clients) | sim s per wall s | "
          "sim s per CPU s | commits per sim s |")
    print("| --- | --- | --- | --- |")
    for side, label in (("unchecked", "baseline: checkers off"), ("checked", "every checker on")):
        sim_s, wall_s, cpu_s, commits = totals[side]
        print(f"| {label} | {sim_s / wall_s:.1f} | {sim_s / cpu_s:.1f} | {commits / sim_s:.0f} |")
    checked, unchecked = totals["checked"], totals["unchecked"]
    print(f"checking costs {100 * (1 - unchecked[2] / checked[2]):.0f}% of the checked runs' CPU time")
    if args.sweep_seeds != "none":
        print()
        print(f"| sweep: seeds {args.sweep_seeds} of 30 s, swarm faults, {args.jobs} jobs "
              f"| seeds per minute | summary |")
        print("| --- | --- | --- |")
        for label, checks in (("baseline: checkers off", False), ("every checker on", True)):
            rate, summary = sweep_rate(args.sweep_seeds, args.jobs, args.think, checks)
            print(f"| {label} | {rate:.0f} | {summary} |")
    if args.determinism:
        print()
        determinism(args.determinism, args.jobs)


if __name__ == "__main__":
    main()
