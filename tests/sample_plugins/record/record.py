"""Test plug-in: records its start and end time and the volumes it was given.

Set RECORD_SECONDS in the environment of the worker to make it last longer (default 0.5 s).
"""

import json
import os
import time
from pathlib import Path


def run(in_dir: Path, out_dir: Path) -> None:
    started = time.time()
    time.sleep(float(os.environ.get("RECORD_SECONDS", "0.5")))
    volumes = sorted(p.name for p in in_dir.glob("*.mhd"))
    results = {
        "results": {"startedAt": started, "endedAt": time.time(), "volumes": volumes},
    }
    (out_dir / "results.json").write_text(json.dumps(results))
