"""Paginated queries with the npm client under concurrent inserts."""

from __future__ import annotations

import random

import pytest

from tests.e2e.official.harness import requires_node, run_node

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires_node]

SEED_COUNT = 40
INSERT_COUNT = 40
PAGE_SIZE = 5


@pytest.mark.parametrize(("seed", "delete_every"), [(7, 0), (11, 3)])
def test_pages_stay_gapless_under_concurrent_writes(server, seed, delete_every):
    """Pages loaded with loadMore while another client inserts (and deletes) at random ranks end up holding every item exactly once, in order."""
    rng = random.Random(seed)
    ranks = [float(rng.randrange(1000)) for _ in range(SEED_COUNT)]
    server.call("mutation", "items:add_many", {"group": "g", "ranks": ranks, "prefix": "seed"})
    result = run_node("pagination.mjs", server, {"group": "g", "pageSize": PAGE_SIZE,
                                                 "insertCount": INSERT_COUNT,
                                                 "deleteEvery": delete_every, "seed": seed})
    assert result["inserted"] + (INSERT_COUNT // delete_every if delete_every else 0) \
        == INSERT_COUNT
    assert result["expectedCount"] == SEED_COUNT + result["inserted"] - result["deleted"]
    assert delete_every == 0 or result["deleted"] > 0
    assert result["missing"] == [], f"gaps: items never shown on any page (seed {seed})"
    assert result["extra"] == []
    assert result["finalProblems"] == [], f"duplicates or disorder (seed {seed})"
    assert result["equal"] and result["finalStatus"] == "Exhausted"
    assert result["badSnapshotCount"] == 0, result["badSnapshots"]
    assert result["loadMoreCalls"] >= SEED_COUNT // PAGE_SIZE - 1
