"""trio's instruments as a plain dict, for the node's and the simulator's loops.

trio keeps a run's instruments in `Instruments`, a `UserDict`, and asks
`hook in instruments` twice per task step and three times per scheduler
pass: each a Python-level `__contains__` call. A loop that installs no
instruments (a served node, the simulator) pays them for nothing: about
3.7 calls per WebSocket mutation in `eddy dev`, about 150,000 per
reference-scenario simulation (1% of its time). `with_dict_instruments`
swaps in a dict, which answers `in` in C, and still adds, removes and calls
instruments through trio's own `Instruments`.

Private: pinned trio (pyproject.toml), guarded by tests/actors/test_instruments.py.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable


class DictInstruments(dict):
    """trio's run loop's instruments as a dict of hook name -> instruments,
    mirroring the real `Instruments` (`runner.instruments`), which does the work."""

    __slots__ = ("_instruments",)

    def __init__(self, instruments: Any) -> None:
        super().__init__(instruments.data)
        self._instruments = instruments

    def add_instrument(self, instrument: Any) -> None:
        self._instruments.add_instrument(instrument)
        self._mirror()

    def remove_instrument(self, instrument: Any) -> None:
        self._instruments.remove_instrument(instrument)
        self._mirror()

    def call(self, hook: str, *args: Any) -> None:
        self._instruments.call(hook, *args)

    def _mirror(self) -> None:
        self.clear()
        self.update(self._instruments.data)


async def with_dict_instruments(async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Runs `async_fn(*args)` after putting a `DictInstruments` in the running
    trio loop: `trio.run(with_dict_instruments, main, ...)`."""
    from trio._core import _run  # private: pinned trio, guarded by the test above

    runner = _run.GLOBAL_RUN_CONTEXT.runner
    if not isinstance(runner.instruments, DictInstruments):
        runner.instruments = DictInstruments(runner.instruments)
    return await async_fn(*args)
