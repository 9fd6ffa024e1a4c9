"""Tests for circus_tasks/cli/deferred_imports.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from circus_tasks.cli.deferred_imports import deferred_imports


def test_a_deferred_module_runs_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "deferred_probe.py").write_text(
        "import pathlib, sys\n"
        "pathlib.Path(sys.argv[0]).parent\n"
        f"pathlib.Path({str(tmp_path / 'ran')!r}).touch()\n"
        "ANSWER = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "deferred_probe", raising=False)

    with deferred_imports(["deferred_probe"]):
        import deferred_probe

    assert not (tmp_path / "ran").exists()
    assert deferred_probe.ANSWER == 42
    assert (tmp_path / "ran").exists()


def test_pydicom_reads_and_its_deferred_parts_still_work() -> None:
    script = (
        "import sys\n"
        "from circus_tasks.cli.deferred_imports import (\n"
        "    UNUSED_BY_PYDICOM_READING, deferred_imports)\n"
        "with deferred_imports(UNUSED_BY_PYDICOM_READING):\n"
        "    import pydicom\n"
        "lazy = sorted(n for n in UNUSED_BY_PYDICOM_READING\n"
        "              if type(sys.modules[n]).__name__ == '_LazyModule')\n"
        "print(lazy)\n"
        "ds = pydicom.examples.ct\n"  # loads pydicom.examples on use
        "print(ds.Rows, ds.pixel_array.shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "['pydicom.examples', 'requests', 'urllib.request']",
        "128 (128, 128)",
    ]
