"""The sandbox a command or Python plug-in runs in, built by bubblewrap (``bwrap``).

Inside, the plug-in sees a root of its own: the system's programs and libraries read-only, this
interpreter and its packages read-only, its plug-in folder read-only, its input read-only, and
only its output and scratch folders writable; ``/tmp`` and ``/dev/shm`` are small, empty and
private, ``/proc`` belongs to a PID namespace of its own (``/proc/sys`` read-only), ``/sys`` is
read-only and ``/dev`` holds only the few devices a program needs, read-only. It has no
network, no capabilities, and no process outside the sandbox to see or signal; the store, the
database and other jobs are not there at all. Where the worker runs as root, the plug-in runs
as an unprivileged user (``CIRCUS_SANDBOX_UID``, ``nobody`` by default); elsewhere it runs as the
worker's user in a user namespace. Where bubblewrap cannot build this, the machine has no
sandbox (see ``launch``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from circus_tasks.errors import PluginError
from circus_tasks.settings import get_settings

SMALL_TMPFS = 256 << 20
"""Size of the sandbox's private ``/tmp`` and ``/dev/shm`` (memory): big scratch files belong in
``TMPDIR``, the job's scratch folder on disk."""

_NAMESPACES = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts")
_SYSTEM = ("/usr", "/etc")


@dataclass(frozen=True)
class Isolation:
    """What this machine can do to fence a command or Python plug-in in."""

    bwrap: str | None
    """bubblewrap's path where it builds a working sandbox here, else ``None``."""
    pdeathsig: bool
    """Whether ``setpriv --pdeathsig`` is there (a container's client dies with its job)."""
    reason: str = ""
    """Why there is no sandbox (empty when there is one)."""

    @property
    def sandboxed(self) -> bool:
        """Whether plug-ins run in the sandbox here."""
        return self.bwrap is not None

    def describe(self) -> str:
        """One line for ``circus plugins`` and the plug-in log."""
        if self.sandboxed:
            who = f"uid {sandbox_uid()}" if os.geteuid() == 0 else "the worker's user"
            return (
                f"sandbox (bubblewrap): runs as {who}, no network, no capabilities, own PID "
                "namespace; only its output and scratch folders writable (and a private /tmp)"
            )
        return f"NO sandbox: {self.reason}"


def sandbox_uid() -> int:
    """The user a plug-in runs as where the worker is root."""
    return get_settings().sandbox_uid


@lru_cache(maxsize=1)
def machine_isolation() -> Isolation:
    """Probe once whether bubblewrap builds the sandbox on this machine."""
    pdeathsig = shutil.which("setpriv") is not None
    bwrap = shutil.which("bwrap")
    if bwrap is None or not sys.platform.startswith("linux"):
        return Isolation(None, pdeathsig, "bubblewrap (bwrap) is not installed")
    with tempfile.TemporaryDirectory() as scratch:
        folders = {name: Path(scratch, name) for name in ("in", "out", "tmp")}
        for folder in folders.values():
            folder.mkdir()
        make_read_only(folders["in"])
        hand_over(folders["out"], folders["tmp"])
        # only the output folder may be written, and the input must be readable
        check = (
            f"test -r {folders['in']} && touch {folders['out']}/ok && "
            f"! touch {folders['in']}/no 2>/dev/null && ! touch {scratch}/no 2>/dev/null"
        )
        mounts = Mounts(folders["in"], folders["out"], folders["tmp"], (), folders["out"])
        command = _bwrap_command(bwrap, ["sh", "-c", check], mounts)
        try:
            probe = subprocess.run(command, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Isolation(None, pdeathsig, f"bubblewrap did not start: {exc}")
        finally:
            make_writable(folders["in"])
        if probe.returncode != 0 or not (folders["out"] / "ok").exists():
            said = probe.stderr.decode(errors="replace").strip().splitlines()
            detail = said[-1] if said else f"exit {probe.returncode}"
            return Isolation(None, pdeathsig, f"bubblewrap cannot build a sandbox here ({detail})")
    return Isolation(bwrap, pdeathsig)


@dataclass(frozen=True)
class Mounts:
    """The folders a plug-in sees: its input (read-only), output and scratch (writable), its
    own folders (read-only), and the one it runs in."""

    in_dir: Path
    out_dir: Path
    scratch: Path
    readable: tuple[Path, ...]
    workdir: Path


def fence(command: list[str], mounts: Mounts) -> list[str]:
    """``command`` inside the sandbox with ``mounts``. Call :func:`hand_over` on the output
    and scratch folders before it runs."""
    bwrap = machine_isolation().bwrap
    if bwrap is None:
        raise RuntimeError("no sandbox on this machine")
    if os.geteuid() == 0:
        for path in mounts.readable:
            if os.stat(path).st_mode & 0o005 != 0o005:
                raise PluginError(
                    f"The plug-in's sandbox user (uid {sandbox_uid()}) cannot read {path}: make "
                    f"it readable by others (chmod -R o+rX {path})."
                )
    return _bwrap_command(bwrap, command, mounts)


def _bwrap_command(bwrap: str, command: list[str], mounts: Mounts) -> list[str]:
    # no --new-session: the plug-in stays in the process group that launch kills (it has no
    # controlling terminal to abuse), and the PID namespace dies with bwrap in any case
    args = [bwrap, *_NAMESPACES, "--die-with-parent"]
    root = os.geteuid() == 0
    if not root:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    for system in _SYSTEM:
        args += ["--ro-bind", system, system]
    for link in ("/bin", "/lib", "/lib64", "/sbin", "/lib32", "/libx32"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    args += ["--perms", "1777", "--size", str(SMALL_TMPFS), "--tmpfs", "/tmp"]
    home = get_settings().home.resolve()
    binds: list[tuple[str, Path]]
    binds = [
        ("--ro-bind", p) for p in _interpreter_paths() + [p.resolve() for p in mounts.readable]
    ]
    if any(home.is_relative_to(p) for _, p in binds):
        binds.append(("--tmpfs", home))  # the store and the database never show through
    binds += [("--ro-bind", mounts.in_dir), ("--bind", mounts.out_dir)]
    binds += [("--bind", mounts.scratch)]
    made: set[Path] = {Path("/"), Path("/tmp")}
    for option, path in binds:
        # parents made here are 0755, so that the plug-in's user can walk to its folders
        for parent in reversed(path.parents):
            if parent not in made and not any(parent.is_relative_to(s) for s in _SYSTEM):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += [option, str(path)] if option == "--tmpfs" else [option, str(path), str(path)]
    args += ["--remount-ro", "/dev"]  # then a private, writable /dev/shm (semaphores, shm)
    args += ["--perms", "1777", "--size", str(SMALL_TMPFS), "--tmpfs", "/dev/shm"]
    args += ["--chdir", str(mounts.workdir), "--"]
    if root:
        uid = str(sandbox_uid())
        args += ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args + command


@lru_cache(maxsize=1)
def _interpreter_paths() -> list[Path]:
    """What a Python plug-in's host process needs: this interpreter and its packages, and our
    package (only ``circus_tasks.plugins.host`` is run)."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    paths.add(Path(__file__).resolve().parents[1])  # the circus_tasks package
    kept = [p for p in sorted(paths) if not any(p.is_relative_to(s) for s in _SYSTEM)]
    # a path inside another one is bound with it
    return [p for p in kept if not any(p != q and p.is_relative_to(q) for q in kept)]


def hand_over(*folders: Path) -> None:
    """Make the (fresh, empty) folders the plug-in's own where it runs as another user."""
    if os.geteuid() == 0:
        for folder in folders:
            _chown_tree(folder, sandbox_uid())


def take_back(*folders: Path) -> None:
    """Give the folders the plug-in wrote back to the worker's user (links not followed)."""
    if os.geteuid() == 0:
        for folder in folders:
            _chown_tree(folder, 0)


def _chown_tree(folder: Path, uid: int) -> None:
    """Every entry by the folder it is in (``fwalk``: no path is looked up again, so a folder
    swapped for a link on the way leads nowhere), links themselves, never what they name."""
    os.lchown(folder, uid, uid)
    for _root, dirs, files, root_fd in os.fwalk(folder, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, uid, uid, dir_fd=root_fd, follow_symlinks=False)


def make_read_only(folder: Path) -> None:
    """Take write permission off a folder tree (the plug-in's input); others may read it."""
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


def with_pdeathsig(command: list[str]) -> list[str]:
    """``command`` killed when the process that started it dies, where ``setpriv`` can."""
    if machine_isolation().pdeathsig:
        return ["setpriv", "--pdeathsig", "KILL", "--", *command]
    return command
