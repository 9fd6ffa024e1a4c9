"""Starting and stopping the local stack: the embedded Prefect server, the work pool and
deployments, and this machine's worker (each in its own process group)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from circus_tasks.home import local_postgres_urls
from circus_tasks.orchestration.client import api_url, embedded_api_url
from circus_tasks.settings import PROJECT_DIR, get_settings

SERVER = "server"


def ui_url() -> str:
    """Where people look: the Prefect UI."""
    return api_url().removesuffix("/api")


def prefect_exe() -> str:
    """The ``prefect`` command of this environment."""
    return str(Path(sys.executable).parent / "prefect")


def child_env(**extra: str) -> dict[str, str]:
    """Environment for processes we start: our settings made explicit."""
    settings = get_settings()
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=api_url(),
        PREFECT_HOME=str(settings.prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        # a call waits out about four minutes of a busy or restarting server (2 + 4 + ... +
        # 128 s) before it fails a job; Prefect's default gives up after about one
        PREFECT_CLIENT_MAX_RETRIES=os.environ.get("PREFECT_CLIENT_MAX_RETRIES", "7"),
        CIRCUS_HOME=str(settings.home),
        CIRCUS_PROJECT_DIR=str(PROJECT_DIR),
    )
    if settings.database_url:
        env["CIRCUS_DATABASE_URL"] = settings.database_url
    local = local_postgres_urls(settings.home)
    own = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
    if local and not any(name in env for name in own):  # a site's own server URL wins
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = local["prefect"]
    env.update(extra)
    return env


def _pid_file(name: str) -> Path:
    return get_settings().run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(name: str) -> int | None:
    """The process id of a process we started under ``name``, if it still runs."""
    path = _pid_file(name)
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def start_background(name: str, command: list[str], env: dict[str, str]) -> int:
    """Start ``command`` in its own process group, logging to ``run/NAME.log``."""
    run_dir = get_settings().run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_DIR,
            start_new_session=True,
        )
    _pid_file(name).write_text(str(process.pid))
    return process.pid


def stop_background(name: str, timeout: float = 30.0) -> bool:
    """Stop a process we started (its whole group): SIGTERM, then SIGKILL."""
    pid = running_pid(name)
    _pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    signal_group(pid, signal.SIGKILL)
    return True


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def server_healthy(url: str | None = None) -> bool:
    """Whether the Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{url or api_url()}/health", timeout=2) as response:
            return bool(json.loads(response.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return False


QUIET_SERVER = {
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    # the 503s a busy database causes (clients retry them) are logged, so an administrator
    # sees them in run/server.log
    "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
}
"""Server services that only rewrite queued runs (Scheduled -> "Late", which we never read: our
statuses go by state type) or expire pauses (our flows never pause) are off: on the embedded
SQLite server every such write competes with the workers' for the one write lock."""


def start_server(timeout: float = 120.0) -> str:
    """Start the embedded Prefect server (SQLite in CIRCUS_HOME) unless one answers."""
    if server_healthy():
        return api_url()
    if api_url().rstrip("/") != embedded_api_url():
        raise RuntimeError(
            f"PREFECT_API_URL names {api_url()}, which does not answer; start that server "
            "or unset PREFECT_API_URL to use the embedded one."
        )
    port = str(get_settings().prefect_port)
    start_background(
        SERVER,
        [sys.executable, "-m", "circus_tasks.worker.server", "--host", "127.0.0.1", "--port", port],
        {**QUIET_SERVER, **child_env()},  # a setting of the site's own wins
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_healthy():
            return api_url()
        if running_pid(SERVER) is None:
            break
        time.sleep(0.5)
    log = get_settings().run_dir / f"{SERVER}.log"
    raise RuntimeError(f"The Prefect server did not start; see {log}.")


WORK_POOL_TEMPLATE = PROJECT_DIR / "deployments" / "work-pool.json"
"""The base job template of our process work pool (see ``deployments/README.md``)."""


def ensure_pool_and_deployments() -> None:
    """Create or update the process work pool and deploy ``prefect.yaml`` (idempotent)."""
    settings = get_settings()
    env = child_env()
    pools = [
        [settings.work_pool, "--base-job-template", str(WORK_POOL_TEMPLATE)],
        [settings.batch_work_pool],  # the stock process template: a batch run is one process
    ]
    for pool in pools:
        subprocess.run(
            [prefect_exe(), "work-pool", "create", *pool, "--type", "process", "--overwrite"],
            env=env,
            check=True,
            capture_output=True,
        )
    deploy = subprocess.run(
        [prefect_exe(), "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    if deploy.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{deploy.stdout}\n{deploy.stderr}")


def worker_name(machine: str) -> str:
    """Background process name of this machine's worker."""
    return f"worker-{machine}"


def start_worker(machine: str | None = None) -> int:
    """Start ``circus worker`` for a machine in the background (unless it runs)."""
    name = worker_name(machine or get_settings().machine)
    pid = running_pid(name)
    if pid is not None:
        return pid
    command = [sys.executable, "-m", "circus_tasks.cli.app", "worker"]
    env = child_env(CIRCUS_MACHINE=machine or get_settings().machine)
    return start_background(name, command, env)


BATCH_WORKER = "batch-worker"


def start_batch_worker() -> int:
    """Start the worker of the batch pool in the background (unless it runs): batch runs only
    wait and feed, so one worker takes many of them at once."""
    pid = running_pid(BATCH_WORKER)
    if pid is not None:
        return pid
    settings = get_settings()
    command = [prefect_exe(), "worker", "start", "--pool", settings.batch_work_pool]
    command += ["--type", "process", "--name", f"circus-batch-{settings.machine}"]
    env = child_env(PREFECT_WORKER_QUERY_SECONDS=str(settings.worker_poll_seconds))
    return start_background(BATCH_WORKER, command, env)


def stop_all() -> list[str]:
    """Stop every worker and the server this CIRCUS_HOME started."""
    stopped = []
    run_dir = get_settings().run_dir
    names = sorted(p.stem for p in run_dir.glob("worker-*.pid")) if run_dir.is_dir() else []
    for name in [*names, BATCH_WORKER, SERVER]:
        if stop_background(name):
            stopped.append(name)
    return stopped
