"""Tests of plugins/hu-histogram: a standard-library program run through the command runner."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from circus_tasks.plugins.launch import run_plugin
from circus_tasks.plugins.manifest import load_manifest
from circus_tasks.plugins.registry import Plugin
from circus_tasks.plugins.results import load_results
from tests.plugin_inputs import write_input

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "hu-histogram"
PLUGIN_FILE = PLUGIN_DIR / "hu_histogram.py"
SPACING = (0.7, 0.7, 2.0)
BIN_STARTS = list(range(-1000, 2000, 100))


def run_command(in_dir: Path, out_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the plug-in as the command runner does: manifest command, cwd = plug-in folder."""
    command = load_manifest(PLUGIN_DIR).runner.command
    assert command is not None
    arguments = [a.replace("{in}", str(in_dir)).replace("{out}", str(out_dir)) for a in command]
    return subprocess.run(
        arguments, cwd=PLUGIN_DIR, capture_output=True, text=True, check=False, timeout=120
    )


def histogram_of(tmp_path: Path, volume: np.ndarray, **kwargs: Any) -> dict[str, Any]:
    write_input(tmp_path / "in", 0, volume, SPACING, **kwargs)
    done = run_command(tmp_path / "in", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    return load_results(tmp_path / "out")["results"]


def test_manifest_uses_the_command_runner() -> None:
    manifest = load_manifest(PLUGIN_DIR)
    assert manifest.plugin_id == "hu-histogram@1.0.0"
    assert manifest.runner.command == ["python3", "hu_histogram.py", "{in}", "{out}"]
    assert manifest.runner.python is None
    assert manifest.timeout == 300


def test_half_air_half_soft_tissue(tmp_path: Path) -> None:
    """Stored 24 and 1064 with intercept -1024: exactly -1000 HU and 40 HU, half each."""
    volume = np.full((4, 8, 10), 24, dtype=np.int16)
    volume[:, 4:, :] = 1064
    results = histogram_of(tmp_path, volume, rescale=(1.0, -1024.0))

    histogram = results["histogram"]
    assert histogram["binStartsHU"] == BIN_STARTS
    counts = [0] * 30
    counts[0] = 160  # -1000 HU is in [-1000, -900)
    counts[10] = 160  # 40 HU is in [0, 100)
    assert histogram["counts"] == counts
    assert results["meanHU"] == -480
    assert results["minHU"] == -1000
    assert results["maxHU"] == 40
    assert results["voxels"] == 320


def test_bin_edges_and_clamping(tmp_path: Path) -> None:
    """Edges belong to the bin above; below -1000 and from 2000 on go to the end bins."""
    hu_values = [-3000, -1001, -1000, -901, -900, -1, 0, 1999, 2000, 5000]
    volume = (np.array(hu_values, dtype=np.int16) + 1024).reshape(1, 1, -1)
    results = histogram_of(tmp_path, volume)
    counts = results["histogram"]["counts"]
    assert counts[0] == 4  # -3000, -1001, -1000, -901
    assert counts[1] == 1  # -900
    assert counts[9] == 1  # -1
    assert counts[10] == 1  # 0
    assert counts[29] == 3  # 1999, 2000, 5000
    assert sum(counts) == len(hu_values) == results["voxels"]
    assert results["minHU"] == -3000
    assert results["maxHU"] == 5000
    assert results["meanHU"] == pytest.approx(np.mean(hu_values), abs=1e-3)


def test_matches_numpy_on_random_values(tmp_path: Path) -> None:
    """Slope 2, intercept -2048: counts, mean, min and max agree with numpy."""
    stored = np.random.default_rng(5).integers(0, 2200, size=(6, 20, 24)).astype(np.uint16)
    hu = stored.astype(np.float64) * 2 - 2048
    results = histogram_of(tmp_path, stored, rescale=(2.0, -2048.0))
    edges = [-np.inf, *BIN_STARTS[1:], np.inf]
    assert results["histogram"]["counts"] == np.histogram(hu, bins=edges)[0].tolist()
    assert results["meanHU"] == pytest.approx(hu.mean(), abs=1e-3)
    assert (results["minHU"], results["maxHU"]) == (hu.min(), hu.max())


def test_per_slice_rescale(tmp_path: Path) -> None:
    """Slice 0 has intercept -1024, slice 1 intercept -1000; same stored value 1024."""
    volume = np.full((2, 3, 3), 1024, dtype=np.int16)
    write_input(tmp_path / "in", 0, volume, SPACING, rescale=None)
    attributes = {
        "common": {"0028,1053": "1"},
        "unique": [{"0028,1052": "-1024"}, {"0028,1052": {"vr": "DS", "Value": [-1000]}}],
    }
    (tmp_path / "in" / "0.json").write_text(json.dumps(attributes), encoding="utf-8")
    assert run_command(tmp_path / "in", tmp_path / "out").returncode == 0
    results = load_results(tmp_path / "out")["results"]
    assert (results["minHU"], results["maxHU"], results["meanHU"]) == (0, 24, 12)
    assert results["histogram"]["counts"][10] == 18


def test_big_endian_raw_and_no_attributes(tmp_path: Path) -> None:
    """ElementByteOrderMSB = True is honoured; without 0.json stored values are HU."""
    volume = np.array([-5, 300, 1500], dtype=np.int16).reshape(1, 1, 3)
    results = histogram_of(tmp_path, volume, rescale=None, big_endian=True)
    assert (results["minHU"], results["maxHU"], results["voxels"]) == (-5, 1500, 3)


def test_unsigned_bytes(tmp_path: Path) -> None:
    volume = np.array([0, 255], dtype=np.uint8).reshape(1, 1, 2)
    results = histogram_of(tmp_path, volume, rescale=(1.0, 0.0))
    assert (results["minHU"], results["maxHU"], results["meanHU"]) == (0, 255, 127.5)


def test_missing_mhd_fails_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    done = run_command(tmp_path / "in", tmp_path / "out")
    assert done.returncode != 0
    assert "0.mhd not found" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_short_raw_file_fails_with_a_message(tmp_path: Path) -> None:
    write_input(tmp_path / "in", 0, np.zeros((2, 4, 4), dtype=np.int16), SPACING)
    (tmp_path / "in" / "0.raw").write_bytes(b"\x00" * 10)
    done = run_command(tmp_path / "in", tmp_path / "out")
    assert done.returncode != 0
    assert "needs 64" in done.stderr


def test_runs_through_the_plugin_runner(tmp_path: Path) -> None:
    manifest = load_manifest(PLUGIN_DIR)
    plugin = Plugin(plugin_id=manifest.plugin_id, path=PLUGIN_DIR, manifest=manifest)
    write_input(tmp_path / "in", 0, np.full((2, 4, 4), 1064, dtype=np.int16), SPACING)
    (tmp_path / "out").mkdir()
    log = tmp_path / "plugin-log.txt"
    run_plugin(plugin, tmp_path / "in", tmp_path / "out", log)
    assert load_results(tmp_path / "out")["results"]["meanHU"] == 40
    assert "Wrote results.json" in log.read_text(encoding="utf-8")


def test_uses_only_the_standard_library() -> None:
    tree = ast.parse(PLUGIN_FILE.read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules, "the scan found the imports"
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
