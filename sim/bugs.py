"""Planted bugs: known ways Eddy could be wrong, to prove the checkers catch them.

`EDDY_SIM_BUG=<name>` (or `eddy sim run --bug NAME`) plants one, and only
inside the simulator: each bug is applied by `plant` to a freshly opened node
of a simulated World, by replacing one of that node's parts on the instance.
Nothing in engine/ or actors/ knows about planted bugs, so the production
path cannot take one (and no flag there can be left on by mistake).

Each entry says what it breaks and which checker should catch it.
"""

from __future__ import annotations

import os

ENVIRONMENT_VARIABLE = "EDDY_SIM_BUG"

BUGS = {
    "skipped-read-validation":
        "the sequencer admits every commit without checking its read set against "
        "later commits (lost updates; caught by conserved totals, counters and the "
        "serializability checker)",
    "ack-before-fsync":
        "the sequencer writes commit groups without syncing them, so an "
        "acknowledged commit can vanish in a power loss (caught by the durability "
        "checker)",
    "timestamp-reuse-after-restart":
        "after a restart the sequencer forgets the last ts and trusts the clock, "
        "which may have gone back (caught by the commit-order checker)",
}


def selected_bug(explicit: str | None = None) -> str | None:
    """The bug to plant: `explicit`, else $EDDY_SIM_BUG, else None.

    Raises:
        ValueError: an unknown name.
    """
    name = explicit or os.environ.get(ENVIRONMENT_VARIABLE) or None
    if name is not None and name not in BUGS:
        raise ValueError(f"unknown bug {name!r}; `eddy sim bugs` lists them")
    return name


def plant(name: str | None, node, world) -> None:
    """Plants bug `name` into a node just opened on the simulated `world`."""
    if name is None:
        return
    if name == "skipped-read-validation":
        node.sequencer.state.conflicts = lambda snapshot_ts, read_set: None
    elif name == "ack-before-fsync":
        node.sequencer.store = _UnsyncedStore(node.sequencer.store)
    elif name == "timestamp-reuse-after-restart":
        node.sequencer.state.last_ts = 0
    else:
        raise ValueError(f"unknown bug {name!r}")


class _UnsyncedStore:
    """The node's store with every write made unsynced."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def write(self, ops, sync: bool) -> None:
        await self._store.write(ops, sync=False)
