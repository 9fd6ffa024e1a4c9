"""Start a flow run in this machine's warm zygote (see :mod:`circus_tasks.worker.warm`).

The deployment's command. Standard library only, so that it starts in a few milliseconds.
Without a zygote to talk to, it runs the flow run the stock way (``python -m prefect.engine``).
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys


def _stock() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def main() -> int:
    """Hand stdin/stdout/stderr and the environment to the zygote; exit as the child does."""
    path = os.environ.get("CIRCUS_WARM_SOCKET")
    if not path:
        _stock()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)  # type: ignore[arg-type]
    except OSError:
        _stock()
    request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
    streams = array.array("i", [0, 1, 2]).tobytes()
    conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, streams)])

    def forward(signum: int, _frame: object) -> None:
        try:
            conn.sendall(f"{signal.Signals(signum).name.removeprefix('SIG')}\n".encode())
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    reader = conn.makefile("r")
    code = 1
    for line in reader:
        kind, _, value = line.strip().partition(" ")
        if kind == "exit":
            code = int(value)
            break
    return code


if __name__ == "__main__":
    sys.exit(main())
