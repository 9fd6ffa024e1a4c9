"""Running a plug-in: its process group started in the sandbox (or a container), its output
appended to the job's log, stopped at its time-out or when the job is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from circus_tasks.errors import PluginError
from circus_tasks.plugins import runners
from circus_tasks.plugins.registry import Plugin
from circus_tasks.plugins.runners import docker
from circus_tasks.plugins.sandbox import (
    Mounts,
    fence,
    hand_over,
    machine_isolation,
    make_read_only,
    make_writable,
    take_back,
    with_pdeathsig,
)
from circus_tasks.settings import get_settings


def isolated_command(plugin: Plugin, in_dir: Path, out_dir: Path, scratch: Path) -> list[str]:
    """The command line that runs the plug-in fenced in as far as this machine allows (a
    container is fenced in by its engine)."""
    runner = plugin.manifest.runner
    command = runners.plugin_command(runner, plugin.path, in_dir, out_dir)
    if runner.docker is not None or not machine_isolation().sandboxed:
        return with_pdeathsig(command)
    # the plug-in's folder and its siblings (a plug-in may build on an earlier version's)
    return fence(command, Mounts(in_dir, out_dir, scratch, (plugin.path.parent,), plugin.path))


PASSED_ON = ("PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "OMP_NUM_THREADS")
"""Environment variables a plug-in gets from the worker (and ``LC_*``); no other: the worker's
may hold passwords (database URLs, ``PG*``, cloud keys)."""


def plugin_environment(scratch: Path) -> dict[str, str]:
    """A plug-in's environment: :data:`PASSED_ON`, the ``LC_*`` variables, the names listed in
    ``CIRCUS_PLUGIN_ENV``, and ``TMPDIR`` and ``HOME`` set to its scratch folder."""
    wanted = set(PASSED_ON) | set(get_settings().plugin_env)
    env = {k: v for k, v in os.environ.items() if k in wanted or k.startswith("LC_")}
    env.update(TMPDIR=str(scratch), HOME=str(scratch))
    return env


def unisolated_refusal(plugin: Plugin) -> str | None:
    """Why this machine must not run ``plugin`` (it cannot sandbox it and the setting does not
    allow that), or ``None``. A Docker plug-in is fenced in by its engine."""
    if plugin.manifest.runner.docker is not None or machine_isolation().sandboxed:
        return None
    if get_settings().allow_unisolated:
        return None
    return (
        f"Plug-in {plugin.plugin_id} is not run: this machine cannot sandbox plug-ins "
        f"({machine_isolation().reason}; bubblewrap needs root or user namespaces). Run the "
        "worker where it can, or set CIRCUS_ALLOW_UNISOLATED=1 to run plug-ins without a sandbox."
    )


def run_plugin(
    plugin: Plugin, in_dir: Path, out_dir: Path, log_path: Path, scratch: Path | None = None
) -> None:
    """Run a plug-in in its own process group, its output appended to ``log_path``.

    The input folder is read-only to it, and where the machine allows, everything but
    ``out_dir`` and ``scratch`` (its TMPDIR and HOME, not kept). The whole process group is
    killed at the manifest's time-out and when the caller is interrupted (Prefect cancelling the
    flow run included).

    Raises:
        PluginError: on a non-zero exit or a time-out.
    """
    timeout = plugin.manifest.timeout
    scratch = scratch or out_dir
    if refusal := unisolated_refusal(plugin):
        raise PluginError(refusal)
    command = isolated_command(plugin, in_dir, out_dir, scratch)
    env = plugin_environment(scratch)
    container = plugin.manifest.runner.docker is not None
    if container:
        if reason := docker.unavailable_reason(plugin.manifest.runner):
            raise PluginError(f"Plug-in {plugin.plugin_id} cannot run here: {reason}.")
        env = docker.client_environment(env)
        docker.remove_leftovers()
    make_read_only(in_dir)
    handed = container or machine_isolation().sandboxed
    if handed:  # the sandbox's (or the container's) user writes them
        hand_over(out_dir, scratch)
    try:
        with log_path.open("a", encoding="utf-8") as log:
            _log(log, f"start {plugin.plugin_id} (time-out {timeout} s)")
            _log(log, f"isolation: {_isolation(plugin)}")
            _log(log, f"command: {' '.join(command)}")
            process = subprocess.Popen(
                command,
                cwd=plugin.path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(plugin, process, out_dir)
                _log(log, f"timed out after {timeout} s; process group killed")
                raise PluginError(
                    f"Plug-in {plugin.plugin_id} timed out after {timeout} s."
                ) from None
            except BaseException:
                _stop(plugin, process, out_dir)
                _log(log, "interrupted; process group killed")
                raise
            _log(log, f"exit code {code}")
            _stop(plugin, process, out_dir)  # nothing it left behind runs on
    finally:
        make_writable(in_dir)
        if handed:
            take_back(out_dir, scratch)
    if code != 0 and _sandbox_said_no(log_path):
        raise PluginError(
            f"The sandbox of plug-in {plugin.plugin_id} could not be set up (exit {code}); "
            "see plugin-log.txt (circus log JOB)."
        )
    if code != 0:
        raise PluginError(
            f"Plug-in {plugin.plugin_id} exited with code {code}; "
            "its output is in plugin-log.txt (circus log JOB)."
        )


def _isolation(plugin: Plugin) -> str:
    if plugin.manifest.runner.docker is not None:
        return f"container, {docker.FENCE}"
    return machine_isolation().describe()


def _sandbox_said_no(log_path: Path) -> bool:
    """Whether bubblewrap itself failed (its messages start with ``bwrap:``)."""
    with log_path.open("rb") as log:
        log.seek(max(0, log_path.stat().st_size - 4096))
        return any(line.startswith(b"bwrap: ") for line in log.read().splitlines())


def _log(log: object, line: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    log.write(f"[runner] {stamp} {line}\n")  # type: ignore[attr-defined]
    log.flush()  # type: ignore[attr-defined]


def _stop(plugin: Plugin, process: subprocess.Popen[bytes], out_dir: Path) -> None:
    """Kill whatever the plug-in started: its session (the plug-in was started as the leader
    of a new one; a process that leaves it dies with the sandbox's PID namespace), and wait
    until none of it runs, so that nothing of it runs while its folders are given back."""
    if plugin.manifest.runner.docker is not None and process.returncode is None:
        docker.stop(out_dir)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (left := _session_running(process.pid)):
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _session_running(sid: int) -> list[int]:
    """The processes of session ``sid`` that still run (a zombie no longer runs: the
    sandbox's first process stays one until the machine's init reaps it)."""
    running = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":
            running.append(int(entry.name))
    return running
