"""Drives the official PyPI `convex` 0.8.1 client against a running server.

Run as `python pypi_client.py <deployment url> <JSON params>`; params carry
`scenario`, one of:

- `websocket`: `ConvexClient` query, mutation, action, ConvexError data, a
  plain function error, bad arguments;
- `subscribe`: a subscription iterated while a second client mutates;
- `auth`: `set_auth` with a valid token, the identity in a query, a mutation
  and an action, then `clear_auth`;
- `http`: the legacy `convex.http_client.ConvexHttpClient`.

Prints one `RESULT <json>` line (see lib.mjs for the contract). The client's
calls block without a timeout and may hold the GIL while they wait, so the
script also prints `WAITING <what>` before each call and `SETTLED <json>`
after it: when the test has to kill a hung script, those lines say where it
hung. A watchdog thread reports the deadline itself when it gets to run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

DEADLINE_S = 25.0  # The test's own timeout for these scripts is longer (harness.py).
_state: dict[str, Any] = {"waiting_for": "start", "partial": {}}
_emit_lock = threading.Lock()


def note(what: str) -> None:
    _state["waiting_for"] = what
    print(f"WAITING {what}", flush=True)


def encode(value: Any) -> Any:
    """JSON for values json cannot write: an int64 (ConvexInt64) as
    `{"$int64": n}`, anything else as its repr."""
    if type(value).__name__ == "ConvexInt64":
        return {"$int64": value.value}
    return repr(value)


def emit(payload: dict[str, Any]) -> None:
    with _emit_lock:
        sys.stdout.write("\nRESULT " + json.dumps(payload, default=encode) + "\n")
        sys.stdout.flush()
        os._exit(0)


def describe_error(error: BaseException) -> dict[str, Any]:
    info: dict[str, Any] = {"name": type(error).__name__, "message": str(error)}
    if hasattr(error, "data"):
        info["data"] = error.data
    return info


def settle(call, *args, what: str) -> dict[str, Any]:
    note(what)
    try:
        outcome = {"ok": True, "value": call(*args)}
    except Exception as error:  # noqa: BLE001 (the result records any failure)
        outcome = {"ok": False, "error": describe_error(error)}
    print("SETTLED " + json.dumps({what: outcome}, default=encode), flush=True)
    return outcome


def scenario_websocket(url: str, params: dict[str, Any]) -> dict[str, Any]:
    from convex import ConvexClient

    channel = params["channel"]
    client = ConvexClient(url)
    out: dict[str, Any] = _state["partial"]
    out["sent"] = settle(client.mutation, "messages:send",
                         {"channel": channel, "author": "py", "body": "hello"}, what="mutation")
    out["listed"] = settle(client.query, "messages:list", {"channel": channel}, what="query")
    out["default_path"] = settle(client.query, "messages.js:count", {"channel": channel},
                                 what="query by messages.js:count")
    out["shouted"] = settle(client.action, "messages:shout", {"channel": channel, "body": "hey"},
                            what="action")
    out["listed_after"] = settle(client.query, "messages:list", {"channel": channel},
                                 what="query after the action")
    out["failed"] = settle(client.mutation, "messages:fail", {"channel": channel, "body": "no"},
                           what="mutation raising AppError")
    out["crashed"] = settle(client.mutation, "messages:crash", {}, what="mutation crashing")
    out["bad_args"] = settle(client.mutation, "messages:send", {"channel": channel, "body": 1},
                             what="mutation with bad args")
    out["query_failed"] = settle(client.query, "messages:failing_list", {},
                                 what="query raising AppError")
    out["count"] = settle(client.query, "messages:count", {"channel": channel}, what="count")
    return out


def scenario_subscribe(url: str, params: dict[str, Any]) -> dict[str, Any]:
    """Iterates the subscription with `async for`: the blocking iterator holds
    the GIL while it waits, which would starve a writer thread."""
    import asyncio

    from convex import ConvexClient

    channel, writes = params["channel"], params["writes"]
    reader, writer = ConvexClient(url), ConvexClient(url)
    out: dict[str, Any] = _state["partial"]
    out["updates"] = updates = []
    out["writer_errors"] = writer_errors = []

    async def write() -> None:
        for i in range(writes):
            try:
                await asyncio.to_thread(writer.mutation, "messages:send",
                                        {"channel": channel, "author": "w", "body": f"w{i}"})
            except Exception as error:  # noqa: BLE001
                writer_errors.append(describe_error(error))
            await asyncio.sleep(0.05)

    async def read() -> None:
        subscription = reader.subscribe("messages:list", {"channel": channel})
        note("the subscription's first value")
        writing = None
        async for value in subscription:
            updates.append([message["body"] for message in value])
            print("UPDATE " + json.dumps(updates[-1]), flush=True)
            if writing is None:
                writing = asyncio.ensure_future(write())
            if len(value) >= writes:
                break
            note(f"update {len(updates) + 1} of the subscription (have {len(value)} of {writes})")
        await writing
        subscription.unsubscribe()

    asyncio.run(read())
    return out


def scenario_auth(url: str, params: dict[str, Any]) -> dict[str, Any]:
    from convex import ConvexClient

    client = ConvexClient(url)
    out: dict[str, Any] = _state["partial"]
    out["anonymous"] = settle(client.query, "auth:whoami", {}, what="whoami before set_auth")
    client.set_auth(params["tokens"]["valid"])
    out["query"] = settle(client.query, "auth:whoami", {}, what="whoami after set_auth")
    out["mutation"] = settle(client.mutation, "auth:whoami_mutation", {}, what="whoami_mutation")
    out["action"] = settle(client.action, "auth:whoami_action", {}, what="whoami_action")
    subscription = client.subscribe("auth:whoami", {})
    note("the identity subscription's first value")
    out["subscribed"] = next(iter(subscription))
    client.clear_auth()
    note("the identity subscription to show null after clear_auth")
    out["after_clear_values"] = seen = []
    for value in subscription:
        seen.append(value)
        if value is None:
            break
    out["after_clear"] = settle(client.query, "auth:whoami", {}, what="whoami after clear_auth")
    return out


def scenario_http(url: str, params: dict[str, Any]) -> dict[str, Any]:
    from convex.http_client import ConvexHttpClient

    channel = params["channel"]
    client = ConvexHttpClient(url)
    out: dict[str, Any] = _state["partial"]
    out["sent"] = settle(client.mutation, "messages:send",
                         {"channel": channel, "author": "legacy", "body": "hello"}, what="mutation")
    out["listed"] = settle(client.query, "messages:list", {"channel": channel}, what="query")
    out["shouted"] = settle(client.action, "messages:shout", {"channel": channel, "body": "hey"},
                            what="action")
    out["failed"] = settle(client.mutation, "messages:fail", {"channel": channel, "body": "no"},
                           what="mutation raising AppError")
    out["crashed"] = settle(client.mutation, "messages:crash", {}, what="mutation crashing")
    out["unknown"] = settle(client.query, "messages:nowhere", {}, what="unknown function")
    out["count"] = settle(client.query, "messages:count", {"channel": channel}, what="count")
    if params.get("tokens"):
        client.set_auth(params["tokens"]["valid"])
        out["auth_valid"] = settle(client.query, "auth:whoami", {}, what="whoami with a token")
        client.set_auth(params["tokens"]["forged"])
        out["auth_forged"] = settle(client.query, "auth:whoami", {}, what="whoami, forged token")
        client.clear_auth()
        out["auth_cleared"] = settle(client.query, "auth:whoami", {}, what="whoami, no token")
    return out


def turn(say: str, expect: str) -> None:
    """Prints `READY <say>` and blocks until the test answers `expect`."""
    print(f"\nREADY {say}", flush=True)
    note(f"the test to answer {expect}")
    answer = sys.stdin.readline().strip()
    if answer != expect:
        raise RuntimeError(f"expected {expect} from the test, got {answer!r}")


def scenario_reconnect(url: str, params: dict[str, Any]) -> dict[str, Any]:
    """A subscription across a kill -9 and restart (see test_pypi_client.py)."""
    import asyncio

    from convex import ConvexClient

    channel = params["channel"]
    reader = ConvexClient(url)
    out: dict[str, Any] = _state["partial"]
    out["updates"] = updates = []

    async def read() -> None:
        loop = asyncio.get_running_loop()
        subscription = reader.subscribe("messages:list", {"channel": channel})
        wanted = [["seed"], ["seed", "after-restart"], ["seed", "after-restart", "own"]]
        note("the seeded list")
        async for value in subscription:
            updates.append([message["body"] for message in value])
            print("UPDATE " + json.dumps(updates[-1]), flush=True)
            if updates[-1] == wanted[0]:
                await loop.run_in_executor(None, turn, "subscribed", "killed")
                await loop.run_in_executor(None, turn, "down", "restarted")
                # A fresh client writes once the server is back.
                writer = ConvexClient(url)
                out["from_other"] = settle(writer.mutation, "messages:send",
                                           {"channel": channel, "author": "w",
                                            "body": "after-restart"}, what="other client's write")
                note("the other client's write in the subscription")
            elif updates[-1] == wanted[1]:
                out["own"] = settle(reader.mutation, "messages:send",
                                    {"channel": channel, "author": "r", "body": "own"},
                                    what="the subscriber's own write after the restart")
                note("the subscriber's own write in the subscription")
            elif updates[-1] == wanted[2]:
                break
        subscription.unsubscribe()

    asyncio.run(read())
    return out


SCENARIOS = {
    "reconnect": scenario_reconnect,
    "websocket": scenario_websocket,
    "subscribe": scenario_subscribe,
    "auth": scenario_auth,
    "http": scenario_http,
}


def main() -> None:
    url, params = sys.argv[1], json.loads(sys.argv[2])

    def watchdog() -> None:
        emit({"ok": False, "partial": _state["partial"],
              "error": {"name": "Deadline", "waitingFor": _state["waiting_for"],
                        "message": f"script deadline while waiting for: {_state['waiting_for']}"}})

    timer = threading.Timer(params.get("deadline_s", DEADLINE_S), watchdog)
    timer.daemon = True
    timer.start()
    try:
        result = SCENARIOS[params["scenario"]](url, params)
    except Exception as error:  # noqa: BLE001 (reported to the test)
        emit({"ok": False, "partial": _state["partial"],
              "error": {**describe_error(error), "waitingFor": _state["waiting_for"],
                        "stack": traceback.format_exc()}})
    emit({"ok": True, **result})


if __name__ == "__main__":
    main()
