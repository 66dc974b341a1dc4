"""Faults: what each seed injects, drawn swarm-style, and the injector that does it.

Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): rather than every
run injecting every fault at a middling rate, each seed draws which kinds are
on and how hard, so some seeds hammer one fault and others combine several;
bugs that one fault kind masks (a node that is always crashing never gets to
lose an update) still meet seeds without it.

Kinds:
- `crash`: the node process dies at a random point (kill -9); the disk
  keeps everything written.
- `power_loss`: the machine dies; unsynced writes are dropped (a random
  suffix of them).
- `disk_errors`: writes fail with an I/O error at some rate; the node stops
  on a storage error and is restarted.
- `enospc`: the disk fills up for a while; writes fail until it is freed.
- `disk_latency`: slow writes and syncs, with a slow tail.
- `clock`: the World clock jumps forwards and backwards (NTP steps, VM
  migrations).
- `pause`: the node process stops for 10 ms to 6 s (a GC pause, a VM
  descheduled or migrated, SIGSTOP) while clients' timers keep running; it
  takes in, answers, reads, sends and writes nothing until it resumes
  (sim/world.py, ProcessPause). Drawn last of all kinds, so it shifts no
  other draw of a seed.

Network kinds (sim/net.py; only runs with protocol clients have a network):
`partition`, `clog`, `packet_loss`, `duplication`, `reorder`,
`slow_consumer`, `conn_reset`. A swarm draws them after the node's kinds, so
adding them changed no seed's node faults.

Stale storage: `stale_storage` takes a disk snapshot, and at its next
event crashes the node and restores that older copy; the node must refuse
it (sim/host.py).

A run has a safety phase with the drawn faults, then `heal` turns every fault
off for the liveness phase.
"""

from __future__ import annotations

import dataclasses
import random

import trio

from sim.host import NodeHost
from sim.net import NET_FAULT_KINDS
from sim.timers import sleep
from sim.trace import Trace
from sim.world import SimWorld

FAULT_KINDS = ("crash", "power_loss", "disk_errors", "enospc", "disk_latency", "clock")
# An older copy of the data restored at a restart (sim/host.py, stale storage);
# drawn after the network kinds, so it shifts none of their draws.
STALE_FAULT_KINDS = ("stale_storage",)
# Process pauses; drawn after every other kind, so they shift none of their draws.
PAUSE_FAULT_KINDS = ("pause",)
ALL_FAULT_KINDS = FAULT_KINDS + NET_FAULT_KINDS + STALE_FAULT_KINDS + PAUSE_FAULT_KINDS
# How long a pause lasts: GC pauses, then VM deschedules and migrations, then
# a SIGSTOP past the sync endpoint's 5 s send stall (ClientTooSlow).
pause_s_choices = (0.01, 0.05, 0.2, 1.0, 6.0)


@dataclasses.dataclass
class FaultPlan:
    """The kinds a seed injects and how hard: kind -> mean seconds between
    injections (rates), plus the intensities of the continuous faults."""

    intervals_s: dict[str, float]
    write_error_probability: float = 0.0
    latency_s_max: float = 0.002

    @property
    def kinds(self) -> list[str]:
        return [kind for kind in ALL_FAULT_KINDS if kind in self.intervals_s]

    def describe(self) -> str:
        if not self.intervals_s:
            return "none"
        return ", ".join(f"{kind} every ~{self.intervals_s[kind]:.1f}s" for kind in self.kinds)


def parse_fault_kinds(text: str | None) -> list[str] | None:
    """`all`, `none`, or a comma-separated list of kinds; None means a swarm draw.

    Raises:
        ValueError: an unknown kind.
    """
    if text is None or text == "swarm":
        return None
    if text == "all":
        return list(ALL_FAULT_KINDS)
    if text == "none":
        return []
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in ALL_FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(ALL_FAULT_KINDS)}")
    return kinds


def draw_plan(rng: random.Random, kinds: list[str] | None) -> FaultPlan:
    """The seed's fault mix: `kinds` if given, else each kind on with probability 1/2."""
    swarm = kinds is None
    if swarm:
        kinds = [kind for kind in FAULT_KINDS if rng.random() < 0.5]
    intervals = {kind: rng.choice([0.5, 1.0, 2.0, 5.0]) for kind in kinds if kind in FAULT_KINDS}
    plan = FaultPlan(intervals,
                     write_error_probability=rng.choice([0.01, 0.05, 0.2]),
                     latency_s_max=rng.choice([0.002, 0.02, 0.2]))
    # Network kinds are drawn last, so they shift none of the draws above.
    net_kinds = ([kind for kind in NET_FAULT_KINDS if rng.random() < 0.5] if swarm
                 else [kind for kind in kinds if kind in NET_FAULT_KINDS])
    for kind in net_kinds:
        intervals[kind] = rng.choice([0.5, 1.0, 2.0, 5.0])
    for later_kinds in (STALE_FAULT_KINDS, PAUSE_FAULT_KINDS):
        drawn = ([kind for kind in later_kinds if rng.random() < 0.5] if swarm
                 else [kind for kind in kinds if kind in later_kinds])
        for kind in drawn:
            intervals[kind] = rng.choice([0.5, 1.0, 2.0, 5.0])
    return plan


class FaultInjector:
    """Injects a FaultPlan's faults into a running host until cancelled.

    Fields:
        counts: kind -> injections so far.
    """

    def __init__(self, plan: FaultPlan, host: NodeHost, world: SimWorld, trace: Trace) -> None:
        self.plan = plan
        self.host = host
        self.world = world
        self.trace = trace
        self.counts: dict[str, int] = {}
        # Shrinking (sim/shrink.py): `keep` holds the (kind, attempt number)
        # injection attempts to make (None: all); `injected` lists those made.
        self.keep: frozenset | None = None
        self.injected: list[tuple[str, int]] = []
        # The simulated network (sim/net.py), when the run has one.
        self.network = None

    async def run(self) -> None:
        """Injects faults until cancelled; one task per kind, each on its own substream."""
        disk = self.world.disk
        if "disk_latency" in self.plan.intervals_s:
            disk.latency_s_min, disk.latency_s_max = 0.0, self.plan.latency_s_max
            disk.sync_latency_s = self.plan.latency_s_max / 2
        async with trio.open_nursery() as nursery:
            for kind in self.plan.kinds:
                nursery.start_soon(self._inject_forever, kind)

    async def _inject_forever(self, kind: str) -> None:
        rng = self.world.stream("faults", kind)
        mean_s = self.plan.intervals_s[kind]
        attempt = 0
        while True:
            await sleep(rng.expovariate(1 / mean_s))
            attempt += 1
            if self.keep is not None and (kind, attempt) not in self.keep:
                continue
            # Every attempt is a unit for shrinking, even one that changed
            # nothing (a toggle off, a snapshot taken, a crash of a node down).
            self.injected.append((kind, attempt))
            if self._inject(kind, rng):
                self.counts[kind] = self.counts.get(kind, 0) + 1
                self.trace.event("fault", kind)

    def _inject(self, kind: str, rng: random.Random) -> bool:
        disk = self.world.disk
        if kind in NET_FAULT_KINDS:
            return self.network is not None and self.network.inject(kind, rng)
        if kind == "crash":
            return self.host.crash(power_loss=False)
        if kind == "power_loss":
            return self.host.crash(power_loss=True)
        if kind == "disk_errors":
            # Toggles a burst of errors on or off.
            on = disk.write_error_probability == 0.0
            disk.write_error_probability = self.plan.write_error_probability if on else 0.0
            return on
        if kind == "enospc":
            volume = disk.volume("data")
            full = disk.capacity_bytes is None
            disk.capacity_bytes = volume.used_bytes + rng.randrange(0, 4096) if full else None
            return full
        if kind == "disk_latency":
            # Toggles a slow spell: syncs take up to a second until the next toggle.
            slow = disk.sync_latency_s <= self.plan.latency_s_max / 2
            disk.sync_latency_s = rng.choice([self.plan.latency_s_max * 5, 1.0]) if slow \
                else self.plan.latency_s_max / 2
            return slow
        if kind == "clock":
            self.world.clock.jump(rng.choice([-1, 1]) * rng.randrange(10**6, 10 * 10**9))
            return True
        if kind == "pause":
            return self.host.pause(rng.choice(pause_s_choices))
        if kind == "stale_storage":
            # A snapshot now; at the next event, that snapshot restored at a crash.
            return self.host.stale_storage_fault()
        raise AssertionError(kind)

    def heal(self) -> None:
        """Turns every fault off (the clock keeps its skew: time does not heal)."""
        disk = self.world.disk
        disk.write_error_probability = 0.0
        disk.capacity_bytes = None
        disk.latency_s_min, disk.latency_s_max, disk.sync_latency_s = 0.0, 0.002, 0.001
        if self.network is not None:
            self.network.heal()
        self.world.pause.end()
        self.trace.event("healed")
