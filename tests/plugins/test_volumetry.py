"""Tests of plugins/volumetry/volumetry.py on phantoms whose volumes are known."""

from __future__ import annotations

import json
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
from circus_tasks.testing.phantom import (
    DEFAULT_BLOBS,
    DEFAULT_SHAPE,
    DEFAULT_SPACING_XYZ,
    blob_volume_mm3,
    body_mask,
    phantom_volume,
)
from tests.plugin_inputs import load_plugin_module, write_input

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "volumetry"
PLUGIN_FILE = PLUGIN_DIR / "volumetry.py"
VOXEL_MM3 = float(np.prod(DEFAULT_SPACING_XYZ))

BODY_TOLERANCE = 0.02
"""Body volume vs the painted body ellipse: within 2 %."""

DENSE_TOLERANCE = 0.10
"""Dense volume vs the analytic blob volumes (4/3 pi r^3): within 10 % (voxelization)."""


@pytest.fixture(scope="module")
def plugin() -> ModuleType:
    return load_plugin_module(PLUGIN_FILE, "volumetry_under_test")


def run_on(plugin: ModuleType, tmp_path: Path, volume: np.ndarray, **kwargs: Any) -> dict[str, Any]:
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    write_input(in_dir, 0, volume, kwargs.pop("spacing_xyz", DEFAULT_SPACING_XYZ), **kwargs)
    plugin.run(in_dir, out_dir)
    return load_results(out_dir)["results"]


def expected_body_ml(shape: tuple[int, int, int] = DEFAULT_SHAPE) -> float:
    return int(body_mask(shape).sum()) * VOXEL_MM3 / 1000.0


def test_body_and_dense_volumes(
    plugin: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_on(plugin, tmp_path, phantom_volume())

    assert results["bodyVolumeMl"] == pytest.approx(expected_body_ml(), rel=BODY_TOLERANCE)
    blobs_ml = sum(blob_volume_mm3(b, DEFAULT_SPACING_XYZ) for b in DEFAULT_BLOBS) / 1000.0
    assert results["denseVolumeMl"] == pytest.approx(blobs_ml, rel=DENSE_TOLERANCE)
    assert results["voxelVolumeMm3"] == pytest.approx(VOXEL_MM3, rel=1e-6)
    assert results["thresholdsHU"] == {"body": -500, "dense": 200}
    assert results["bodyVoxels"] == pytest.approx(body_mask(DEFAULT_SHAPE).sum(), rel=0.02)
    out = capsys.readouterr().out
    assert "Volume 0: 96 x 96 x 48 voxels" in out
    assert "Body (> -500 HU)" in out


def test_spacing_scales_the_volumes(plugin: ModuleType, tmp_path: Path) -> None:
    """Twice the slice spacing, same voxels: exactly twice the millilitres."""
    volume = phantom_volume(noise_sd=0)
    thin = run_on(plugin, tmp_path / "thin", volume)
    thick_spacing = (0.8, 0.8, 3.0)
    thick = run_on(plugin, tmp_path / "thick", volume, spacing_xyz=thick_spacing)
    assert thick["bodyVoxels"] == thin["bodyVoxels"]
    assert thick["bodyVolumeMl"] == pytest.approx(2 * thin["bodyVolumeMl"], rel=1e-3)
    assert thick["denseVolumeMl"] == pytest.approx(2 * thin["denseVolumeMl"], rel=1e-3)


def test_all_air_has_no_body(plugin: ModuleType, tmp_path: Path) -> None:
    air = phantom_volume(blobs=(), body_value=0)  # -1024 HU plus noise everywhere
    results = run_on(plugin, tmp_path, air)
    assert results["bodyVolumeMl"] == pytest.approx(0.0, abs=1e-3)
    assert results["denseVolumeMl"] == pytest.approx(0.0, abs=1e-3)
    assert (tmp_path / "out" / "preview.png").is_file()


def test_air_inside_the_body_counts_as_body(plugin: ModuleType, tmp_path: Path) -> None:
    """A 'lung' of air inside the body: the body volume is still the whole ellipse."""
    volume = phantom_volume(blobs=(), noise_sd=0)
    volume[:, 40:56, 30:45] = 0  # -1024 HU, fully enclosed in every slice
    results = run_on(plugin, tmp_path, volume)
    assert results["bodyVolumeMl"] == pytest.approx(expected_body_ml(), rel=BODY_TOLERANCE)


def test_objects_outside_the_body_are_ignored(plugin: ModuleType, tmp_path: Path) -> None:
    """A small dense object in the air (not touching the body) adds to neither volume."""
    volume = phantom_volume(blobs=(), noise_sd=0)
    volume[:, 0:3, 0:4] = 1024 + 1000
    results = run_on(plugin, tmp_path, volume)
    assert results["bodyVoxels"] == int(body_mask(DEFAULT_SHAPE).sum())  # exactly the ellipse
    assert results["bodyVolumeMl"] == pytest.approx(expected_body_ml(), abs=1e-3)
    assert results["denseVolumeMl"] == 0


def test_rescale_is_applied(plugin: ModuleType, tmp_path: Path) -> None:
    """Stored values halved and shifted, with the matching slope/intercept: same volumes."""
    hu = phantom_volume(noise_sd=0).astype(np.float64) - 1024
    stored = np.rint((hu + 2048) / 2).astype(np.int16)
    reference = run_on(plugin, tmp_path / "a", phantom_volume(noise_sd=0))
    rescaled = run_on(plugin, tmp_path / "b", stored, rescale=(2.0, -2048.0))
    assert rescaled["bodyVoxels"] == reference["bodyVoxels"]
    assert rescaled["denseVoxels"] == reference["denseVoxels"]


def test_preview_png(plugin: ModuleType, tmp_path: Path) -> None:
    run_on(plugin, tmp_path, phantom_volume(noise_sd=0))
    png = tmp_path / "out" / "preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.load()
        assert image.size == (96, 96)  # columns x rows
        pixels = np.asarray(image.convert("RGB"))
    assert tuple(pixels[0, 0]) == (0, 0, 0)  # air
    outline = np.all(pixels == (0, 255, 0), axis=2)
    assert outline.any()
    assert not outline[40:56, 40:56].any()  # the outline is at the edge, not inside
    # The largest blob is centred on the middle slice (z = 24) at row 40, column 35: red.
    red, green, _ = pixels[40, 35]
    assert red == 255 and green < 200


def test_missing_mhd_raises(plugin: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(FileNotFoundError, match="0.mhd"):
        plugin.run(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def test_runs_through_the_plugin_runner(tmp_path: Path) -> None:
    """The manifest is valid and the python runner ('volumetry:run') works end to end."""
    manifest = load_manifest(PLUGIN_DIR)
    assert manifest.plugin_id == "volumetry@1.0.0"
    assert manifest.runner.python == "volumetry:run"
    assert manifest.timeout == 300
    plugin = Plugin(plugin_id=manifest.plugin_id, path=PLUGIN_DIR, manifest=manifest)
    write_input(tmp_path / "in", 0, phantom_volume((16, 48, 48), blobs=()), DEFAULT_SPACING_XYZ)
    (tmp_path / "out").mkdir()
    log = tmp_path / "plugin-log.txt"
    run_plugin(plugin, tmp_path / "in", tmp_path / "out", log)
    assert load_results(tmp_path / "out")["results"]["bodyVolumeMl"] > 0
    assert "Wrote results.json" in log.read_text(encoding="utf-8")


def test_plugin_is_self_contained() -> None:
    assert "circus_tasks" not in PLUGIN_FILE.read_text(encoding="utf-8")
    manifest = json.loads((PLUGIN_DIR / "plugin.json").read_text(encoding="utf-8"))
    assert "-500 HU" in manifest["description"] and "200 HU" in manifest["description"]
