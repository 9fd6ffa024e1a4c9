"""Test plug-in: tries every way out of its sandbox and reports each attempt in results.json.

As a command: ``intruder.py IN OUT``; as a Python plug-in (``intruder-py``): ``run(IN, OUT)``.
The environment names what to aim at: INTRUDER_PORT (a port listening on the loopback),
INTRUDER_PID (the test's process), INTRUDER_STORE (a stored DICOM file), INTRUDER_DB (the
database file).
"""

import errno
import json
import os
import socket
import sys
from pathlib import Path


def _refuse_unless(condition, what):
    if not condition:
        raise OSError(errno.EPERM, what)


def _connect():
    with socket.create_connection(("127.0.0.1", int(os.environ["INTRUDER_PORT"])), timeout=3):
        pass


def _outside_processes():
    seen = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                seen.append((entry / "cmdline").read_bytes())
            except OSError:
                pass
    # every process of the sandbox has "intruder" on its command line (bubblewrap's too)
    others = [line for line in seen if line and b"intruder" not in line]
    _refuse_unless(others, "no process outside is visible")


def _semaphore():
    import multiprocessing

    multiprocessing.Lock()  # a POSIX semaphore in /dev/shm: plug-ins need it


def run(in_dir, out_dir):
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    tries = {
        "write input": lambda: (in_dir / "0.raw").write_bytes(b"overwritten"),
        "new file in input": lambda: (in_dir / "new.txt").write_text("x"),
        "write beside output": lambda: (out_dir / ".." / "escaped.txt").write_text("x"),
        "write /tmp": lambda: Path("/tmp/circus-intruder-was-here").write_text("x"),  # private
        "semaphore in /dev/shm": _semaphore,
        "write plug-in folder": lambda: Path(__file__).with_name("dropped.txt").write_text("x"),
        "write /proc/sys": lambda: Path("/proc/sys/kernel/domainname").write_text("x"),
        "write /sys": lambda: Path("/sys/kernel/uevent_helper").write_text("x"),
        "new device file": lambda: Path("/dev/intruder").write_text("x"),
        "read the store": lambda: Path(os.environ["INTRUDER_STORE"]).read_bytes(),
        "read the database": lambda: Path(os.environ["INTRUDER_DB"]).read_bytes(),
        "signal the worker": lambda: os.kill(int(os.environ["INTRUDER_PID"]), 0),
        "see outside processes": _outside_processes,
        "read a password from the environment": lambda: _refuse_unless(
            "PGPASSWORD" in os.environ, "not in its environment"
        ),
        "stay root": lambda: _refuse_unless(os.getuid() == 0, f"runs as uid {os.getuid()}"),
        "network": _connect,
        "write scratch": lambda: Path(os.environ["TMPDIR"], "scratch.txt").write_text("x"),
    }
    attempts = {}
    for name, action in tries.items():
        try:
            action()
            attempts[name] = "done"
        except OSError as exc:
            attempts[name] = f"refused: {exc.strerror}"
    (out_dir / "results.json").write_text(json.dumps({"results": {"attempts": attempts}}))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
