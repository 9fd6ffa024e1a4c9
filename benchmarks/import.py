"""``circus import`` against its floor: copying the same files and parsing each header with
pydicom, in one process.

Run: ``.venv/bin/python benchmarks/import.py [--repeats 3] [--small 10000]``.

Two sets: a 300 x 512 x 512 int16 CT series (157 MB of voxels), and ``--small`` small files
(100 series of 64 x 64 slices). Each run imports into an empty home of its own (its database
already created, as after ``circus up``), as a whole process; the floor is a whole process that
copies every file into a folder of its own and reads its header with ``pydicom.dcmread(...,
stop_before_pixels=True)``. One warm-up each (files in the page cache), then the median of
``--repeats`` runs, ours and the floor taking turns.

Nothing a run wrote is removed before the end: on a file system that holds back the inodes of
files deleted in the last minutes (ext4 without a journal scans past them to make a file), a
run after a deletion pays for it, by an amount that depends on where its files land; a real
import does not follow the removal of thousands of files. The last line starts with the ratio
for the 300-slice series; both goals are recorded for ``make bench`` (:mod:`benchmarks.table`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from benchmarks.table import record  # noqa: E402  (after the checkout is on the path)

FLOOR = """
import shutil, sys
from pathlib import Path
import pydicom
source, target = Path(sys.argv[1]), Path(sys.argv[2])
target.mkdir()
for path in sorted(p for p in source.rglob("*") if p.is_file()):
    copy = target / f"{path.parent.name}-{path.name}"
    shutil.copyfile(path, copy)
    pydicom.dcmread(copy, stop_before_pixels=True)
"""
"""The floor: copy each file, parse its header; one process, nothing stored."""

SERIES_GOAL = 1.5
"""The 300-slice series: our time at most this many times the floor's."""
SMALL_GOAL = 0.70
"""The small files: at least this share of the floor's files per second."""

_runs = itertools.count()


def make_sets(root: Path, small: int) -> dict[str, tuple[Path, int]]:
    """The two sets of files: name -> (folder, number of files)."""
    import numpy as np

    from benchmarks.volume import phantom
    from circus_tasks.testing.synthetic import write_series

    big = root / "ct-300"
    write_series(big, phantom(300, 512))
    many = root / "small"
    per_series = 100
    rng = np.random.default_rng(3)
    for index in range(max(1, small // per_series)):
        volume = rng.integers(-1000, 1000, (per_series, 64, 64), dtype=np.int16)
        write_series(many / f"s{index:03}", volume)
    count = sum(1 for p in many.rglob("*") if p.is_file())
    return {"300 x 512 x 512 series": (big, 300), f"{count:,} small files": (many, count)}


def empty_home(root: Path) -> Path:
    """A home whose database exists and holds nothing (made once, copied for each run)."""
    home = root / "empty-home"
    env = {**os.environ, "CIRCUS_HOME": str(home)}
    subprocess.run([str(BIN / "circus"), "series"], env=env, check=True, capture_output=True)
    return home


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall


def run_ours(folder: Path, template: Path, root: Path) -> float:
    home = root / f"home-{next(_runs)}"  # kept until the end (see the module's note)
    shutil.copytree(template, home)
    env = {**os.environ, "CIRCUS_HOME": str(home)}
    return timed([str(BIN / "circus"), "import", str(folder)], env)


def run_floor(folder: Path, root: Path) -> float:
    target = root / f"floor-{next(_runs)}"  # kept until the end (see the module's note)
    return timed([sys.executable, "-c", FLOOR, str(folder), str(target)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", type=int, default=10_000, help="how many small files")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="circus-import-bench-"))
    try:
        print("making the files ...", flush=True)
        sets = make_sets(root, args.small)
        template = empty_home(root)
        rows = []
        for name, (folder, count) in sets.items():
            run_ours(folder, template, root)  # warm-up: the page cache, the interpreter's
            run_floor(folder, root)
            ours_runs, floor_runs = [], []
            for _ in range(args.repeats):  # taking turns: a busy spell hits both
                ours_runs.append(run_ours(folder, template, root))
                floor_runs.append(run_floor(folder, root))
            rows.append((name, count, statistics.median(ours_runs), statistics.median(floor_runs)))
            print(
                f"{name}: ours {' '.join(f'{t:.2f}' for t in ours_runs)} s, "
                f"floor {' '.join(f'{t:.2f}' for t in floor_runs)} s",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"medians of {args.repeats} runs after a warm-up; {os.cpu_count()} CPUs; load {load}")
    print(f"{'set':28} {'circus import':>14} {'floor':>8} {'ratio':>7} {'files/s':>16}")
    for name, count, ours, floor in rows:
        rates = f"{count / ours:,.0f} / {count / floor:,.0f}"
        print(f"{name:28} {ours:13.2f}s {floor:7.2f}s {ours / floor:6.2f}x {rates:>16}")
    (big, _, big_ours, big_floor), (small, count, small_ours, small_floor) = rows
    series_ratio, share = big_ours / big_floor, small_floor / small_ours
    record(
        f"circus import, {big}",
        f"{big_ours:.2f} s",
        f"{big_floor:.2f} s (copy + pydicom header parse)",
        f"{series_ratio:.2f}x",
        f"<= {SERIES_GOAL}x the floor",
        series_ratio <= SERIES_GOAL,
    )
    record(
        f"circus import, {small}",
        f"{count / small_ours:,.0f} files/s",
        f"{count / small_floor:,.0f} files/s (copy + pydicom header parse)",
        f"{share:.0%}",
        f"% of the floor's files/s >= {SMALL_GOAL:.0%}",
        share >= SMALL_GOAL,
    )
    print(
        f"{series_ratio:.2f}x the floor for the {big} (goal <= {SERIES_GOAL}x); {small}: "
        f"{share:.0%} of the floor's files per second (goal >= {SMALL_GOAL:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
