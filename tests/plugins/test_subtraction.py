"""Tests of plugins/subtraction/subtraction.py: a blob that appears between two time points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from circus_tasks.plugins.launch import run_plugin
from circus_tasks.plugins.manifest import load_manifest
from circus_tasks.plugins.registry import Plugin
from circus_tasks.plugins.results import load_results
from circus_tasks.testing.phantom import DEFAULT_SPACING_XYZ, Blob, blob_volume_mm3, phantom_volume
from tests.plugin_inputs import load_plugin_module, write_input

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "subtraction"
PLUGIN_FILE = PLUGIN_DIR / "subtraction.py"

NEW_BLOB = Blob(center_zyx=(20.0, 45.0, 50.0), radius_mm=6.0, value=1024 + 400)
"""The lesion that appears at time point 1: +384 HU over the 16 HU body."""

VOLUME_TOLERANCE = 0.15
"""New dense volume vs the blob's analytic volume: within 15 %."""

LOCATION_TOLERANCE_VOXELS = 1


@pytest.fixture(scope="module")
def plugin() -> ModuleType:
    return load_plugin_module(PLUGIN_FILE, "subtraction_under_test")


def write_pair(
    in_dir: Path,
    earlier: np.ndarray,
    later: np.ndarray,
    *,
    later_rescale: tuple[float, float] = (1.0, -1024.0),
    later_spacing: tuple[float, float, float] = DEFAULT_SPACING_XYZ,
) -> None:
    write_input(in_dir, 0, earlier, DEFAULT_SPACING_XYZ)
    write_input(in_dir, 1, later, later_spacing, later_rescale)


def run_on(
    plugin: ModuleType, tmp_path: Path, earlier: np.ndarray, later: np.ndarray, **kwargs: Any
) -> dict[str, Any]:
    write_pair(tmp_path / "in", earlier, later, **kwargs)
    plugin.run(tmp_path / "in", tmp_path / "out")
    return load_results(tmp_path / "out")["results"]


@pytest.mark.parametrize(("seed_earlier", "seed_later"), [(0, 0), (1, 2)])
def test_new_blob_is_found(
    plugin: ModuleType, tmp_path: Path, seed_earlier: int, seed_later: int
) -> None:
    """Same noise (0, 0) or independent noise (1, 2): the new blob's volume and place."""
    earlier = phantom_volume(blobs=(), seed=seed_earlier)
    later = phantom_volume(blobs=[NEW_BLOB], seed=seed_later)
    results = run_on(plugin, tmp_path, earlier, later)

    blob_ml = blob_volume_mm3(NEW_BLOB, DEFAULT_SPACING_XYZ) / 1000.0
    assert results["newDenseVolumeMl"] == pytest.approx(blob_ml, rel=VOLUME_TOLERANCE)
    [candidate] = results["lesionCandidates"]
    assert candidate["volumeId"] == 1
    assert candidate["rank"] == 1
    assert 0 < candidate["confidence"] <= 1
    cz, cy, cx = NEW_BLOB.center_zyx
    x, y, z = candidate["location"]
    assert max(abs(x - cx), abs(y - cy), abs(z - cz)) <= LOCATION_TOLERANCE_VOXELS
    assert candidate["volumeSize"] == pytest.approx(blob_ml * 1000, rel=VOLUME_TOLERANCE)
    # Mean |difference|: the blob's rise spread over the volume, plus noise if it differs.
    blob_share = 384.0 * blob_ml * 1000 / (earlier.size * float(np.prod(DEFAULT_SPACING_XYZ)))
    if seed_earlier == seed_later:
        assert results["meanAbsDifferenceHU"] == pytest.approx(blob_share, rel=VOLUME_TOLERANCE)
    else:
        # Difference of two N(0, 8) noises: mean |d| = 8 * sqrt(2) * sqrt(2 / pi) = 9.03 HU.
        assert results["meanAbsDifferenceHU"] == pytest.approx(9.03 + blob_share, rel=0.05)


def test_identical_inputs_give_nothing(plugin: ModuleType, tmp_path: Path) -> None:
    volume = phantom_volume()
    results = run_on(plugin, tmp_path, volume, volume)
    assert results["newDenseVolumeMl"] == 0
    assert results["meanAbsDifferenceHU"] == 0
    assert results["newRegions"] == 0
    assert results["lesionCandidates"] == []


def test_each_series_has_its_own_rescale(plugin: ModuleType, tmp_path: Path) -> None:
    """Time point 1 stored halved and shifted (slope 2, intercept -2048): same answer."""
    earlier = phantom_volume(blobs=(), noise_sd=0)
    hu_later = phantom_volume(blobs=[NEW_BLOB], noise_sd=0).astype(np.float64) - 1024
    later = np.rint((hu_later + 2048) / 2).astype(np.int16)
    results = run_on(plugin, tmp_path, earlier, later, later_rescale=(2.0, -2048.0))
    blob_ml = blob_volume_mm3(NEW_BLOB, DEFAULT_SPACING_XYZ) / 1000.0
    assert results["newDenseVolumeMl"] == pytest.approx(blob_ml, rel=VOLUME_TOLERANCE)
    assert len(results["lesionCandidates"]) == 1


def test_preview_is_the_mip_of_the_rise(plugin: ModuleType, tmp_path: Path) -> None:
    earlier = phantom_volume(blobs=(), noise_sd=0)
    later = phantom_volume(blobs=[NEW_BLOB], noise_sd=0)
    run_on(plugin, tmp_path, earlier, later)
    with Image.open(tmp_path / "out" / "preview.png") as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == (96, 96)
        pixels = np.asarray(image.convert("RGB"))
    gray = round(384 * 255 / 500)
    assert tuple(pixels[45, 50]) == (gray, gray, gray)  # the blob's centre column
    assert tuple(pixels[10, 10]) == (0, 0, 0)  # no change
    assert tuple(pixels[45, 55]) == (255, 0, 0)  # the ring, 5 pixels right of the centre


def test_missing_second_series_raises(plugin: ModuleType, tmp_path: Path) -> None:
    write_input(tmp_path / "in", 0, phantom_volume((8, 32, 32), blobs=()), DEFAULT_SPACING_XYZ)
    with pytest.raises(FileNotFoundError, match=r"1\.mhd"):
        plugin.run(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def test_mismatched_shapes_raise(plugin: ModuleType, tmp_path: Path) -> None:
    earlier = phantom_volume((8, 32, 32), blobs=())
    later = phantom_volume((9, 32, 32), blobs=())
    write_pair(tmp_path / "in", earlier, later)
    with pytest.raises(ValueError, match="32 x 32 x 8 .* 32 x 32 x 9.*same size"):
        plugin.run(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def test_mismatched_spacing_raises(plugin: ModuleType, tmp_path: Path) -> None:
    volume = phantom_volume((8, 32, 32), blobs=())
    write_pair(tmp_path / "in", volume, volume, later_spacing=(0.8, 0.8, 3.0))
    with pytest.raises(ValueError, match="same voxel spacing"):
        plugin.run(tmp_path / "in", tmp_path / "out")


def test_script_exits_non_zero_without_second_series(tmp_path: Path) -> None:
    write_input(tmp_path / "in", 0, phantom_volume((8, 32, 32), blobs=()), DEFAULT_SPACING_XYZ)
    command = [sys.executable, str(PLUGIN_FILE), str(tmp_path / "in"), str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0
    assert "1.mhd not found" in done.stderr


def test_runs_through_the_plugin_runner(tmp_path: Path) -> None:
    manifest = load_manifest(PLUGIN_DIR)
    assert manifest.plugin_id == "subtraction@1.0.0"
    assert manifest.runner.python == "subtraction:run"
    assert manifest.timeout == 300
    plugin = Plugin(plugin_id=manifest.plugin_id, path=PLUGIN_DIR, manifest=manifest)
    shape = (16, 64, 64)
    blob = Blob(center_zyx=(8.0, 30.0, 30.0), radius_mm=4.0, value=1024 + 500)
    write_pair(
        tmp_path / "in", phantom_volume(shape, blobs=()), phantom_volume(shape, blobs=[blob])
    )
    (tmp_path / "out").mkdir()
    run_plugin(plugin, tmp_path / "in", tmp_path / "out", tmp_path / "plugin-log.txt")
    [candidate] = load_results(tmp_path / "out")["results"]["lesionCandidates"]
    assert candidate["location"] == [30, 30, 8]


def test_plugin_is_self_contained() -> None:
    assert "circus_tasks" not in PLUGIN_FILE.read_text(encoding="utf-8")
