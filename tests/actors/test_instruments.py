"""`with_dict_instruments` keeps trio's instruments working (it swaps a private
field of trio's loop: a trio upgrade that changes it fails here)."""

import trio

from actors.instruments import DictInstruments, with_dict_instruments


class Counting(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task) -> None:
        self.steps += 1


def test_instruments_added_and_removed_still_run():
    async def main():
        from trio._core import _run

        assert isinstance(_run.GLOBAL_RUN_CONTEXT.runner.instruments, DictInstruments)
        counting = Counting()
        trio.lowlevel.add_instrument(counting)
        for _ in range(5):
            await trio.sleep(0)
        trio.lowlevel.remove_instrument(counting)
        seen = counting.steps
        for _ in range(5):
            await trio.sleep(0)
        return seen, counting.steps

    seen, after = trio.run(with_dict_instruments, main)
    assert seen >= 5
    assert after == seen  # removed: no more calls


def test_an_instrument_given_to_trio_run_is_kept():
    counting = Counting()

    async def main():
        await trio.sleep(0)

    trio.run(with_dict_instruments, main, instruments=[counting])
    assert counting.steps >= 1
