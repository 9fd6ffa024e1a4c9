"""A CIRCUS plug-in image, run as CIRCUS runs it and safer: no network, the input read-only at
``/circus/in``, the output at ``/circus/out``, a user who is not root, no capabilities, the
manifest's GPU, memory and CPU limits; the container is named after the job and always removed.

Any engine with Docker's API serves (Docker, or podman's API service: see
``deployments/container-engine.sh``); the ``docker`` command talks to the one ``DOCKER_HOST``
names."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from circus_tasks.plugins.manifest import Runner
from circus_tasks.settings import get_settings

ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH")
"""What the ``docker`` client needs of the worker's environment to find the engine."""


def container_name(out_dir: Path) -> str:
    """The job's container: ``circus-JOB_ID`` (the output folder is ``JOB_ID/out``)."""
    return f"circus-{out_dir.parent.name}"


FENCE = "no network, input read-only, no capabilities, not root, removed when it ends"
"""How a plug-in's container is fenced in, in words."""

LABEL = "circus.machine"
"""The label that names the machine (and home) a container was started for."""


def owner() -> str:
    """This machine's name and which home it serves (two homes may share one engine)."""
    settings = get_settings()
    home = hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:12]
    return f"{settings.machine}@{home}"


def container_user() -> str:
    """Who the plug-in runs as: the sandbox's user under a root worker, else the worker's."""
    if os.geteuid() == 0:
        uid = gid = get_settings().sandbox_uid
    else:
        uid, gid = os.geteuid(), os.getegid()
    return f"{uid}:{gid}"


def command_line(runner: Runner, folder: Path, in_dir: Path, out_dir: Path) -> list[str]:
    """``docker run`` of the job's container (removed when it ends)."""
    assert runner.docker is not None
    spec = runner.docker
    line = ["docker", "run", "--rm", "--pull", "never", "--name", container_name(out_dir)]
    line += ["--network", "none"]
    line += ["--user", container_user(), "--cap-drop", "ALL"]
    line += ["--security-opt", "no-new-privileges", "--pids-limit", "4096"]
    line += ["--label", f"{LABEL}={owner()}"]
    line += ["-v", f"{in_dir}:/circus/in:ro", "-v", f"{out_dir}:/circus/out"]
    if spec.gpus:
        line += ["--gpus", spec.gpus]
    if spec.memory:
        line += ["--memory", spec.memory, "--memory-swap", spec.memory]
    if spec.cpus:
        line += ["--cpus", f"{spec.cpus:g}"]
    return [*line, spec.image]


def engine_host() -> str | None:
    """The engine the client talks to: ``DOCKER_HOST``, else the one ``circus up`` started in
    this home, else ``None`` (the client's default socket)."""
    if "DOCKER_HOST" in os.environ:
        return os.environ["DOCKER_HOST"]
    socket = get_settings().engine_dir / "podman.sock"
    return f"unix://{socket}" if socket.is_socket() else None


def client_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (by default the worker's environment; for a run, the plug-in's) plus what the
    client needs to reach the engine."""
    env = dict(os.environ if base is None else base)
    env.update({k: v for k, v in os.environ.items() if k in ENGINE_ENV})
    if host := engine_host():
        env["DOCKER_HOST"] = host
    return env


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``docker`` client (its output captured); an engine that does not answer within
    ``timeout`` s gives exit code 124 and says so."""
    try:
        return subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=client_environment(),
        )
    except subprocess.TimeoutExpired:
        where = engine_host() or "the default socket"
        message = f"the container engine at {where} did not answer within {timeout:g} s"
        return subprocess.CompletedProcess(["docker", *args], 124, "", message)


@lru_cache(maxsize=1)
def engine_unavailable() -> str | None:
    """``None`` if a container engine answers here, else why not and what to do."""
    if shutil.which("docker") is None:
        return "no docker command on this machine (install Docker, or see README: Plug-ins)"
    where = engine_host() or "the default socket"
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=15)
    if info.returncode == 124:
        return info.stderr
    if info.returncode != 0:
        return (
            f"no container engine answers at {where}: start one "
            "(deployments/container-engine.sh start) or set DOCKER_HOST"
        )
    return None


def unavailable_reason(runner: Runner) -> str | None:
    """``None`` if the engine answers and holds the plug-in's image, else why not."""
    assert runner.docker is not None
    if reason := engine_unavailable():
        return reason
    if image_id(runner.docker.image) is None:
        named = f" (registered from {runner.docker.ref})" if runner.docker.ref else ""
        return (
            f"its image {runner.docker.image}{named} is not on this machine: load it here "
            "(docker load / docker pull) and register it again (circus plugins add)"
        )
    return None


def image_id(image: str) -> str | None:
    """The id (``sha256:...``) of a local image, or ``None`` if it is not here."""
    found = docker("image", "inspect", "--format", "{{.Id}}", image)
    if found.returncode != 0:
        return None
    ident = found.stdout.strip()
    return ident if ident.startswith("sha256:") else f"sha256:{ident}"


def remove_leftovers(*, every_machine: bool = False) -> None:
    """Remove this machine's containers that outlived their job (its flow process was killed
    with the ``docker run`` client): a machine runs one job at a time, so before a job starts,
    none of them belongs to a running job. ``every_machine``: those of every machine of this
    home (when its engine stops)."""
    listed = docker("ps", "--all", "--format", f'{{{{.ID}}}} {{{{.Label "{LABEL}"}}}}')
    mine = owner()
    home = "@" + mine.rpartition("@")[2]
    stale = [
        ident
        for ident, _, label in (line.partition(" ") for line in listed.stdout.splitlines())
        if label == mine or (every_machine and label.endswith(home))
    ]
    if stale:
        docker("rm", "--force", "--volumes", *stale)


def stop(out_dir: Path) -> None:
    """Kill and remove the job's container (the ``docker run`` client dying does not stop it,
    and ``--rm`` does not remove a container whose client was killed)."""
    name = container_name(out_dir)
    docker("kill", name)
    docker("rm", "--force", "--volumes", name)
