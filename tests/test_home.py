"""Tests for circus_tasks/home.py: the database location read without pydantic."""

from __future__ import annotations

from pathlib import Path

import pytest

from circus_tasks.home import database_url_from_environment, sqlite_file
from circus_tasks.settings import Settings


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"CIRCUS_HOME": "/data/circus"},
        {"CIRCUS_HOME": "relative/home"},
        {"CIRCUS_HOME": ""},
        {"CIRCUS_DATABASE_URL": "postgresql+psycopg://u@h/circus", "CIRCUS_HOME": "/x"},
        {"CIRCUS_DATABASE_URL": "", "CIRCUS_HOME": "/x"},
    ],
)
def test_the_url_is_the_settings_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: dict[str, str]
) -> None:
    monkeypatch.delenv("CIRCUS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert database_url_from_environment() == Settings().db_url


def test_other_spellings_are_left_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("circus_database_url", "sqlite:////elsewhere.db")

    assert database_url_from_environment() is None
    assert Settings().db_url == "sqlite:////elsewhere.db"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////abs/circus.db", Path("/abs/circus.db")),
        ("sqlite:///rel/circus.db", Path("rel/circus.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("sqlite+pysqlite:////abs/circus.db", None),
        ("sqlite:////abs/circus.db?timeout=5", None),
        ("sqlite:////abs/my%20db.db", None),
        ("postgresql+psycopg://u@h/circus", None),
    ],
)
def test_sqlite_file(url: str, path: Path | None) -> None:
    assert sqlite_file(url) == path
