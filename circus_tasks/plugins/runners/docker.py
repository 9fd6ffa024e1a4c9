"""A CIRCUS Docker image, run as CIRCUS runs it: no network, the input read-only at
``/circus/in``, the output at ``/circus/out``; the container is named after the job."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from circus_tasks.plugins.manifest import Runner


def container_name(out_dir: Path) -> str:
    """The job's container: ``circus-JOB_ID`` (the output folder is ``JOB_ID/out``)."""
    return f"circus-{out_dir.parent.name}"


def command_line(runner: Runner, folder: Path, in_dir: Path, out_dir: Path) -> list[str]:
    assert runner.docker is not None
    line = ["docker", "run", "--rm", "--network", "none", "--name", container_name(out_dir)]
    line += ["-v", f"{in_dir}:/circus/in:ro", "-v", f"{out_dir}:/circus/out"]
    if runner.docker.gpus:
        line += ["--gpus", runner.docker.gpus]
    return [*line, runner.docker.image]


@lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """``None`` if a Docker engine answers here, else why not."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on this machine"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer (docker info timed out)"
    if info.returncode != 0:
        return "no Docker engine answers here (docker info failed)"
    return None


def stop(out_dir: Path) -> None:
    """Kill the job's container (the ``docker run`` client dying does not stop it)."""
    subprocess.run(["docker", "kill", container_name(out_dir)], capture_output=True)
