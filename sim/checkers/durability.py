"""Checkers over the node's own log on the simulated disk, after the run.

- Durability: every acknowledged mutation that wrote is in the commit log at
  the ts it was acknowledged with, with its path and arguments; a crash or
  power loss lost none of them.
- Atomicity: every commit record has the log entry of each table it names,
  and every log entry has its commit record: nothing is half there.
- Commit order: the node published commits in strictly rising ts across
  every incarnation.
- Exactly once: no request key (sessionId, requestId) is on two commits,
  and no path and arguments commit more often than calls with them could
  account for, over the run and within each incarnation: a re-sent request is
  answered from the node's results (in memory, or logged before a restart),
  not run again.
- Stale storage: every older copy of the data restored at a restart was
  refused (StaleStorage), and no current one was.
- Corruption: a bit flipped in a copy of the final disk makes the node refuse
  to open, naming the damaged record, rather than serve it.
"""

from __future__ import annotations

import bisect
import json

from engine.commits import log_key, parse_commit_record, parse_log_key
from engine.errors import EddyError, ErrorCode

from sim.workloads import Check


def read_commits(store) -> dict[int, dict]:
    return {int.from_bytes(key, "big"): parse_commit_record(value)
            for key, value in store.scan("commits")}


def check_durable(history: list, commits: dict[int, dict], wrote) -> Check:
    """Acknowledged writes are all in the log (`wrote(op)` says which ops wrote)."""
    checked = 0
    for op in history:
        if op.status != "ok" or op.kind != "mutation" or not wrote(op):
            continue
        checked += 1
        record = commits.get(op.ts)
        if record is None or record["path"] != op.path or record["args"] != op.args:
            found = "nothing" if record is None else f"{record['path']} {record['args']}"
            return Check("durability: no acknowledged write lost", False,
                         f"client {op.client} call {op.index} {op.path} {op.args} was acknowledged "
                         f"at ts {op.ts} (t={op.complete_s:.3f}s), but the log holds {found} there")
    return Check("durability: no acknowledged write lost", True, f"{checked} acknowledged writes")


def check_atomic(store, commits: dict[int, dict]) -> Check:
    """No commit is half in the log."""
    logged = {parse_log_key(key) for key, _ in store.scan("log")}
    for ts, record in commits.items():
        for number, _ids in record["writes"]:
            if (number, ts) not in logged:
                return Check("atomicity: no commit half there", False,
                             f"commit {ts} ({record['path']}) names table {number}, whose log has "
                             f"no entry {log_key(number, ts).hex()}")
    orphans = sorted((ts, number) for number, ts in logged if ts not in commits)
    if orphans:
        ts, number = orphans[0]
        return Check("atomicity: no commit half there", False,
                     f"log entry of table {number} at ts {ts} has no commit record")
    return Check("atomicity: no commit half there", True, f"{len(commits)} commits")


def check_no_function_crashed(history: list) -> Check:
    """The reference app never raises on its own: a crash means it read a state
    no serial execution produces (a document it had just seen was gone)."""
    for op in history:
        if op.error and op.error.startswith("FunctionCrashed"):
            return Check("functions: none crashed", False,
                         f"client {op.client} call {op.index} {op.path} {op.args} crashed: {op.error}")
    return Check("functions: none crashed", True)


def check_published_order(published: list[tuple[int, str]]) -> Check:
    for (before, path_before), (after, path_after) in zip(published, published[1:]):
        if after <= before:
            return Check("commit order: ts strictly rises across restarts", False,
                         f"commit {after} ({path_after}) was published after commit {before} "
                         f"({path_before})")
    return Check("commit order: ts strictly rises across restarts", True,
                 f"{len(published)} commits published")


def check_exactly_once(history: list, commits: dict[int, dict],
                       openings: list[tuple[float, int]]) -> Check:
    """No request ran twice, in one node incarnation or across restarts.

    The node de-duplicates a re-sent mutation by its (sessionId, requestId),
    from memory within an incarnation and from the log after a restart
    (`Node.logged_mutation_result`), so, from the log alone:

    - no request key is on two commits;
    - commits with one path and arguments are at most the mutation calls
      with them that did not fail, over the whole run, and within each
      incarnation (`openings`: (virtual time, newest ts) at each opening) at
      most those in flight then (a cross-check that needs no request ids).
    """
    name = "exactly once: no request ran twice, across restarts too"
    by_request: dict[tuple, list[int]] = {}
    for ts, record in sorted(commits.items()):
        if record.get("request") is not None:
            by_request.setdefault(tuple(record["request"]), []).append(ts)
    twice = next(((key, found) for key, found in sorted(by_request.items()) if len(found) > 1), None)
    if twice is not None:
        (session_id, request_id), found = twice
        return Check(name, False,
                     f"session {session_id} request {request_id} committed {len(found)} times "
                     f"(ts {', '.join(map(str, found[:4]))}{_incarnations_of(found, openings)}): "
                     f"a re-sent request ran again instead of being answered from its stored "
                     f"or logged result")
    problem = _more_commits_than_calls(history, commits, openings)
    if problem:
        return Check(name, False, problem)
    return Check(name, True, f"{len(commits)} commits, {len(by_request)} with a request key")


def _incarnations_of(found: list[int], openings: list[tuple[float, int]]) -> str:
    starts = [ts for _, ts in openings]
    numbers = [bisect.bisect_left(starts, ts) for ts in found]
    if not openings:
        return ""
    if len(set(numbers)) == 1:
        return f", all in node incarnation {numbers[0]}"
    return f", in node incarnations {', '.join(map(str, numbers))}"


def _call_key(path: str, args) -> str:
    """A call's path and arguments as the findings name it."""
    return path + " " + json.dumps(args, sort_keys=True, default=repr)


_SCALARS = (str, int, bool, type(None))


def _call_group(path: str, args):
    """A key equal for calls whose `_call_key` is equal, cheaper to make for
    the usual arguments (a few scalars, each of one type: 1 and True differ,
    as their JSON does); a run groups about 5,000 calls and commits."""
    if type(args) is dict and all(type(value) in _SCALARS for value in args.values()):
        return path, tuple(sorted((name, type(value), value) for name, value in args.items()))
    return _call_key(path, args)


def _more_commits_than_calls(history: list, commits: dict[int, dict],
                             openings: list[tuple[float, int]]) -> str | None:
    """A readable finding if some path and arguments committed more often than
    calls with them could account for (see check_exactly_once), else None.

    Of several, the finding is about the call whose `_call_key` sorts first.
    Only calls with a finding are named: naming one (its JSON) costs more
    than checking it, and a passing run names none.
    """
    starts = [ts for _, ts in openings]
    times = [t for t, _ in openings] + [float("inf")]
    committed: dict = {}  # _call_group -> commit ts, rising
    first_record: dict = {}  # _call_group -> its first commit's record, to name it
    for ts, record in sorted(commits.items()):
        group = _call_group(record["path"], record["args"])
        if group not in committed:
            committed[group] = []
            first_record[group] = record
        committed[group].append(ts)
    calls: dict = {}
    in_flight: dict = {}
    for op in history:
        if op.kind != "mutation" or op.status == "fail":
            continue
        key = _call_group(op.path, op.args)
        calls[key] = calls.get(key, 0) + 1
        end = float("inf") if op.complete_s is None else op.complete_s
        for incarnation in range(len(openings)):
            if op.invoke_s <= times[incarnation + 1] and end >= times[incarnation]:
                in_flight[(incarnation, key)] = in_flight.get((incarnation, key), 0) + 1
    findings = {}  # _call_key -> finding
    for group, found in committed.items():
        finding = _too_many(group, found, calls, in_flight, starts)
        if finding is not None:
            record = first_record[group]
            call = _call_key(record["path"], record["args"])
            findings[call] = finding(call, _incarnations_of(found, openings))
    return findings[min(findings)] if findings else None


def _too_many(group, found: list[int], calls: dict, in_flight: dict, starts: list[int]):
    """None if the commits `found` of one `_call_group` are accounted for by
    its calls, else a function of (its call key, the incarnations text)
    that words the finding."""
    allowed = calls.get(group, 0)
    if allowed and len(found) > allowed:
        return lambda call, incarnations: (
            f"{call} committed {len(found)} times (ts {', '.join(map(str, found[:4]))}"
            f"{incarnations}), but only {allowed} such call"
            f"{'s' if allowed > 1 else ''} did not fail: a re-sent request ran again "
            f"instead of being answered from its stored or logged result")
    per_incarnation: dict[int, list[int]] = {}
    for ts in found:
        per_incarnation.setdefault(bisect.bisect_left(starts, ts) - 1, []).append(ts)
    for incarnation, there in sorted(per_incarnation.items()):
        allowed = in_flight.get((incarnation, group), 0)
        if incarnation >= 0 and allowed and len(there) > allowed:
            return lambda call, incarnations: (
                f"{call} committed {len(there)} times (ts {', '.join(map(str, there[:4]))}) "
                f"in node incarnation {incarnation + 1}, but only {allowed} such call"
                f"{'s were' if allowed > 1 else ' was'} in flight: a re-sent request ran "
                f"again instead of being answered from its stored result")
    return None


def check_stale_storage(host) -> Check:
    """Older copies refused, current ones served (sim/host.py, stale storage)."""
    name = "stale storage: older copies refused, current ones served"
    if host.stale_violations:
        more = len(host.stale_violations) - 1
        return Check(name, False, host.stale_violations[0] + (f" ({more} more)" if more else ""))
    return Check(name, True, f"{host.stale_refused} older copies refused")


async def check_corruption_detected(disk, path: str, open_node_on) -> Check:
    """Flips a bit in a copy of the disk's log; opening a node on it must fail
    with CORRUPT_RECORD naming the key."""
    damaged = disk.copy()
    damaged.write_error_probability = 0.0
    damaged.capacity_bytes = None
    key = damaged.flip_bit(path, "log")
    if key is None:
        return Check("corruption: a flipped bit is refused", True, "no log records to damage")
    try:
        await open_node_on(damaged)
    except EddyError as error:
        if error.code is ErrorCode.CORRUPT_RECORD and key.hex() in error.message:
            return Check("corruption: a flipped bit is refused", True)
        return Check("corruption: a flipped bit is refused", False,
                     f"opening a node on a disk with log record {key.hex()} damaged failed "
                     f"with {error.code.value}: {error.message}, not naming the record")
    return Check("corruption: a flipped bit is refused", False,
                 f"a node opened on a disk whose log record {key.hex()} has a flipped bit")
