"""The node under simulation, its crashes and restarts, and the clients that call it.

Theory of operation. `NodeHost.run` is the node's life: open the real node
(`actors.node.open_node`) on the simulated World, serve until a crash is
asked for or a storage fault ends it, apply the crash to the disk (a power
loss drops unsynced writes), wait, and open it again on the same disk. Each
opening is an *incarnation*. `pause` stops the live process for a while
(the World's ProcessPause); a process that dies is no longer paused.

Clients (`SimClient`) call the node's embedded API through the host. A call
belongs to the incarnation it started on; when that incarnation dies, the
call is cancelled and recorded as `info`: its outcome is unknown (it may or
may not have committed), as for a client whose server vanished mid-request.
A call that arrives while the node is down waits for the next incarnation.

Every call is an `Operation` in the run's history, with its virtual
invocation and completion times, which the checkers read (sim/checkers/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from typing import Any

import trio

from actors.app import App
from actors.node import open_node
from engine.commits import Commit
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed

from sim import bugs
from sim.disk import DiskFault
from sim.timers import sleep
from sim.trace import Trace
from sim.world import SimWorld

DATA_DIR = "data"


@dataclasses.dataclass
class Operation:
    """One client call. `status`: "ok" (answered), "fail" (refused; did not
    happen), "info" (outcome unknown: the node died while it ran)."""

    client: int
    index: int
    kind: str
    path: str
    args: Any
    invoke_s: float
    complete_s: float | None = None
    status: str | None = None
    value: Any = None
    ts: int | None = None
    error: str | None = None


class NodeCrashed(Exception):
    """The node died while the call ran: its outcome is unknown."""


class NodeHost:
    """Runs the node's incarnations on one simulated World.

    Fields:
        node: the live node, or None while it is down.
        incarnation: how many times the node has been opened.
        subscription_actors: how many subscription actors each incarnation
            runs (open_node's `subscription_actors`); fixed for the run.
        published: (ts, path) of every commit the node published, across
            incarnations, in publication order.
        stop_reasons: why each incarnation ended ("crash", "power_loss",
            "disk_fault: ...", "stale_storage_refused", ...).
        stale_refused: older copies of the data the node refused to open.
        stale_violations: what went wrong with stale storage, readable: a
            node that served an older copy, or refused a current one.

    Stale storage (the `stale_storage` fault): `stale_storage_fault` either
    takes a snapshot of the data volume or, later, crashes the node and
    restores that snapshot in place of the volume, as a disk snapshot or a
    backup restored by mistake would. The next opening must refuse it with
    EddyError(STALE_STORAGE) (actors/node.py, StorageMark); the host then
    puts the current volume back (the operator's fix) and opens again.
    """

    def __init__(self, world: SimWorld, app: App, trace: Trace,
                 subscription_actors: int = 1) -> None:
        self.world = world
        self.app = app
        self.trace = trace
        self.subscription_actors = subscription_actors
        self.node = None
        self.incarnation = 0
        self.published: list[tuple[int, str]] = []
        self.stop_reasons: list[str] = []
        self.unexpected: list[BaseException] = []
        self._up = trio.Event()
        self._crash = trio.Event()
        self._power_loss = False
        self._calls: set[trio.CancelScope] = set()
        self._stopping = False
        self.rng = world.stream("host")
        # (virtual time, newest durable ts) at each opening that served.
        self.openings: list[tuple[float, int]] = []
        self.stale_refused = 0
        self.stale_violations: list[str] = []
        self._snapshot = None  # (volume copy, its generation, its newest commit ts)
        self._stale_armed = None  # a snapshot to restore before the next opening
        self._current_volume = None  # set aside while a stale copy is in place
        self._served_generation = 0  # the generation of the last opening that served

    async def wait_up(self):
        while self.node is None:
            await self._up.wait()
        return self.node

    def crash(self, power_loss: bool) -> bool:
        """Asks the live node to die now (as kill -9, or a power cut).

        A power cut while the node is down (restarting) still drops the
        disk's unsynced writes; a crash of a node that is down does nothing
        and returns False.
        """
        if self.node is None:
            if power_loss:
                self.trace.event("power_loss", self.world.disk.power_loss())
            return power_loss
        self._power_loss = power_loss
        self._crash.set()
        return True

    def pause(self, duration_s: float) -> bool:
        """Stops the live node's process for `duration_s` (a GC or VM pause);
        False when it is down or already stopped (sim/world.py, ProcessPause)."""
        if self.node is None or not self.world.pause.begin(duration_s):
            return False
        self.trace.event("paused", self.incarnation, duration_s)
        return True

    def stop(self) -> None:
        self._stopping = True
        self._crash.set()

    async def run(self) -> None:
        """The node's lives, until `stop`. Unexpected exceptions are kept in
        `unexpected` (the run reports them as a crash of the simulator)."""
        while not self._stopping:
            reason = await self._incarnation()
            self.stop_reasons.append(reason)
            self.world.pause.end()  # a process that died is paused no more
            self.trace.event("node_stopped", self.incarnation, reason)
            for scope in list(self._calls):
                scope.cancel()
            if self._power_loss:
                dropped = self.world.disk.power_loss()
                self.trace.event("power_loss", dropped)
            self._power_loss = False
            if self._stopping:
                return
            await sleep(self.rng.uniform(0.05, 1.0))

    async def _incarnation(self) -> str:
        self.incarnation += 1
        self._crash = trio.Event()
        stale = self._restore_stale_copy()
        try:
            with trio.CancelScope() as scope:
                async with open_node(app=self.app, data_dir=DATA_DIR, world=self.world,
                                     subscription_actors=self.subscription_actors) as node:
                    if stale is not None:
                        self._stale_violation(
                            f"the node opened an older copy of its data (generation {stale[1]}, "
                            f"newest commit ts {stale[2]}) restored at t={trio.current_time():.3f}s "
                            f"instead of refusing it with StaleStorage")
                        return "stale_storage_served"
                    node.sequencer.on_publish.append(self._published)
                    bugs.plant(self.world.planted_bug, node, self.world)
                    self.trace.event("node_started", self.incarnation, node.latest_ts)
                    self.openings.append((trio.current_time(), node.latest_ts))
                    self._served_generation = _volume_age(self.world.disk.volume(DATA_DIR))[0]
                    self.node = node
                    self._up.set()
                    self._up = trio.Event()
                    await self._crash.wait()
                    if self._stopping:
                        return "stopped"
                    scope.cancel()
            return "power_loss" if self._power_loss else "crash"
        except DiskFault as fault:
            # An injected storage failure ends the node, as DESIGN.md says a
            # storage error must; anything else is a real crash and propagates.
            return f"disk_fault: {fault.message}"
        except EddyError as error:
            if error.code is not ErrorCode.STALE_STORAGE:
                raise
            self.trace.event("stale_storage_refused", stale is not None)
            if stale is not None:
                self.stale_refused += 1
                return "stale_storage_refused"
            self._stale_violation(
                f"opening the node at t={trio.current_time():.3f}s failed with StaleStorage, but "
                f"no older copy was restored: durable data went missing ({error.message})")
            # The operator's override: accept the folder as it is, and go on.
            self.world.storage_seen.pop(DATA_DIR, None)
            return "stale_storage_false_alarm"
        finally:
            self.node = None
            if self._current_volume is not None:
                # The operator puts the current volume back.
                self.world.disk.swap(DATA_DIR, self._current_volume)
                self._current_volume = None

    # ----- stale storage ---------------------------------------------------

    def stale_storage_fault(self) -> bool:
        """The stale-storage fault (see the class docstring): takes a snapshot
        if none is held, else restores it at a crash, if it is older than
        what the process saw: the generation its last opening that served
        wrote, or its newest published commit. (An opening that died before
        serving, e.g. killed while paused after its generation record landed,
        left a newer generation on the volume that no process saw; a copy
        without it loses nothing.) Returns whether a restore was set off."""
        disk = self.world.disk
        if DATA_DIR not in disk.volumes:
            return False
        if self._snapshot is None:
            generation, ts = _volume_age(disk.volume(DATA_DIR))
            self._snapshot = (disk.snapshot(DATA_DIR), generation, ts)
            self.trace.event("snapshot", generation, ts)
            return False
        snapshot, self._snapshot = self._snapshot, None
        seen = (self._served_generation, self.published[-1][0] if self.published else 0)
        if snapshot[1:] >= seen or self._stale_armed is not None:
            return False  # nothing happened since: the copy is not older
        self._stale_armed = snapshot
        self.crash(power_loss=False)
        return True

    def _restore_stale_copy(self):
        """Puts the armed snapshot in place of the volume; returns it, or None."""
        snapshot, self._stale_armed = self._stale_armed, None
        if snapshot is None:
            return None
        self._current_volume = self.world.disk.swap(DATA_DIR, snapshot[0])
        self.trace.event("stale_storage_restored", snapshot[1], snapshot[2])
        return snapshot

    def _stale_violation(self, text: str) -> None:
        self.stale_violations.append(text)
        self.trace.event("stale_storage_violation", text)

    @contextlib.asynccontextmanager
    async def attached(self):
        """`async with host.attached() as node:` the live node (waiting for one
        if it is down); when that node dies the block is cancelled and ends
        quietly, as a call in flight does (for sessions that outlive a call)."""
        node = await self.wait_up()
        with trio.CancelScope() as scope:
            self._calls.add(scope)
            try:
                yield node
            finally:
                self._calls.discard(scope)

    def _published(self, group: list[Commit]) -> None:
        for commit in group:
            self.published.append((commit.ts, commit.call.path))
            self.trace.event("commit", commit.ts, commit.call.path, commit.snapshot_ts)

    async def call(self, kind: str, path: str, args: Any):
        """Runs one call on the live node (waiting for one if it is down).

        Raises:
            NodeCrashed: the node died while the call ran.
            EddyError, AppError, FunctionCrashed: the call failed.
        """
        node = await self.wait_up()
        pause = self.world.pause
        with trio.CancelScope() as scope:
            self._calls.add(scope)
            try:
                # A paused process takes the call in, and answers it, only
                # once it runs again (sim/world.py, ProcessPause).
                await pause.wait_running()
                result = await node.call(kind, path, args)
                await pause.wait_running()
                return result
            finally:
                self._calls.discard(scope)
        raise NodeCrashed()


def _volume_age(volume) -> tuple[int, int]:
    """(generation, newest commit ts) of a data volume, read from its records."""
    from actors.node import GENERATION_KEY
    from actors.storage import unseal
    stored = volume.visible["meta"].get(GENERATION_KEY)
    generation = 0 if stored is None else int.from_bytes(unseal("meta", GENERATION_KEY, stored), "big")
    commits = volume.visible["commits"]
    ts = int.from_bytes(commits.keys()[-1], "big") if commits else 0
    return generation, ts


class SimClient:
    """One simulated client: calls the node and records each call in `history`."""

    def __init__(self, client_id: int, host: NodeHost, rng: random.Random,
                 history: list[Operation], trace: Trace) -> None:
        self.id = client_id
        self.host = host
        self.rng = rng
        self.history = history
        self.trace = trace
        self.call_count = 0
        # Shrinking (sim/shrink.py): while `shrinking` (the safety phase), a
        # call whose index is not in `keep` (a set, or None: all) is skipped;
        # `safety_calls` lists the indexes of the calls made then.
        self.keep: frozenset | None = None
        self.skip_durations: dict | None = None  # a skipped call waits as long as it took
        self.shrinking = False
        self.safety_calls: list[int] = []
        # Mean virtual seconds between calls (RunOptions.think_s, set by the run).
        self.think_s = 0.1

    async def call(self, kind: str, path: str, args: Any) -> Operation:
        """Calls the node once; returns the recorded Operation (never raises for
        the call's own failure). A call shrinking skips returns an Operation
        with status "skipped", not in the history."""
        self.call_count += 1
        if self.shrinking:
            if self.keep is not None and (self.id, self.call_count) not in self.keep:
                self.trace.event("skipped", self.id, self.call_count)
                took = (self.skip_durations or {}).get((self.id, self.call_count), 0.0)
                if took:
                    await sleep(took)
                return Operation(self.id, self.call_count, kind, path, args, trio.current_time(),
                                 trio.current_time(), "skipped")
            self.safety_calls.append(self.call_count)
        operation = Operation(self.id, self.call_count, kind, path, args, trio.current_time())
        self.history.append(operation)
        self.trace.event("invoke", self.id, self.call_count, path, args)
        try:
            result = await self.host.call(kind, path, args)
        except NodeCrashed:
            operation.status = "info"
        except (EddyError, AppError, FunctionCrashed) as error:
            operation.status = "fail"
            operation.error = f"{type(error).__name__}: {error}"
        else:
            operation.status = "ok"
            operation.value = result.value
            operation.ts = result.ts
        operation.complete_s = trio.current_time()
        self.trace.event("complete", self.id, self.call_count, operation.status,
                         operation.value, operation.ts, operation.error)
        return operation
