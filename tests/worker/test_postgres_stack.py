"""``circus up --postgres``: the demo's jobs run with both Prefect's data and ours in the
home's own PostgreSQL cluster; ``circus down`` stops it; the home remembers the choice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from circus_tasks.home import default_database_url
from circus_tasks.testing.postgres import available
from tests.worker.test_stack import CIRCUS, free_port

# "worker" tests share their module's home; this one makes its own, like a new site
pytestmark = [
    pytest.mark.prefect,
    pytest.mark.skipif(not available(), reason="PostgreSQL's server programs are not on the PATH"),
]


@pytest.fixture
def pg_env() -> Iterator[dict[str, str]]:
    # not under pytest's folders, which are private to root: the cluster's user must reach it
    root = Path(tempfile.mkdtemp(prefix="circus-up-pg-"))
    root.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CIRCUS_", "PREFECT_"))},
        "CIRCUS_HOME": str(root / "home"),
        "CIRCUS_PREFECT_PORT": str(free_port()),
        "CIRCUS_POSTGRES_PORT": str(free_port()),
    }
    try:
        yield env
    finally:
        subprocess.run([CIRCUS, "down"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _psql(urls: dict[str, str], database: str, query: str) -> str:
    command = ["psql", "-h", "127.0.0.1", "-p", urls["port"], "-U", "postgres", "-d", database]
    env = {**os.environ, "PGPASSWORD": urls["password"]}
    done = subprocess.run([*command, "-tAc", query], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_up_postgres_runs_the_demo_on_postgres_and_down_stops_it(pg_env: dict[str, str]) -> None:
    def circus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CIRCUS, *args], env=pg_env, capture_output=True, text=True)

    up = circus("up", "--postgres", "--no-batch-worker")
    assert up.returncode == 0, up.stdout + up.stderr
    home = Path(pg_env["CIRCUS_HOME"])
    urls = json.loads((home / "postgres" / "urls.json").read_text())
    assert (home / "postgres" / "urls.json").stat().st_mode & 0o077 == 0
    demo = circus("demo", "--timeout", "300")
    assert demo.returncode == 0, demo.stdout + demo.stderr

    assert not (home / "circus.db").exists()  # our tables are in PostgreSQL, not SQLite
    finished = int(_psql(urls, "circus", "select count(*) from job where status = 'FINISHED'"))
    assert finished >= 4
    runs = _psql(urls, "prefect", "select count(*) from flow_run where state_type = 'COMPLETED'")
    assert int(runs) >= finished  # Prefect's runs are in PostgreSQL too
    jobs = circus("jobs")
    assert jobs.returncode == 0 and "finished" in jobs.stdout

    down = circus("down")
    assert "postgres" in down.stdout, down.stdout
    ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", urls["port"]])
    assert ready.returncode != 0  # the cluster no longer answers
    # the home remembers PostgreSQL: every circus command (and the next circus up) uses it
    assert default_database_url(home) == urls["circus"]
