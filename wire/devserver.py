"""`eddy dev`: one node, its HTTP API on one port, and a reloader.

Three tasks share one nursery inside the node's lifetime:

1. hypercorn's trio worker serves `wire.http.make_app` on the port;
2. the reloader polls the app's fingerprint every `RELOAD_POLL_S` and, when
   it changes, loads the app again and hands it to the node; an app that fails
   to load is reported as `file:line: message` and the last good version keeps
   serving;
3. a signal watcher turns SIGINT or SIGTERM into a graceful shutdown:
   hypercorn stops accepting, finishes in-flight requests (at most
   `GRACEFUL_TIMEOUT_S`), and then the node closes.
"""

from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from actors.app import AppLoadError, app_fingerprint, load_app
from actors.node import open_node
from engine.errors import EddyError
from wire.http import make_app
from wire.sync import sync_message_bytes_max

# Half a second feels immediate after saving a file, and a fingerprint of a
# small app folder costs well under a millisecond of stat calls.
RELOAD_POLL_S = 0.5
# In-flight requests get this long to finish after Ctrl-C; a function call
# is bounded by its own time limits, so this only cuts off slow actions.
GRACEFUL_TIMEOUT_S = 5.0


def describe_load_error(error: AppLoadError) -> str:
    """`file:line: message`, the form editors and terminals link to (no line
    when none is to blame)."""
    where = error.file if error.line is None else f"{error.file}:{error.line}"
    return f"{where}: {error.message}"


async def serve_dev(app_dir: Path, *, host: str, port: int, data_dir: Path,
                    out: TextIO = sys.stdout, subscription_actors: int = 1) -> None:
    """Serves an app until SIGINT or SIGTERM, reloading it when its files change.

    `subscription_actors`: how many the node spreads live sessions over
    (open_node's option).

    Not a checkpoint in any useful sense: it returns only after shutdown.
    Cancelling it closes the server and the node.

    Raises:
        AppLoadError: the app does not load at start (no good version yet).
        OSError: the port cannot be bound.
    """
    async with open_node(str(app_dir), str(data_dir),
                         subscription_actors=subscription_actors) as node:
        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.graceful_timeout = GRACEFUL_TIMEOUT_S
        # Let frames up to the sync limit (and a little over) reach wire/sync.py,
        # which answers an oversize one with FatalError instead of a bare 1009.
        config.websocket_max_message_size = sync_message_bytes_max + 64 * 1024
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_shut_down_on_signal, shutdown)
            binds = await nursery.start(
                _serve_then_cancel, make_app(lambda: node), config, shutdown, nursery.cancel_scope)
            for url in binds:
                print(f"Eddy is serving {app_dir} at {url}", file=out)
            print(f"Admin key: {node.admin_key}", file=out)
            print(f"Data folder: {data_dir}", file=out, flush=True)
            nursery.start_soon(partial(watch_app, node, app_dir, out=out))


async def _serve_then_cancel(app: Any, config: Config, shutdown: trio.Event,
                             cancel_scope: trio.CancelScope,
                             task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
    # The server has drained: stop the reloader and the signal watcher too.
    cancel_scope.cancel()


async def _shut_down_on_signal(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            shutdown.set()
            return


async def watch_app(node: Any, app_dir: Path, *, out: TextIO = sys.stdout,
                    poll_s: float = RELOAD_POLL_S) -> None:
    """Reloads the node's app whenever its fingerprint changes; runs until cancelled.

    A checkpoint every `poll_s`. A version that fails to load or that the
    node refuses is reported and skipped; the node keeps the last good one.
    """
    last = app_fingerprint(app_dir)
    while True:
        await trio.sleep(poll_s)
        current = app_fingerprint(app_dir)
        if current == last:
            continue
        last = current
        try:
            node.reload(load_app(app_dir))
        except AppLoadError as error:
            print(describe_load_error(error), file=sys.stderr, flush=True)
            print("Still serving the last version that loaded.", file=sys.stderr, flush=True)
        except EddyError as error:
            print(f"{app_dir}: {error.code.value}: {error.message}", file=sys.stderr, flush=True)
            print("Still serving the last version that loaded.", file=sys.stderr, flush=True)
        else:
            print(f"Reloaded {app_dir}", file=out, flush=True)
