"""The rows of the table ``make bench`` prints: one per goal, written by each benchmark.

A benchmark calls :func:`record` once per goal after it has measured; when ``make bench``
(``benchmarks/run_all.py``) runs it, the environment names a file and each row is appended to
it as a JSON line. Run by hand, a benchmark records nothing and prints as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TABLE_ENV = "CIRCUS_BENCH_TABLE"


def record(
    measure: str,
    ours: str,
    yardstick: str,
    ratio: str,
    goal: str,
    met: bool,
) -> None:
    """One row: what is measured, our figure, the peer's or floor's figure (same run), the
    ratio between them as printed, the goal, and whether it is met."""
    target = os.environ.get(TABLE_ENV)
    if not target:
        return
    row = {
        "measure": measure,
        "ours": ours,
        "yardstick": yardstick,
        "ratio": ratio,
        "goal": goal,
        "met": bool(met),
    }
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
