"""Pre-processing speed: ``circus volume`` against dcm2niix, SimpleITK and a naive pydicom stack.

Run from the checkout, after ``make test`` has built ``.venv`` (with the ``bench`` extras)::

    .venv/bin/python benchmarks/volume.py [--repeats 3] [--only compressed]

It writes a CT series of 300 slices of 512 x 512 int16 (150 MB) into a temporary folder,
imports it into a temporary CIRCUS_HOME and times each tool as a whole process (a fresh
interpreter each time): one warm-up run each, then ``--repeats`` runs, median wall time, peak
memory from the process's own rusage (``ru_maxrss``). The DICOM files and the outputs stay in
the page cache (caches cannot be dropped here), so the figures are for warm files. Then it times
``circus volume`` on a 2,000-slice series of 256 x 256 and, last, on compressed copies of a
100-slice series (every transfer syntax pydicom or imagecodecs can encode here, see
``benchmarks/volume_compressed.py``; ``--only compressed`` runs that part alone), checking every
output voxel. The last lines printed start with the ratios to dcm2niix: the native series', then
one per compressed syntax with a goal (RLE, JPEG Baseline, JPEG Lossless, JPEG-LS), each with
its peak memory against the volume; each of those is recorded as two goal rows for ``make
bench`` (:mod:`benchmarks.table`). Everything it writes is removed at the end.

The timing process itself imports nothing heavy: a child's ``ru_maxrss`` starts from the RSS of
the process that spawned it, so series are made, imported and checked in helper processes
(``volume.py --helper ...``) and the spawning process stays at about 10 MB, the floor of every
peak-memory figure below. ``circus volume`` shares a long series with one forked child when a
second CPU is there; the ``ru_maxrss`` that ``wait4`` reports is then the larger of the two
processes' peaks, not their sum (``benchmarks/README.md`` gives both).
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYTHON = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks.volume_compressed, benchmarks.table

SIMPLEITK_SCRIPT = """
import sys, SimpleITK as sitk
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(sys.argv[1]))
sitk.WriteImage(reader.Execute(), sys.argv[2] + "/0.mhd")
"""

PYDICOM_SCRIPT = """
import sys, numpy as np, pydicom
from pathlib import Path
slices = [pydicom.dcmread(p) for p in sorted(Path(sys.argv[1]).iterdir())]
slices.sort(key=lambda ds: int(ds.InstanceNumber))
np.stack([ds.pixel_array for ds in slices]).tofile(sys.argv[2] + "/0.raw")
"""


@dataclass
class Run:
    wall: float
    peak_kib: int


@dataclass
class Figures:
    tool: str
    runs: list[Run]

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def peak_mb(self) -> float:
        return max(r.peak_kib for r in self.runs) * 1024 / 1e6


def run_once(
    argv: Sequence[str], out_dir: Path, log: Path, env: dict[str, str] | None = None
) -> Run:
    """Start ``argv`` as a new process (environment ``env``, default this one's), wait for it,
    return its wall time and peak RSS."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    with log.open("wb") as sink:
        start = time.perf_counter()
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            dict(os.environ) if env is None else env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, sink.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, sink.fileno(), 2),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed ({code}):\n{log.read_text()[-2000:]}")
    return Run(wall, usage.ru_maxrss)


def measure(tool: str, argv: Sequence[str], out_dir: Path, repeats: int, work: Path) -> Figures:
    log = work / "run.log"
    run_once(argv, out_dir, log)  # warm-up: files in the page cache, interpreter caches built
    figures = Figures(tool, [run_once(argv, out_dir, log) for _ in range(repeats)])
    print(f"  {tool:<22} {figures.wall:7.3f} s  {figures.peak_mb:7.1f} MB", flush=True)
    return figures


def phantom(slices: int, size: int, seed: int = 7) -> np.ndarray:
    """A CT-like int16 volume: air around an elliptic body with noise and a moving blob."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    volume = np.empty((slices, size, size), np.int16)
    for index in range(slices):
        blob = (x - 0.3 * np.sin(index / 20)) ** 2 + (y - 0.1) ** 2 < 0.02
        plane = np.where(body, 40, -1000) + 300 * blob + rng.normal(0, 12, (size, size))
        volume[index] = plane.astype(np.int16)
    return volume


def import_series(folder: Path) -> tuple[str, Path]:
    """Import a folder; return the series UID and the store folder that holds its files."""
    from circus_tasks.db.engine import session_scope
    from circus_tasks.store.importer import import_dicom
    from circus_tasks.store.series import series_images

    report = import_dicom(folder)
    if report.problems:
        raise SystemExit(f"import failed: {report.problems[:3]}")
    (uid,) = report.series_uids
    with session_scope() as session:
        paths = {Path(i.path).parent for i in series_images(uid, session=session)}
    (store,) = paths
    return uid, store


def recompress(folder: Path, target: Path, syntax: str) -> None:
    """Copy a native series with its pixel data compressed by pydicom's encoders."""
    import pydicom

    target.mkdir(parents=True)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        ds.compress(syntax, generate_instance_uid=False)
        ds.save_as(target / path.name, enforce_file_format=True)


def helper_prepare(root: Path, name: str, slices: int, size: int, seed: int, syntax: str) -> None:
    """Make a series (``syntax``: a transfer syntax UID or "native"), import it, keep the
    expected voxels as ``root/name.npy`` and print the series UID and its store folder."""
    import numpy as np
    from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

    from circus_tasks.testing.synthetic import write_series

    volume = phantom(slices, size, seed)
    folder = root / name
    if syntax == "native":
        write_series(folder, volume)
    elif syntax in (RLELossless, DeflatedExplicitVRLittleEndian, JPEG_LOSSLESS_SV1):
        write_series(folder, volume, transfer_syntax=syntax)
    elif syntax == JPEG_BASELINE:  # 8 bits per sample: a window of the CT values
        volume = np.clip((volume.astype(np.int32) + 1000) // 8, 0, 255).astype(np.uint8)
        write_series(folder, volume, transfer_syntax=syntax)
    else:
        write_series(root / f"{name}-native", volume)
        recompress(root / f"{name}-native", folder, syntax)
        shutil.rmtree(root / f"{name}-native")
    if syntax == JPEG_BASELINE:  # lossy: the expected voxels are pydicom's own decoding
        import pydicom

        volume = np.stack([pydicom.dcmread(p).pixel_array for p in sorted(folder.iterdir())])
    np.save(root / f"{name}.npy", volume)
    uid, store = import_series(folder)
    shutil.rmtree(folder)
    print(uid, store)


def measure_import(tool: str, argv: Sequence[str], root: Path, repeats: int) -> Figures:
    """An import command (``argv``, the folder last) run into a new, empty CIRCUS_HOME each
    time, as a whole process: one warm-up, then ``repeats`` runs."""
    runs = []
    for attempt in range(repeats + 1):
        home = root / f"import-home-{attempt}"
        env = {**os.environ, "CIRCUS_HOME": str(home)}
        run = run_once(argv, root / "import-out", root / "import.log", env)
        if attempt:
            runs.append(run)
        shutil.rmtree(home)
    figures = Figures(tool, runs)
    print(f"  {figures.tool:<22} {figures.wall:7.3f} s  {figures.peak_mb:7.1f} MB", flush=True)
    return figures


def helper_check(raw: Path, expected: Path) -> None:
    """Exit non-zero unless the raw file holds exactly the expected voxels."""
    import numpy as np

    want = np.load(expected, mmap_mode="r")
    actual = np.memmap(raw, dtype=want.dtype.newbyteorder("<"), mode="r", shape=want.shape)
    if not np.array_equal(actual, want):
        raise SystemExit(f"{raw}: the written voxels differ from the stored ones")


def helper(*args: str) -> list[str]:
    """Run one of this script's helpers in a new process; return what it printed."""
    done = subprocess.run(
        [PYTHON, __file__, "--helper", *args], check=True, capture_output=True, text=True
    )
    return done.stdout.split()


def prepare(
    root: Path, name: str, slices: int, size: int, seed: int, syntax: str = "native"
) -> tuple[str, Path]:
    uid, store = helper("prepare", str(root), name, str(slices), str(size), str(seed), syntax)
    return uid, Path(store)


def check_voxels(raw: Path, root: Path, name: str) -> None:
    helper("check", str(raw), str(root / f"{name}.npy"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tool (median)")
    parser.add_argument("--slices", type=int, default=300, help="slices of the main series")
    parser.add_argument("--big-slices", type=int, default=2000, help="slices of the long series")
    parser.add_argument(
        "--only",
        choices=("all", "compressed"),
        default="all",
        help="'compressed': only the compressed copies against dcm2niix (a few minutes)",
    )
    args = parser.parse_args(argv)
    dcm2niix = shutil.which("dcm2niix", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if dcm2niix is None:
        raise SystemExit("dcm2niix is missing: run `make test` (or pip install -e '.[bench]')")
    circus = str(BIN / "circus")

    root = Path(tempfile.mkdtemp(prefix="circus-volume-bench-"))
    try:
        os.environ["CIRCUS_HOME"] = str(root / "home")
        os.environ.pop("CIRCUS_DATABASE_URL", None)
        from benchmarks.volume_compressed import run_compressed

        native = run(args, root, circus, dcm2niix) if args.only == "all" else None
        compressed = run_compressed(args, root, circus, dcm2niix)
        print()
        for line in ([native] if native else []) + compressed:
            print(line, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Transfer syntax UIDs, spelled out so that the timing process does not import pydicom.
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
"""pydicom has no encoder for these two: ``write_series`` encodes them with imagecodecs (process
14 lossless through liblj92, baseline through libjpeg-turbo) and wraps the frames with
pydicom's ``encapsulate``; pydicom decodes them with its GDCM plug-in."""


def dcm2niix_argv(dcm2niix: str, out: Path, folder: Path) -> list[str]:
    return [dcm2niix, "-z", "n", "-b", "n", "-f", "out", "-o", str(out), str(folder)]


def run(args: argparse.Namespace, root: Path, circus: str, dcm2niix: str) -> str:
    """The native series, import and the long series; return the summary line."""
    out = root / "out"
    started = time.perf_counter()
    uid, store = prepare(root, "ct", args.slices, 512, 7)
    volume_bytes = args.slices * 512 * 512 * 2
    print(
        f"Series: {args.slices} x 512 x 512 int16, {volume_bytes / 1e6:.0f} MB of voxels "
        f"(made and imported in {time.perf_counter() - started:.0f} s); "
        f"{os.cpu_count()} CPUs; median of {args.repeats} runs after one warm-up."
    )
    print(f"  {'tool':<22} {'wall':>9}  {'peak RSS':>10}")
    files = [str(path) for path in sorted(store.iterdir())]
    tools: dict[str, list[str]] = {
        "circus volume": [circus, "volume", uid, str(out)],
        "dcm2niix": dcm2niix_argv(dcm2niix, out, store),
        "SimpleITK series": [PYTHON, "-c", SIMPLEITK_SCRIPT, str(store), str(out)],
        "pydicom naive stack": [PYTHON, "-c", PYDICOM_SCRIPT, str(store), str(out)],
        "cat > /dev/null": ["/bin/sh", "-c", 'exec cat "$@" > /dev/null', "cat", *files],
    }
    figures: dict[str, Figures] = {}
    for tool, argv in tools.items():
        figures[tool] = measure(tool, argv, out, args.repeats, root)
        if tool == "circus volume":
            check_voxels(out / "0.raw", root, "ct")
    ours, peer = figures["circus volume"], figures["dcm2niix"]
    for tool, f in figures.items():
        if tool != "circus volume":
            print(f"  circus volume / {tool}: {ours.wall / f.wall:.2f}x wall time")
    parsing = measure(
        "circus volume, parsing",  # --include-private: the stored facts do not apply
        [circus, "volume", uid, str(out), "--include-private"],
        out,
        args.repeats,
        root,
    )
    print(
        f"  circus volume --include-private (every header parsed, as for compressed series "
        f"or changed files): {parsing.wall / peer.wall:.2f}x dcm2niix"
    )
    in_process, in_process_parsing = measure_in_process(uid, out, root)
    print(
        f"  write_volume alone (already-imported Python, as in the pre-processing task): "
        f"{in_process:.3f} s = {in_process / peer.wall:.2f}x dcm2niix with the stored facts, "
        f"{in_process_parsing:.3f} s = {in_process_parsing / peer.wall:.2f}x parsing"
    )

    print("\nImport, once per series (the headers are parsed there, and their facts stored)")
    imported = measure_import("circus import", [circus, "import", str(store)], root, args.repeats)
    first_use = imported.wall + ours.wall
    print(
        f"  first use (circus import + circus volume): {first_use:.2f} s = "
        f"{first_use / peer.wall:.2f}x dcm2niix"
    )

    print(f"\nLong series: {args.big_slices} x 256 x 256 int16")
    big_uid, _ = prepare(root, "long", args.big_slices, 256, 5)
    big_bytes = args.big_slices * 256 * 256 * 2
    long_run = measure("circus volume (long)", [circus, "volume", big_uid, str(out)], out, 1, root)
    check_voxels(out / "0.raw", root, "long")
    print(
        f"  peak memory {long_run.peak_mb:.0f} MB for {big_bytes / 1e6:.0f} MB of output "
        f"({long_run.peak_mb * 1e6 / big_bytes:.2f}x)"
    )
    shutil.rmtree(out)

    return (
        f"{ours.wall / peer.wall:.2f}x dcm2niix wall time (circus volume {ours.wall:.2f} s vs "
        f"dcm2niix {peer.wall:.2f} s), peak memory {ours.peak_mb * 1e6 / volume_bytes:.2f}x "
        f"volume bytes (native {args.slices}-slice series)"
    )


def measure_in_process(uid: str, out: Path, root: Path) -> tuple[float, float]:
    """``write_volume`` timed in a fresh interpreter that has already imported what it needs,
    in one process, as the pre-processing task runs it (``circus volume`` may use two): with
    the stored facts, as the task passes them, and without (every header parsed). Medians of
    three runs each."""
    script = f"""
import sys, time
from pathlib import Path
import circus_tasks.volume.parsed
from circus_tasks.cli.volume import series_slices
from circus_tasks.volume.writer import write_volume
files, stored, _ = series_slices({uid!r})
for facts in (stored, None):
    times = []
    for run in range(3):
        start = time.perf_counter()
        write_volume(files, Path({str(out)!r}) / f"{{facts is None}}{{run}}", 0, stored=facts)
        times.append(time.perf_counter() - start)
    print(sorted(times)[1])
"""
    log = root / "in-process.log"
    run_once([PYTHON, "-c", script], out, log)
    with_facts, parsing = log.read_text().split()[-2:]
    return float(with_facts), float(parsing)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--helper"]:
        name, *rest = sys.argv[2:]
        if name == "prepare":
            root_, series_name, slices_, size_, seed_, syntax_ = rest
            helper_prepare(Path(root_), series_name, int(slices_), int(size_), int(seed_), syntax_)
        else:
            helper_check(Path(rest[0]), Path(rest[1]))
    else:
        main()
