"""``circus import`` against its floor: copying the same files and parsing each header with
pydicom, in one process.

Run: ``.venv/bin/python benchmarks/import.py [--repeats 3] [--small 10000]``.

Two sets: a 300 x 512 x 512 int16 CT series (157 MB of voxels), and ``--small`` small files
(100 series of 64 x 64 slices). Each run imports into an empty home (its database already
created, as after ``circus up``), as a whole process; the floor is a whole process that copies
every file into a fresh folder and reads its header with ``pydicom.dcmread(...,
stop_before_pixels=True)``. One warm-up each (files in the page cache), then the median of
``--repeats`` runs. The last line starts with the ratio for the 300-slice series.
"""

from __future__ import annotations

import argparse
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
    home = root / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    env = {**os.environ, "CIRCUS_HOME": str(home)}
    return timed([str(BIN / "circus"), "import", str(folder)], env)


def run_floor(folder: Path, root: Path) -> float:
    target = root / "floor-copy"
    shutil.rmtree(target, ignore_errors=True)
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
            ours = statistics.median(run_ours(folder, template, root) for _ in range(args.repeats))
            floor = statistics.median(run_floor(folder, root) for _ in range(args.repeats))
            rows.append((name, count, ours, floor))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"medians of {args.repeats} runs after a warm-up; {os.cpu_count()} CPUs")
    print(f"{'set':28} {'circus import':>14} {'floor':>8} {'ratio':>7} {'files/s':>16}")
    for name, count, ours, floor in rows:
        rates = f"{count / ours:,.0f} / {count / floor:,.0f}"
        print(f"{name:28} {ours:13.2f}s {floor:7.2f}s {ours / floor:6.2f}x {rates:>16}")
    (big, _, big_ours, big_floor), (small, count, small_ours, small_floor) = rows
    print(
        f"{big_ours / big_floor:.2f}x the floor for the {big} (goal <= 1.5x); {small}: "
        f"{small_floor / small_ours:.0%} of the floor's files per second (goal >= 70 %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
