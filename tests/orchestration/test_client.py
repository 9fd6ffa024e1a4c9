"""Which Prefect API this package talks to, decided in one place."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from circus_tasks.orchestration.client import api_url, prefect_client


def test_importing_the_package_leaves_the_environment_alone() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    script = (
        "import os, circus_tasks\n"
        "from circus_tasks import api, get_settings\n"
        "print(os.environ.get('PREFECT_API_URL'))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "None"


def test_clients_reach_prefects_api_url_else_the_embedded_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("CIRCUS_PREFECT_PORT", "4321")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert api_url() == "http://127.0.0.1:4321/api"
        with prefect_client() as client:
            assert str(client.api_url) == "http://127.0.0.1:4321/api/"
    with temporary_settings(updates={PREFECT_API_URL: "http://elsewhere:4200/api"}):
        assert api_url() == "http://elsewhere:4200/api"
        with prefect_client() as client:
            assert str(client.api_url) == "http://elsewhere:4200/api/"
