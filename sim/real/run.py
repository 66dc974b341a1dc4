"""One real-process run: workloads and checkers against a real `eddy dev`.

Theory of operation. The run starts `eddy dev` on the reference app (or
`--app`) with a scratch data folder and a free loopback port
(sim/real/process.py), connects one client per simulated client, over real
WebSockets: the simulator's protocol client (`sim.clients.ProtocolClient`,
sim/real/network.py), or for every other client of a workload that does not
drive subscriptions itself, Eddy's own Python client (wire/client.py,
sim/real/pyclient.py); and goes through the simulator's phases in real time:

1. Setup: each workload's `setup`, fault-free.
2. Safety phase (`duration_s`): every client steps its workload in a loop
   while the fault schedule is applied: `kill` is SIGKILL, then a restart on
   the same data folder and port after a down time; `stop` is SIGSTOP, then
   SIGCONT after a pause. Each kind keeps its own timeline, so a kill may
   hit a paused process (SIGKILL ends it all the same).
3. Heal: a paused process is resumed, a killed one restarted; clients stop
   starting calls.
4. Liveness phase (at most `liveness_s`): every pending call must complete,
   each client does its workload's final reads, then every protocol client
   must reach the node's latest ts (a barrier mutation that writes nothing).
5. The process is stopped with SIGTERM and the checks run
   (sim/real/checks.py).

Real time is not simulated: the seed fixes each client's choices and the
fault schedule (when each fault comes, what kind, how long it holds), not the
interleaving of calls, the restart times, or what a fault hits. Two runs of
one seed are two experiments; a failure is evidence, not a replay.

The whole run is bounded by `timeout_s`: a run that overstays it (a restart
that hangs, a client stuck) ends as a liveness failure.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

import trio

from engine.world import split_seed

from sim.clients import ProtocolClient, ProtocolSimClient, SubscriptionLog
from sim.real.checks import RunRecord, check_run, newest_commit_ts
from sim.real.network import RealNetwork
from sim.real.process import DevProcess, ProcessFailed, stop_timeout_s
from sim.real.pyclient import PythonClient
from sim.run import EXIT_CODES, SIM_APP_DIR
from sim.trace import Trace
from sim.workloads import Check, load_workloads

FAULT_KINDS = ("kill", "stop")
DEFAULT_WORKLOADS = "bank,counters,list-append,hot-keys"
# Workloads that need the node in the same process (leaderboard holds
# sessions on the subscription actor directly).
IN_PROCESS_WORKLOADS = ("leaderboard",)
# Mean seconds from the end of one fault to the next of its kind, drawn per
# run from this range: each kind then holds the node down or stopped for
# about a fifth to a third of the phase (a restart adds about a second), so
# clients get work done between faults and the two kinds still overlap.
fault_interval_s_range = (3.0, 8.0)
# How long a killed process stays down before its restart, and a pause lasts
# (well under the clients' 30 s inactivity limit, so a pause is not a death).
kill_down_s_range = (0.05, 1.0)
stop_hold_s_range = (0.2, 2.5)
# Mean seconds a client waits between its calls: 8 clients then offer a
# few hundred calls a second, about what one `eddy dev` on a shared 2-core
# machine serves, so faults meet a busy node without a growing backlog.
think_s_mean = 0.05
# Beyond the safety and liveness phases: starts, final reads, stop, checks.
timeout_margin_s = 90.0
# How often the watchdog looks for a process that died on its own.
watch_interval_s = 0.2


@dataclasses.dataclass(frozen=True)
class FaultEvent:
    at_s: float  # seconds into the safety phase
    kind: str  # "kill" or "stop"
    hold_s: float  # down time before the restart, or the pause's length


@dataclasses.dataclass
class RealOptions:
    seed: int
    workload: str = DEFAULT_WORKLOADS
    faults: tuple[str, ...] = FAULT_KINDS
    duration_s: float = 20.0
    liveness_s: float = 30.0
    timeout_s: float | None = None  # None: duration + liveness + timeout_margin_s
    clients: int = 8
    think_s: float = think_s_mean
    app_dir: str | None = None
    data_dir: str | None = None  # None: a scratch folder, removed after a passing run
    bug: str | None = None  # a node bug to plant in the process (sim/real/serve.py)
    python_clients: bool = True  # some clients call through wire/client.py (sim/real/pyclient.py)
    # A planted hang: the heal pauses the process (SIGSTOP) instead of healing
    # it, so the liveness check and the run's bound must fire (tests).
    hang_at_heal: bool = False

    @property
    def overall_timeout_s(self) -> float:
        return self.timeout_s or self.duration_s + self.liveness_s + timeout_margin_s

    def command(self) -> str:
        command = (f"eddy sim real --seed {self.seed} --workload {self.workload} --faults "
                   f"{','.join(self.faults) or 'none'} --duration {self.duration_s:g}s "
                   f"--clients {self.clients}")
        if not self.python_clients:
            command += " --no-python-client"
        if self.think_s != think_s_mean:
            command += f" --think {self.think_s * 1000:g}ms"
        command += f" --app {self.app_dir}" if self.app_dir else ""
        return f"EDDY_SIM_BUG={self.bug} " + command if self.bug else command


@dataclasses.dataclass
class RealResult:
    options: RealOptions
    schedule: list[FaultEvent]
    fault_counts: dict[str, int]
    connection_counts: dict[str, int]  # WebSocket connections opened and refused
    operation_counts: dict[str, int]
    checks: list[Check]
    incarnations: int
    commit_count: int
    wall_s: float
    data_dir: str
    log_dir: str
    failure: str | None = None  # None, "safety", "liveness" or "crash"
    explanation: str = ""
    record: RunRecord | None = None  # what the checks read (None if they did not run)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.failure]


def check_workloads(spec: str) -> list:
    """The workload objects for `spec`, refusing those that need an in-process node.

    Raises:
        ValueError: an unknown workload, or one the real tier cannot run.
    """
    names = [name.strip() for name in spec.split(",")] if not spec.endswith(".py") else []
    refused = [name for name in names if name in IN_PROCESS_WORKLOADS]
    if refused:
        raise ValueError(f"workload {', '.join(refused)} needs the node in the simulator's process; "
                         f"the real tier runs {DEFAULT_WORKLOADS} or a .py workload")
    if spec == "all":
        return check_workloads(DEFAULT_WORKLOADS)
    return load_workloads(spec)


def draw_schedule(seed: int, kinds: tuple[str, ...], duration_s: float) -> list[FaultEvent]:
    """The faults of a run, from its seed: for each kind a mean interval, then
    faults at exponential gaps after the previous one's hold; a kind that drew
    none in the phase gets one somewhere in its middle, so every kind asked
    for happens."""
    events = []
    for kind in kinds:
        rng = random.Random(split_seed(seed, "real", "faults", kind))
        interval_s = rng.uniform(*fault_interval_s_range)
        hold_range = kill_down_s_range if kind == "kill" else stop_hold_s_range
        at_s = rng.expovariate(1 / interval_s)
        mine = []
        while at_s < duration_s:
            mine.append(FaultEvent(at_s, kind, rng.uniform(*hold_range)))
            at_s += mine[-1].hold_s + rng.expovariate(1 / interval_s)
        if not mine:
            mine.append(FaultEvent(duration_s * rng.uniform(0.2, 0.8), kind, rng.uniform(*hold_range)))
        events.extend(mine)
    return sorted(events, key=lambda event: (event.at_s, event.kind))


def run(options: RealOptions) -> RealResult:
    """Runs one real-process run to the end (never raises for a failure of
    the node: that is the result's `failure`)."""
    started = time.perf_counter()
    workloads = check_workloads(options.workload)
    scratch = Path(tempfile.mkdtemp(prefix="eddy-sim-real-"))
    data_dir = Path(options.data_dir) if options.data_dir else scratch / "data"
    state = _RealRun(options, workloads, data_dir, scratch / "logs")
    # What app functions and the in-process reference node log stays out of
    # the report; the node's own logs are in the log folder.
    eddy_log = logging.getLogger("eddy")
    quiet, propagate = logging.NullHandler(), eddy_log.propagate
    eddy_log.addHandler(quiet)
    eddy_log.propagate = False
    try:
        trio.run(state.main)
    except BaseException as error:  # the harness or the checks crashed: report it
        if isinstance(error, KeyboardInterrupt):
            raise
        state.fail("crash", "".join(traceback.format_exception(error)).rstrip())
    finally:
        eddy_log.removeHandler(quiet)
        eddy_log.propagate = propagate
    if state.failure is None:
        shutil.rmtree(scratch, ignore_errors=True)  # a data folder asked for is elsewhere
    counts: dict[str, int] = {}
    for op in state.history:
        key = f"{op.path} {op.status}"
        counts[key] = counts.get(key, 0) + 1
    return RealResult(
        options=options, schedule=state.schedule, fault_counts=state.fault_counts(),
        connection_counts=dict(state.network.counts) if state.network else {},
        operation_counts=dict(sorted(counts.items())), checks=state.checks,
        incarnations=state.process.start_count, commit_count=state.commit_count,
        wall_s=time.perf_counter() - started, data_dir=str(data_dir), log_dir=str(scratch / "logs"),
        failure=state.failure, explanation=state.explanation, record=state.record)


class _RealRun:
    """The run in progress (see the module docstring for its phases).

    Fields:
        history: every call, as `sim.host.Operation`s (times are trio's clock).
        openings: (time, newest commit ts in the folder) at each start.
        injected: (kind, time) of each fault applied.
        phase: what the run is doing, for a timeout's explanation.
    """

    def __init__(self, options: RealOptions, workloads: list, data_dir: Path, log_dir: Path) -> None:
        self.options = options
        self.workloads = workloads
        self.data_dir = data_dir
        self.app_dir = options.app_dir or SIM_APP_DIR
        self.process = DevProcess(Path(self.app_dir), data_dir, log_dir, options.bug, options.seed)
        self.schedule = draw_schedule(options.seed, options.faults, options.duration_s)
        self.trace = Trace()
        self.log = SubscriptionLog()
        self.history: list = []
        self.openings: list[tuple[float, int]] = []
        self.injected: list[tuple[str, float]] = []
        self.checks: list[Check] = []
        self.failure: str | None = None
        self.explanation = ""
        self.commit_count = 0
        self.phase = "start"
        self.healed_s = 0.0
        self.issuing = True
        self.network: RealNetwork | None = None
        self.record: RunRecord | None = None
        self.protocol_ids: list[int] = []  # clients of the sync protocol core (the rest: wire/client.py)

    def fail(self, kind: str, explanation: str) -> None:
        if self.failure is None:
            self.failure, self.explanation = kind, explanation

    def fault_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind, _ in self.injected:
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def stream(self, *labels: object) -> random.Random:
        return random.Random(split_seed(self.options.seed, *labels))

    async def main(self) -> None:
        options = self.options
        with trio.move_on_after(options.overall_timeout_s) as overall:
            try:
                await self._start()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch, nursery.cancel_scope)
                    await self._drive(nursery)
                    nursery.cancel_scope.cancel()
            except* ProcessFailed as group:
                self.fail("crash", str(group.exceptions[0]))
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop()
        if overall.cancelled_caught:
            self.fail("liveness", f"the run did not finish within its overall timeout of "
                                  f"{options.overall_timeout_s:g}s (stuck in: {self.phase})")
        if self.failure is None:
            self.phase = "checks"
            await self._check()

    async def _start(self) -> None:
        self.openings.append((trio.current_time(), newest_commit_ts(self.data_dir)))
        await self.process.start()

    async def _stop(self) -> None:
        code = await self.process.stop()
        if code == -signal.SIGKILL:
            self.fail("liveness", f"eddy dev did not exit within {stop_timeout_s:g}s of SIGTERM "
                                  f"(killed):\n{self.process.log_text()}")
        elif code not in (0, None):
            self.fail("crash", f"eddy dev exited with code {code} on SIGTERM:\n"
                               f"{self.process.log_text()}")

    async def _watch(self, cancel_scope: trio.CancelScope) -> None:
        """Ends the run as a crash if the process dies when no fault killed it."""
        while True:
            await trio.sleep(watch_interval_s)
            code = self.process.exited_by_itself()
            if code is not None:
                self.fail("crash", f"eddy dev exited by itself with code {code} "
                                   f"during {self.phase}:\n{self.process.log_text()}")
                cancel_scope.cancel()
                return

    def speaks_python(self, client_id: int) -> bool:
        """Whether a client calls through wire/client.py: every other client
        of each workload (the second, fourth, ...), unless the workload
        drives subscriptions itself (`protocol = True`, hot-keys)."""
        workload = self.workloads[client_id % len(self.workloads)]
        return (self.options.python_clients and getattr(workload, "protocol", False) is not True
                and (client_id // len(self.workloads)) % 2 == 1)

    async def _drive(self, nursery: trio.Nursery) -> None:
        options = self.options
        self.network = RealNetwork(self.process.url, nursery)
        clients, protocols = [], []
        for n in range(options.clients):
            if self.speaks_python(n):
                client = PythonClient(n, self.process.url, self.stream("client", n), self.history)
                nursery.start_soon(client.run)
            else:
                protocol = ProtocolClient(n, self.network, self.stream("protocol", n), self.trace,
                                          self.log)
                protocols.append(protocol)
                nursery.start_soon(protocol.run)
                client = ProtocolSimClient(n, None, self.stream("client", n), self.history,
                                           self.trace, protocol)
            clients.append(client)
        self.protocol_ids = [protocol.id for protocol in protocols]
        self.phase = "setup"
        for workload in self.workloads:
            await workload.setup(clients[0])
        await self._safety_and_liveness(clients)
        if self.failure is None:
            await self._final(protocols)

    async def _safety_and_liveness(self, clients: list) -> None:
        options = self.options
        done = trio.Event()
        running = [len(clients)]

        async def client_loop(client, workload) -> None:
            try:
                while self.issuing:
                    await workload.step(client)
                    await trio.sleep(client.rng.expovariate(1 / options.think_s))
                await workload.finish(client)
            finally:
                running[0] -= 1
                if not running[0]:
                    done.set()

        async with trio.open_nursery() as clients_nursery:
            for client in clients:
                clients_nursery.start_soon(client_loop, client, self.workloads[client.id % len(self.workloads)])
            self.phase = "safety phase"
            with trio.move_on_after(options.duration_s):
                await self._inject(trio.current_time())
                await trio.sleep_forever()
            self.phase = "heal"
            self.issuing = False
            await self._heal()
            self.healed_s = trio.current_time()
            self.phase = "liveness phase"
            with trio.move_on_after(options.liveness_s) as deadline:
                await done.wait()
            if deadline.cancelled_caught:
                pending = [op for op in self.history if op.status is None]
                self.fail("liveness", f"{len(pending)} calls still pending {options.liveness_s:g}s "
                                      f"after the faults healed, e.g. " + ", ".join(
                                          f"client {op.client} call {op.index} {op.path}"
                                          for op in pending[:3]))
                clients_nursery.cancel_scope.cancel()

    async def _inject(self, started_s: float) -> None:
        """Applies the schedule, each kind on its own timeline (so a kill may
        hit a paused process); until cancelled by the phase's end."""
        async with trio.open_nursery() as nursery:
            for kind in self.options.faults:
                events = [event for event in self.schedule if event.kind == kind]
                nursery.start_soon(self._inject_kind, events, started_s)

    async def _inject_kind(self, events: list[FaultEvent], started_s: float) -> None:
        """One kind's faults in order; one that falls due while the last of
        its kind still holds waits for it, and a pause waits for a killed
        process to be back (there is nothing to stop)."""
        for event in events:
            await trio.sleep_until(started_s + event.at_s)
            if event.kind == "kill":
                self.injected.append((event.kind, trio.current_time()))
                await self.process.kill()
                await trio.sleep(event.hold_s)
                await self._start()
            else:
                while self.process.process is None or self.process.paused:
                    await trio.sleep(watch_interval_s)  # down: killed and not yet restarted
                self.injected.append((event.kind, trio.current_time()))
                self.process.pause()
                await trio.sleep(event.hold_s)
                self.process.resume()

    async def _heal(self) -> None:
        self.process.resume()
        if self.process.process is None:
            await self._start()
        if self.options.hang_at_heal:
            self.process.pause()

    async def _final(self, protocols: list) -> None:
        """Every protocol client must reach the node's latest ts (sim.clients'
        barrier), within what is left of the liveness phase."""
        self.phase = "final reads"
        self.log.final_ts = await self.process.latest_ts()
        barrier = next((w.barrier_path for w in self.workloads if hasattr(w, "barrier_path")),
                       "hot:noop")
        reached: set[int] = set()

        async def one(protocol: ProtocolClient) -> None:
            await protocol.final_snapshot(barrier)
            reached.add(protocol.id)

        with trio.move_on_at(self.healed_s + self.options.liveness_s):
            async with trio.open_nursery() as nursery:
                for protocol in protocols:
                    nursery.start_soon(one, protocol)
        for protocol in protocols:
            if protocol.id not in reached:
                self.log.unfinished.append(
                    f"client {protocol.id} did not reach the final ts {self.log.final_ts} in time "
                    f"(connected: {protocol.connected}, at ts {protocol.version.ts}, "
                    f"{protocol.pending()} requests unanswered)")

    async def _check(self) -> None:
        self.record = RunRecord(
            history=self.history, log=self.log, healed_s=self.healed_s, workloads=self.workloads,
            app_dir=self.app_dir, reference_app=self.options.app_dir is None,
            data_dir=self.data_dir, log_dir=self.process.log_dir, openings=self.openings,
            client_ids=self.protocol_ids)
        checks, self.commit_count = await check_run(self.record)
        self.checks = checks
        failed = [check for check in checks if not check.ok]
        if failed:
            self.fail("liveness" if all(c.liveness for c in failed) else "safety",
                      "\n".join(f"{c.name}: {c.explanation}" for c in failed))
