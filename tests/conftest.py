"""Shared fixtures: a fresh CIRCUS home per test, the plug-ins, and DICOM series."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from circus_tasks.db.engine import reset_caches, session_scope
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series

ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGINS = Path(__file__).resolve().parent / "sample_plugins"


def build_plugins_dir(target: Path) -> Path:
    """The shipped plug-ins plus the test plug-ins, side by side in ``target`` (readable by
    others, as a site's plug-in folder is: the sandbox's user reads it)."""
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)
    for source in [*(ROOT / "plugins").iterdir(), *TEST_PLUGINS.iterdir()]:
        if (source / "plugin.json").is_file():
            shutil.copytree(source, target / source.name, dirs_exist_ok=True)
    return target


@pytest.fixture(scope="session")
def plugins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped and the test plug-ins, copied once per session."""
    return build_plugins_dir(tmp_path_factory.mktemp("plugins"))


@pytest.fixture(autouse=True)
def home(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    plugins_dir: Path,
) -> Iterator[Path]:
    """A fresh CIRCUS_HOME (its own SQLite database) with every plug-in registered.

    Used by every test, so that none touches ``~/.circus``; the tests that run the real stack
    (marked ``worker``) share their module's home instead.
    """
    if request.node.get_closest_marker("worker") is not None:
        yield Path(os.environ["CIRCUS_HOME"])
        return
    root = tmp_path_factory.mktemp("circus")
    home = root / "circus-home"
    monkeypatch.setenv("CIRCUS_HOME", str(home))
    monkeypatch.setenv("CIRCUS_PLUGINS_DIR", str(plugins_dir))
    monkeypatch.setenv("CIRCUS_MACHINE", "test-machine")
    monkeypatch.delenv("CIRCUS_DATABASE_URL", raising=False)
    reset_caches()
    yield home
    reset_caches()


def make_volume(slices: int, rows: int = 8, cols: int = 8, dtype: str = "int16") -> np.ndarray:
    """A small volume whose voxels tell their slice (value = 100 * slice + column)."""
    z, _y, x = np.indices((slices, rows, cols))
    return (100 * z + x).astype(dtype)


@pytest.fixture
def series_factory(home: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write and import a series: ``series_factory(numbers=[1, 2, 3], z=[...]) -> uid``."""
    counter = iter(range(10_000))

    def factory(
        numbers: list[int] | None = None,
        z: list[float] | None = None,
        *,
        modality: str = "CT",
        slices: int | None = None,
        **series_options: Any,
    ) -> str:
        count = len(numbers) if numbers is not None else (slices or 5)
        folder = tmp_path / f"series-{next(counter)}"
        write_series(
            folder,
            make_volume(count),
            instance_numbers=numbers,
            z_positions=z,
            modality=modality,
            **series_options,
        )
        report = import_dicom(folder)
        assert not report.problems, report.problems
        (uid,) = report.series_uids
        return uid

    return factory


@pytest.fixture
def session(home: Path):  # type: ignore[no-untyped-def]
    """A database session on the test's home, committed at the end."""
    with session_scope() as s:
        yield s


def race_cancel_and_start(job_id: str) -> tuple[bool, bool]:
    """Fire ``cancel_job`` and the flow's ``claim_job`` at the same instant from two threads.

    Returns:
        (claimed, cancelled): whether each side won.
    """
    from circus_tasks.api import cancel_job
    from circus_tasks.errors import JobStateError
    from tests.running import claim

    barrier = threading.Barrier(2)
    outcome: dict[str, bool] = {}

    def start() -> None:
        barrier.wait()
        outcome["claimed"] = claim(job_id, machine="racer") is not None

    def cancel() -> None:
        barrier.wait()
        try:
            cancel_job(job_id)
            outcome["cancelled"] = True
        except JobStateError:
            outcome["cancelled"] = False

    threads = [threading.Thread(target=start), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome["claimed"], outcome["cancelled"]
