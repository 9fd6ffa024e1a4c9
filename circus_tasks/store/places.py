"""Where import reads and writes, and how it stores a file, as the settings say: read
straight from the environment where that gives what the settings object would, so that
``circus import`` does not import pydantic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from circus_tasks.errors import InvalidValueError
from circus_tasks.home import (
    HOME_VARIABLE,
    Subfolder,
    database_url_from_environment,
    default_home,
    sqlite_file,
)
from circus_tasks.store.copying import COPY_MODES
from circus_tasks.values import printable

__all__ = ["COPY_VARIABLE", "ImportPlaces", "import_places", "working_files"]

COPY_VARIABLE = "CIRCUS_IMPORT_COPY"
"""The setting :attr:`~circus_tasks.settings.Settings.import_copy`, read from the environment."""


@dataclass(frozen=True)
class ImportPlaces:
    """Where import reads and writes, as the settings say."""

    home: Path
    database_url: str
    copy_mode: str = "copy"

    dicom_dir = Subfolder("dicom", "The DICOM store (as the settings' dicom_dir).", under="home")

    @property
    def working_folders(self) -> list[Path]:
        """The settings' ``jobs_dir``, ``results_dir``, ``prefect_home``, ``run_dir`` and
        ``locks_dir`` (a test checks that they agree)."""
        return [self.home / name for name in ("jobs", "results", "prefect", "run", "locks")]


def import_places() -> ImportPlaces:
    """The settings import needs, read straight from the environment where that gives what
    :func:`~circus_tasks.settings.get_settings` would (without importing pydantic), else from
    the settings object.

    Raises:
        InvalidValueError: ``CIRCUS_IMPORT_COPY`` is not one of
            :data:`~circus_tasks.store.copying.COPY_MODES`.
    """
    url = database_url_from_environment()
    mode = os.environ.get(COPY_VARIABLE, "copy")
    if mode not in COPY_MODES:
        raise InvalidValueError(
            f"{COPY_VARIABLE}={printable(mode[:40])!r} is not a way to store files: give "
            f"{' or '.join(COPY_MODES)} (a hard link is not offered: the stored image would "
            "change when its source is rewritten in place)"
        )
    if url is not None:
        home = os.environ.get(HOME_VARIABLE)
        return ImportPlaces(Path(home) if home is not None else default_home(), url, mode)
    from circus_tasks.settings import get_settings

    settings = get_settings()
    return ImportPlaces(settings.home, settings.db_url, settings.import_copy)


def working_files(places: ImportPlaces) -> list[Path]:
    """CIRCUS_HOME's database (with its journal files) and working folders: import never opens
    them (opening and closing a live SQLite file drops this process's locks on it)."""
    database = sqlite_file(places.database_url)
    files = (
        [Path(f"{database}{end}") for end in ("", "-wal", "-shm", "-journal")] if database else []
    )
    return [p.resolve() for p in [*files, *places.working_folders]]


@contextmanager
def one_import_at_a_time(places: ImportPlaces) -> Iterator[None]:
    """Hold the home's import lock (``locks/import.lock``): the readers write each new file to
    its place in the store before this process decides about it, so a second import of the
    same files at the same moment would replace the first one's copies under its rows. It
    waits its turn instead (and then finds the files stored)."""
    from filelock import FileLock

    locks = places.home / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / "import.lock"):
        yield
