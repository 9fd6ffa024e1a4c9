"""Test plug-in: tries to escape its sandbox and reports each attempt in results.json.

argv: IN OUT; the environment variable INTRUDER_PORT names a port listening on the loopback.
"""

import json
import os
import socket
import sys
from pathlib import Path

in_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
attempts = {}


def attempt(name, action):
    try:
        action()
        attempts[name] = "done"
    except OSError as exc:
        attempts[name] = f"refused: {exc.strerror}"


attempt("write input", lambda: (in_dir / "0.raw").write_bytes(b"overwritten"))
attempt("new file in input", lambda: (in_dir / "new.txt").write_text("x"))
attempt("write beside output", lambda: (out_dir / ".." / "escaped.txt").write_text("x"))
attempt("write /tmp", lambda: Path("/tmp/circus-intruder-was-here").write_text("x"))
attempt("write scratch", lambda: Path(os.environ["TMPDIR"], "scratch.txt").write_text("x"))


def connect():
    with socket.create_connection(("127.0.0.1", int(os.environ["INTRUDER_PORT"])), timeout=3):
        pass


attempt("network", connect)
(out_dir / "results.json").write_text(json.dumps({"results": {"attempts": attempts}}))
