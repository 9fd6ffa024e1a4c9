"""Running a plug-in: a child process in its own process group, isolated where the machine
allows, stopped at its time-out; or a CIRCUS Docker image where a Docker engine answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from circus_tasks.errors import PluginError

if TYPE_CHECKING:
    from circus_tasks.plugins.registry import Plugin

# Run inside new mount and network namespaces: every mount read-only (but /proc, /sys, /dev),
# a private /dev/shm, then $1 (output) and $2 (scratch) bound writable; the plug-in runs with no
# capabilities, so that it cannot undo any of it. Exit 97: the sandbox could not be built.
_SANDBOX = r"""
for mp in $(awk '{print $5}' /proc/self/mountinfo | sort -r); do
  case "$mp" in /proc*|/sys*|/dev*) continue ;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null
done
mount -t tmpfs -o size=256m,mode=1777 tmpfs /dev/shm 2>/dev/null
for dir in "$1" "$2"; do
  mount --bind "$dir" "$dir" && mount -o remount,bind,rw "$dir" || exit 97
done
shift 2
exec setpriv --bounding-set -all --inh-caps -all --no-new-privs -- "$@"
"""
SANDBOX_FAILED = 97


@dataclass(frozen=True)
class Isolation:
    """What this machine can do to fence a command plug-in in."""

    namespaces: tuple[str, ...]
    """``unshare`` options that work here (empty: none)."""
    pdeathsig: bool
    """Whether ``setpriv --pdeathsig`` is there (plug-in dies with its job's process)."""

    @property
    def no_network(self) -> bool:
        return bool(self.namespaces)

    def describe(self) -> str:
        """One line for ``circus plugins``."""
        if self.namespaces:
            return (
                "sandbox: file system read-only but its output folder, no network, "
                "no capabilities (mount and network namespaces)"
            )
        return (
            "input read-only by file mode only; network NOT isolated "
            "(needs root or user namespaces for unshare)"
        )


@lru_cache(maxsize=1)
def machine_isolation() -> Isolation:
    """Probe once which isolation works on this machine."""
    pdeathsig = shutil.which("setpriv") is not None
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return Isolation((), pdeathsig)
    options: tuple[str, ...] = ("--net", "--mount", "--propagation", "private")
    if os.geteuid() != 0:
        options = ("--user", "--map-root-user", *options)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch, "out")
        out.mkdir()
        # inside, only the output folder may be written: anything else counts as a failure
        check = f"touch {out}/ok && ! touch {scratch}/escaped 2>/dev/null"
        probe = subprocess.run(
            [
                unshare,
                *options,
                "--",
                "sh",
                "-c",
                _SANDBOX,
                "sh",
                str(out),
                str(out),
                "sh",
                "-c",
                check,
            ],
            capture_output=True,
            timeout=10,
        )
        works = probe.returncode == 0 and (out / "ok").exists()
    return Isolation(options if works else (), pdeathsig)


@lru_cache(maxsize=1)
def docker_engine_problem() -> str | None:
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


def make_read_only(folder: Path) -> None:
    """Take write permission off a folder tree (the plug-in's input)."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(folder, 0o555)


def make_writable(folder: Path) -> None:
    """Give write permission back (so that the job folder can be cleaned up)."""
    os.chmod(folder, 0o755)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)
        for name in files:
            os.chmod(Path(root) / name, 0o644)


def plugin_command(plugin: Plugin, in_dir: Path, out_dir: Path) -> list[str]:
    """The plug-in's own command line (without isolation)."""
    runner = plugin.manifest.runner
    if runner.python is not None:
        return [
            sys.executable,
            "-m",
            "circus_tasks.plugins.host",
            str(plugin.path),
            runner.python,
            str(in_dir),
            str(out_dir),
        ]
    if runner.command is not None:
        return [
            a.replace("{in}", str(in_dir)).replace("{out}", str(out_dir)) for a in runner.command
        ]
    assert runner.docker is not None
    command = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        f"circus-{in_dir.parent.name}",
        "-v",
        f"{in_dir}:/circus/in:ro",
        "-v",
        f"{out_dir}:/circus/out",
    ]
    if runner.docker.gpus:
        command += ["--gpus", runner.docker.gpus]
    return [*command, runner.docker.image]


def isolated_command(plugin: Plugin, in_dir: Path, out_dir: Path, scratch: Path) -> list[str]:
    """The command line that runs the plug-in fenced in as far as this machine allows."""
    command = plugin_command(plugin, in_dir, out_dir)
    isolation = machine_isolation()
    if plugin.manifest.runner.docker is None and isolation.namespaces:
        command = [
            "unshare",
            *isolation.namespaces,
            "--",
            "sh",
            "-c",
            _SANDBOX,
            "sh",
            str(out_dir),
            str(scratch),
            *command,
        ]
    if isolation.pdeathsig:
        command = ["setpriv", "--pdeathsig", "KILL", "--", *command]
    return command


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
    command = isolated_command(plugin, in_dir, out_dir, scratch)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CIRCUS_"))}
    env.update(TMPDIR=str(scratch), HOME=str(scratch))
    make_read_only(in_dir)
    try:
        with log_path.open("a", encoding="utf-8") as log:
            _log(log, f"start {plugin.plugin_id} (time-out {timeout} s)")
            _log(log, f"isolation: {machine_isolation().describe()}")
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
                _stop(plugin, process, in_dir)
                _log(log, f"timed out after {timeout} s; process group killed")
                raise PluginError(
                    f"Plug-in {plugin.plugin_id} timed out after {timeout} s."
                ) from None
            except BaseException:
                _stop(plugin, process, in_dir)
                _log(log, "interrupted; process group killed")
                raise
            _log(log, f"exit code {code}")
    finally:
        make_writable(in_dir)
    if code == SANDBOX_FAILED and machine_isolation().namespaces:
        raise PluginError(
            f"The sandbox of plug-in {plugin.plugin_id} could not be set up (exit {code}); "
            "see plugin-log.txt."
        )
    if code != 0:
        raise PluginError(
            f"Plug-in {plugin.plugin_id} exited with code {code}; "
            "its output is in plugin-log.txt (circus log JOB)."
        )


def _log(log: object, line: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    log.write(f"[runner] {stamp} {line}\n")  # type: ignore[attr-defined]
    log.flush()  # type: ignore[attr-defined]


def _stop(plugin: Plugin, process: subprocess.Popen[bytes], in_dir: Path) -> None:
    if plugin.manifest.runner.docker is not None:
        subprocess.run(["docker", "kill", f"circus-{in_dir.parent.name}"], capture_output=True)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
