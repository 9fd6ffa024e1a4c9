"""The sandbox a command or Python plug-in runs in, as far as this machine allows: new mount
and network namespaces with every file system read-only but its output and scratch folders, no
network, no capabilities; its input read-only by file mode as well."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


def fence(command: list[str], out_dir: Path, scratch: Path) -> list[str]:
    """``command`` inside the sandbox, and killed with its parent where ``setpriv`` can."""
    isolation = machine_isolation()
    if isolation.namespaces:
        script = ["sh", "-c", _SANDBOX, "sh", str(out_dir), str(scratch)]
        command = ["unshare", *isolation.namespaces, "--", *script, *command]
    return with_pdeathsig(command)


def with_pdeathsig(command: list[str]) -> list[str]:
    """``command`` killed when the process that started it dies, where ``setpriv`` can."""
    if machine_isolation().pdeathsig:
        return ["setpriv", "--pdeathsig", "KILL", "--", *command]
    return command
