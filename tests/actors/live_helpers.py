"""Helpers shared by the live-query tests on a real node."""

import trio

from actors.node import open_node


def run_on_node(app_dir: str, tmp_path, fn, subscription_actors: int = 1):
    """`await fn(node)` on a node of `app_dir` with `subscription_actors`
    actors, every actor's invariants checked at each step and at the end."""
    async def main():
        async with open_node(app_dir, str(tmp_path),
                             subscription_actors=subscription_actors) as node:
            node.subscriptions.validate_each_step = True
            outcome = await fn(node)
            node.subscriptions.validate()
        return outcome
    return trio.run(main)


async def next_update(session, timeout_s: float = 5):
    """The session's next Update, or a test failure after `timeout_s`."""
    with trio.fail_after(timeout_s):
        return await session.wait_update()
