"""`eddy dev` as a real process: round trips, reload on change, clean stop."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine import limits
from tests.e2e.conftest import write_app
from tests.e2e.server import EddyServer, post

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RELOAD_WAIT_S = 10.0  # The server polls every 0.5 s; loading a tiny app is quick.

# It reads the database before answering: an app whose functions have run
# must still reload (a name in `engine` once got shadowed by a lazy import).
GREETING = '''
from engine import query


@query
async def hello(ctx):
    await ctx.db.query("visits").take(1)
    return "{text}"
'''


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_round_trip_from_several_threads(keys_server):
    """Concurrent HTTP clients' mutations are all acknowledged and all readable."""
    thread_count, per_thread = 8, 10
    failures: list[BaseException] = []

    def client(worker: int) -> None:
        try:
            for i in range(per_thread):
                keys_server.call("mutation", "keys:insert_one", {"key": f"w{worker}-{i}"})
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    keys = keys_server.call("query", "keys:keys", {"table": "singles"})
    assert sorted(keys) == sorted(f"w{w}-{i}" for w in range(thread_count) for i in range(per_thread))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_url_and_admin_key_and_stops_cleanly(keys_server, sig):
    """The banner shows the URL and a working admin key; SIGTERM or Ctrl-C exits 0."""
    banner = keys_server.stdout()
    assert keys_server.url in banner
    admin_key = re.search(r"Admin key: (\S+)", banner).group(1)
    answer = post(keys_server.url + "/api/query_ts", None,
                  headers={"authorization": f"Convex {admin_key}"})
    assert len(answer["ts"]) == 12
    keys_server.call("mutation", "keys:insert_one", {"key": "before stop"})
    assert keys_server.stop(sig) == 0
    keys_server.start()  # The data folder was closed cleanly and opens again.
    assert keys_server.call("query", "keys:keys", {"table": "singles"}) == ["before stop"]


def test_reload_on_change_and_keep_last_good_version(tmp_path: Path):
    """A changed file is served after reload; a syntax error is reported as file:line and ignored."""
    app_dir = write_app(tmp_path / "app", {"greeting.py": GREETING.format(text="version one")})
    server = EddyServer(app_dir, tmp_path / "data", tmp_path / "logs")
    server.start()
    try:
        assert server.call("query", "greeting:hello") == "version one"
        write_app(app_dir, {"greeting.py": GREETING.format(text="version two")})
        wait_for(lambda: server.call("query", "greeting:hello") == "version two",
                 RELOAD_WAIT_S, "the changed app to be served")

        (app_dir / "greeting.py").write_text("from engine import query\n\ndef broken(:\n")
        wait_for(lambda: re.search(r"greeting\.py:3\b", server.stderr()),
                 RELOAD_WAIT_S, "the syntax error to be reported as greeting.py:3")
        assert server.call("query", "greeting:hello") == "version two"

        write_app(app_dir, {"greeting.py": GREETING.format(text="version three")})
        wait_for(lambda: server.call("query", "greeting:hello") == "version three",
                 RELOAD_WAIT_S, "the fixed app to be served")
    finally:
        server.kill()


def test_body_one_byte_over_the_limit_gets_413_through_urllib(keys_server):
    """A plain urllib POST one byte over the body limit reads the documented 413 answer
    (the server drains the upload instead of resetting the connection under it)."""
    size = limits.http_body_bytes_max + 1
    head = b'{"path": "keys:keys", "args": {"table": "singles"}, "pad": "'
    body = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(body) == size
    request = urllib.request.Request(keys_server.url + "/api/query", data=body, method="POST",
                                     headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    assert raised.value.code == 413
    assert json.loads(raised.value.read()) == {
        "code": "RequestBodyTooLarge",
        "message": f"The request body is larger than {limits.http_body_bytes_max} bytes."}
