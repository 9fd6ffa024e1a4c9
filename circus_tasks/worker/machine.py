"""This machine's worker: the Prefect worker (limit 1), the warm zygote and the reconciler,
kept running until ``circus worker`` is stopped."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from circus_tasks.orchestration.client import prefect_client
from circus_tasks.plugins.sandbox import with_pdeathsig
from circus_tasks.settings import PROJECT_DIR, get_settings
from circus_tasks.worker.stack import child_env, signal_group

log = logging.getLogger(__name__)

PREFECT_WORKER = "Prefect worker"


def run_worker(machine: str, poll_seconds: float) -> int:
    """Run this machine's Prefect worker (limit 1) and the reconciler until signalled.

    The Prefect worker runs in its own process group, stopped by that group on exit.
    """
    from circus_tasks.orchestration.reconciler import reconcile_forever

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    warm_socket = settings.run_dir / f"warm-{machine}-{os.getpid()}.sock"
    env = child_env(
        CIRCUS_MACHINE=machine,
        PREFECT_WORKER_PREFETCH_SECONDS="0",
        PREFECT_WORKER_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        CIRCUS_WARM_SOCKET=str(warm_socket),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    commands = {
        "warm zygote": [sys.executable, "-m", "circus_tasks.worker.warm", str(warm_socket)],
        PREFECT_WORKER: [
            *(sys.executable, "-m", "circus_tasks.worker.prefect_worker"),
            *("--pool", settings.work_pool, "--name", f"circus-{machine}", "--limit", "1"),
            *("--poll-seconds", str(poll_seconds)),
        ],
    }

    def start(name: str) -> subprocess.Popen[bytes]:
        # each in its own process group, killed with this process however it dies
        return subprocess.Popen(
            with_pdeathsig(commands[name]),
            env=env,
            cwd=PROJECT_DIR,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    children = {name: start(name) for name in commands}
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reconciler = threading.Thread(target=reconcile_forever, args=(stop,), daemon=True)
    reconciler.start()
    _supervise(children, start, stop, f"circus-{machine}")
    for child in children.values():
        signal_group(child.pid, signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            signal_group(child.pid, signal.SIGKILL)
            child.wait()
    stop.set()
    return 0


HEARTBEAT_SECONDS = 30
"""How often our Prefect workers beat (``PREFECT_WORKER_HEARTBEAT_SECONDS``, Prefect's default:
each beat is a write, and on the SQLite server a failed one closes the worker's channel)."""

SILENT_WORKER_SECONDS = 100.0
"""A Prefect worker whose last heartbeat the server holds is older than this, while the server
answers, is stuck (one was seen waiting for ever on its first sync after the SQLite server
failed to write its heartbeat): it is started again."""


def _supervise(
    children: dict[str, subprocess.Popen[bytes]],
    start: Callable[[str], subprocess.Popen[bytes]],
    stop: threading.Event,
    worker_name: str,
) -> None:
    """Until ``stop``: start again a child that exited (the Prefect worker gives up after about
    a minute without its server; a zygote may be killed) or a Prefect worker that went silent,
    waiting longer while one keeps exiting at once, so that the machine goes on without anyone
    restarting it."""
    started = dict.fromkeys(children, time.monotonic())
    pause = dict.fromkeys(children, 1.0)
    checked = time.monotonic()
    while not stop.wait(0.5):
        if time.monotonic() - checked > 10:
            checked = time.monotonic()
            since = time.monotonic() - started[PREFECT_WORKER]
            if since > SILENT_WORKER_SECONDS and _silent(worker_name):
                log.warning("%s went silent; started again", PREFECT_WORKER)
                signal_group(children[PREFECT_WORKER].pid, signal.SIGKILL)
                children[PREFECT_WORKER].wait()
        for name, child in children.items():
            if child.poll() is None:
                continue
            quick = time.monotonic() - started[name] < 30
            pause[name] = min(pause[name] * 2, 30.0) if quick else 1.0
            log.warning(
                "%s exited (%s); started again in %.0f s", name, child.returncode, pause[name]
            )
            if stop.wait(pause[name]):
                return
            children[name], started[name] = start(name), time.monotonic()


def _silent(worker_name: str) -> bool:
    """Whether the server answers and holds no heartbeat of ``worker_name`` from the last
    :data:`SILENT_WORKER_SECONDS` (a server that does not answer proves nothing)."""
    from datetime import UTC, datetime

    try:
        with prefect_client() as client:
            workers = client.read_workers_for_work_pool(get_settings().work_pool)
    except Exception:  # noqa: BLE001 - no answer: the worker is not to blame
        return False
    beats = [w.last_heartbeat_time for w in workers if w.name == worker_name]
    last = max((b for b in beats if b is not None), default=None)
    if last is None:
        return True
    return (datetime.now(UTC) - last).total_seconds() > SILENT_WORKER_SECONDS
