"""Fixtures for the end-to-end suite: small apps written into tmp folders and
`eddy dev` servers started on them (tests/e2e/server.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.e2e.server import EddyServer

# Every insert carries a key chosen by the client, so a test can tell which
# writes it sent, which were acknowledged and which are there after a crash.
# `insert_pair` writes into two tables in one mutation: after any crash the
# two halves are both there or both missing.
KEYS_APP = '''
from engine import mutation, query, v


@mutation(args={"key": v.string()})
async def insert_one(ctx, key):
    return await ctx.db.insert("singles", {"key": key})


@mutation(args={"key": v.string()})
async def insert_pair(ctx, key):
    await ctx.db.insert("lefts", {"key": key})
    await ctx.db.insert("rights", {"key": key})
    return key


@query(args={"table": v.string()})
async def keys(ctx, table):
    return [doc["key"] for doc in await ctx.db.query(table).collect()]
'''


def write_app(app_dir: Path, modules: dict[str, str]) -> Path:
    """Writes `{file name: source}` into app_dir and returns it."""
    app_dir.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (app_dir / name).write_text(textwrap.dedent(source))
    return app_dir


@pytest.fixture
def keys_app(tmp_path: Path) -> Path:
    """An app folder holding `keys.py` (KEYS_APP)."""
    return write_app(tmp_path / "app", {"keys.py": KEYS_APP})


@pytest.fixture
def keys_server(tmp_path: Path, keys_app: Path):
    """`eddy dev` serving the keys app, with its data in tmp_path/data; killed at teardown."""
    server = EddyServer(keys_app, tmp_path / "data", tmp_path / "logs")
    server.start()
    yield server
    server.kill()
