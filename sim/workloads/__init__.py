"""Workloads: what simulated clients do, and what must hold afterwards.

A workload is an object with:

- `name`;
- `async setup(client)`: runs once, before faults start (creates accounts);
- `async step(client)`: one client operation, chosen with `client.rng`;
- `async finish(client)`: final reads in the healed liveness phase;
- `check(record) -> list[Check]`: its invariants over the run's history
  (`record.history`, `sim.host.Operation`s) and the final data.

Every call goes through `client.call(kind, path, args)`, which records it.
Built-in workloads use the reference app in sim/app; a user's workload file
(`eddy sim run --app APP --workload my_workload.py`) defines `workload`, an
object of this shape, for its own app (docs/simulation.md).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path


@dataclasses.dataclass
class Check:
    """One checker's verdict: `ok`, and if not, a readable explanation."""

    name: str
    ok: bool
    explanation: str = ""
    liveness: bool = False


def builtin_workloads() -> dict:
    from sim.workloads.bank import BankWorkload
    from sim.workloads.counters import CounterWorkload
    from sim.workloads.leaderboard import LeaderboardWorkload
    from sim.workloads.list_append import ListAppendWorkload
    from sim.workloads.hot_keys import HotKeysWorkload
    from sim.workloads.ingest import IngestWorkload
    return {"bank": BankWorkload, "counters": CounterWorkload, "list-append": ListAppendWorkload,
            "leaderboard": LeaderboardWorkload, "hot-keys": HotKeysWorkload, "ingest": IngestWorkload}


def load_workloads(spec: str) -> list:
    """Workload objects for `spec`: `all`, a comma list of built-in names, or a .py file.

    Raises:
        ValueError: an unknown name, or a file without `workload`.
    """
    if spec.endswith(".py"):
        path = Path(spec)
        module_spec = importlib.util.spec_from_file_location(f"eddy_sim_workload_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, "workload"):
            raise ValueError(f"{spec} defines no `workload`")
        return [module.workload]
    known = builtin_workloads()
    names = list(known) if spec == "all" else [name.strip() for name in spec.split(",")]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; built in: {', '.join(known)}")
    return [known[name]() for name in names]
