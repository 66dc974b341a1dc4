"""The ingestion checker: every insert is in the final table exactly as often
as it was acknowledged, and a batch is all there or not at all.

The workload (sim/workloads/ingest.py) gives every event a key unique over
the run, (client, seq), and inserts events with `ingest:insert` (one event a
mutation) or `ingest:insert_batch` (many in one mutation, one transaction).
After the heal each client reads its own events back (`ingest:keys`: [seq,
batch] per row). From those final reads and the history of calls:

- no loss: every event of an acknowledged call (`ok`) is there;
- no duplicate: no key is there twice (a re-sent request run again, across a
  reconnect or a restart, leaves two), no key is there that no call asked
  for, and none of a call the node refused (`fail`: it did not happen);
- all or nothing: each batch call's events are all there (under its batch
  number) or none is (only a call whose outcome is unknown, `info`, may
  leave none);
- counts never go back: protocol clients record every result their live
  `ingest:count` queries received (sim/clients.py, `SubscriptionLog`);
  events are only ever inserted, so a stream's count at a later ts is never
  smaller. (The subscription oracle checks each value against time travel;
  this one needs no reference node, and names the two deliveries.)

Each check is a plain function over Operations and Snapshots, so a doctored
history can be fed to it (tests/sim/test_ingest.py).
"""

from __future__ import annotations

import collections

from sim.workloads import Check

INSERT_PATHS = ("ingest:insert", "ingest:insert_batch")
FINAL_READ_PATH = "ingest:keys"
COUNT_PATH = "ingest:count"


def events_of(op) -> list[int]:
    """The seqs an insert call asked for, in order."""
    if op.path == "ingest:insert":
        return [op.args["seq"]]
    return [event["seq"] for event in op.args["events"]]


def final_reads(history: list, healed_s: float) -> dict[int, dict[int, list[int]]]:
    """client -> seq -> the batch numbers of its rows, from the client's last
    successful `ingest:keys` read of its own events after the heal."""
    finals: dict[int, dict[int, list[int]]] = {}
    for op in history:
        if op.path == FINAL_READ_PATH and op.status == "ok" and op.complete_s >= healed_s:
            rows: dict[int, list[int]] = collections.defaultdict(list)
            for seq, batch in op.value:
                rows[seq].append(batch)
            finals[op.args["client"]] = dict(rows)
    return finals


def _describe(op) -> str:
    events = events_of(op)
    where = f" at ts {op.ts}" if op.ts is not None else ""
    return (f"client {op.client} call {op.index} {op.path} of {len(events)} event(s) "
            f"(seq {events[0]}{'..' + str(events[-1]) if len(events) > 1 else ''}), "
            f"{op.status}{where} (t={op.complete_s:.3f}s)")


def check(history: list, healed_s: float) -> list[Check]:
    """No loss, no duplicate, all or nothing (see the module docstring)."""
    inserts = [op for op in history if op.path in INSERT_PATHS]
    finals = final_reads(history, healed_s)
    unread = sorted({op.client for op in inserts} - set(finals))
    if unread:
        return [Check("ingest: the final reads", False,
                      f"clients {unread} inserted events but have no successful {FINAL_READ_PATH} "
                      f"read after the heal")]
    return [_check_no_loss(inserts, finals), _check_no_duplicate(inserts, finals),
            _check_all_or_nothing(inserts, finals)]


def _check_no_loss(inserts: list, finals: dict) -> Check:
    name = "ingest: no acknowledged insert lost"
    acknowledged = [op for op in inserts if op.status == "ok"]
    for op in acknowledged:
        missing = [seq for seq in events_of(op) if seq not in finals[op.client]]
        if missing:
            return Check(name, False, f"{_describe(op)}, but the final table lacks seq "
                                      f"{missing[:5]} ({len(missing)} of its events)")
    count = sum(len(events_of(op)) for op in acknowledged)
    return Check(name, True, f"{len(acknowledged)} acknowledged inserts, {count} events")


def _check_no_duplicate(inserts: list, finals: dict) -> Check:
    name = "ingest: no event inserted twice, none unasked for"
    asked: dict[tuple[int, int], object] = {}
    for op in inserts:
        for seq in events_of(op):
            asked[(op.client, seq)] = op
    for client, rows in sorted(finals.items()):
        for seq, batches in sorted(rows.items()):
            op = asked.get((client, seq))
            if op is None:
                return Check(name, False, f"the final table holds event ({client}, {seq}) "
                                          f"(batch {batches}), which no call inserted")
            if len(batches) > 1:
                return Check(name, False, f"the final table holds event ({client}, {seq}) "
                                          f"{len(batches)} times (batches {batches}); it came "
                                          f"from {_describe(op)}: a mutation ran more than once")
            if op.status == "fail":
                return Check(name, False, f"event ({client}, {seq}) is in the final table, but "
                                          f"{_describe(op)} ({op.error}): a refused call wrote")
    return Check(name, True, f"{sum(len(rows) for rows in finals.values())} events, each once")


def _check_all_or_nothing(inserts: list, finals: dict) -> Check:
    name = "ingest: a batch is all or nothing"
    batches = [op for op in inserts if op.path == "ingest:insert_batch"]
    for op in batches:
        events, rows = events_of(op), finals[op.client]
        there = [seq for seq in events if seq in rows]
        if there and len(there) < len(events):
            return Check(name, False, f"{_describe(op)}: {len(there)} of its {len(events)} events "
                                      f"are in the final table (e.g. seq {there[0]}), the rest "
                                      f"(e.g. seq {next(s for s in events if s not in rows)}) not")
        strays = [seq for seq in there if events[0] not in rows[seq]]
        if strays:
            return Check(name, False, f"{_describe(op)}: event seq {strays[0]} is there under "
                                      f"batch {rows[strays[0]]}, not {events[0]}")
    return Check(name, True, f"{len(batches)} batch inserts")


def check_counts_rise(snapshots: list) -> Check:
    """Every `ingest:count` result any protocol client received (the
    SubscriptionLog's snapshots), ordered by ts: a stream's count never goes
    down, and two results at one ts agree."""
    name = "ingest: a live count never goes back"
    seen: dict[tuple, list[tuple[int, int, int]]] = collections.defaultdict(list)
    for snapshot in snapshots:
        for _query_id, path, args, ok, value in snapshot.results:
            if path == COUNT_PATH and ok:
                key = (args["stream"], args["lo"], args["hi"])
                seen[key].append((snapshot.ts, value, snapshot.client))
    for (stream, lo, hi), results in sorted(seen.items()):
        results.sort()
        for (ts, value, client), (later_ts, later, later_client) in zip(results, results[1:]):
            if later < value or (later_ts == ts and later != value):
                return Check(name, False, f"stream {stream} ranks [{lo}, {hi}): client {client} "
                                          f"got count {value} at "
                                          f"ts {ts}, client {later_client} got {later} at ts "
                                          f"{later_ts}: a count went back or two disagree at one ts")
    return Check(name, True, f"{sum(map(len, seen.values()))} count results")
