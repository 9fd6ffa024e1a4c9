"""The container engine ``circus up`` starts for image plug-ins where no Docker answers:
podman's Docker API service in ``CIRCUS_HOME/engine`` (``deployments/container-engine.sh``)."""

from __future__ import annotations

import os
import shutil
import subprocess

from circus_tasks.plugins.runners import docker
from circus_tasks.settings import PROJECT_DIR, get_settings

SCRIPT = PROJECT_DIR / "deployments" / "container-engine.sh"


def wanted() -> bool:
    """Whether ``circus up`` starts the engine: as root, with podman installed, and no other
    engine named (``DOCKER_HOST``) or answering at the client's default socket."""
    if os.geteuid() != 0 or shutil.which("podman") is None or shutil.which("docker") is None:
        return False
    if "DOCKER_HOST" in os.environ:
        return False
    return docker.docker("info", timeout=15).returncode != 0


def start() -> str:
    """Start the engine (no-op if it answers); its ``DOCKER_HOST``.

    Raises:
        RuntimeError: naming the script's complaint.
    """
    folder = get_settings().engine_dir
    done = subprocess.run([str(SCRIPT), "start", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"The container engine did not start: {done.stderr.strip()}")
    docker.engine_unavailable.cache_clear()
    return done.stdout.strip().splitlines()[-1].removeprefix("DOCKER_HOST=")


def stop() -> bool:
    """Stop the engine this home started; whether one was running."""
    folder = get_settings().engine_dir
    if not (folder / "service.pid").exists():
        return False
    # this home's containers first: the engine's containers outlive its API service
    docker.remove_leftovers(every_machine=True)
    subprocess.run([str(SCRIPT), "stop", str(folder)], capture_output=True)
    return True
