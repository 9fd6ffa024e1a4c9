"""A warm child's Prefect settings, built once per environment, and the suspension observer
left out (circus_tasks/worker/run_settings.py)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from circus_tasks.worker import run_settings
from circus_tasks.worker.run_settings import settings_for, settings_key, using


def test_settings_follow_the_request_environment_and_are_built_once_per_settings() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    quiet = {**base, "PREFECT_LOGGING_LEVEL": "ERROR", "PREFECT__FLOW_RUN_ID": "one"}
    loud = {**base, "PREFECT_LOGGING_LEVEL": "DEBUG", "PREFECT__FLOW_RUN_ID": "two"}
    first = settings_for(quiet)
    assert first.logging.level == "ERROR"
    assert settings_for(loud).logging.level == "DEBUG"
    # another run of the same worker: only its run's own PREFECT__ values differ
    assert settings_for({**quiet, "PREFECT__FLOW_RUN_ID": "three"}) is first
    assert first.flows.heartbeat_frequency is None
    assert settings_key(quiet) == (("PREFECT_LOGGING_LEVEL", "ERROR"),)
    assert os.environ.get("PREFECT__FLOW_RUN_ID") is None  # the caller's environment is back


def test_a_run_uses_its_prebuilt_settings() -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        built = settings_for({**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"})
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 30
        with using(built):
            assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 30


def test_prefect_still_observes_suspension_where_the_zygote_replaces_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A yardstick on Prefect itself: when an upgrade renames or stops using the observer,
    this fails and run_settings.py must be looked at again."""
    import prefect.flow_engine

    assert "observe_flow_run_suspension(" in inspect.getsource(prefect.flow_engine)
    original = prefect.flow_engine.observe_flow_run_suspension
    monkeypatch.setattr(prefect.flow_engine, "observe_flow_run_suspension", original)
    run_settings.without_suspension_observer()
    replaced = prefect.flow_engine.observe_flow_run_suspension
    assert replaced is not original
    with replaced("any run id", object()):  # type: ignore[arg-type]
        pass


def test_prefect_clients_share_one_tls_context_per_certificate_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    import prefect.client.orchestration as orchestration
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

    def context(client: SyncPrefectClient) -> ssl.SSLContext:
        return client._client._transport._pool._ssl_context  # type: ignore[attr-defined,no-any-return]

    url = "http://127.0.0.1:9/api"
    # Prefect's own way: a new context (and its bundle loaded again) for every client
    assert context(SyncPrefectClient(url)) is not context(SyncPrefectClient(url))
    monkeypatch.setattr(orchestration, "ssl", ssl)
    run_settings.shared_tls_contexts()
    first = context(SyncPrefectClient(url))
    assert context(SyncPrefectClient(url)) is first
    assert first.verify_mode == ssl.CERT_REQUIRED
    # a context Prefect changes after building it (no verification asked) is never shared
    with temporary_settings(updates={PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        insecure = context(SyncPrefectClient(url))
    assert insecure is not first and insecure.verify_mode == ssl.CERT_NONE
    assert first.verify_mode == ssl.CERT_REQUIRED


def test_a_certificate_bundle_replaced_on_disk_is_read_again(tmp_path: Path) -> None:
    import shutil
    import ssl

    bundle = tmp_path / "ca.pem"
    shutil.copyfile(ssl.get_default_verify_paths().openssl_cafile, bundle)  # the system's
    shared = run_settings._SharedContexts()
    first = shared.create_default_context(cafile=str(bundle))
    assert shared.create_default_context(cafile=str(bundle)) is first
    os.utime(bundle, ns=(0, bundle.stat().st_mtime_ns + 10**9))  # the site rotated its CA
    assert shared.create_default_context(cafile=str(bundle)) is not first
    assert shared.create_default_context() is not shared.create_default_context()
