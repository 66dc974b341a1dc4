"""`eddy sim`: the deterministic simulator's commands (sim/, docs/simulation.md).

- `eddy sim run --seed N [--workload W] [--faults all|none|LIST] [--duration 30s]`
  runs one seed and prints what happened; its last line is `trace <hex>`.
- `eddy sim sweep --seeds 1-100 [--jobs 2] [--budget 10m]` runs many seeds.
- `eddy sim determinism --seed N` re-runs a seed in fresh processes with
  other hash seeds and heaps and names the first differing event.
- `eddy sim shrink --seed N` reduces a failing run to a few calls and faults
  that fail the same way and prints the command replaying them.
- `eddy sim bugs` lists the bugs EDDY_SIM_BUG can plant.
- `eddy sim real [--seed N] [--faults kill,stop|none] [--duration 20s]` runs
  the same workloads and checkers against a real `eddy dev` process, with
  SIGKILL and SIGSTOP as faults (sim/real/).

Exit codes: 0 every check passed, 3 a safety violation, 4 a liveness failure,
5 the node or simulator crashed, 6 non-determinism, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from wire.cli import HelpFormatter

EPILOG = """\
Exit codes: 0 passed, 3 safety violation, 4 liveness failure, 5 crash,
6 non-determinism, 2 bad usage. A failure prints the command that replays it.
Plant a known bug with EDDY_SIM_BUG=<name> (see `eddy sim bugs`).
"""


def add_commands(subparsers) -> None:
    """Adds `eddy sim` and its subcommands."""
    sim = subparsers.add_parser(
        "sim", help="run the deterministic simulator (seeded whole-node runs with faults)",
        description="Runs a whole node and simulated clients in one process from one seed, "
                    "under injected faults, and checks serializability, durability and "
                    "liveness. The same seed gives the same run, bit for bit.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    sim.set_defaults(handler=lambda options: (sim.print_help(), 2)[1])
    commands = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")

    run = commands.add_parser("run", help="run one seed and print what happened",
                              description="Runs one seed. The last line is `trace <hex>`, a hash "
                                          "of every event: the same seed gives the same trace. "
                                          "With --save-data DIR the node's final data folder is "
                                          "then saved to DIR, for `eddy log`, `show`, `query "
                                          "--at` and `replay --verify` (docs/simulation.md, "
                                          "\"Opening a simulated run's log\").",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    run.add_argument("--seed", type=int, required=True, help="the run's root seed")
    _add_run_options(run)
    run.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    run.add_argument("--keep-events", action="store_true",
                     help="keep every event in the JSON result (for determinism checks)")
    run.add_argument("--verbose", action="store_true", help="print full failure tracebacks")
    _add_save_data(run)
    run.set_defaults(handler=_run)

    sweep = commands.add_parser(
        "sweep", help="run many seeds and list the failures",
        description="Runs each seed of --seeds as `eddy sim run` would (by default each seed "
                    "draws its own mix of faults: --faults swarm), --jobs at a time in worker "
                    "processes, and lists every failing seed with the one command that "
                    "replays it. Exits with the first failure's code (0 if none failed).",
        epilog=EPILOG, formatter_class=HelpFormatter)
    sweep.add_argument("--seeds", default="1-100", help="seeds, e.g. 1-1000 or 1,5,9-12 (default 1-100)")
    sweep.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    sweep.add_argument("--budget", type=_duration, default=None,
                       help="stop starting seeds after this much wall time, e.g. 10m")
    _add_run_options(sweep)
    sweep.set_defaults(handler=_sweep)

    determinism = commands.add_parser(
        "determinism", help="re-run a seed in fresh processes and compare every event",
        description="Runs the seed in two fresh processes with different PYTHONHASHSEED values "
                    "and heap layouts, compares checkpoint hashes (every 1,000 events) and "
                    "events, and names the first differing event. Exit 6 if they differ.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    determinism.add_argument("--seed", type=int, required=True, help="the run's root seed")
    _add_run_options(determinism)
    determinism.set_defaults(handler=_determinism)

    shrink = commands.add_parser(
        "shrink", help="reduce a failing seed to a few calls and faults that fail the same way",
        description="Runs the seed, then searches (delta debugging) for the fewest of its "
                    "safety-phase calls and fault injections that still fail the same way (same "
                    "failure kind and first failed check), every other draw of the run kept as it "
                    "was. Prints the command replaying the smallest run found.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    shrink.add_argument("--seed", type=int, required=True, help="the failing run's root seed")
    _add_run_options(shrink)
    shrink.add_argument("--budget", type=_duration, default=600.0,
                        help="stop searching after this much wall time, keeping the best found "
                             "(default 10m)")
    shrink.add_argument("--runs-max", type=int, default=400,
                        help="stop after this many runs (default 400)")
    shrink.add_argument("--verbose", action="store_true", help="print every run of the search")
    _add_save_data(shrink, "the smallest failing run found (run once more)")
    shrink.set_defaults(handler=_shrink)

    bugs = commands.add_parser("bugs", help="list the bugs EDDY_SIM_BUG can plant, one a line")
    bugs.add_argument("--explain", action="store_true", help="say what each bug breaks")
    bugs.set_defaults(handler=_bugs)
    _add_real_command(commands)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from wire.cli import subscription_actor_count  # the package's, loaded before this module
    parser.add_argument("--workload", default="all",
                        help="all (default), a comma list of bank, counters, list-append, "
                             "leaderboard, hot-keys, ingest, or a .py file defining `workload`")
    parser.add_argument("--faults", default="swarm",
                        help="swarm (default: the seed draws its own mix), all, none, or a comma "
                             "list of crash, power_loss, disk_errors, enospc, disk_latency, clock, "
                             "pause, partition, clog, packet_loss, duplication, reorder, slow_consumer, "
                             "conn_reset, stale_storage")
    parser.add_argument("--duration", type=_duration, default=30.0,
                        help="simulated time of the faulty phase, e.g. 30s, 2m, 500ms (default 30s)")
    parser.add_argument("--clients", type=int, default=8, help="simulated clients (default 8)")
    parser.add_argument("--think", type=_duration, default=None,
                        help="mean time a client waits between calls, e.g. 20ms (default 100ms, "
                             "the reference scenario's; lower hammers the node)")
    parser.add_argument("--subscription-actors", type=subscription_actor_count, default=None,
                        metavar="N",
                        help="subscription actors the node spreads its sessions over (default 2, "
                             "the reference scenario's; `eddy dev` runs 1 unless told)")
    parser.add_argument("--no-checks", dest="checks", action="store_false",
                        help="turn every checker off (the baseline of bench/bench_sim.py)")
    parser.add_argument("--app", metavar="APP_DIR", default=None,
                        help="run this app instead of the simulator's reference app "
                             "(with your own --workload file)")
    parser.add_argument("--bug", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--calls", default=None, metavar="C:I,...",
                        help="make only these safety-phase calls (client:index; `none`), as "
                             "`eddy sim shrink` prints; every other call is skipped")
    parser.add_argument("--fault-events", default=None, metavar="KIND:N,...",
                        help="make only these fault injections (kind:attempt; `none`), as "
                             "`eddy sim shrink` prints")


def _add_save_data(parser: argparse.ArgumentParser, which: str = "the run") -> None:
    parser.add_argument("--save-data", metavar="DIR", default=None,
                        help=f"after {which}, write the node's final data folder to DIR (new or "
                             f"empty) as a real RocksDB data folder, records verbatim, to open "
                             f"with Eddy's log tools: eddy log APP_DIR --data DIR (the trace "
                             f"does not change)")


def _saved_line(result) -> str:
    """The line saying where `run(..., save_data=...)` put the data and how to open it."""
    if result.save_error:
        return f"data not saved: {result.save_error}"
    return (f"data saved: {result.saved.path} ({result.saved.record_count} records; open it "
            f"with: eddy log {_app_dir(result.options)} --data {result.saved.path})")


def _app_dir(run_options) -> str:
    """The run's app folder as a user would type it (relative when under the cwd)."""
    import os
    from sim.run import SIM_APP_DIR
    app_dir = run_options.app_dir or SIM_APP_DIR
    relative = os.path.relpath(app_dir)
    return app_dir if relative.startswith("..") else relative


def _check_save_target(options: argparse.Namespace) -> None:
    from sim.export import check_target
    if options.save_data is not None:
        check_target(options.save_data)


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30s, 2m, 500ms)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * scale


def _options(options: argparse.Namespace, seed: int):
    from sim.bugs import selected_bug
    from sim.faults import parse_fault_kinds
    from sim.run import RunOptions
    from sim.workloads import load_workloads
    load_workloads(options.workload)  # fail early on an unknown name
    # Options left out keep RunOptions' defaults (the reference scenario's).
    given = {} if options.think is None else {"think_s": options.think}
    if options.subscription_actors is not None:
        given["subscription_actors"] = options.subscription_actors
    return RunOptions(**given, checks=options.checks, seed=seed, workload=options.workload,
                      faults=parse_fault_kinds(options.faults), duration_s=options.duration,
                      clients=options.clients, bug=selected_bug(options.bug),
                      app_dir=options.app, keep_events=getattr(options, "keep_events", False),
                      calls=_units(options.calls, int), fault_events=_units(options.fault_events, str))


def _units(text: str | None, first) -> frozenset | None:
    """`0:5,3:12` -> {(0, 5), (3, 12)}; `none` -> {}; None -> None (keep all).

    Raises:
        ValueError: not a list of A:N.
    """
    if text is None:
        return None
    if text.strip() == "none":
        return frozenset()
    units = set()
    for part in text.split(","):
        name, separator, number = part.strip().rpartition(":")
        if not separator or not name:
            raise ValueError(f"not a list of A:N: {text!r}")
        units.add((first(name), int(number)))
    return frozenset(units)


def _usage_error(error: ValueError) -> int:
    print(f"eddy sim: {error}", file=sys.stderr)
    return 2


def _run(options: argparse.Namespace) -> int:
    from sim.determinism import perturb_heap
    from sim.run import run
    garbage = perturb_heap()  # noqa: F841  (kept alive on purpose)
    try:
        run_options = _options(options, options.seed)
        _check_save_target(options)
    except ValueError as error:
        return _usage_error(error)
    result = run(run_options, save_data=options.save_data)
    _print_result(result, options.verbose)
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"seed": options.seed, "trace": result.trace, "failure": result.failure,
                       "checkpoints": result.checkpoints, "events": result.events or [],
                       "event_count": result.event_count, "sim_s": result.sim_s,
                       "wall_s": result.wall_s, "cpu_s": result.cpu_s,
                       "commit_count": result.commit_count,
                       "saved_data": result.saved and result.saved.path}, f)
    if result.save_error and not result.failure:
        return 2
    return result.exit_code


def _print_result(result, verbose: bool) -> None:
    options = result.options
    speed = result.sim_s / result.wall_s if result.wall_s else 0.0
    print(f"seed {options.seed}, workload {options.workload}, {options.clients} clients, "
          f"bug {options.bug or 'none'}")
    print(f"faults drawn: {result.fault_plan}")
    print(f"simulated {result.sim_s:.1f}s in {result.wall_s:.2f}s wall ({speed:.0f}x), "
          f"{result.incarnations} node incarnations, {result.commit_count} commits, "
          f"{result.event_count} events")
    _print_operations_and_faults(result)
    _print_checks(result.checks)
    if result.failure:
        explanation = result.explanation
        if not verbose and result.failure == "crash":
            explanation = "\n".join(explanation.splitlines()[-12:])
        elif not verbose:
            explanation = explanation.split("\nTraceback")[0][:4000]
        print(f"{result.failure.upper()} FAILURE (exit {result.exit_code}):")
        print("  " + explanation.replace("\n", "\n  "))
        print(f"replay: {options.replay_command()}")
        if not result.saved:
            print(_inspect_hint(options))
    if result.saved or result.save_error:
        print(_saved_line(result))
    print(f"trace {result.trace}")


def _inspect_hint(run_options) -> str:
    return (f"inspect its log: add --save-data DIR to the replay, then "
            f"eddy log {_app_dir(run_options)} --data DIR")


def _print_operations_and_faults(result) -> None:
    print("operations:")
    for key, count in result.operation_counts.items():
        print(f"  {key}: {count}")
    print("faults injected: " + (", ".join(f"{kind} {count}" for kind, count in
                                           result.fault_counts.items()) or "none"))


def _print_checks(checks) -> None:
    print(f"checks: {len(checks)} run, {sum(c.ok for c in checks)} passed")
    for check in checks:
        detail = f" ({check.explanation})" if check.explanation and check.ok else ""
        print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}{detail}")


def _sweep(options: argparse.Namespace) -> int:
    from sim.run import EXIT_CODES
    from sim.sweep import parse_seeds, sweep
    try:
        seeds = parse_seeds(options.seeds)
        template = _options(options, 0)
    except ValueError as error:
        return _usage_error(error)
    outcomes = sweep(template, seeds, max(options.jobs, 1), options.budget,
                     report=lambda line: print(line, flush=True))
    failures = [o for o in outcomes if o.failure]
    sim_s = sum(o.sim_s for o in outcomes)
    wall_s = sum(o.wall_s for o in outcomes)
    print(f"{len(outcomes)} of {len(seeds)} seeds run, {len(failures)} failed; "
          f"{sim_s:.0f} simulated s in {wall_s:.0f} process-wall s")
    if failures:
        print("failed seeds: " + " ".join(str(o.seed) for o in failures))
        return EXIT_CODES[failures[0].failure]
    return 0


def _determinism(options: argparse.Namespace) -> int:
    from sim.determinism import check
    from sim.run import EXIT_NONDETERMINISM
    try:
        run_options = _options(options, options.seed)
    except ValueError as error:
        return _usage_error(error)
    args = ["--seed", str(options.seed), "--workload", options.workload, "--faults",
            options.faults, "--duration", f"{options.duration}s", "--clients", str(options.clients)]
    if options.think is not None:
        args += ["--think", f"{options.think}s"]
    if options.subscription_actors is not None:
        args += ["--subscription-actors", str(options.subscription_actors)]
    if options.app:
        args += ["--app", options.app]
    if run_options.bug:
        args += ["--bug", run_options.bug]
    difference, results = check(args)
    for number, result in enumerate(results, 1):
        print(f"run {number}: {result['event_count']} events, trace {result['trace']}")
    if difference:
        print(f"NON-DETERMINISM (exit {EXIT_NONDETERMINISM}): {difference}")
        print(f"replay: eddy sim determinism {' '.join(args)}")
        return EXIT_NONDETERMINISM
    print(f"identical: {len(results[0]['checkpoints'])} checkpoints and every event agree")
    return 0


def _shrink(options: argparse.Namespace) -> int:
    from sim.run import EXIT_CODES, run
    from sim.shrink import shrink
    try:
        run_options = _options(options, options.seed)
        _check_save_target(options)
    except ValueError as error:
        return _usage_error(error)
    report = (lambda line: print(line, flush=True)) if options.verbose else None
    print(f"shrinking seed {options.seed} (budget {options.budget:g}s, at most "
          f"{options.runs_max} runs)", flush=True)
    try:
        result = shrink(run_options, budget_s=options.budget, runs_max=options.runs_max,
                        report=report)
    except ValueError as error:
        print(f"eddy sim shrink: {error}")
        return 0 if "passes" in str(error) else EXIT_CODES["nondeterminism"]
    final = result.final
    print(f"original: {result.calls_before} calls and {result.faults_before} faults in the "
          f"safety phase; fails: {' / '.join(str(part) for part in result.signature)}")
    print(f"shrunk to {len(result.calls)} calls and {len(result.faults)} faults in {result.runs} runs "
          f"({result.wall_s:.1f}s){'' if result.complete else ' (budget spent: not minimal)'}")
    kept = set(result.calls)
    for op in sorted((op for op in final.history if (op.client, op.index) in kept),
                     key=lambda op: op.invoke_s):
        print(f"  call {op.client}:{op.index} t={op.invoke_s:.3f}s {op.kind} {op.path} "
              f"{json.dumps(op.args, default=repr)} -> {op.status}")
    for kind, attempt in result.faults:
        print(f"  fault {kind}:{attempt}")
    explanation = final.explanation.split("\nTraceback")[0][:2000]
    print(f"{(final.failure or 'no').upper()} FAILURE (exit {final.exit_code}):")
    print("  " + explanation.replace("\n", "\n  "))
    if options.save_data is None:
        print(_inspect_hint(result.options))
    else:
        # The same run as `final` (its calls, faults and call durations), once more to save it.
        print(_saved_line(run(result.options, save_data=options.save_data)))
    print(f"replay: {result.options.replay_command()}")
    return final.exit_code


def _bugs(options: argparse.Namespace) -> int:
    from sim.bugs import BUGS
    for name, description in BUGS.items():
        print(f"{name}: {description}" if options.explain else name)
    return 0


REAL_DESCRIPTION = """\
Runs the simulator's workloads and checkers against a real `eddy dev`
process: the reference app (or --app) on a free loopback port with a scratch
data folder, --clients clients speaking the sync protocol over real
WebSockets (the simulator's protocol client, and for every other client of
bank, counters and list-append Eddy's Python client, wire/client.py).
During the safety phase (--duration) the seed's fault schedule sends
SIGKILL (then a restart on the same data folder) and SIGSTOP (then
SIGCONT after a pause); then the faults heal, every pending call must
complete (--liveness), every client must reach the latest ts, the process is
stopped, and the checks run: bank conservation, counters, Elle
serializability on list-append, durability and atomicity of acknowledged
writes read from the data folder, exactly-once across restarts, the
subscription oracle (every value a client received equals a time-travel
query at its ts), and the node's logs.

Real time is not simulated: the seed fixes each client's choices and the
fault schedule, not the interleaving, so rerunning a seed is a new
experiment rather than a replay. The run is bounded: at most --timeout
(default duration + liveness + 90s).
"""

REAL_EPILOG = """\
Exit codes: 0 passed, 3 safety violation, 4 liveness failure (or the overall
timeout), 5 crash (eddy dev died by itself or failed to start), 2 bad usage.
EDDY_SIM_BUG=<name> plants one of the node's bugs (see `eddy sim bugs`) in
the process, which is then started by the simulator's launcher of eddy dev
(sim/real/serve.py) instead of eddy dev itself.
A failed run keeps its data and the node's logs and prints where they are.
Workloads: bank, counters, list-append, hot-keys (default: all four), or a
.py workload file; leaderboard needs the simulator's in-process node.
"""


def _add_real_command(commands) -> None:
    real = commands.add_parser(
        "real", help="the same workloads and checkers against a real eddy dev process, "
                     "with SIGKILL and SIGSTOP",
        description=REAL_DESCRIPTION, epilog=REAL_EPILOG,
        formatter_class=HelpFormatter)
    real.add_argument("--seed", type=int, default=None,
                      help="fixes the operations and the fault schedule (default: a random one, "
                           "printed)")
    real.add_argument("--workload", default="bank,counters,list-append,hot-keys",
                      help="a comma list of bank, counters, list-append, hot-keys (default all "
                           "four), or a .py file defining `workload`")
    real.add_argument("--faults", default="kill,stop",
                      help="kill,stop (default), kill, stop, or none")
    real.add_argument("--duration", type=_duration, default=20.0,
                      help="real time of the faulty phase, e.g. 20s, 2m (default 20s)")
    real.add_argument("--liveness", type=_duration, default=30.0,
                      help="how long pending calls may take to complete after the heal "
                           "(default 30s)")
    real.add_argument("--timeout", type=_duration, default=None,
                      help="bound on the whole run (default duration + liveness + 90s)")
    real.add_argument("--clients", type=int, default=8, help="protocol clients (default 8)")
    real.add_argument("--think", type=_duration, default=0.05,
                      help="mean time a client waits between calls (default 50ms)")
    real.add_argument("--app", metavar="APP_DIR", default=None,
                      help="serve this app instead of the simulator's reference app "
                           "(with your own --workload file)")
    real.add_argument("--data", metavar="DIR", default=None,
                      help="keep the data folder here (default: a scratch folder, removed "
                           "after a passing run)")
    real.add_argument("--no-python-client", action="store_true",
                      help="every client speaks through the simulator's protocol client (by "
                           "default every other client of bank, counters and list-append calls "
                           "through Eddy's Python client, wire/client.py)")
    real.add_argument("--verbose", action="store_true", help="print full failure explanations")
    real.set_defaults(handler=_real)


def _real(options: argparse.Namespace) -> int:
    import random
    from sim.bugs import SERVER_BUGS, selected_bug
    from sim.real.run import RealOptions, check_workloads, run
    kinds = tuple(kind.strip() for kind in options.faults.split(",")
                  if kind.strip() and kind.strip() != "none")
    unknown = [kind for kind in kinds if kind not in ("kill", "stop")]
    try:
        if unknown:
            raise ValueError(f"unknown faults {unknown}; the real tier has kill and stop")
        check_workloads(options.workload)
        bug = selected_bug()
        if bug in SERVER_BUGS:
            raise ValueError(f"bug {bug} is planted in the simulator's sync endpoint; the real "
                             f"tier plants the node's bugs only")
    except ValueError as error:
        return _usage_error(error)
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1, 2**31)
    real_options = RealOptions(seed=seed, workload=options.workload, faults=kinds,
                               duration_s=options.duration, liveness_s=options.liveness,
                               timeout_s=options.timeout, clients=options.clients,
                               think_s=options.think, app_dir=options.app, data_dir=options.data,
                               bug=bug, python_clients=not options.no_python_client)
    print(f"real-process run: seed {seed}, workload {options.workload}, {options.clients} "
          f"clients, faults {','.join(kinds) or 'none'}, {options.duration:g}s "
          f"(bounded by {real_options.overall_timeout_s:g}s), bug {bug or 'none'}")
    print("real time is not simulated: the seed fixes each client's operations and the fault "
          "schedule, not the interleaving; a rerun is a new experiment, not a replay", flush=True)
    result = run(real_options)
    _print_real_result(result, options.verbose)
    return result.exit_code


def _print_real_result(result, verbose: bool) -> None:
    print("fault schedule: " + (", ".join(f"{event.kind} at {event.at_s:.2f}s for "
                                          f"{event.hold_s:.2f}s" for event in result.schedule)
                                or "none"))
    print(f"ran {result.wall_s:.1f}s wall, {result.incarnations} eddy dev starts, "
          f"{result.commit_count} commits")
    _print_operations_and_faults(result)
    print("WebSocket connections: " + (", ".join(f"{count} {kind}" for kind, count in
                                                 sorted(result.connection_counts.items())) or "none"))
    _print_checks(result.checks)
    if result.failure:
        explanation = result.explanation if verbose else result.explanation[:4000]
        print(f"{result.failure.upper()} FAILURE (exit {result.exit_code}):")
        print("  " + explanation.replace("\n", "\n  "))
        print(f"data folder: {result.data_dir}; node logs: {result.log_dir}")
    print(f"rerun: {result.options.command()}")


__all__ = ["add_commands"]
