"""Runs inside a plug-in container (tests/worker/test_image_plugins.py): tries the ways out of
it and writes what happened to /circus/out/results.json."""

import json
import os
import socket
import sys
from pathlib import Path

IN, OUT = Path(sys.argv[1]), Path(sys.argv[2])
found: dict[str, object] = {}


def attempt(name: str, action: object) -> None:
    try:
        action()  # type: ignore[operator]
        found[name] = "done"
    except OSError as error:
        found[name] = f"refused: {error.strerror}"


def status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


attempt("write its input", lambda: (IN / "planted").write_text("x"))
attempt("delete its input", lambda: (IN / "0.mhd").unlink())
attempt("reach the network", lambda: socket.create_connection(("192.0.2.1", 80), timeout=3))
attempt("reach the host", lambda: socket.create_connection(("10.0.2.2", 4200), timeout=3))
found["interfaces"] = sorted(os.listdir("/sys/class/net"))
found["uid"] = os.getuid()
found["effective capabilities"] = status("CapEff")
found["bounding capabilities"] = status("CapBnd")
found["no new privileges"] = status("NoNewPrivs")
found["left by an earlier run"] = Path("/tmp/left-behind").exists()
Path("/tmp/left-behind").write_text("x")
(OUT / "results.json").write_text(json.dumps({"results": {"found": found}}))
print("done", flush=True)
