"""The npm client's React API (convex 1.48.0 `convex/react` with React 18):
ConvexReactClient under a ConvexProvider, with useQuery, useMutation (and an
optimistic update), useAction and usePaginatedQuery, rendered by
react-test-renderer."""

from __future__ import annotations

import pytest

from tests.e2e.official.harness import requires_node, run_node

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires_node]

SEEDED = 7
PAGE_SIZE = 3


def test_react_hooks_render_live_results(server):
    """Rendered components show another client's write, an optimistic update then its server row, an action's write, and every page of a paginated query with inserts before and after the loaded pages."""
    server.call("mutation", "messages:send", {"channel": "react", "author": "seed", "body": "seed"})
    server.call("mutation", "items:add_many",
                {"group": "rg", "ranks": [float(rank) for rank in range(SEEDED)], "prefix": "seed"})
    result = run_node("react_hooks.mjs", server, {"channel": "react", "group": "rg",
                                                  "pageSize": PAGE_SIZE, "seeded": SEEDED})
    assert result["initial"] == ["seed@server"]
    assert result["firstPage"] == {"status": "CanLoadMore",
                                   "labels": ["seed-0", "seed-1", "seed-2"]}
    assert result["afterOther"] == ["seed@server", "from-other@server"]
    assert result["optimistic"] == ["seed@server", "from-other@server", "mine@optimistic"]
    assert result["confirmed"] == ["seed@server", "from-other@server", "mine@server"]
    assert result["shouted"] == "LOUD"
    assert result["afterAction"] == ["seed@server", "from-other@server", "mine@server",
                                     "LOUD@server"]
    labels = result["allPages"]["labels"]
    assert labels == ["first", *[f"seed-{i}" for i in range(SEEDED)], "last"]
    assert result["loadMoreCalls"] >= SEEDED // PAGE_SIZE
