"""`eddy log|show|query|diff|replay|rerun|bisect|compact` as a user runs them:
subprocesses on data folders made by a node, and on a running `eddy dev`'s."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import trio

from actors.node import open_node
from actors.storage import RocksStore
from engine.commits import ts_key
from tests.e2e.server import REPO_ROOT, EddyServer, eddy_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_S = 60
CHAT = REPO_ROOT / "examples" / "chat"
COMMANDS = ["log", "show", "query", "diff", "replay", "rerun", "bisect", "compact"]

SHAKY_APP = '''
import random
from engine import mutation, query, v


@mutation(args={"name": v.string()})
async def add(ctx, name):
    return await ctx.db.insert("items", {"name": name, "value": ctx.random.random()})


@mutation(args={"name": v.string()})
async def add_shaky(ctx, name):
    return await ctx.db.insert("items", {"name": name, "value": random.random()})


@query(args={})
async def no_bad(ctx):
    return all(item["name"] != "bad" for item in await ctx.db.query("items").collect())
'''


def eddy(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(eddy_command(*args), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, input=stdin)


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def chat_data(tmp_path: Path) -> Path:
    """examples/chat's data after a short random conversation (3 channels, ~40 commits)."""
    data = tmp_path / "chat-data"
    rng = random.Random(1)

    async def main():
        async with open_node(str(CHAT), str(data)) as node:
            channels = [await node.mutation("channels:create", {"name": n})
                        for n in ("general", "random", "help")]
            for i in range(36):
                await node.mutation("messages:send", {"channel": rng.choice(channels),
                                                      "author": rng.choice(["ada", "bob"]),
                                                      "body": f"message {i}"})
            await node.mutation("messages:clear", {"channel": channels[1]})
    trio.run(main)
    return data


@pytest.fixture
def shaky_app(tmp_path: Path) -> Path:
    app = tmp_path / "shaky"
    app.mkdir()
    (app / "items.py").write_text(textwrap.dedent(SHAKY_APP))

    async def main():
        async with open_node(str(app)) as node:
            for name in ("a", "b"):
                await node.mutation("items:add", {"name": name})
            await node.mutation("items:add_shaky", {"name": "c"})
            await node.mutation("items:add", {"name": "bad"})
            await node.mutation("items:add", {"name": "d"})
    trio.run(main)
    return app


def log_json(app: Path, *args: str) -> list[dict]:
    result = eddy("log", str(app), "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_history_command_explains_itself(command):
    """Each history command's --help prints its usage, APP_DIR, --data and the TS forms."""
    result = eddy(command, "--help")
    assert result.returncode == 0
    assert f"usage: eddy {command}" in result.stdout and "APP_DIR" in result.stdout
    assert "--data" in result.stdout and "-5m" in result.stdout


def test_log_lists_and_filters_commits(chat_data: Path):
    """`eddy log` prints a line per commit; --json, --function, --table, --id, --since, --until filter."""
    text = eddy("log", str(CHAT), "--data", str(chat_data))
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 40
    assert "channels:create" in text.stdout and "messages+1" in text.stdout
    records = log_json(CHAT, "--data", str(chat_data))
    assert {"ts", "function", "args", "writes"} <= records[0].keys()
    sends = log_json(CHAT, "--data", str(chat_data), "--function", "messages:send")
    assert len(sends) == 36 and all(r["function"] == "messages:send" for r in sends)
    assert len(log_json(CHAT, "--data", str(chat_data), "--table", "channels")) == 3
    message_id = sends[0]["writes"]["messages"][0]
    touching = log_json(CHAT, "--data", str(chat_data), "--id", message_id)
    assert [r["ts"] for r in touching][0] == sends[0]["ts"]
    window = log_json(CHAT, "--data", str(chat_data), "--since", str(records[5]["ts"]),
                      "--until", str(records[9]["ts"]))
    assert [r["ts"] for r in window] == [r["ts"] for r in records[5:10]]


def test_show_query_and_diff_read_past_states(chat_data: Path):
    """show prints a commit's field diff; query --at and diff read the state at past timestamps."""
    records = log_json(CHAT, "--data", str(chat_data))
    data = ["--data", str(chat_data)]
    clear = records[-1]
    shown = eddy("show", str(CHAT), *data, str(clear["ts"]), "--json")
    assert shown.returncode == 0, shown.stderr
    changes = json.loads(shown.stdout)["changes"]
    assert changes and all(c["kind"] == "delete" for c in changes)
    text = eddy("show", str(CHAT), *data, str(records[3]["ts"]))
    assert "insert messages" in text.stdout and '+ body: "message 0"' in text.stdout
    channel = records[1]["writes"]["channels"][0]
    before_clear = eddy("query", str(CHAT), *data, "--at", str(clear["ts"] - 1), "messages:list",
                        json.dumps({"channel": channel}))
    after_clear = eddy("query", str(CHAT), *data, "--at", str(clear["ts"]), "messages:list",
                       json.dumps({"channel": channel}))
    assert len(json.loads(before_clear.stdout)) == len(changes)
    assert json.loads(after_clear.stdout) == []
    diff = eddy("diff", str(CHAT), *data, str(records[2]["ts"]), str(clear["ts"]), "--json")
    kinds = [c["kind"] for c in json.loads(diff.stdout)["changes"]]
    assert kinds.count("insert") == 36 - len(changes) and "delete" not in kinds


def test_replay_into_a_new_folder_and_verify(chat_data: Path, tmp_path: Path):
    """replay --until --into writes a folder `eddy run --data` serves as of TS; --verify says ok."""
    records = log_json(CHAT, "--data", str(chat_data))
    until = records[10]["ts"]
    into = tmp_path / "then"
    replayed = eddy("replay", str(CHAT), "--data", str(chat_data), "--until", str(until),
                    "--into", str(into))
    assert replayed.returncode == 0, replayed.stderr
    assert len(log_json(CHAT, "--data", str(into))) == 11
    channel = records[1]["writes"]["channels"][0]
    then = eddy("run", str(CHAT), "messages:list", json.dumps({"channel": channel}),
                "--data", str(into))
    at = eddy("query", str(CHAT), "--data", str(chat_data), "--at", str(until), "messages:list",
              json.dumps({"channel": channel}))
    assert then.returncode == 0 and json.loads(then.stdout) == json.loads(at.stdout)
    verified = eddy("replay", str(CHAT), "--data", str(chat_data), "--verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok:")
    assert eddy("replay", str(CHAT), "--data", str(chat_data)).returncode == 2


def test_rerun_catches_non_deterministic_code_and_stops_in_pdb(shaky_app: Path):
    """rerun exits 0 for a deterministic mutation, 1 naming the write for random.random(); --pdb stops."""
    records = log_json(shaky_app)
    same = eddy("rerun", str(shaky_app), str(records[0]["ts"]))
    assert same.returncode == 0 and "byte for byte" in same.stdout
    shaky = eddy("rerun", str(shaky_app), str(records[2]["ts"]))
    assert shaky.returncode == 1
    assert "non-deterministic" in shaky.stdout and "value: logged" in shaky.stdout
    debugged = eddy("rerun", str(shaky_app), str(records[0]["ts"]), "--pdb", stdin="p name\nc\n")
    assert debugged.returncode == 0, debugged.stderr
    assert "items.py(8)add()" in debugged.stdout  # pdb stopped at the first line
    assert "'a'" in debugged.stdout  # `p name` printed the argument at the first line


def test_bisect_prints_the_first_bad_commit(shaky_app: Path):
    """bisect --check finds the commit that wrote "bad" and prints it as show does."""
    records = log_json(shaky_app)
    found = eddy("bisect", str(shaky_app), "--check", "items:no_bad")
    assert found.returncode == 0, found.stderr
    assert f"first bad commit: {records[3]['ts']}" in found.stdout
    assert '+ name: "bad"' in found.stdout
    as_json = json.loads(eddy("bisect", str(shaky_app), "--check", "items:no_bad", "--json").stdout)
    assert as_json["first_bad"]["ts"] == records[3]["ts"]


def test_compact_then_old_reads_fail_clearly(chat_data: Path):
    """compact --before TS keeps every record and the state from TS; earlier reads exit 1 with a reason."""
    records = log_json(CHAT, "--data", str(chat_data))
    cut = records[20]["ts"]
    data = ["--data", str(chat_data)]
    assert eddy("compact", str(CHAT), *data, "--before", str(cut)).returncode == 0
    assert len(log_json(CHAT, *data)) == 40
    early = eddy("query", str(CHAT), *data, "--at", str(records[5]["ts"]), "channels:list")
    assert early.returncode == 1 and "retention window" in early.stderr
    assert eddy("query", str(CHAT), *data, "--at", str(cut), "channels:list").returncode == 0
    assert eddy("replay", str(CHAT), *data, "--verify").returncode == 0


def test_bad_input_exits_non_zero_with_a_clear_error(chat_data: Path, tmp_path: Path):
    """A ts after the head, a bad ts, an unknown function, a non-data folder and a corrupt record."""
    records = log_json(CHAT, "--data", str(chat_data))
    data = ["--data", str(chat_data)]
    head = records[-1]["ts"]
    cases = [
        (["query", str(CHAT), *data, "--at", str(head + 1), "channels:list"], "InvalidTimestamp"),
        (["query", str(CHAT), *data, "--at", "yesterday", "channels:list"], "Not a timestamp"),
        (["query", str(CHAT), *data, "--at", str(head), "channels:nope"], "FunctionNotFound"),
        (["show", str(CHAT), *data, str(head - 1)], "No commit at ts"),
        (["bisect", str(CHAT), *data, "--check", "nope:nope"], "FunctionNotFound"),
        (["log", str(CHAT), "--data", str(tmp_path)], "not an Eddy data folder"),
        (["log", str(CHAT), "--data", str(tmp_path / "none")], "No data folder"),
        (["diff", str(CHAT), *data, "1", str(head), "--table", "nope"], "No table named"),
    ]
    for args, message in cases:
        result = eddy(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr and result.stdout == "", (args, result.stderr)
    store = RocksStore(str(chat_data))
    store._cfs["commits"][ts_key(records[7]["ts"])] = b"\0\0\0\0damaged"
    store.close()
    damaged = eddy("log", str(CHAT), *data)
    assert damaged.returncode == 1 and "CorruptRecord" in damaged.stderr
    assert ts_key(records[7]["ts"]).hex() in damaged.stderr


def test_read_only_commands_leave_the_folder_byte_identical(chat_data: Path, tmp_path: Path):
    """Every read-only command (and its errors) leaves each file of the data folder unchanged."""
    records = log_json(CHAT, "--data", str(chat_data))
    before = digest(chat_data)
    data = ["--data", str(chat_data)]
    ts = [str(r["ts"]) for r in records]
    for args in (["log", str(CHAT), *data, "--json"], ["show", str(CHAT), *data, ts[4]],
                 ["query", str(CHAT), *data, "--at", ts[6], "channels:list"],
                 ["diff", str(CHAT), *data, ts[1], ts[-1]], ["rerun", str(CHAT), *data, ts[8]],
                 ["bisect", str(CHAT), *data, "--check", "channels:list"],
                 ["replay", str(CHAT), *data, "--verify"],
                 ["replay", str(CHAT), *data, "--until", ts[9], "--into", str(tmp_path / "x")],
                 ["query", str(CHAT), *data, "--at", "99", "nope:nope"]):
        eddy(*args)
    assert digest(chat_data) == before


def test_history_commands_read_a_running_node_and_follow_it(tmp_path: Path):
    """With `eddy dev` holding the folder, log, show and query work, and log --follow prints new commits."""
    server = EddyServer(CHAT, tmp_path / "data", tmp_path / "logs")
    server.start()
    follower = None
    try:
        channel = server.call("mutation", "channels:create", {"name": "live"})
        server.call("mutation", "messages:send", {"channel": channel, "author": "a", "body": "one"})
        data = ["--data", str(tmp_path / "data")]
        records = log_json(CHAT, *data)
        assert [r["function"] for r in records] == ["channels:create", "messages:send"]
        listed = eddy("query", str(CHAT), *data, "--at", str(records[1]["ts"]), "messages:list",
                      json.dumps({"channel": channel}))
        assert listed.returncode == 0 and json.loads(listed.stdout)[0]["body"] == "one"
        follower = subprocess.Popen(eddy_command("log", str(CHAT), *data, "--json", "--follow"),
                                    cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        assert json.loads(follower.stdout.readline())["function"] == "channels:create"
        follower.stdout.readline()
        server.call("mutation", "messages:send", {"channel": channel, "author": "a", "body": "two"})
        deadline = time.monotonic() + 20
        line = follower.stdout.readline()
        assert time.monotonic() < deadline
        assert json.loads(line)["args"]["body"] == "two"
    finally:
        if follower is not None:
            follower.kill()
            follower.wait()
        server.kill()
