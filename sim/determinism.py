"""`eddy sim determinism`: the same seed in fresh processes must give the same run.

Each run goes to its own `python -m wire.cli sim run ... --json FILE
--keep-events` process, with its own PYTHONHASHSEED and a perturbed heap
(EDDY_SIM_HEAP_PERTURB allocates a seed-chosen amount of garbage first, so
object addresses, and so `id()` and default hashes, differ). The runs'
checkpoint hashes (one per 1,000 events) and then their events are compared,
and the first differing event is named with what each run did there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

HEAP_PERTURB_VARIABLE = "EDDY_SIM_HEAP_PERTURB"


def perturb_heap() -> list:
    """Allocates garbage as EDDY_SIM_HEAP_PERTURB says; keep the result alive."""
    amount = int(os.environ.get(HEAP_PERTURB_VARIABLE, "0") or 0)
    return [object() for _ in range(amount)] + [bytearray(amount % 997)]


def run_in_process(run_args: list[str], hash_seed: int, perturb: int) -> dict:
    """Runs `eddy sim run RUN_ARGS` in a fresh process; returns its JSON result."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.json")
        env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), **{HEAP_PERTURB_VARIABLE: str(perturb)})
        completed = subprocess.run([sys.executable, "-m", "wire.cli", "sim", "run", *run_args,
                                    "--json", path, "--keep-events"],
                                   env=env, capture_output=True, text=True)
        if not os.path.exists(path):
            raise RuntimeError(f"the run did not finish (exit {completed.returncode}):\n"
                               f"{completed.stderr[-3000:]}")
        with open(path) as f:
            return json.load(f)


def first_difference(first: dict, second: dict) -> str | None:
    """None when the runs agree, else where they part, with both events."""
    if first["trace"] == second["trace"] and first["events"] == second["events"]:
        return None
    for number, (a, b) in enumerate(zip(first["checkpoints"], second["checkpoints"])):
        if a != b:
            window = f"checkpoints agree up to event {number * 1000}, differ by event {(number + 1) * 1000}"
            break
    else:
        window = "every common checkpoint agrees"
    for index, (a, b) in enumerate(zip(first["events"], second["events"])):
        if a != b:
            return f"{window}; first differing event #{index}:\n  run 1: {a}\n  run 2: {b}"
    return (f"{window}; one run has {len(first['events'])} events, the other "
            f"{len(second['events'])}")


def check(run_args: list[str], runs: int = 2, hash_seeds=(1, 2), perturbs=(0, 4099)) -> tuple[str | None, list[dict]]:
    """Runs the seed `runs` times in fresh processes; (difference or None, results)."""
    results = [run_in_process(run_args, hash_seeds[n % len(hash_seeds)], perturbs[n % len(perturbs)])
               for n in range(runs)]
    for other in results[1:]:
        difference = first_difference(results[0], other)
        if difference:
            return difference, results
    return None, results
