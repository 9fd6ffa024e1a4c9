"""``make bench``: every benchmark, one after another, then one table of their goals.

Each benchmark runs as its own process with ``CIRCUS_BENCH_TABLE`` naming a file; after
measuring, it appends one row per goal (:mod:`benchmarks.table`): what is measured, ours, the
peer or floor measured in the same run, the ratio, the goal, met or not. A benchmark's whole
output goes to ``LOGS/NAME.log``; its last lines are shown as it ends. A benchmark that fails
adds a row that says so.

Run: ``.venv/bin/python benchmarks/run_all.py [--only volume import ...] [--readme]``;
``--readme`` writes the table and this machine into ``benchmarks/README.md`` (between its
``bench-table`` markers), replacing the last ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHMARKS = {
    "overhead": "per-job cost and submit-to-processing against Prefect's floor",
    "import": "circus import against copying and parsing the files",
    "volume": "pre-processing (plug-in input volumes) against dcm2niix",
    "scale": "submission against Prefect's bulk floor, queue depth",
    "search": "search with 1,000,000 jobs",
    "batch": "batch planning and registration",
}
BEGIN, END = "<!-- bench-table -->", "<!-- /bench-table -->"


def machine() -> str:
    """One line on what the figures were measured on."""
    from importlib.metadata import version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        int(line.split()[1]) // (1024 * 1024)
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    packages = ", ".join(f"{name} {version(name)}" for name in ("prefect", "pydicom", "numpy"))
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {packages}; {datetime.now():%Y-%m-%d %H:%M}"
    )


def run(name: str, table: Path, logs: Path) -> None:
    """Run one benchmark; its output goes to its log, its rows to ``table``."""
    log = logs / f"{name}.log"
    print(f"== {name}: {BENCHMARKS[name]} (log: {log})", flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py")],
            cwd=ROOT,
            env={**os.environ, "CIRCUS_BENCH_TABLE": str(table)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    tail = log.read_text(errors="replace").splitlines()[-3:]
    for line in tail:
        print(f"   {line}")
    print(f"   ({time.monotonic() - started:.0f} s, exit {done.returncode})", flush=True)
    if done.returncode != 0:
        row = {
            "measure": f"{name}.py",
            "ours": "failed",
            "yardstick": "",
            "ratio": "",
            "goal": f"see {log}",
            "met": False,
        }
        with table.open("a") as rows:
            rows.write(json.dumps(row) + "\n")


def markdown(rows: list[dict[str, object]]) -> str:
    """The table, as Markdown (readable as it is in a terminal)."""
    head = ["measure", "ours", "peer or floor", "ratio", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        met = "**met**" if row["met"] else "not met"
        cells = [str(row[k]) for k in ("measure", "ours", "yardstick", "ratio", "goal")]
        lines.append("| " + " | ".join([*cells, met]) + " |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    """Put ``text`` between the README's markers."""
    readme = HERE / "README.md"
    page = readme.read_text()
    before, _, rest = page.partition(BEGIN)
    _, found, after = rest.partition(END)
    if not found:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} markers")
    readme.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="these only")
    parser.add_argument("--readme", action="store_true", help="write the table to README.md")
    parser.add_argument("--logs", type=Path, help="folder for the logs (default: a new one)")
    args = parser.parse_args()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="circus-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    table = logs / "table.jsonl"
    table.unlink(missing_ok=True)
    for name in args.only or list(BENCHMARKS):
        run(name, table, logs)
    rows = [json.loads(line) for line in table.read_text().splitlines()] if table.exists() else []
    text = f"Machine: {machine()}.\n\n{markdown(rows)}"
    print()
    print(text)
    met = sum(bool(row["met"]) for row in rows)
    print(f"\n{met} of {len(rows)} goals met; logs in {logs}")
    if args.readme:
        write_readme(text)
        print(f"written to {HERE / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
