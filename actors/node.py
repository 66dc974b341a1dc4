"""A node: the actors wired together, and the embedded API `open_node`.

    async with open_node("examples/chat") as node:
        channel = await node.mutation("channels:create", {"name": "general"})
        print(await node.query("channels:list"))

Opening a node opens its store, restores the catalog, replays every shard's
log into its derived state (documents, versions, indexes), checks the app's
schema against the data, and starts the sequencer. Closing it makes every
admitted commit durable first.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from typing import Any, AsyncIterator, Iterator

import msgpack
import trio

from engine import values
from engine.catalog import Catalog
from engine.commits import (RETAINED_SINCE_KEY, parse_catalog_record, parse_log_columns,
                            parse_log_key, ts_key)
from engine.errors import EddyError, ErrorCode
from engine.sequencing import SequencerState

from actors.app import App, load_app
from actors.auth import AuthConfig, load_auth_config
from actors.runner import CallResult, FunctionRunner
from actors.sequencer import SequencerActor
from actors.subscription_pool import SubscriptionPool, check_actor_count
from actors.world import RealWorld

log = logging.getLogger("eddy.node")

__all__ = ["CallResult", "Node", "open_node"]

# Newest commits searched for the request keys of mutations sent before a
# restart. A client re-sends only what was in flight when the node stopped,
# which is among its last commits; 10,000 covers every in-flight mutation of
# many busy connections and costs a fraction of a second to index at start.
logged_results_max = 10_000

# How many offending documents a schema error lists before it says "and N more".
schema_errors_listed_max = 20

# meta key of the data folder's generation (8-byte big-endian): raised, and
# synced, every time a node opens the folder.
GENERATION_KEY = b"generation"


class StorageMark:
    """What a process saw of one data folder: the generation its last opening
    wrote and the newest commit ts it saw durable there (raised as groups
    are published). Kept in the World's `storage_seen`, by data folder.

    Stale storage. A data folder older than what the process already saw
    (an older copy came back: a restored disk snapshot or backup, a volume
    mounted from the wrong replica) would serve a past state as the present,
    silently losing acknowledged writes and re-issuing their timestamps.
    Every opening raises the folder's generation; a folder whose generation is
    below the last one written, or whose newest commit is older than one
    already durable, is refused with STALE_STORAGE. Synced writes never go
    back, so a healthy folder always passes; a crash or power loss cannot
    trip it (the generation and the commits it compares are synced).
    """

    __slots__ = ("generation", "ts")

    def __init__(self, generation: int, ts: int) -> None:
        self.generation = generation
        self.ts = ts

    def published(self, group) -> None:
        self.ts = group[-1].ts


class Node:
    """A running Eddy node. Made by `open_node`; see docs/internals.md."""

    def __init__(self, world, store, app: App, data_dir: str) -> None:
        self.world = world
        self.store = store
        self.app = app
        self.data_dir = data_dir
        self.catalog = Catalog()
        self.schema = app.schema
        self.retained_since_ts = 0
        self.admin_key = ""
        self.sequencer: SequencerActor | None = None
        # The subscription actors (one unless open_node is asked for more);
        # set by open_node.
        self.subscriptions: SubscriptionPool | None = None
        # (sessionId, requestId) -> (packed result, commit ts); set by recover.
        self._logged_results: dict[tuple[str, int], tuple[bytes, int]] = {}
        self.runner = FunctionRunner(self)
        # The app's trusted auth providers (actors/auth.py); one with no
        # providers, which refuses every token, when the app has no auth_config.py.
        self.auth = _load_auth(app, world)

    # ----- the embedded API ------------------------------------------------

    @property
    def latest_ts(self) -> int:
        """The newest durable (published) commit ts."""
        return self.sequencer.durable_ts

    async def call(self, kind: str | None, path, args=None, *, identity=None, admin: bool = True,
                   at_ts: int | None = None) -> CallResult:
        return await self.runner.call(kind, path, args, identity=identity, admin=admin, at_ts=at_ts)

    async def query(self, path, args=None, *, identity=None, admin: bool = True,
                    at_ts: int | None = None) -> Any:
        return (await self.call("query", path, args, identity=identity, admin=admin,
                                at_ts=at_ts)).value

    async def mutation(self, path, args=None, *, identity=None, admin: bool = True) -> Any:
        return (await self.call("mutation", path, args, identity=identity, admin=admin)).value

    async def action(self, path, args=None, *, identity=None, admin: bool = True) -> Any:
        return (await self.call("action", path, args, identity=identity, admin=admin)).value

    def reload(self, app: App) -> None:
        """Swaps in new app code; a schema change is checked against the data first.

        Raises:
            AppLoadError: the app's auth_config.py does not load; the node
                keeps the old app.
            EddyError(SCHEMA_VIOLATION): documents do not match the new schema;
                the node keeps the old app.
        """
        auth = _load_auth(app, self.world)
        self._check_schema(app.schema)
        self.auth = auth
        self.app = app
        self.schema = app.schema
        self.catalog.set_index_definitions(_index_definitions(app.schema))
        if self.subscriptions is not None:
            self.subscriptions.rerun_all()  # new code may give new results

    # ----- opening ---------------------------------------------------------

    def recover(self, check_schema: bool = True, serving: bool = True) -> None:
        """Restores the catalog and every shard from the log (derived state
        is never trusted from disk: it is rebuilt). `check_schema=False` skips
        checking the documents against the app's schema (history tools read
        data whatever today's schema says); `serving=False` skips indexing
        the newest commits' request keys, which only a node taking sync
        clients' mutations needs (see `logged_mutation_result`)."""
        self.restore_catalog()
        with collector_paused():
            for number, shard in self.catalog.shards.items():
                lo = number.to_bytes(4, "big")
                shard.begin_bulk_load()
                for key, entry in self.store.scan("log", lo, (number + 1).to_bytes(4, "big")):
                    shard.load_logged(parse_log_key(key)[1], *parse_log_columns(entry))
                shard.end_bulk_load()
        last_ts = 0
        for key, _ in self.store.scan("commits", reverse=True):
            last_ts = int.from_bytes(key, "big")
            break
        if serving:
            self._load_logged_results()
        stray = [n for n in _log_tables(self.store) if n not in self.catalog.shards]
        if stray:
            raise EddyError(ErrorCode.CORRUPT_RECORD,
                            f"The log holds tables {stray} that the catalog does not name.")
        self.sequencer = SequencerActor(self.store, self.catalog, SequencerState(last_ts),
                                        self.world.clock)
        if check_schema:
            self._check_schema(self.schema)

    def restore_catalog(self) -> None:
        """The catalog's tables (their shards still empty) and the retention
        start, from the store's meta records."""
        self.catalog.set_index_definitions(_index_definitions(self.schema))
        catalog = self.store.get("meta", b"catalog")
        for name, number in parse_catalog_record(catalog) if catalog else []:
            self.catalog.create(name, number)
        retained = self.store.get("meta", RETAINED_SINCE_KEY)
        if retained is not None:  # set by `eddy compact` (actors/history.py)
            self.retained_since_ts = int.from_bytes(retained, "big")

    def logged_mutation_result(self, session_id: str, request_id: int) -> tuple | None:
        """(value, ts) of a mutation a sync client sent before this node
        started, found in the newest commits; None if there is none."""
        found = self._logged_results.get((session_id, request_id))
        return None if found is None else (values.unpack(found[0]), found[1])

    def _load_logged_results(self) -> None:
        """Indexes the request keys of the newest commits (see
        `logged_results_max`), so a re-sent mutation is not run twice."""
        self._logged_results: dict[tuple[str, int], tuple[bytes, int]] = {}
        scanned = 0
        for key, payload in self.store.scan("commits", reverse=True):
            scanned += 1
            if scanned > logged_results_max:
                break
            if b"request" not in payload:
                continue
            record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            request = record.get("request")
            if request is not None:
                self._logged_results.setdefault((request[0], request[1]),
                                                (record["result"], int.from_bytes(key, "big")))

    def _check_schema(self, schema) -> None:
        if schema is None or not getattr(schema, "schema_validation", True):
            return
        problems = []
        for name, number in sorted(self.catalog.numbers.items()):
            shard = self.catalog.shards[number]
            for internal_id in shard.versions:
                document = shard.latest(internal_id)
                if document is None:
                    continue
                fields = {k: v for k, v in document.items() if not k.startswith("_")}
                try:
                    schema.validate_document(name, fields, self.catalog.table_name)
                except EddyError as error:
                    problems.append(f"{name} {document['_id']}: {error.message}")
        if problems:
            shown = problems[:schema_errors_listed_max]
            more = len(problems) - len(shown)
            raise EddyError(ErrorCode.SCHEMA_VIOLATION,
                            "The schema does not match documents already stored:\n  "
                            + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else ""),
                            documents=problems)

    def _ensure_admin_key(self) -> None:
        stored = self.store.get("meta", b"admin_key")
        if stored is not None:
            self.admin_key = stored.decode()
            return
        entropy = self.world.entropy
        secret = b"".join(entropy.seed().to_bytes(8, "big") for _ in range(4))
        self.admin_key = "eddy-admin|" + secret.hex()


def _load_auth(app: App, world) -> AuthConfig:
    return (load_auth_config(app.app_dir, clock=world.clock)
            or AuthConfig([], world.clock))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while the log is replayed, and
    moves what the replay built out of its sight (`gc.freeze`) afterwards.

    The rebuild allocates millions of long-lived objects (versions, index
    entries) and no cycles. With the collector on, each young collection
    re-examines them (a third of the rebuild's time); re-enabled without the
    freeze, its first young collection would walk all of them at once (a
    fifth). A full collection first keeps the process's earlier garbage out
    of the freeze (it costs little before the rebuild, when the heap is
    small). Frozen objects are still freed when unreferenced; only cycles
    among them would outlive their use, as after `_settle_garbage_collector`.
    Process-wide, like that function. A process that turned the collector
    off manages it itself (the simulator does while it checks a run, opening
    nodes on a heap that is anything but small): then nothing is done.
    """
    if not gc.isenabled():
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


# Young-generation collections between full ones. A node allocates millions of
# small long-lived objects (versions, index entries); Python's default (700)
# makes the collector re-scan them constantly, costing 10-15% of write
# throughput. 50,000 keeps collections rare while still bounding cycles.
gc_young_threshold_max = 50_000


def _settle_garbage_collector() -> None:
    """Moves the state replayed at start-up out of the collector's sight and
    makes young collections rarer (see gc_young_threshold_max). Process-wide:
    a node is usually the process's main tenant. Nothing, like
    `collector_paused`, when the process turned the collector off."""
    if not gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(max(gc.get_threshold()[0], gc_young_threshold_max), middle, old)


def _index_definitions(schema) -> dict:
    if schema is None:
        return {}
    return {name: dict(table.indexes) for name, table in schema.tables.items()}


def _check_not_stale(node: Node, world, data_dir: str) -> int:
    """The generation this opening writes (see StorageMark).

    Raises:
        EddyError(STALE_STORAGE): the folder is older than what this
            process (the World's `storage_seen`) saw of it.
    """
    generation = _stored_generation(node.store)
    seen = getattr(world, "storage_seen", None)
    mark = None if seen is None else seen.get(data_dir)
    if mark is not None and (generation < mark.generation or node.latest_ts < mark.ts):
        raise EddyError(
            ErrorCode.STALE_STORAGE,
            f"The data folder {data_dir} is older than this process last saw it: "
            f"generation {generation} (last written {mark.generation}), newest commit ts "
            f"{node.latest_ts} (ts {mark.ts} was already durable). An older copy came back "
            "(a restored snapshot or backup?); serving it would lose acknowledged writes. "
            "Put the newest copy back, or move this one aside and restart the process.",
            generation=generation, expected_generation=mark.generation,
            latest_ts=node.latest_ts, durable_ts_seen=mark.ts)
    return generation + 1


def _stored_generation(store) -> int:
    stored = store.get("meta", GENERATION_KEY)
    return 0 if stored is None else int.from_bytes(stored, "big")


def _log_tables(store) -> list[int]:
    numbers = []
    lo = b""
    while True:
        found = next(iter(store.scan("log", lo)), None)
        if found is None:
            return numbers
        number = int.from_bytes(found[0][:4], "big")
        numbers.append(number)
        lo = (number + 1).to_bytes(4, "big")


@contextlib.asynccontextmanager
async def open_node(app_dir: str | None = None, data_dir: str | None = None, *,
                    app: App | None = None, world=None,
                    subscription_actors: int = 1) -> AsyncIterator[Node]:
    """Opens a node on `data_dir` (default APP_DIR/.eddy) serving the app in `app_dir`.

    An async context manager that owns the node's tasks. On exit every
    admitted commit is made durable before the store closes.
    `subscription_actors` is how many SubscriptionActors share the node's
    live sessions (actors/subscription_pool.py).

    Raises:
        ValueError: `subscription_actors` is outside 1 to
            `subscription_actors_max` (64).
        AppLoadError: the app does not load.
        EddyError: the data folder is damaged (CORRUPT_RECORD), in use
            (UNAVAILABLE), or does not match the schema (SCHEMA_VIOLATION).
    """
    check_actor_count(subscription_actors)  # before any work
    if app is None:
        if app_dir is None:
            raise ValueError("open_node needs an app_dir or an app")
        app = load_app(app_dir)
    if data_dir is None:
        data_dir = os.path.join(app.app_dir, ".eddy")
    world = world or RealWorld()
    store = world.open_store(data_dir)
    try:
        node = Node(world, store, app, data_dir)
        node.recover()
        _settle_garbage_collector()
        node.subscriptions = SubscriptionPool(node, subscription_actors)
        node._ensure_admin_key()
        generation = _check_not_stale(node, world, data_dir)
        opening = [("meta", GENERATION_KEY, generation.to_bytes(8, "big"))]
        if store.get("meta", b"admin_key") is None:
            opening.append(("meta", b"admin_key", node.admin_key.encode()))
        await store.write(opening, sync=True)
        seen = getattr(world, "storage_seen", None)
        if seen is not None:
            mark = seen[data_dir] = StorageMark(generation, node.latest_ts)
            node.sequencer.on_publish.append(mark.published)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(node.sequencer.run)
                for actor in node.subscriptions.actors:
                    nursery.start_soon(actor.run)
                try:
                    yield node
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The caller's own exception, not wrapped in the nursery's group.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        with trio.CancelScope(shield=True):
            await node.sequencer.drain()
    finally:
        store.close()
