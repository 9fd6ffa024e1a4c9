"""A throw-away PostgreSQL cluster for tests and benchmarks (never for real data).

PostgreSQL's server programs (``initdb``, ``pg_ctl``) come with the machine. The cluster lives
in a fresh temporary folder, listens on 127.0.0.1 on a free port with password-less ("trust")
access, and is stopped and deleted on exit. ``initdb`` refuses to run as root, so as root the
cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cluster", "available", "throwaway_cluster"]


def available() -> bool:
    """Whether the PostgreSQL server programs are on the PATH."""
    return all(shutil.which(program) for program in ("initdb", "pg_ctl", "psql"))


@dataclass(frozen=True)
class Cluster:
    """A running throw-away cluster."""

    port: int
    root: Path

    def url(self, database: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``database`` (``driver``: ``psycopg`` or ``asyncpg``)."""
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """Create an empty database ``name``."""
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
            + ["-c", f'CREATE DATABASE "{name}"'],
            check=True,
            capture_output=True,
        )


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_cluster(settings: Sequence[str] = ()) -> Iterator[Cluster]:
    """Start a cluster for the ``with`` block, then stop and delete it.

    Args:
        settings: Server settings as ``name=value`` (e.g. ``fsync=off`` for tests, where
            losing the data on a crash does not matter).
    """
    # not under pytest's temporary folders: those are private to root
    root = Path(tempfile.mkdtemp(prefix="circus-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    try:
        subprocess.run(
            _as_postgres(["initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        options = " ".join(
            [f"-p {port}", f"-k {sockets}", "-c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in settings]
        )
        subprocess.run(
            _as_postgres(
                ["pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"]
            ),
            check=True,
            capture_output=True,
        )
        yield Cluster(port, root)
    finally:
        if data.exists():
            subprocess.run(
                _as_postgres(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)
