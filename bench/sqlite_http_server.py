"""The HTTP benchmark's baseline server: SQLite behind Eddy's HTTP stack.

Serves `POST /api/mutation` with hypercorn's trio worker, as `eddy dev`
does, and answers in Convex's body shape. Each request inserts one row in
SQLite (WAL, synchronous=FULL, one row per transaction) on a worker thread
with its own connection, so the figure shows what the same durable work
costs behind the same HTTP stack.

Usage (bench/bench_http.py starts it):
    python bench/sqlite_http_server.py --port 3299 --db /tmp/x.sqlite
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

THREADS_MAX = 64  # One per concurrent caller of the benchmark.

_local = threading.local()


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def make_app(path: str):
    limiter = trio.CapacityLimiter(THREADS_MAX)

    def insert(key: str, payload: str) -> None:
        if not hasattr(_local, "connection"):
            _local.connection = connect(path)
        _local.connection.execute("INSERT INTO items (key, payload) VALUES (?, ?)",
                                  (key, payload))

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, body = 200, {"status": "success", "value": None, "logLines": []}
        if scope["path"] == "/api/mutation":
            args = json.loads(b"".join(chunks))["args"]
            await trio.to_thread.run_sync(insert, args["key"], args["payload"],
                                          limiter=limiter)
        elif scope["path"] != "/api/query_ts":
            status, body = 404, {"code": "NotFound", "message": scope["path"]}
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    setup = connect(args.db)
    setup.execute("CREATE TABLE IF NOT EXISTS items "
                  "(id INTEGER PRIMARY KEY, key TEXT, payload TEXT)")
    setup.close()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    trio.run(serve, make_app(args.db), config)


if __name__ == "__main__":
    main()
