"""Restart with stale storage: an older copy of the data folder coming back
is refused with EddyError(STALE_STORAGE), in the simulator and on RocksDB.

Design (actors/node.py, StorageMark): every opening raises a generation
record in meta (synced), and the World remembers, per data folder, the
generation it wrote and the newest commit ts it saw durable. A folder below
either is refused. In the simulator the World outlives node incarnations; in
production the process does (RealWorld.storage_seen).
"""

from __future__ import annotations

import shutil

import pytest
import trio

from actors import node as node_module
from actors.app import load_app
from actors.node import open_node
from engine.errors import EddyError, ErrorCode
from sim.run import SIM_APP_DIR, RunOptions, run

FAULTS = ["crash", "stale_storage"]


def test_older_copies_restored_at_restarts_are_refused():
    refused = 0
    for seed in (1, 2):
        result = run(RunOptions(seed=seed, workload="counters,leaderboard", faults=FAULTS,
                                duration_s=4.0))
        assert result.failure is None, result.explanation
        check = next(c for c in result.checks if c.name.startswith("stale storage"))
        refused += int(check.explanation.split()[0])
        assert result.fault_counts.get("stale_storage", 0) >= 1
    assert refused >= 2


def test_a_node_that_does_not_check_is_caught(monkeypatch):
    """With the check switched off the node serves the old copy, and the run says so."""
    monkeypatch.setattr(node_module, "_check_not_stale",
                        lambda node, world, data_dir: node_module._stored_generation(node.store) + 1)
    result = run(RunOptions(seed=1, workload="counters", faults=FAULTS, duration_s=4.0))
    assert result.failure == "safety"
    assert "opened an older copy of its data" in result.explanation


def test_lost_durable_commits_are_a_false_alarm_and_a_failure():
    """ack-before-fsync loses published commits at a power loss: the next
    opening finds the folder older than what was durable, which the run
    reports as a safety failure (no copy was restored)."""
    for seed in range(1, 9):
        result = run(RunOptions(seed=seed, workload="counters", faults=["power_loss"],
                                duration_s=4.0, bug="ack-before-fsync"))
        if "no older copy was restored" in result.explanation:
            assert result.failure == "safety"
            return
    pytest.fail("no seed lost a published commit to a power loss")


def test_rocksdb_folder_restored_from_an_older_copy_is_refused(tmp_path):
    app = load_app(SIM_APP_DIR)
    data, backup, newest = tmp_path / "data", tmp_path / "backup", tmp_path / "newest"

    async def main():
        async with open_node(app=app, data_dir=str(data)) as node:
            await node.mutation("counters:increment", {"name": "a", "pause_ms": 0})
        shutil.copytree(data, backup)  # a backup, taken while the node is down
        async with open_node(app=app, data_dir=str(data)) as node:
            await node.mutation("counters:increment", {"name": "a", "pause_ms": 0})
        shutil.move(data, newest)
        shutil.copytree(backup, data)  # the backup restored by mistake
        with pytest.raises(EddyError) as refused:
            async with open_node(app=app, data_dir=str(data)):
                pass
        assert refused.value.code is ErrorCode.STALE_STORAGE
        assert "older than this process last saw it" in refused.value.message
        # The newest copy put back opens, with every write.
        shutil.rmtree(data)
        shutil.move(newest, data)
        async with open_node(app=app, data_dir=str(data)) as node:
            assert (await node.query("counters:values", {}))["a"] == 2

    trio.run(main)


def test_a_copy_with_the_same_state_opens(tmp_path):
    """Reopening the same folder, or an exact copy of it, is not stale."""
    app = load_app(SIM_APP_DIR)
    data, copy = tmp_path / "data", tmp_path / "copy"

    async def main():
        async with open_node(app=app, data_dir=str(data)) as node:
            await node.mutation("counters:increment", {"name": "a", "pause_ms": 0})
        async with open_node(app=app, data_dir=str(data)) as node:
            assert (await node.query("counters:values", {}))["a"] == 1
        shutil.copytree(data, copy)
        shutil.rmtree(data)
        shutil.copytree(copy, data)
        async with open_node(app=app, data_dir=str(data)) as node:
            assert (await node.query("counters:values", {}))["a"] == 1

    trio.run(main)
