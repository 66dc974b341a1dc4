"""Workload clients that call through Eddy's own Python client (wire/client.py).

The real tier's other clients are the simulator's protocol client, written
from PROTOCOL.md; these run the same workloads through the client users
import (`from wire import connect`), so its reconnect burst, re-sent
mutations and resolution rule meet real kills and pauses too. Each keeps one
`wire.client.Client` for life (one sessionId, as `connect` does) with its
connection loop in the run's nursery, and makes one call at a time, recorded
as a `sim.host.Operation` like every other client's.

The client returns a mutation's value, not its commit ts, which the
durability and commit-order checks need: `_RecordingClient` notes the ts of
each successful MutationResponse by request id (the client's own handling
is unchanged). A query's ts is not known (its Operation has none; no check
of these workloads needs one). These clients hold no subscriptions of their
own beyond one-shot queries, so they take no part in the subscription
oracle, and workloads that drive subscriptions directly (hot-keys) stay on
protocol clients.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from wire import messages as m
from wire.client import Client, ClientError

from sim.host import Operation


class _RecordingClient(Client):
    """wire.client.Client that also keeps each successful mutation's commit ts."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.commit_ts: dict[int, int] = {}
        self.last_request_id: int | None = None

    def _take_request_id(self) -> int:
        self.last_request_id = super()._take_request_id()
        return self.last_request_id

    def _response(self, response: Any) -> None:
        if isinstance(response, m.MutationResponse) and response.success \
                and response.request_id in self._requests:
            self.commit_ts[response.request_id] = response.ts
        super()._response(response)


class PythonClient:
    """One workload client over wire/client.py (see the module docstring)."""

    def __init__(self, client_id: int, url: str, rng: random.Random, history: list) -> None:
        self.id = client_id
        self.rng = rng
        self.history = history
        self.call_count = 0
        self.client = _RecordingClient(url)

    async def run(self) -> None:
        """The client's connection loop, reconnecting with backoff; until cancelled."""
        await self.client.run()

    async def call(self, kind: str, path: str, args: Any) -> Operation:
        """One call; returns its recorded Operation (never raises for the call's failure).

        A checkpoint; it waits, as the client does, through lost connections
        until the call is answered (so its outcome is never unknown).
        """
        self.call_count += 1
        operation = Operation(self.id, self.call_count, kind, path, args, trio.current_time())
        self.history.append(operation)
        client = self.client
        try:
            if kind == "mutation":
                value = await client.mutation(path, args)
                operation.ts = client.commit_ts.pop(client.last_request_id)
            elif kind == "action":
                value = await client.action(path, args)
            else:
                value = await client.query(path, args)
        except ClientError as error:
            operation.status, operation.error = "fail", error.message
        else:
            operation.status, operation.value = "ok", value
        operation.complete_s = trio.current_time()
        return operation
