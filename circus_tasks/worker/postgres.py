"""The home's own PostgreSQL cluster: ``circus up --postgres`` makes and starts it in
``CIRCUS_HOME/postgres`` (``initdb``/``pg_ctl`` from the PATH), for both Prefect's data and our
tables, and ``circus down`` stops it.

The cluster listens on 127.0.0.1 only, with a password made at ``initdb`` (kept with the URLs
in ``postgres/urls.json``, readable by the home's owner only). PostgreSQL refuses to run as
root, so a root-run home's cluster runs as the ``postgres`` user, which must be able to reach
the folder. A site with its own PostgreSQL sets ``CIRCUS_DATABASE_URL`` and
``PREFECT_SERVER_DATABASE_CONNECTION_URL`` instead (``deployments/README.md``).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from circus_tasks.home import LOCAL_POSTGRES, local_postgres_urls
from circus_tasks.settings import get_settings

DATABASES = ("circus", "prefect")
OWNER = "postgres"
"""The user a root-run home's cluster runs as."""


class PostgresError(RuntimeError):
    """The home's cluster could not be made or started; the message says what to do."""


def cluster_root() -> Path:
    """``CIRCUS_HOME/postgres``."""
    return get_settings().home / LOCAL_POSTGRES


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str, **extra: object) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, **extra)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise PostgresError(
            f"{what}: {exc.filename} is not on the PATH; install PostgreSQL's server programs "
            "(Debian: postgresql) or set CIRCUS_DATABASE_URL to a server of your own."
        ) from None
    return done  # type: ignore[no-any-return]


def _check_reachable(folder: Path) -> None:
    """As root, the cluster's user must walk down to ``folder``."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        raise PostgresError(f"There is no {OWNER!r} user to run PostgreSQL as.") from None
    for parent in reversed(folder.resolve().parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise PostgresError(
                f"PostgreSQL runs as user {OWNER}, which cannot reach {folder}: {parent} is "
                "private. Use a CIRCUS_HOME it can reach, or open that folder (chmod o+x)."
            )


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only from the start (never world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _initdb(root: Path, port: int) -> dict[str, str]:
    """Make the cluster. ``root`` (with ``urls.json``) stays the home owner's; only ``data``
    (the cluster, its socket and its log) belongs to the user PostgreSQL runs as."""
    data = root / "data"
    root.mkdir(parents=True, exist_ok=True)
    _check_reachable(root)
    data.mkdir(mode=0o700, exist_ok=True)
    password = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        pwfile = Path(scratch) / "password"
        _write_private(pwfile, password)
        if os.geteuid() == 0:
            for path in (data, Path(scratch), pwfile):
                shutil.chown(path, OWNER, OWNER)
        init = _run(
            _as_owner(["initdb", "-D", str(data), "-U", "postgres", "-A", "scram-sha-256"])
            + ["--pwfile", str(pwfile)],
            "initdb",
        )
    if init.returncode != 0:
        raise PostgresError(f"initdb failed: {init.stderr.strip()[-500:]}")
    base = f"postgres:{password}@127.0.0.1:{port}"
    urls = {
        "circus": f"postgresql+psycopg://{base}/circus",
        "prefect": f"postgresql+asyncpg://{base}/prefect",
        "port": str(port),
        "password": password,
    }
    _write_private(root / "urls.json", json.dumps(urls, indent=1))
    return urls


def running() -> bool:
    """Whether the home's cluster runs."""
    data = cluster_root() / "data"
    if not (data / "PG_VERSION").exists():
        return False
    return _run(_as_owner(["pg_ctl", "-D", str(data), "status"]), "pg_ctl").returncode == 0


def ensure_cluster() -> dict[str, str]:
    """Make the cluster (once), start it unless it runs, create our two databases; return the
    URLs (also kept in ``postgres/urls.json``, where every ``circus`` command finds them)."""
    root = cluster_root()
    urls = local_postgres_urls(get_settings().home)
    if urls is None or not (root / "data" / "PG_VERSION").exists():
        urls = _initdb(root, get_settings().postgres_port)
    data = root / "data"
    if not running():
        options = f"-p {urls['port']} -k {data} -c listen_addresses=127.0.0.1"
        log = data / "server.log"
        start = _run(
            _as_owner(["pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(log), "start"]),
            "pg_ctl",
        )
        if start.returncode != 0:
            raise PostgresError(f"PostgreSQL did not start; see {log}.")
    env = {**os.environ, "PGPASSWORD": urls["password"]}
    for name in DATABASES:
        made = _run(
            ["createdb", "-h", "127.0.0.1", "-p", urls["port"], "-U", "postgres", name],
            "createdb",
            env=env,
        )
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise PostgresError(f"createdb {name} failed: {made.stderr.strip()}")
    return urls


def stop_cluster() -> bool:
    """Stop the home's cluster if it runs."""
    try:
        if not running():
            return False
    except PostgresError:  # no pg_ctl here: nothing of ours can be running
        return False
    data = cluster_root() / "data"
    _run(_as_owner(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]), "pg_ctl")
    return True
