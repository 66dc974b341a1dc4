"""`eddy log|show|query|diff|replay|rerun|bisect|compact`: debugging from the log.

Each command takes the app folder first, like `eddy dev`, and `--data DIR` when
the data is not in APP_DIR/.eddy. All but `compact` only read: they open the
data folder read-only, so they work on a stopped node's folder and on a
running node's, and never change it. The work is done by actors/history.py;
this module parses arguments and prints. docs/debugging.md walks through each.

Timestamps (TS) are Eddy's commit timestamps (nanoseconds since the Unix
epoch, as `eddy log` prints them), an ISO time (`2024-05-01T12:00:00Z`; no
zone means UTC) or a time relative to now (`-5m`, `-2h`, `-30s`, `-1d`).
A time names the state as of that moment.

Exit codes: 0 done, 1 an error (on stderr) or, for `rerun` and
`replay --verify`, a difference found; 2 bad usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from actors.app import AppLoadError
from actors.history import MISSING, History, LoggedCommit, ShownCommit, open_history
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed
from wire import codecs
from wire.cli import HelpFormatter
from wire.devserver import describe_load_error

FOLLOW_POLL_S = 0.2  # `eddy log --follow` checks for new commits this often.
ARGS_CHARS_MAX = 80  # one log line shows at most this much of the args

TS_HELP = ("a commit ts (integer ns, as `eddy log` prints), an ISO time "
           "(2024-05-01T12:00:00Z) or relative to now (-5m, -2h, -30s, -1d)")

EPILOG = """\
TS is a commit timestamp (nanoseconds since the Unix epoch, as `eddy log`
prints it), an ISO time (2024-05-01T12:00:00Z; UTC when no zone is given) or a
time relative to now (-30s, -5m, -2h, -1d). The data folder is opened
read-only (a running `eddy dev` may hold it) unless the command says otherwise.
docs/debugging.md has a worked example of every command.
"""


def add_commands(commands) -> None:
    """Adds the history commands to `eddy`'s subparsers."""
    log = _parser(commands, "log", "list commits, one line each (or JSON lines)",
                  "List commits from the log, oldest first: ts, wall time, function, "
                  "identity, a short form of the args, and documents written per table.")
    log.add_argument("--since", metavar="TS", help="only commits at or after TS")
    log.add_argument("--until", metavar="TS", help="only commits at or before TS")
    log.add_argument("--table", metavar="T", help="only commits that wrote table T")
    log.add_argument("--function", metavar="PATH", help='only commits made by PATH ("messages:send")')
    log.add_argument("--id", metavar="DOC_ID", dest="document_id",
                     help="only commits that wrote this document")
    log.add_argument("--follow", action="store_true",
                     help="keep printing new commits as a running node makes them (Ctrl-C stops)")
    _json_flag(log)
    log.set_defaults(handler=_log)

    show = _parser(commands, "show", "one commit in full, with before/after of every document",
                   "Print one commit in full: function, args, identity, snapshot ts, seed, "
                   "now, read set, and every document it wrote with a field-level diff.")
    show.add_argument("ts", metavar="TS", help="the commit's ts (exactly, as `eddy log` prints it)")
    _json_flag(show)
    show.set_defaults(handler=_show)

    query = _parser(commands, "query", "run a query against the state as of a past ts",
                    "Run a query function against the data as it stood at TS (time travel) and "
                    "print its result as JSON.")
    query.add_argument("--at", metavar="TS", required=True, help=TS_HELP)
    query.add_argument("path", metavar="PATH", help='the query, e.g. "messages:list"')
    query.add_argument("args", metavar="ARGS_JSON", nargs="?", default="{}",
                       help="the arguments as a JSON object (Convex encoded JSON); default {}")
    query.set_defaults(handler=_query)

    diff = _parser(commands, "diff", "documents inserted, changed and deleted between two ts",
                   "Compare the data at TS1 with the data at TS2: documents inserted, "
                   "changed (field by field) and deleted.")
    diff.add_argument("ts1", metavar="TS1", help=TS_HELP)
    diff.add_argument("ts2", metavar="TS2", help=TS_HELP)
    diff.add_argument("--table", metavar="T", help="only documents of table T")
    _json_flag(diff)
    diff.set_defaults(handler=_diff)

    replay = _parser(commands, "replay", "rebuild a data folder as of a ts, or verify derived state",
                     "With --until TS --into NEW_DIR: write a new data folder holding the log up "
                     "to TS, which `eddy dev APP_DIR --data NEW_DIR` serves as the state stood "
                     "then. With --verify: rebuild all derived state (documents, versions, every "
                     "index) from the log by an independent path, compare it with the state a "
                     "node builds, and report each mismatch (exit 1 if any).")
    replay.add_argument("--until", metavar="TS", help=TS_HELP)
    replay.add_argument("--into", metavar="NEW_DIR", type=Path,
                        help="the new data folder (must not exist, or be empty)")
    replay.add_argument("--verify", action="store_true", help="verify instead of copying")
    _json_flag(replay)
    replay.set_defaults(handler=_replay)

    rerun = _parser(commands, "rerun", "re-run a logged mutation and compare its writes",
                    "Re-execute the mutation logged at TS against the snapshot it ran on, with "
                    "its seed, now and identity, and compare its writes with the logged ones "
                    "byte for byte. A difference means non-deterministic app code (it read the "
                    "wall clock, random.random(), a global...); the first differing write is "
                    "named and the exit code is 1. Nothing is written.")
    rerun.add_argument("ts", metavar="TS", help="the commit's ts (exactly)")
    rerun.add_argument("--pdb", action="store_true",
                       help="stop in the Python debugger at the function's first line")
    rerun.add_argument("--with", dest="other_app", metavar="OTHER_APP_DIR", type=Path,
                       help="run this app folder's code instead (would a fix write otherwise?)")
    _json_flag(rerun)
    rerun.set_defaults(handler=_rerun)

    bisect = _parser(commands, "bisect", "find the first commit after which an invariant fails",
                     "Given a query that returns true while the data is good (and false, "
                     "anything else, or raises when it is not), find the first commit after "
                     "which it fails, by O(log n) time-travel evaluations, and print it as "
                     "`eddy show` does.")
    # PATH and its ARGS_JSON both belong to --check: a positional after
    # APP_DIR would be taken (empty) together with APP_DIR by argparse.
    bisect.add_argument("--check", metavar=("PATH", "ARGS_JSON"), nargs="+", required=True,
                        help="the invariant query, then its arguments as a JSON object "
                             "(default {})")
    _json_flag(bisect)
    bisect.set_defaults(handler=_bisect)

    compact = _parser(commands, "compact", "drop document versions older than a ts (writes!)",
                      "Drop document versions older than TS that the state at TS does not "
                      "need, keeping the latest state and every commit record; reads before TS "
                      "then fail with a clear error. Changes the data folder: stop the node first.")
    compact.add_argument("--before", metavar="TS", required=True, help=TS_HELP)
    _json_flag(compact)
    compact.set_defaults(handler=_compact)


def _parser(commands, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description, epilog=EPILOG,
                                 formatter_class=HelpFormatter)
    # Let relative times (`--since -5m`) be values, not unknown options:
    # argparse only lets plain negative numbers through. No history option
    # looks like one, so widening argparse's (private) matcher is safe.
    parser._negative_number_matcher = RELATIVE_TIME
    parser.add_argument("app_dir", metavar="APP_DIR", type=Path, help="the app folder")
    parser.add_argument("--data", metavar="DIR", type=Path, default=None,
                        help="the data folder (default APP_DIR/.eddy)")
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for programs")


# ----- running a command --------------------------------------------------------


def _guarded(name: str, options, body: Callable[[History], int], **open_options) -> int:
    """Opens the history, runs `body`, and turns errors into a message and exit 1."""
    try:
        with open_history(options.app_dir, options.data, **open_options) as history:
            return body(history)
    except EddyError as error:
        print(f"eddy {name}: {error.code.value}: {error.message}", file=sys.stderr)
    except AppLoadError as error:
        print(f"eddy {name}: {describe_load_error(error)}", file=sys.stderr)
    except AppError as error:
        data = json.dumps(codecs.encode_value(error.data, codecs.Format.CLEAN))
        print(f"eddy {name}: the function raised {error} (data: {data})", file=sys.stderr)
    except FunctionCrashed as error:
        print(f"eddy {name}: {error.traceback_text or error.message}", file=sys.stderr)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`eddy log | head`): not an error
        return 0
    return 1


RELATIVE_TIME = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")


def parse_ts(text: str, history: History | None = None, *, now_ns: int | None = None) -> int:
    """A TS argument as a commit-clock ts (see the module docstring).

    A time (ISO or relative) at or after the head, but not in the future, names
    the head: "the state as of now" is the latest state.

    Raises:
        EddyError(INVALID_TIMESTAMP): the text is none of the three forms.
    """
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    now_ns = time.time_ns() if now_ns is None else now_ns
    relative = RELATIVE_TIME.fullmatch(text)
    if relative and relative.group(2):
        unit_ns = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
                   "d": 86400 * 10**9}[relative.group(2)]
        ts = now_ns - int(float(relative.group(1)) * unit_ns)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                            f"Not a timestamp: {text!r}. Use {TS_HELP}.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = int(moment.timestamp())
        ts = seconds * 10**9 + moment.microsecond * 1000
    if history is not None and history.head_ts < ts <= now_ns:
        return history.head_ts
    return ts


def _wall_time(ts: int, _cache: dict = {}) -> str:
    """ISO UTC time of a ts, to the millisecond (a cache per second: `eddy log` is hot)."""
    seconds, rest = divmod(ts, 10**9)
    prefix = _cache.get(seconds)
    if prefix is None:
        _cache.clear()
        prefix = _cache[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{prefix}.{rest // 10**6:03d}Z"


def _clean(value: Any) -> Any:
    return codecs.encode_value(value, codecs.Format.CLEAN)


# One encoder for every line: json.dumps with options builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _identity_text(identity: Any) -> str:
    if identity is None:
        return "-"
    if isinstance(identity, dict):
        return str(identity.get("token_identifier") or identity.get("subject") or "identity")
    return str(identity)


# ----- eddy log ---------------------------------------------------------------------


def _log(options) -> int:
    def body(history: History) -> int:
        since = None if options.since is None else parse_ts(options.since, history)
        until = None if options.until is None else parse_ts(options.until, history)
        write = sys.stdout.write
        line = _json_line if options.json else _text_line
        filters = dict(table=options.table, function=options.function,
                       document_id=options.document_id)
        last_ts = None
        for commit in history.commits(since, until, **filters):
            write(line(commit))
            last_ts = commit.ts
        sys.stdout.flush()
        if not options.follow:
            return 0
        while until is None or (last_ts or 0) < until:
            time.sleep(FOLLOW_POLL_S)
            history.refresh()
            start = (last_ts + 1) if last_ts is not None else since
            for commit in history.commits(start, until, **filters):
                write(line(commit))
                last_ts = commit.ts
            sys.stdout.flush()
        return 0
    try:
        return _guarded("log", options, body, follow=options.follow)
    except KeyboardInterrupt:
        return 0 if options.follow else 130


def _text_line(commit: LoggedCommit) -> str:
    args = _dumps(_clean(commit.args))
    if len(args) > ARGS_CHARS_MAX:
        args = args[:ARGS_CHARS_MAX - 3] + "..."
    names = commit.table_names
    writes = " ".join([f"{names.get(number, number)}+{len(written)}"
                       for number, written in commit.writes])
    return (f"{commit.ts}  {_wall_time(commit.ts)}  {commit.path}  "
            f"{_identity_text(commit.identity)}  {args}  {writes or '-'}\n")


def commit_json(commit: LoggedCommit) -> dict:
    """A commit as the JSON object `eddy log --json` prints (args in Convex encoded JSON)."""
    writes: dict[str, list[str]] = {}
    for table, document_id in commit.document_ids():
        writes.setdefault(table, []).append(document_id)
    return {"ts": commit.ts, "time": _wall_time(commit.ts), "kind": commit.kind,
            "function": commit.path, "identity": _clean(commit.identity),
            "args": codecs.encode_value(commit.args, codecs.Format.ENCODED),
            "snapshot_ts": commit.snapshot_ts, "writes": writes}


def _json_line(commit: LoggedCommit) -> str:
    return json.dumps(commit_json(commit), ensure_ascii=False, allow_nan=False) + "\n"


# ----- eddy show / diff / query ---------------------------------------------------------


def _show(options) -> int:
    def body(history: History) -> int:
        shown = history.show(parse_ts(options.ts))
        if options.json:
            print(_dumps(shown_json(shown)))
        else:
            print(format_shown(shown), end="")
        return 0
    return _guarded("show", options, body)


def shown_json(shown: ShownCommit) -> dict:
    commit = shown.commit
    record = commit_json(commit)
    record.update(seed=commit.seed, now_ms=commit.now_ms,
                  created_tables=[name for name, _ in commit.created_tables],
                  reads=_reads(commit, history_names=commit.table_names),
                  changes=None if shown.changes is None else [change_json(c) for c in shown.changes])
    return record


def change_json(change) -> dict:
    return {"table": change.table, "id": change.id, "kind": change.kind,
            "before": _clean(change.before), "after": _clean(change.after),
            "fields": [{"field": name,
                        "before": None if before is MISSING else _clean(before),
                        "after": None if after is MISSING else _clean(after)}
                       for name, before, after in change.fields()]}


def _reads(commit: LoggedCommit, history_names: dict[int, str]) -> list[dict]:
    found = []
    for (number, index), ranges in sorted(commit.read_set.ranges.items()):
        table = "(table names)" if number == 0 else history_names.get(number, str(number))
        found.append({"table": table, "index": index, "ranges": len(ranges)})
    return found


def format_shown(shown: ShownCommit) -> str:
    """`eddy show`'s text: the commit, then each document with its field changes."""
    commit = shown.commit
    reads = "; ".join(f"{r['table']}.{r['index']} ({r['ranges']} range{'s' * (r['ranges'] != 1)})"
                      for r in _reads(commit, commit.table_names)) or "-"
    lines = [
        f"commit    {commit.ts}  {_wall_time(commit.ts)}",
        f"function  {commit.path} ({commit.kind})",
        f"identity  {_dumps(_clean(commit.identity)) if commit.identity is not None else '-'}",
        f"args      {_dumps(_clean(commit.args))}",
        f"snapshot  {commit.snapshot_ts}   seed {commit.seed}   now {commit.now_ms!r} ms",
        f"reads     {reads}",
    ]
    if commit.created_tables:
        lines.append(f"created   {', '.join(name for name, _ in commit.created_tables)}")
    lines.append(f"writes    {commit.write_count} document(s)")
    if shown.changes is None:
        lines.append("  (documents before the retention window were compacted away)")
    else:
        lines.extend(format_changes(shown.changes))
    return "\n".join(lines) + "\n"


def format_changes(changes) -> list[str]:
    lines = []
    for change in changes:
        lines.append(f"  {change.kind} {change.table} {change.id}")
        for name, before, after in change.fields():
            if before is MISSING:
                lines.append(f"    + {name}: {_dumps(_clean(after))}")
            elif after is MISSING:
                lines.append(f"    - {name}: {_dumps(_clean(before))}")
            else:
                lines.append(f"    ~ {name}: {_dumps(_clean(before))} -> {_dumps(_clean(after))}")
    return lines


def _diff(options) -> int:
    def body(history: History) -> int:
        ts1, ts2 = parse_ts(options.ts1, history), parse_ts(options.ts2, history)
        changes = history.diff(ts1, ts2, table=options.table)
        if options.json:
            print(_dumps({"ts1": ts1, "ts2": ts2, "changes": [change_json(c) for c in changes]}))
            return 0
        counts = {kind: sum(1 for c in changes if c.kind == kind)
                  for kind in ("insert", "update", "delete")}
        print(f"from {ts1} to {ts2}: {counts['insert']} inserted, {counts['update']} changed, "
              f"{counts['delete']} deleted")
        for line in format_changes(changes):
            print(line)
        return 0
    return _guarded("diff", options, body)


def _query(options) -> int:
    def body(history: History) -> int:
        args = codecs.decode_args(codecs.parse_json(options.args, "ARGS_JSON"))
        value = history.query_at(options.path, args, parse_ts(options.at, history))
        print(json.dumps(_clean(value), indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    return _guarded("query", options, body)


# ----- eddy replay / rerun / bisect / compact ----------------------------------------------


def _replay(options) -> int:
    if options.verify == (options.until is not None or options.into is not None) or \
            (not options.verify and (options.until is None or options.into is None)):
        print("eddy replay: give either --until TS --into NEW_DIR, or --verify", file=sys.stderr)
        return 2

    def body(history: History) -> int:
        if options.verify:
            mismatches = history.verify()
            if options.json:
                print(_dumps({"ok": not mismatches,
                              "mismatches": [{"where": m.where, "message": m.message}
                                             for m in mismatches]}))
            elif mismatches:
                for mismatch in mismatches:
                    print(f"mismatch: {mismatch}")
                print(f"{len(mismatches)} mismatch(es) between derived state and the log")
            else:
                catalog = history.node().catalog
                documents = sum(shard.live_count for shard in catalog.shards.values())
                print(f"ok: the derived state of {len(catalog.shards)} table(s) "
                      f"({documents} live documents, every version and index) agrees with the log")
            return 1 if mismatches else 0
        until = parse_ts(options.until, history)
        report = history.replay_into(until, str(options.into))
        if options.json:
            print(_dumps({"until": until, "into": str(options.into),
                          "commits": report.commit_count, "documents": report.document_count}))
        else:
            print(f"replayed {report.commit_count} commit(s), {report.document_count} document "
                  f"write(s) in {report.table_count} table(s) up to {until} into {options.into}\n"
                  f"serve it with: eddy dev {options.app_dir} --data {options.into}")
        return 0
    return _guarded("replay", options, body)


def _rerun(options) -> int:
    def body(history: History) -> int:
        other = None if options.other_app is None else str(options.other_app)
        report = history.rerun(parse_ts(options.ts), other, debug=options.pdb)
        if options.json:
            difference = report.first_difference
            print(_dumps({
                "ts": report.ts, "function": report.path, "same": report.same,
                "logged_writes": report.logged_count, "rerun_writes": report.rerun_count,
                "error": report.error,
                "first_difference": None if difference is None else {
                    "position": difference.position, "table": difference.table,
                    "id": difference.id, "logged": _clean(difference.logged),
                    "rerun": _clean(difference.rerun), "description": difference.describe()}}))
        else:
            print(report.describe())
        return 0 if report.same else 1
    return _guarded("rerun", options, body)


def _bisect(options) -> int:
    def body(history: History) -> int:
        if len(options.check) > 2:
            raise EddyError(ErrorCode.BAD_REQUEST, "--check takes PATH and at most one ARGS_JSON.")
        path, raw = options.check[0], (options.check[1:] or ["{}"])[0]
        args = codecs.decode_args(codecs.parse_json(raw, "ARGS_JSON"))
        report = history.bisect(path, args)
        shown = None if report.first_bad is None else history.show(report.first_bad.ts)
        if options.json:
            print(_dumps({"first_bad": None if shown is None else shown_json(shown),
                          "fails_at_start": report.fails_at_start, "failure": report.failure,
                          "evaluations": report.evaluations, "commits": report.commit_count}))
            return 0
        if shown is None:
            print(f"{path} holds at the head ({history.head_ts}): nothing to find "
                  f"({report.evaluations} evaluation(s)).")
            return 0
        if report.fails_at_start:
            print(f"{path} already fails before the first retained commit "
                  f"({report.failure}).")
        else:
            print(f"first bad commit: {shown.commit.ts} ({path} {report.failure} after "
                  f"it; {report.evaluations} evaluations over {report.commit_count} commits)\n")
            print(format_shown(shown), end="")
        return 0
    return _guarded("bisect", options, body)


def _compact(options) -> int:
    def body(history: History) -> int:
        report = history.compact(parse_ts(options.before, history))
        if options.json:
            print(_dumps({"retained_since_ts": report.retained_since_ts,
                          "versions_dropped": report.versions_dropped}))
        else:
            print(f"history now starts at {report.retained_since_ts}: dropped "
                  f"{report.versions_dropped} old version(s) from {report.entries_rewritten} "
                  f"log entries; every commit record is kept")
        return 0
    return _guarded("compact", options, body, writable=True)
