"""Plug-in manifests, discovery and the runner."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from circus_tasks.errors import PluginError, PluginNotFoundError
from circus_tasks.plugins.launch import run_plugin
from circus_tasks.plugins.manifest import load_manifest
from circus_tasks.plugins.registry import discover_plugins, get_plugin


def write_manifest(folder: Path, manifest: dict[str, object]) -> Path:
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(json.dumps(manifest))
    return folder


def test_an_invalid_manifest_names_every_problem(tmp_path: Path) -> None:
    folder = write_manifest(
        tmp_path / "bad",
        {"pluginName": "bad name!", "version": "1.0", "runner": {"python": "x", "command": ["y"]}},
    )
    with pytest.raises(PluginError) as caught:
        load_manifest(folder)
    message = str(caught.value)
    assert "pluginName" in message and "version" in message and "runner" in message


def test_broken_json_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "plugin.json").write_text("{not json")
    with pytest.raises(PluginError, match="Cannot read plug-in manifest"):
        load_manifest(folder)


def test_two_versions_live_side_by_side(tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0"):
        write_manifest(
            tmp_path / f"p-{version}",
            {"pluginName": "p", "version": version, "runner": {"command": ["true"]}},
        )
    assert sorted(discover_plugins(tmp_path)) == ["p@1.0.0", "p@1.1.0"]


def test_unknown_plugin_lists_the_known_ones(home: Path) -> None:
    with pytest.raises(PluginNotFoundError, match="lesion-candidates@1.0.0"):
        get_plugin("missing@0.0.1")


def test_timeout_kills_the_plugin_and_says_so(home: Path, tmp_path: Path) -> None:
    plugin = get_plugin("sleepy@1.0.0")
    plugin.manifest.timeout = 1
    log = tmp_path / "log.txt"
    started = time.monotonic()
    with pytest.raises(PluginError, match="timed out after 1 s"):
        run_plugin(plugin, tmp_path, tmp_path, log)
    assert time.monotonic() - started < 30
    assert "timed out after 1 s; process group killed" in log.read_text()
    leftovers = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and "print('sleeping'" in _cmdline(p)
    ]
    assert not leftovers


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_docker_plugin_follows_the_circus_contract(home: Path, tmp_path: Path) -> None:
    from circus_tasks.plugins.runners import plugin_command

    plugin = get_plugin("docker-cad@2.1.0")
    job = tmp_path / "job"
    command = plugin_command(plugin.manifest.runner, plugin.path, job / "in", job / "out")
    assert command[:3] == ["docker", "run", "--rm"]
    assert command[command.index("--network") + 1] == "none"
    assert f"{tmp_path}/job/in:/circus/in:ro" in command
    assert f"{tmp_path}/job/out:/circus/out" in command
    assert command[command.index("--gpus") + 1] == "all"
    assert command[-1] == "circus/mock-cad:2.1.0"
    assert command[command.index("--user") + 1] != "0:0"
    assert command[command.index("--cap-drop") + 1] == "ALL"


def test_without_a_docker_engine_the_plugin_is_listed_not_runnable(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from circus_tasks.plugins.runners import docker

    monkeypatch.setenv("PATH", str(tmp_path))  # no docker command at all
    docker.engine_unavailable.cache_clear()
    try:
        reason = get_plugin("docker-cad@2.1.0").unavailable_reason()
    finally:
        docker.engine_unavailable.cache_clear()
    assert reason is not None and reason.startswith("no docker command on this machine")
    assert get_plugin("lesion-candidates@1.0.0").unavailable_reason() is None


def test_without_a_sandbox_plugins_run_only_when_allowed(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circus_tasks.db.engine import reset_caches
    from circus_tasks.plugins import launch
    from circus_tasks.plugins.sandbox import Isolation

    monkeypatch.setattr(launch, "machine_isolation", lambda: Isolation(None, False, "test"))
    plugin = get_plugin("record@1.0.0")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    log = tmp_path / "log.txt"
    with pytest.raises(PluginError, match="cannot sandbox plug-ins.*CIRCUS_ALLOW_UNISOLATED=1"):
        run_plugin(plugin, tmp_path / "in", tmp_path / "out", log)
    assert not (tmp_path / "out" / "results.json").exists()
    monkeypatch.setenv("CIRCUS_ALLOW_UNISOLATED", "1")
    reset_caches()
    run_plugin(plugin, tmp_path / "in", tmp_path / "out", log)
    assert (tmp_path / "out" / "results.json").is_file()
