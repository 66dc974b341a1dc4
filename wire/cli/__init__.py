"""The `eddy` command (DESIGN.md section 10).

- `eddy dev APP_DIR [--subscription-actors N]`: serve an app over HTTP and
  WebSocket and reload it on change (wire/devserver.py does the serving);
- `eddy run APP_DIR PATH [ARGS_JSON]`: run one function against the app's
  data, embedded (no server), and print its result as JSON;
- `eddy log|show|query|diff|replay|rerun|bisect|compact APP_DIR ...`: the
  log-replay tools (wire/cli/history.py);
- `eddy sim ...`: the deterministic simulator (wire/cli/sim.py, the only
  place outside tests that imports `sim`).

Exit codes: 0 success, 1 the app or the function failed (the reason on
stderr), 2 bad usage (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import trio

from actors.app import AppLoadError
from actors.instruments import with_dict_instruments
from actors.node import open_node
from actors.subscription_pool import check_actor_count
from engine.errors import AppError, EddyError, FunctionCrashed
from wire import codecs
from wire.devserver import describe_load_error, serve_dev

DEFAULT_PORT = 3210
DEFAULT_HOST = "127.0.0.1"
DATA_FOLDER_NAME = ".eddy"

# Errors binding the listening socket: the port is taken, the host is not
# this machine's, the name does not resolve, or the port needs privileges.
BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}

EPILOG = """\
The app folder holds schema.py (optional) and modules of functions: the
function `send` in messages.py is called as "messages:send", the function
`list` in admin/users.py as "admin/users:list". Data lives in APP_DIR/.eddy
unless --data names another folder.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps a one-line paragraph (a description) to the terminal; keeps text
    already laid out over several lines (an epilog, an example) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n" in paragraph.strip("\n"):
                paragraphs.append(super()._fill_text(paragraph, width, indent))
            else:
                paragraphs.append(textwrap.fill(paragraph, width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `eddy` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="eddy", description="Eddy: a reactive, event-sourced backend that speaks Convex's protocols.",
        epilog=EPILOG + "\n" + MAIN_EPILOG, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = commands.add_parser(
        "dev", help="serve an app (HTTP + live queries), reloading it when its files change",
        description="Serve an app's functions on one port: Convex's HTTP API and its "
                    "WebSocket sync protocol (live queries for the official Convex "
                    "clients and Eddy's Python client). "
                    "Prints the URL and the admin key. Reloads the app when a file "
                    "changes; an app that fails to load is reported as file:line: message "
                    "and the last good version keeps serving. Ctrl-C stops it cleanly.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    _add_app_arguments(dev)
    dev.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                     help=f"TCP port to listen on (default {DEFAULT_PORT})")
    dev.add_argument("--host", default=DEFAULT_HOST,
                     help=f"address to listen on (default {DEFAULT_HOST}, this machine only)")
    dev.add_argument("--subscription-actors", type=subscription_actor_count, default=1,
                     metavar="N",
                     help="subscription actors the live sessions are spread over, each keeping "
                          "its own queries current from every commit (default 1; all run on one "
                          "thread, so more split the work into independent tasks, not CPUs)")

    run = commands.add_parser(
        "run", help="run one function against an app's data and print its result",
        description="Run one query, mutation or action against the app's data, "
                    "without a server, as the admin (internal functions allowed), "
                    "and print its result as JSON. On failure the error goes to stderr "
                    "and the exit code is 1. Stop `eddy dev` on the same data first.",
        epilog=EPILOG + "\n" + RUN_EXAMPLE + "\n", formatter_class=HelpFormatter)
    _add_app_arguments(run)
    run.add_argument("path", metavar="PATH", help='the function, e.g. "messages:list"')
    run.add_argument("args", metavar="ARGS_JSON", nargs="?", default="{}",
                     help="the arguments as a JSON object, in Convex's encoded JSON "
                          "(int64 as {\"$integer\": ...}); default {}")
    for module in _extension_modules():
        module.add_commands(commands)
    return parser


MAIN_EPILOG = """\
`eddy COMMAND --help` explains each command. Exit codes: 0 done, 1 failed (the
reason on stderr), 2 bad usage. docs/getting-started.md walks through a first
app.
"""

# Shown by `eddy run --help`; a test runs it as written (with --data).
RUN_EXAMPLE = """\
Examples:
  eddy run examples/chat channels:create '{"name": "general"}'
  eddy run examples/chat channels:list"""


# Further subcommands live in their own modules, each with
# `add_commands(subparsers)`: every parser it adds sets `handler=` (a
# function taking the parsed options and returning an exit code).
EXTENSIONS = ("wire.cli.history", "wire.cli.sim")


def _extension_modules() -> list:
    import importlib
    found = []
    for name in EXTENSIONS:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
    return found


def subscription_actor_count(text: str) -> int:
    """The argparse type of `--subscription-actors`: 1 to subscription_actors_max."""
    try:
        count = int(text)
        check_actor_count(count)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return count


def port_number(text: str) -> int:
    """The argparse type of `--port`: a TCP port, 0 to 65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def _add_app_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app_dir", metavar="APP_DIR", type=Path, help="the app folder")
    parser.add_argument("--data", metavar="DIR", type=Path, default=None,
                        help=f"the data folder (default APP_DIR/{DATA_FOLDER_NAME})")


def main(argv: list[str] | None = None) -> int:
    """Runs the `eddy` command; returns its exit code."""
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.command is None:
        parser.print_help()
        return 2
    handler = getattr(options, "handler", None)
    if handler is not None:
        try:
            return handler(options)
        except KeyboardInterrupt:
            return 130
    data_dir = options.data or options.app_dir / DATA_FOLDER_NAME
    try:
        if options.command == "dev":
            return _dev(options, data_dir)
        return _run(options, data_dir)
    except AppLoadError as error:
        print(describe_load_error(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dev(options: argparse.Namespace, data_dir: Path) -> int:
    _configure_logging()
    try:
        trio.run(with_dict_instruments,
                 lambda: serve_dev(options.app_dir, host=options.host, port=options.port,
                                   data_dir=data_dir,
                                   subscription_actors=options.subscription_actors))
    except (OSError, EddyError) as error:
        print(describe_dev_error(error, options.host, options.port), file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        # The server's nurseries wrap a failure to bind in exception groups.
        error = sole_exception(group)
        if not isinstance(error, (OSError, EddyError)):
            raise
        print(describe_dev_error(error, options.host, options.port), file=sys.stderr)
        return 1
    return 0


def sole_exception(error: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (or
    the group itself when it holds several)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def describe_dev_error(error: BaseException, host: str, port: int) -> str:
    """One line for a failure that stops `eddy dev` before it serves."""
    if isinstance(error, EddyError):
        return f"eddy dev: {error.code.value}: {error.message}"
    # A file's error names the file; a socket's does not.
    bind_error = getattr(error, "errno", None) in BIND_ERRNOS and not getattr(error, "filename", None)
    if isinstance(error, socket.gaierror) or bind_error:
        hint = " (is another server using it? pass --port N)" \
            if getattr(error, "errno", None) == errno.EADDRINUSE else ""
        return f"eddy dev: cannot listen on {host}:{port}: {error.strerror or error}{hint}"
    return f"eddy dev: {error}"


def _run(options: argparse.Namespace, data_dir: Path) -> int:
    try:
        args = codecs.decode_args(codecs.parse_json(options.args, "ARGS_JSON"))
        value = trio.run(_call_function, options.app_dir, data_dir, options.path, args)
    except EddyError as error:
        print(f"{error.code.value}: {error.message}", file=sys.stderr)
        return 1
    except AppError as error:
        data = json.dumps(codecs.encode_value(error.data, codecs.Format.CLEAN))
        print(f"{error} (data: {data})", file=sys.stderr)
        return 1
    except FunctionCrashed as error:
        # Whoever runs `eddy run` owns the app, so the traceback helps here.
        print(error.traceback_text or error.message, file=sys.stderr)
        return 1
    print(json.dumps(codecs.encode_value(value, codecs.Format.CLEAN), indent=2,
                     ensure_ascii=False, allow_nan=False))
    return 0


async def _call_function(app_dir: Path, data_dir: Path, path: str, args: dict[str, Any]) -> Any:
    async with open_node(str(app_dir), str(data_dir)) as node:
        result = await node.call(None, path, args, admin=True)
    return result.value


def _configure_logging() -> None:
    # Eddy's own loggers write to stderr; hypercorn's keep their own handler,
    # so the root logger is left alone (configuring it would print their
    # lines twice).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    eddy_logger = logging.getLogger("eddy")
    eddy_logger.addHandler(handler)
    eddy_logger.setLevel(logging.INFO)
    eddy_logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
