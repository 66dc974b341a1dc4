"""`eddy dev` with a planted bug, for the real-process tier only.

`python -m sim.real.serve APP_DIR --port P --data DIR --bug NAME` serves the
app exactly as `eddy dev` does (`wire.devserver.serve_dev`), except that the
node it opens gets bug NAME planted on its instance right after opening, by
`sim.bugs.plant`, as the simulator plants it. The real tier starts this
instead of `eddy dev` when a bug is asked for (EDDY_SIM_BUG), so a planted
bug can be shown to fail a real run; production never imports sim, so no
planted path exists there. Only the node's bugs can be planted here (the
sync endpoint's are the simulator's, which makes that endpoint itself).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
from pathlib import Path

import trio

import wire.devserver as devserver
from engine.world import split_seed

from sim import bugs

NODE_BUGS = [name for name in bugs.BUGS if name not in bugs.SERVER_BUGS]


class _SeededWorld:
    """What `bugs.plant` draws from: substreams of one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def stream(self, *labels: object) -> random.Random:
        return random.Random(split_seed(self.seed, *labels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.real.serve",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("app_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bug", choices=NODE_BUGS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("eddy").addHandler(handler)
    opened = devserver.open_node

    @contextlib.asynccontextmanager
    async def open_planted(*args, **kwargs):
        async with opened(*args, **kwargs) as node:
            bugs.plant(options.bug, node, _SeededWorld(options.seed))
            print(f"planted bug: {options.bug}", file=sys.stderr, flush=True)
            yield node

    # This launcher's process only: serve_dev opens its node through this name.
    devserver.open_node = open_planted
    trio.run(lambda: devserver.serve_dev(options.app_dir, host="127.0.0.1", port=options.port,
                                         data_dir=options.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
