"""A throw-away PostgreSQL server for the live-query benchmarks' baselines.

`open_postgres(parent)` makes a fresh cluster in a temporary folder under
`parent` (bench/out, on the same disk as Eddy's data), starts it on a free
loopback port (127.0.0.1 only, never another address) with its unix socket
in the same folder, yields a `Postgres` with the connection string, and
stops and removes it afterwards. Durability is PostgreSQL's default:
`fsync=on`, `synchronous_commit=on`, so a commit is acknowledged only once
its WAL is flushed, as Eddy's are.

PostgreSQL refuses to run as root. When this process is root the cluster's
folder is given to the `postgres` user and every server command runs as that
user through `runuser`. If no PostgreSQL binaries are found, this installs
Debian's `postgresql` package with apt-get, saying so first.

Benchmarks are not engine code: this module runs commands and reads the
wall clock directly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"  # Loopback only: the baseline never listens anywhere else.
START_TIMEOUT_S = 60
# Connections the baselines open at once: 64 writers, 100 listeners, a few spare.
CONNECTIONS_MAX = 300


@dataclass
class Postgres:
    """A running throw-away server."""

    port: int
    socket_dir: Path
    data_dir: Path
    bin_dir: Path
    version: str

    @property
    def conninfo(self) -> str:
        """A libpq connection string for psycopg (TCP on loopback)."""
        return f"host={HOST} port={self.port} user=postgres dbname=postgres"


def find_bin_dir() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`, or None when PostgreSQL is missing."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def ensure_installed() -> Path:
    """The PostgreSQL binary folder, installing Debian's package if needed."""
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    print("postgres: PostgreSQL not found; running `apt-get install -y postgresql`", flush=True)
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", "postgresql"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("apt-get installed postgresql but initdb/pg_ctl are not found")
    return bin_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """`command` run as the `postgres` user when we are root, else as ourselves."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()}")


@contextlib.contextmanager
def open_postgres(parent: str | Path, *, quiet: bool = False) -> Iterator[Postgres]:
    """Starts a fresh cluster in a temporary folder under `parent`; stops and
    removes it when the block ends (also on error).

    When running as root, `parent` and its ancestors must be searchable by
    the `postgres` user (bench/out is; a `tempfile.TemporaryDirectory` is not).
    """
    bin_dir = ensure_installed()
    root = Path(tempfile.mkdtemp(dir=Path(parent).resolve(), prefix="postgres-"))
    root.chmod(0o755)  # The server user must reach its data folder.
    data_dir, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    _give_to_server_user(root)
    _give_to_server_user(socket_dir)
    port = free_port()
    version = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                             text=True).stdout.strip()
    if not quiet:
        user = "the postgres user (runuser)" if os.geteuid() == 0 else "this user"
        print(f"postgres: {version}, fresh cluster in {root}, as {user}, "
              f"listening on {HOST}:{port} only", flush=True)
    _run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "trust",
                          "-U", "postgres", "--no-instructions"]))
    options = (f"-c listen_addresses={HOST} -p {port} -k {socket_dir} "
               f"-c max_connections={CONNECTIONS_MAX} -c fsync=on -c synchronous_commit=on")
    started = False
    try:
        _run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o",
                              options, "-l", str(root / "server.log"), "-w",
                              "-t", str(START_TIMEOUT_S), "start"]))
        started = True
        yield Postgres(port, socket_dir, data_dir, bin_dir, version)
    finally:
        if started:
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir),
                                            "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def server_pids(postgres: Postgres) -> list[int]:
    """Process ids of the server and its backends (for CPU accounting)."""
    postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                              text=True).stdout.split()
    return [postmaster, *map(int, children)]


if __name__ == "__main__":
    # A smoke test: start, connect, stop.
    import psycopg

    started_at = time.perf_counter()
    with open_postgres(Path(__file__).resolve().parent / "out") as server:
        with psycopg.connect(server.conninfo) as connection:
            print(connection.execute("SHOW synchronous_commit").fetchone(),
                  connection.execute("SHOW fsync").fetchone())
    print(f"started and stopped in {time.perf_counter() - started_at:.1f} s")
