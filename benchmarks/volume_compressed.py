"""The compressed part of ``benchmarks/volume.py``: ``circus volume`` against dcm2niix on
compressed copies of one 100 x 512 x 512 series, each transfer syntax pydicom or imagecodecs
can encode here.

Per syntax: the series is made and imported (so import stores its facts, as a site's series
would have them), then ``circus volume`` and dcm2niix each run as a whole process, one warm-up
each, then ``--repeats`` timed runs of each, taken in turns (so that a change in the machine's
load falls on both), median wall time; the output is checked voxel for voxel against pydicom's
decoding (for JPEG Baseline, its GDCM plug-in's, which equals libjpeg-turbo's here).

Peak memory. ``circus volume`` decodes a compressed series in two processes when two CPUs are
free: itself and one forked child. Three figures are printed, in MB:

- ``wait4``: the ``ru_maxrss`` that waiting for the command reports, which is the larger of
  the two processes' peaks, not their sum (what the native-series figures above show);
- ``sum``: the parent's peak plus the child's, an upper bound: the child starts as a copy of the
  parent and shares those pages with it (the interpreter, the modules), counted twice here;
- ``parent + child's own``: the parent's peak plus what the child added after the fork (its
  peak less the RSS the parent had when it forked), the figure the goal is judged on.

The sum and the child's own memory come from one more run of the same command line in a
process that wraps ``os.fork`` and ``os.waitpid`` to note the RSS at the fork and each child's
``ru_maxrss`` (:data:`MEMORY_SCRIPT`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.table import record
from benchmarks.volume import PYTHON, Figures, check_voxels, dcm2niix_argv, prepare, run_once

# Transfer syntax UIDs, spelled out so that the timing process does not import pydicom.
COMPRESSED = {
    "RLE Lossless": "1.2.840.10008.1.2.5",
    "JPEG Baseline (8 bit)": "1.2.840.10008.1.2.4.50",
    "JPEG Lossless SV1": "1.2.840.10008.1.2.4.70",
    "JPEG-LS Lossless": "1.2.840.10008.1.2.4.80",
    "Deflated": "1.2.840.10008.1.2.1.99",
    "JPEG 2000 Lossless": "1.2.840.10008.1.2.4.90",
}
GOALS = ("RLE Lossless", "JPEG Baseline (8 bit)", "JPEG Lossless SV1", "JPEG-LS Lossless")
"""The syntaxes issue 12 sets goals for; the others are printed for comparison."""
SLICES, SIZE = 100, 512

MEMORY_SCRIPT = """
import os, resource, sys
at_fork, children = [], []
real_fork, real_wait4 = os.fork, os.wait4
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
def fork():
    with open("/proc/self/statm") as statm:
        at_fork.append(int(statm.read().split()[1]) * page_kib)
    return real_fork()
def waitpid(pid, options):
    pid, status, usage = real_wait4(pid, options)
    children.append(usage.ru_maxrss)
    return pid, status
os.fork, os.waitpid = fork, waitpid
from circus_tasks.cli.launcher import main
code = main(sys.argv[1:])
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
added = sum(max(0, peak - rss) for peak, rss in zip(children, at_fork))
print("MEMORY", own, sum(children), added, len(children))
sys.exit(code)
"""


@dataclass
class Memory:
    """Peak memory of one ``circus volume`` run, in KiB (see the module's docstring)."""

    parent: int
    children: int
    children_own: int
    forks: int

    @property
    def total(self) -> int:
        return self.parent + self.children_own


def measure_memory(argv: list[str]) -> Memory:
    """Run ``circus`` with ``argv`` once in :data:`MEMORY_SCRIPT`'s process."""
    done = subprocess.run(
        [PYTHON, "-c", MEMORY_SCRIPT, *argv], check=True, capture_output=True, text=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("MEMORY "))
    parent, children, own, forks = (int(value) for value in line.split()[1:])
    return Memory(parent, children, own, forks)


def measure_pair(
    name: str, label: str, ours: list[str], peer: list[str], root: Path, repeats: int
) -> tuple[Figures, Figures | None]:
    """Warm up both, check our voxels (series ``label``), then time them in turns; the peer is
    ``None`` if it fails (dcm2niix does not read deflated files)."""
    log, out = root / "run.log", root / "out"
    run_once(ours, out, log)
    check_voxels(out / "0.raw", root, label)
    try:
        run_once(peer, out, log)
        peer_ok = True
    except SystemExit as exc:
        print(f"  {name}: dcm2niix failed ({str(exc).splitlines()[0]})")
        peer_ok = False
    ours_runs, peer_runs = [], []
    for _ in range(repeats):
        ours_runs.append(run_once(ours, out, log))
        if peer_ok:
            peer_runs.append(run_once(peer, out, log))
    figures = Figures(f"{name}: circus", ours_runs), Figures(f"{name}: dcm2niix", peer_runs)
    for f in figures[: 2 if peer_ok else 1]:
        print(f"  {f.tool:<32} {f.wall:7.3f} s  {f.peak_mb:7.1f} MB", flush=True)
    return figures[0], figures[1] if peer_ok else None


def run_compressed(args: argparse.Namespace, root: Path, circus: str, dcm2niix: str) -> list[str]:
    """Measure every syntax; return the summary lines to print last."""
    out = root / "out"
    print(
        f"\nCompressed copies: {SLICES} x {SIZE} x {SIZE} (int16; JPEG Baseline uint8), "
        f"circus volume (from the facts import stored) vs dcm2niix, median of {args.repeats} "
        "runs after one warm-up"
    )
    summary: list[str] = []
    for name, syntax in COMPRESSED.items():
        label = name.replace(" ", "-").replace("(", "").replace(")", "")
        series_uid, series_store = prepare(root, label, SLICES, SIZE, 3, syntax)
        volume_mb = SLICES * SIZE * SIZE * (1 if "Baseline" in name else 2) / 1e6
        argv = ["volume", series_uid, str(out)]
        peer_argv = dcm2niix_argv(dcm2niix, out, series_store)
        ours, peer = measure_pair(name, label, [circus, *argv], peer_argv, root, args.repeats)
        memory = measure_memory(argv)
        shutil.rmtree(series_store)
        if peer is None:
            continue
        ratio = ours.wall / peer.wall
        total_mb = memory.total * 1024 / 1e6
        memory_ratio = total_mb / volume_mb
        print(
            f"  {name}: peak memory (MB) wait4 {ours.peak_mb:.1f}, sum "
            f"{(memory.parent + memory.children) * 1024 / 1e6:.1f}, parent + child's own "
            f"{total_mb:.1f} ({memory.forks} child process{'es' if memory.forks != 1 else ''})"
        )
        line = (
            f"{name}: {ratio:.2f}x dcm2niix wall time (circus volume {ours.wall:.3f} s vs "
            f"dcm2niix {peer.wall:.3f} s), peak memory {memory_ratio:.2f}x the volume "
            f"({total_mb:.1f} MB for {volume_mb:.1f} MB)"
        )
        print(f"  {line}")
        if name in GOALS:
            summary.append(line)
            record(
                f"circus volume, {name} series ({SLICES} x {SIZE} x {SIZE})",
                f"{ours.wall:.3f} s",
                f"dcm2niix {peer.wall:.3f} s",
                f"{ratio:.2f}x",
                "<= 1.0x dcm2niix",
                ratio <= 1.0,
            )
            record(
                f"circus volume peak memory, {name} series (parent + child's own)",
                f"{total_mb:.1f} MB",
                f"volume {volume_mb:.1f} MB",
                f"{memory_ratio:.2f}x",
                "<= 1.5x the volume",
                memory_ratio <= 1.5,
            )
    return summary
