"""Tests of the example plug-in plugins/lesion-candidates/lesion_candidates.py on phantoms."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from circus_tasks.plugins.results import load_results
from circus_tasks.testing.phantom import (
    DEFAULT_BLOBS,
    DEFAULT_SPACING_XYZ,
    Blob,
    blob_volume_mm3,
    phantom_volume,
)
from tests.plugin_inputs import load_plugin_module
from tests.plugin_inputs import write_input as write_plugin_input

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "lesion-candidates"
PLUGIN_FILE = PLUGIN_DIR / "lesion_candidates.py"


@pytest.fixture(scope="module")
def plugin() -> ModuleType:
    return load_plugin_module(PLUGIN_FILE, "lesion_candidates_under_test")


def write_input(
    in_dir: Path,
    volume: np.ndarray,
    spacing_xyz: Sequence[float],
    *,
    intercept: float = -1024,
    slope: float = 1,
    attributes: bool = True,
) -> None:
    """Write volume 0 the way pre-processing does: 0.raw, 0.mhd and (optionally) 0.json."""
    rescale = (slope, intercept) if attributes else None
    write_plugin_input(in_dir, 0, volume.astype(np.int16), spacing_xyz, rescale)


def run_on(plugin: ModuleType, tmp_path: Path, volume: np.ndarray, **kwargs: Any) -> Path:
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    write_input(in_dir, volume, kwargs.pop("spacing_xyz", DEFAULT_SPACING_XYZ), **kwargs)
    out_dir.mkdir()
    plugin.run(in_dir, out_dir)
    return out_dir


def _closest(candidates: list[dict[str, Any]], blob: Blob) -> dict[str, Any]:
    cz, cy, cx = blob.center_zyx
    return min(
        candidates,
        key=lambda c: float(np.linalg.norm(np.subtract(c["location"], (cx, cy, cz)))),
    )


def test_one_candidate_per_blob_at_the_right_place(
    plugin: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = run_on(plugin, tmp_path, phantom_volume())
    candidates = load_results(out_dir)["results"]["lesionCandidates"]

    assert len(candidates) == len(DEFAULT_BLOBS)
    matched = {id(_closest(candidates, blob)) for blob in DEFAULT_BLOBS}
    assert len(matched) == len(DEFAULT_BLOBS), "each blob has its own candidate"
    for blob in DEFAULT_BLOBS:
        candidate = _closest(candidates, blob)
        cz, cy, cx = blob.center_zyx
        x, y, z = candidate["location"]
        assert max(abs(x - cx), abs(y - cy), abs(z - cz)) <= 1, (candidate, blob)
        assert candidate["volumeId"] == 0
        assert 0 <= candidate["confidence"] <= 1
        analytic = blob_volume_mm3(blob, DEFAULT_SPACING_XYZ)
        assert candidate["volumeSize"] == pytest.approx(analytic, rel=0.20)

    assert [c["rank"] for c in candidates] == [1, 2, 3]
    confidences = [c["confidence"] for c in candidates]
    assert confidences == sorted(confidences, reverse=True)
    assert "Found 3 candidate(s)" in capsys.readouterr().out


def test_results_json_display_options(plugin: ModuleType, tmp_path: Path) -> None:
    results = load_results(run_on(plugin, tmp_path, phantom_volume()))
    assert results["metadata"]["displayOptions"] == [
        {"volumeId": 0, "window": {"level": 40, "width": 400}}
    ]


def test_preview_png(plugin: ModuleType, tmp_path: Path) -> None:
    shape = (20, 64, 80)
    blob = Blob(center_zyx=(10.0, 30.0, 40.0), radius_mm=4.0, value=1500)
    out_dir = run_on(plugin, tmp_path, phantom_volume(shape, blobs=[blob]))
    png = out_dir / "preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == (80, 64)  # columns x rows
        pixels = np.asarray(image.convert("RGB"))
    assert tuple(pixels[30, 40]) == (255, 0, 0)  # marker on the candidate
    assert tuple(pixels[0, 0]) == (0, 0, 0)  # air
    assert tuple(pixels[30, 60]) != (0, 0, 0)  # body


def test_no_blobs_gives_empty_list(plugin: ModuleType, tmp_path: Path) -> None:
    out_dir = run_on(plugin, tmp_path, phantom_volume(blobs=()))
    assert load_results(out_dir)["results"]["lesionCandidates"] == []
    assert (out_dir / "preview.png").is_file()


def test_rescale_is_applied(plugin: ModuleType, tmp_path: Path) -> None:
    """Stored values shifted and halved, with a matching slope and intercept: same answer."""
    stored = phantom_volume(noise_sd=0).astype(np.float64)
    hu = stored - 1024
    shifted = np.rint((hu + 2048) / 2).astype(np.int16)
    out_dir = run_on(plugin, tmp_path, shifted, intercept=-2048, slope=2)
    assert len(load_results(out_dir)["results"]["lesionCandidates"]) == len(DEFAULT_BLOBS)


def test_per_slice_rescale(plugin: ModuleType, tmp_path: Path) -> None:
    volume = phantom_volume(noise_sd=0)
    in_dir = tmp_path / "in"
    write_input(in_dir, volume, DEFAULT_SPACING_XYZ)
    attributes = {
        "common": {"0028,1053": "1"},
        "unique": [{"0028,1052": "-1024"} for _ in range(volume.shape[0])],
    }
    (in_dir / "0.json").write_text(json.dumps(attributes), encoding="utf-8")
    plugin.run(in_dir, tmp_path / "out")
    candidates = load_results(tmp_path / "out")["results"]["lesionCandidates"]
    assert len(candidates) == len(DEFAULT_BLOBS)


def test_without_attributes_values_are_taken_as_hu(plugin: ModuleType, tmp_path: Path) -> None:
    """No 0.json: stored values are HU, so the whole body (1040) is one bright component."""
    out_dir = run_on(plugin, tmp_path, phantom_volume(blobs=()), attributes=False)
    assert len(load_results(out_dir)["results"]["lesionCandidates"]) == 1


def test_missing_mhd_raises(plugin: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(FileNotFoundError, match="0.mhd"):
        plugin.run(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def test_raw_size_mismatch_raises(plugin: ModuleType, tmp_path: Path) -> None:
    in_dir = tmp_path / "in"
    write_input(in_dir, phantom_volume((4, 16, 16), blobs=()), DEFAULT_SPACING_XYZ)
    (in_dir / "0.raw").write_bytes(b"\x00\x00" * 10)
    with pytest.raises(ValueError, match="needs 1024"):
        plugin.run(in_dir, tmp_path / "out")


def test_runs_as_a_script(tmp_path: Path) -> None:
    """The __main__ entry point: exit 0 with results, non-zero without 0.mhd."""
    write_input(tmp_path / "in", phantom_volume((12, 48, 48), blobs=()), DEFAULT_SPACING_XYZ)
    command = [sys.executable, str(PLUGIN_FILE), str(tmp_path / "in"), str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Volume 0: 48 x 48 x 12" in done.stdout
    load_results(tmp_path / "out")

    (tmp_path / "in" / "0.mhd").unlink()
    failed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert failed.returncode != 0
    assert "0.mhd" in failed.stderr


def test_plugin_does_not_import_circus_tasks() -> None:
    source = PLUGIN_FILE.read_text(encoding="utf-8")
    assert "circus_tasks" not in source


def test_manifest() -> None:
    manifest = json.loads((PLUGIN_DIR / "plugin.json").read_text(encoding="utf-8"))
    assert manifest["pluginName"] == "lesion-candidates"
    assert manifest["type"] == "CAD"
    assert manifest["runner"] == {"python": "lesion_candidates:run"}
    assert manifest["timeout"] == 300


@pytest.mark.parametrize("seed", [1, 2])
def test_off_grid_blobs(plugin: ModuleType, tmp_path: Path, seed: int) -> None:
    """Centres between voxels, other spacing: still one candidate each, within 1 voxel."""
    spacing = (0.7, 0.7, 2.0)
    blobs = [
        Blob(center_zyx=(12.4, 33.6, 30.3), radius_mm=6.0, value=1024 + 350),
        Blob(center_zyx=(20.7, 60.2, 64.5), radius_mm=4.2, value=1024 + 600),
    ]
    volume = phantom_volume((32, 96, 96), spacing, blobs, seed=seed)
    out_dir = run_on(plugin, tmp_path, volume, spacing_xyz=spacing)
    candidates = load_results(out_dir)["results"]["lesionCandidates"]
    assert len(candidates) == len(blobs)
    for blob in blobs:
        candidate = _closest(candidates, blob)
        cz, cy, cx = blob.center_zyx
        x, y, z = candidate["location"]
        assert max(abs(x - cx), abs(y - cy), abs(z - cz)) <= 1, (candidate, blob)
        analytic = blob_volume_mm3(blob, spacing)
        assert candidate["volumeSize"] == pytest.approx(analytic, rel=0.20)
