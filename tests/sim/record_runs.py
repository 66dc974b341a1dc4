"""A pytest plugin that records every simulated run the tests make, as the
command that replays it (`RunOptions.replay_command()`), one a line, to the
file $EDDY_SIM_RECORD names; bench/bench_sim.py `--determinism` replays them
with `eddy sim determinism`. Load it with `-p tests.sim.record_runs`."""

from __future__ import annotations

import os
import sys

RECORD_VARIABLE = "EDDY_SIM_RECORD"


def pytest_configure(config) -> None:
    """Wraps `sim.run.run` (and any module that imported it already)."""
    path = os.environ.get(RECORD_VARIABLE)
    if not path:
        return
    import sim.run
    original = sim.run.run

    def recording(options):
        if options.checks and not options.keep_events:
            with open(path, "a") as f:
                f.write(options.replay_command() + "\n")
        return original(options)
    for name, module in list(sys.modules.items()):
        if (name == "sim" or name.startswith("sim.")) and getattr(module, "run", None) is original:
            module.run = recording
