"""One simulated run: a whole node and its clients, under faults, from one seed.

A run is one `trio.run` under MockClock with trio's scheduling seeded
(sim/world.py). Phases:

1. Start the node (sim/host.py) and run each workload's setup, fault-free.
2. Safety phase (`duration_s` of virtual time): clients call the node while
   the seed's fault mix (sim/faults.py) is injected.
3. Heal: faults off; clients stop starting new calls.
4. Liveness phase (at most `liveness_s`): every pending call must complete,
   then each client runs its workload's final reads.
5. Stop the node cleanly and run the checkers: each workload's, durability and
   atomicity over the node's own log, commit order, corruption detection.

Everything that happens is folded into the trace (sim/trace.py); the same
seed and options give the same trace, bit for bit.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
import traceback
from pathlib import Path

import trio

from actors.app import App, load_app
from actors.node import open_node
from actors.replay import TimeTravel
from engine.errors import EddyError

from sim import bugs
from sim.checkers import durability, reference
from sim.clients import ProtocolStack
from sim.export import SavedData, save_volume
from sim.faults import FaultInjector, draw_plan
from sim.net import NET_FAULT_KINDS
from sim.host import DATA_DIR, NodeHost, SimClient
from sim.timers import sleep
from sim.trace import Trace
from sim.workloads import Check, load_workloads
from sim.world import SimWorld, run_simulated

SIM_APP_DIR = str(Path(__file__).resolve().parent / "app")

# Exit codes of `eddy sim` (2 is argparse's bad usage).
EXIT_OK = 0
EXIT_SAFETY = 3
EXIT_LIVENESS = 4
EXIT_CRASH = 5
EXIT_NONDETERMINISM = 6
EXIT_CODES = {None: EXIT_OK, "safety": EXIT_SAFETY, "liveness": EXIT_LIVENESS,
              "crash": EXIT_CRASH, "nondeterminism": EXIT_NONDETERMINISM}

# The reference scenario's think time: a client waits this long on average
# (exponentially distributed) between one call's answer and its next call.
# 8 clients make about 75 calls (60 commits) per simulated second in all,
# within the 10-100 operations per second Jepsen tests usually run at; calls
# still overlap (one takes 3 ms at the median, and about one in 16 overlaps
# another call of its workload), and `pause_ms` in the reference app widens
# the windows in which optimistic concurrency must catch conflicts.
# `--think` lowers it to hammer the node (docs/simulation.md, "Speed").
reference_think_s = 0.1

# The reference scenario's subscription actors (issue 4: "one node with 4
# shards and 2 subscription actors"): the node's sessions are spread over
# two (actors/subscription_pool.py), so the oracles check sessions on both
# and planted subscription bugs live in both. `--subscription-actors 1` is
# what `eddy dev` runs by default.
reference_subscription_actors = 2

_apps: dict[str, App] = {}


@dataclasses.dataclass
class RunOptions:
    seed: int
    workload: str = "all"
    faults: list[str] | None = None  # None: a swarm draw from the seed
    duration_s: float = 30.0
    liveness_s: float = 30.0
    clients: int = 8
    think_s: float = reference_think_s  # mean wait between a client's calls
    subscription_actors: int = reference_subscription_actors  # the node's (open_node)
    bug: str | None = None
    app_dir: str | None = None
    keep_events: bool = False  # keep every event's repr in the result (determinism checks)
    # False turns every checker off (the in-run update oracle's comparisons
    # and the checks after the run): bench/bench_sim.py's baseline.
    checks: bool = True
    # Shrinking (sim/shrink.py): the safety-phase calls ((client, index)) and
    # fault injections ((kind, attempt)) to keep; None keeps all.
    calls: frozenset | None = None
    fault_events: frozenset | None = None
    # How long each call of the unshrunk run took ((client, index) -> virtual
    # seconds): a skipped call waits as long, so every other call keeps its
    # time. Measured by running the unshrunk seed first when not given.
    call_durations: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    def replay_command(self) -> str:
        faults = "swarm" if self.faults is None else (",".join(self.faults) or "none")
        command = (f"eddy sim run --seed {self.seed} --workload {self.workload} --faults {faults} "
                   f"--duration {self.duration_s:g}s --clients {self.clients}")
        if not self.checks:
            command += " --no-checks"
        if self.think_s != reference_think_s:
            command += f" --think {self.think_s * 1000:g}ms"
        if self.subscription_actors != reference_subscription_actors:
            command += f" --subscription-actors {self.subscription_actors}"
        if self.app_dir:
            command += f" --app {self.app_dir}"
        if self.calls is not None:
            command += " --calls " + (",".join(f"{c}:{i}" for c, i in sorted(self.calls)) or "none")
        if self.fault_events is not None:
            command += " --fault-events " + (",".join(f"{k}:{n}" for k, n in sorted(self.fault_events))
                                             or "none")
        if self.bug:
            command = f"EDDY_SIM_BUG={self.bug} " + command
        return command


@dataclasses.dataclass
class RunResult:
    options: RunOptions
    trace: str
    event_count: int
    checkpoints: list[str]
    recent_events: list[str]
    fault_plan: str
    fault_counts: dict[str, int]
    operation_counts: dict[str, int]
    checks: list[Check]
    incarnations: int
    commit_count: int
    sim_s: float
    wall_s: float
    cpu_s: float  # this process's CPU time during the run
    failure: str | None = None  # None, "safety", "liveness" or "crash"
    explanation: str = ""
    events: list[str] | None = None
    # What shrinking may drop: the safety-phase calls of plain clients and
    # the fault injections made (sim/shrink.py).
    safety_calls: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    fault_events: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)  # the Operations
    # `run(..., save_data=DIR)`: the real data folder written after the run
    # (sim/export.py), or why it could not be.
    saved: SavedData | None = None
    save_error: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.failure]


def _app(app_dir: str) -> App:
    if app_dir not in _apps:
        _apps[app_dir] = load_app(app_dir)
    return _apps[app_dir]


def run(options: RunOptions, save_data: str | None = None) -> RunResult:
    """Runs one seed to the end and returns what happened (never raises for a
    failure of the node: that is the result's `failure`).

    With `save_data`, the final simulated data folder is then written to that
    real folder (sim/export.py; the result's `saved` or `save_error`), after
    the trace is computed, so the trace is the same with or without it. It is
    an argument, not an option, so the runs a run makes for itself (shrinking's
    call durations) never save.
    """
    started, started_cpu = time.perf_counter(), time.process_time()
    if options.calls is not None and options.call_durations is None:
        options = dataclasses.replace(options, call_durations=call_durations(options))
    # What app functions and the node log (a crashed function's traceback)
    # stays out of the report; a run's failures are its checks' business.
    eddy_log = logging.getLogger("eddy")
    quiet, propagate = logging.NullHandler(), eddy_log.propagate
    eddy_log.addHandler(quiet)
    eddy_log.propagate = False
    world = SimWorld(options.seed, planted_bug=options.bug)
    trace = Trace(keep_events=options.keep_events)
    state = _RunState(options, world, trace)
    # What the process already holds (its modules, earlier runs' results)
    # stays out of the collector's sight during the run: opening the node
    # collects in full first (actors/node.py), which would walk all of it
    # (about 15 ms in a fresh process). The `finally` below unfreezes it.
    gc.freeze()
    try:
        run_simulated(state.main, options.seed)
    except BaseException as error:  # the node or the simulator crashed: report it
        if isinstance(error, KeyboardInterrupt):
            raise
        state.failure, state.explanation = _describe_crash(error)
    finally:
        gc.unfreeze()  # open_node freezes what it replayed; a run's objects must not pile up
        eddy_log.removeHandler(quiet)
        eddy_log.propagate = propagate
    trace.event("result", state.failure, [(c.name, c.ok) for c in state.checks])
    result = RunResult(
        options=options, trace=trace.hexdigest(), event_count=trace.event_count,
        checkpoints=trace.checkpoints, recent_events=list(trace.recent),
        fault_plan=state.plan_text, fault_counts=state.fault_counts,
        operation_counts=state.operation_counts(), checks=state.checks,
        incarnations=state.host.incarnation if state.host else 0,
        commit_count=len(state.host.published) if state.host else 0,
        sim_s=state.sim_s, wall_s=time.perf_counter() - started,
        cpu_s=time.process_time() - started_cpu,
        failure=state.failure, explanation=state.explanation, events=trace.events,
        safety_calls=[(c.id, i) for c in state.clients for i in c.safety_calls],
        fault_events=list(state.injector.injected) if state.injector else [],
        history=state.history)
    if save_data is not None:
        try:
            result.saved = save_volume(world.disk, DATA_DIR, save_data)
        except (ValueError, OSError, EddyError) as error:
            result.save_error = str(error)
    return result


def call_durations(options: RunOptions) -> dict:
    """(client, index) -> virtual seconds each call of the unshrunk run took."""
    whole = run(dataclasses.replace(options, calls=None, fault_events=None, keep_events=False))
    return {(op.client, op.index): (op.complete_s or op.invoke_s) - op.invoke_s
            for op in whole.history}


def _describe_crash(error: BaseException) -> tuple[str, str]:
    """("safety", ...) when an in-code assertion of the node fired (an invariant
    broke), else ("crash", ...): the node or the simulator raised."""
    leaves = [error]
    while any(isinstance(leaf, BaseExceptionGroup) for leaf in leaves):
        leaves = [inner for leaf in leaves for inner in
                  (leaf.exceptions if isinstance(leaf, BaseExceptionGroup) else [leaf])]
    text = "".join(traceback.format_exception(error)).rstrip()
    for leaf in leaves:
        if isinstance(leaf, AssertionError):
            frame = traceback.extract_tb(leaf.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            return "safety", f"an in-code invariant failed at {where}: {leaf}\n{text}"
    return "crash", text


class _RunState:
    """The run in progress (see the module docstring for its phases)."""

    def __init__(self, options: RunOptions, world: SimWorld, trace: Trace) -> None:
        self.options = options
        self.world = world
        self.trace = trace
        self.history: list = []
        self.checks: list[Check] = []
        self.failure: str | None = None
        self.explanation = ""
        self.plan_text = ""
        self.fault_counts: dict[str, int] = {}
        self.host: NodeHost | None = None
        self.clients: list = []
        self.injector: FaultInjector | None = None
        self.protocol: ProtocolStack | None = None
        self.sim_s = 0.0
        self.issuing = True
        self.healed_s = 0.0
        self._clients_running = 0
        self._clients_done = trio.Event()

    def operation_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.history:
            key = f"{op.path} {op.status}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    async def main(self) -> None:
        options, world, trace = self.options, self.world, self.trace
        app = _app(options.app_dir or SIM_APP_DIR)
        workloads = load_workloads(options.workload)
        for workload in workloads:
            if hasattr(workload, "oracle"):
                workload.oracle.comparing = options.checks
        self.host = host = NodeHost(world, app, trace, options.subscription_actors)
        plan = draw_plan(world.stream("swarm"), options.faults)
        # Clients of workloads that speak the sync protocol, over a simulated network.
        self.protocol = stack = ProtocolStack.for_run(workloads, options.clients, world, host, trace)
        if stack is None:
            plan.intervals_s = {k: v for k, v in plan.intervals_s.items() if k not in NET_FAULT_KINDS}
        self.plan_text = plan.describe()
        trace.event("plan", self.plan_text, options.bug)
        self.injector = injector = FaultInjector(plan, host, world, trace)
        injector.network = stack and stack.network
        injector.keep = options.fault_events
        clients = [stack.client(n, world.stream("client", n), self.history)
                   if stack is not None and stack.speaks(n)
                   else SimClient(n, host, world.stream("client", n), self.history, trace)
                   for n in range(options.clients)]
        self.clients = clients
        for client in clients:
            client.keep, client.skip_durations = options.calls, options.call_durations
            client.think_s = options.think_s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.run)
            if stack is not None:
                nursery.start_soon(stack.run)
            await host.wait_up()
            for workload in workloads:
                await workload.setup(clients[0])
            await self._safety_and_liveness(workloads, clients, injector)
            self.fault_counts = dict(sorted(injector.counts.items()))
            if world.pause.count:
                self.fault_counts["paused ms"] = round(world.pause.paused_s * 1000)
            for kind, count in sorted(world.disk.fault_counts.items()):
                self.fault_counts[f"disk {kind}"] = count
            if stack is not None:
                for kind, count in sorted(stack.network.counts.items()):
                    self.fault_counts[f"net {kind}"] = count
                stack.stop()
            host.stop()
        self.sim_s = trio.current_time()
        if self.failure is None and options.checks:
            # The checks allocate much and keep little, and open nodes on a
            # heap holding the whole run: the collector stays off meanwhile
            # (the nodes then leave it alone: actors/node.py), rather than
            # walk that heap again and again (about 40 ms a reference run).
            gc.disable()
            try:
                await self._check(app, workloads)
            finally:
                gc.enable()

    async def _safety_and_liveness(self, workloads, clients, injector) -> None:
        options = self.options
        async with trio.open_nursery() as clients_nursery:
            for client in clients:
                workload = workloads[client.id % len(workloads)]
                client.shrinking = type(client) is SimClient  # protocol clients are kept whole
                clients_nursery.start_soon(self._client_loop, client, workload)
            with trio.move_on_after(options.duration_s):
                await injector.run()
                await trio.sleep_forever()
            self.issuing = False
            injector.heal()
            self.healed_s = trio.current_time()
            with trio.move_on_after(options.liveness_s) as deadline:
                await self._clients_done.wait()
            if deadline.cancelled_caught:
                pending = [op for op in self.history if op.status is None]
                self.failure = "liveness"
                self.explanation = (f"{len(pending)} calls still pending {options.liveness_s:g}s after "
                                    f"the faults healed, e.g. " + ", ".join(
                                        f"client {op.client} call {op.index} {op.path}"
                                        for op in pending[:3]))
                self.trace.event("liveness_failure", len(pending))
                clients_nursery.cancel_scope.cancel()
            elif self.protocol is not None:
                # Every writer stopped: each protocol client must reach the final ts.
                await self.protocol.finish(deadline.deadline)

    async def _client_loop(self, client: SimClient, workload) -> None:
        self._clients_running += 1
        try:
            while self.issuing:
                await workload.step(client)
                await sleep(client.rng.expovariate(1 / client.think_s))
            client.shrinking = False  # the final reads always run
            await workload.finish(client)
        finally:
            self._clients_running -= 1
            if not self._clients_running:
                self._clients_done.set()

    async def _check(self, app: App, workloads) -> None:
        store = self.world.disk.open(DATA_DIR, read_only=True)
        commits = durability.read_commits(store)
        record = _Record(self.history, self.healed_s)
        answers = await self._ask_reference(app, store, workloads)
        checks = []
        for workload in workloads:
            if hasattr(workload, "oracle"):
                workload.oracle.compare(answers)
            checks.extend(workload.check(record))
        wrote = lambda op: any(w.wrote(op) for w in workloads if hasattr(w, "wrote"))  # noqa: E731
        checks.append(durability.check_durable(self.history, commits, wrote))
        checks.append(durability.check_atomic(store, commits))
        checks.append(durability.check_published_order(self.host.published))
        checks.append(durability.check_stale_storage(self.host))
        checks.append(durability.check_exactly_once(self.history, commits, self.host.openings))
        checks.append(durability.check_no_function_crashed(self.history))

        async def open_on(disk) -> None:
            damaged_world = SimWorld(self.options.seed, disk=disk)
            async with open_node(app=app, data_dir=DATA_DIR, world=damaged_world):
                pass
        checks.append(await durability.check_corruption_detected(self.world.disk, DATA_DIR, open_on))
        if self.protocol is not None:
            checks.extend(await self.protocol.check(answers))
        self.checks = checks
        for check in checks:
            self.trace.event("check", check.name, check.ok, check.explanation)
        failed = [check for check in checks if not check.ok]
        if failed:
            self.failure = "liveness" if all(c.liveness for c in failed) else "safety"
            self.explanation = "\n".join(f"{c.name}: {c.explanation}" for c in failed)


    async def _ask_reference(self, app: App, store, workloads) -> reference.Answers:
        """The reference's answer to every question of the update oracles
        and the subscription oracle, found in one replay of the final log."""
        questions = [question for workload in workloads if hasattr(workload, "oracle")
                     for question in workload.oracle.requests()]
        if self.protocol is not None:
            questions.extend(self.protocol.questions())
        if not questions:
            return {}
        reference_world = SimWorld(self.options.seed, disk=self.world.disk)
        # Derived answers and models know the reference app's queries only.
        own_app = self.options.app_dir is None
        models = reference.models_of(workloads) if own_app else []
        time_travel = TimeTravel(reference_world, store, app, DATA_DIR, followers=models)
        return await reference.answer(time_travel, questions,
                                      reference.derivations_of(workloads) if own_app else {},
                                      models)


@dataclasses.dataclass
class _Record:
    """What workload checkers read: the history and when the faults healed."""

    history: list
    healed_s: float


def planted_bug_names() -> list[str]:
    return list(bugs.BUGS)
