"""Where CIRCUS keeps its data, as plain functions that import nothing heavy.

:class:`~circus_tasks.settings.Settings` takes its defaults from here, and the lean
``circus volume`` path (:mod:`circus_tasks.cli.volume`) reads the database location with
:func:`database_url_from_environment` instead of importing pydantic-settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, overload

HOME_VARIABLE = "CIRCUS_HOME"
DATABASE_URL_VARIABLE = "CIRCUS_DATABASE_URL"


def default_home() -> Path:
    """The home folder when ``CIRCUS_HOME`` is not set: ``~/.circus``."""
    return Path.home() / ".circus"


LOCAL_POSTGRES = "postgres"
"""The folder of the home's own PostgreSQL cluster (``circus up --postgres``)."""


def local_postgres_urls(home: Path) -> dict[str, str] | None:
    """The URLs of the home's own PostgreSQL cluster (``circus``: our tables, ``prefect``:
    the Prefect server's), once ``circus up --postgres`` has made it; else ``None``."""
    path = home / LOCAL_POSTGRES / "urls.json"
    if not path.exists():
        return None
    try:
        urls = json.loads(path.read_text())
        return {key: str(urls[key]) for key in ("circus", "prefect", "port", "password")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # never fall back to SQLite silently: the jobs are in that cluster
        raise RuntimeError(
            f"{path} names this home's PostgreSQL but cannot be read ({exc!r}); run circus as "
            "the home's owner, or set CIRCUS_DATABASE_URL."
        ) from exc


def default_database_url(home: Path) -> str:
    """The database when ``CIRCUS_DATABASE_URL`` is not set: the home's own PostgreSQL
    cluster where ``circus up --postgres`` made one, else SQLite in the home folder."""
    urls = local_postgres_urls(home)
    return urls["circus"] if urls else f"sqlite:///{home / 'circus.db'}"


def database_url_from_environment() -> str | None:
    """The database URL the settings object would give, read straight from the environment.

    The settings object matches ``CIRCUS_*`` names without regard to case. This function reads
    the upper-case spellings only, and gives up when any other spelling of a ``CIRCUS_``
    variable is set, so that it never disagrees with the settings object.

    Returns:
        The URL, or ``None`` when only :func:`~circus_tasks.settings.get_settings` can tell.
    """
    for name in os.environ:
        if name.lower().startswith("circus_") and not name.isupper():
            return None
    url = os.environ.get(DATABASE_URL_VARIABLE)
    if url:
        return url
    home = os.environ.get(HOME_VARIABLE)
    return default_database_url(Path(home) if home is not None else default_home())


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL; ``None`` for any other database or form.

    URLs with a driver, query options, percent escapes or an in-memory database are left to
    SQLAlchemy.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url.removeprefix(prefix)
    if not path or path == ":memory:" or "?" in path or "%" in path:
        return None
    return Path(path)


class Subfolder:
    """A named folder below a path attribute of the object it is read on: in a class body,
    ``jobs_dir = Subfolder("jobs", under="home")`` makes ``obj.jobs_dir`` ``obj.home / "jobs"``.
    """

    def __init__(self, name: str, doc: str, *, under: str) -> None:
        self.name, self.under, self.__doc__ = name, under, doc

    @overload
    def __get__(self, obj: None, owner: type) -> Subfolder: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Path: ...
    def __get__(self, obj: Any, owner: type) -> Subfolder | Path:
        return self if obj is None else Path(getattr(obj, self.under)) / self.name
