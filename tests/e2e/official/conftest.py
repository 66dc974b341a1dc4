"""Fixtures for the official-client suite: `eddy dev` on a private copy of
tests/fixtures/apps/official, killed at teardown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.official.harness import copy_app, start_server
from tests.e2e.official.tokens import Tokens, install_issuer


@pytest.fixture
def server(tmp_path: Path):
    """`eddy dev` serving the official-tests app, on a port kept across restarts."""
    running = start_server(tmp_path)
    yield running
    running.kill()


@pytest.fixture
def auth_server(tmp_path: Path):
    """`eddy dev` serving the app with a JWT issuer installed; yields (server, tokens)."""
    app_dir = copy_app(tmp_path)
    tokens: Tokens = install_issuer(app_dir)
    running = start_server(tmp_path, app_dir)
    yield running, tokens
    running.kill()
