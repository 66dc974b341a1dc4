"""Process pauses (the `pause` fault): a paused node answers, reads, sends and
writes nothing until it resumes, while clients' timers run on; runs with
pauses pass every check and replay bit for bit."""

from __future__ import annotations

import trio

from sim.faults import ALL_FAULT_KINDS, draw_plan
from sim.host import NodeHost
from sim.run import SIM_APP_DIR, RunOptions, _app, run
from sim.trace import Trace
from sim.world import SimWorld, run_simulated


def test_a_call_to_a_paused_node_is_answered_only_after_the_pause():
    """A query sent into a 2-second pause completes after it ends; a disk write too."""
    world = SimWorld(1)
    host = NodeHost(world, _app(SIM_APP_DIR), Trace())
    seen = {}

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.run)
            await host.wait_up()
            started = trio.current_time()
            assert host.pause(2.0)
            assert not host.pause(1.0)  # already stopped
            await host.call("query", "counters:values", {})
            seen["query_s"] = trio.current_time() - started
            assert host.pause(1.0)
            started = trio.current_time()
            await world.store.write([("meta", b"probe", b"x")], sync=True)
            seen["write_s"] = trio.current_time() - started
            host.stop()

    run_simulated(main, 1)
    assert 2.0 <= seen["query_s"] < 2.1
    assert 1.0 <= seen["write_s"] < 1.1
    assert world.pause.count == 2


def test_pause_is_drawn_by_swarms_after_every_other_kind():
    """`pause` is a known kind; adding it shifted no earlier draw of a seed's plan."""
    assert ALL_FAULT_KINDS[-1] == "pause"
    import random
    plans = [draw_plan(random.Random(seed), None) for seed in range(40)]
    assert any("pause" in plan.intervals_s for plan in plans)
    assert any("pause" not in plan.intervals_s for plan in plans)


def test_runs_with_pauses_pass_and_replay():
    """Pauses with crashes, partitions and slow consumers break no check, and the same seed gives the same trace."""
    options = RunOptions(seed=4, faults=["pause", "crash", "partition", "slow_consumer", "clock"],
                         duration_s=8.0)
    first = run(options)
    assert first.failure is None, f"{first.explanation}\nreplay: {options.replay_command()}"
    assert first.fault_counts.get("pause", 0) >= 1 and first.fault_counts["paused ms"] > 0
    assert run(options).trace == first.trace
