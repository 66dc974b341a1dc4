"""The example app and the benchmark app load and answer through the embedded API."""

import os

import trio

from actors import open_node
from actors.app import load_app

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_example_chat_app_works(tmp_path):
    """examples/chat: create a channel, send a message, list it back."""
    async def main():
        async with open_node(os.path.join(ROOT, "examples", "chat"), str(tmp_path)) as node:
            channel = await node.mutation("channels:create", {"name": "general"})
            await node.mutation("messages:send", {"channel": channel, "author": "ann", "body": "hi"})
            return await node.query("messages:list", {"channel": channel})
    messages = trio.run(main)
    assert [m["body"] for m in messages] == ["hi"]


def test_bench_app_loads():
    """bench/app loads with its functions registered."""
    app = load_app(os.path.join(ROOT, "bench", "app"))
    assert "bench:insert_batch" in app.functions
