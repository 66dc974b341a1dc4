"""Fixtures shared by every suite. Keep this file small: a fixture used by one
folder belongs in that folder's own conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parent.parent

# No Hypothesis test is timed: its per-example deadline (200 ms by default)
# and its too-slow health check are timed assertions, and these machines are
# shared and noisy. A test's own @settings keeps every other value.
settings.register_profile("eddy", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("eddy")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh, empty data folder for one node, removed with the test's tmp_path."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def chat_app_dir() -> Path:
    """The example app (examples/chat), as `eddy dev` would load it."""
    return REPO_ROOT / "examples" / "chat"
