"""CIRCUS plug-in images in real containers: podman's Docker API service started here
(``deployments/container-engine.sh``), images built here from Debian's packages (no registry).

As root (CI) the engine must come up: these tests fail rather than skip there. Elsewhere they
are skipped with the reason (the engine set-up needs root)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from circus_tasks.errors import PluginError
from circus_tasks.plugins.launch import run_plugin
from circus_tasks.plugins.manifest import PluginManifest
from circus_tasks.plugins.registry import Plugin
from circus_tasks.plugins.runners import docker
from circus_tasks.testing import example_image
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume
from tests.worker.test_stack import CIRCUS, ROOT, free_port, wait_until

ENGINE = ROOT / "deployments" / "container-engine.sh"
INTRUDER = Path(__file__).with_name("container_intruder.py")
PYTHON = "/usr/bin/python3.11"
SLEEP = [PYTHON, "-c", "import time; print('sleeping', flush=True); time.sleep(600)"]


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    """``DOCKER_HOST`` of an engine of this module's own (its images in a temporary folder)."""
    if os.geteuid() != 0:  # decided without our code: the set-up script needs root
        pytest.skip("the container engine is set up for root only (as CI runs); see README")
    folder = Path(tempfile.mkdtemp(prefix="circus-engine-"))
    started = subprocess.run([str(ENGINE), "start", str(folder)], capture_output=True, text=True)
    assert started.returncode == 0, f"the engine did not start: {started.stderr}"
    host = started.stdout.strip().splitlines()[-1].removeprefix("DOCKER_HOST=")
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    docker.engine_unavailable.cache_clear()
    try:
        yield host
    finally:  # containers outlive the engine's API service
        if left := containers():
            docker.docker("rm", "--force", "--volumes", *left)
        subprocess.run([str(ENGINE), "stop", str(folder)], capture_output=True)
        os.environ.pop("DOCKER_HOST")
        if saved is not None:
            os.environ["DOCKER_HOST"] = saved
        docker.engine_unavailable.cache_clear()
        shutil.rmtree(folder, ignore_errors=True)


def _manifest_file(folder: Path, name: str, version: str, **more: Any) -> Path:
    path = folder / f"{name}-{version}.json"
    path.write_text(json.dumps({"pluginName": name, "version": version, "type": "CAD", **more}))
    return path


@pytest.fixture(scope="module")
def images(engine: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example image, the intruder and two sleepers: name -> image id."""
    work = tmp_path_factory.mktemp("images")
    built = {"example": example_image.build()}
    built["example rebuilt"] = example_image.build(  # the same manifest, another image
        "circus-test/hu-histogram-rebuilt:1.0.0",
        {**example_image.example_files(), "/rebuilt": INTRUDER},
    )
    built["intruder"] = example_image.build(
        "circus-test/intruder:1.0.0",
        {"/intruder.py": INTRUDER, "/plugin.json": _manifest_file(work, "intruder", "1.0.0")},
        [PYTHON, "/intruder.py", "/circus/in", "/circus/out"],
    )
    for version, timeout in (("1.0.0", 600), ("2.0.0", 4)):
        manifest = _manifest_file(work, "sleeper", version, timeout=timeout)
        built[f"sleeper {version}"] = example_image.build(
            f"circus-test/sleeper:{version}", {"/plugin.json": manifest}, SLEEP
        )
    return built


def containers() -> list[str]:
    """Every container of the engine, running or not."""
    listed = docker.docker("ps", "--all", "--quiet")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def _plugin(image: str, folder: Path, timeout: int = 120) -> Plugin:
    manifest = PluginManifest.model_validate(
        {"pluginName": "t", "version": "1.0.0", "runner": {"docker": {"image": image}}}
    ).model_copy(update={"timeout": timeout})
    return Plugin(plugin_id=manifest.plugin_id, path=folder, manifest=manifest)


def _job_folders(root: Path, job: str, *inputs: str) -> tuple[Path, Path, Path]:
    in_dir, out_dir, scratch = root / job / "in", root / job / "out", root / job / "scratch"
    for folder in (in_dir, out_dir, scratch):
        folder.mkdir(parents=True)
    for name in inputs:
        (in_dir / name).write_text("input\n")
    return in_dir, out_dir, scratch


def test_a_plugin_container_is_fenced_in_and_removed(
    images: dict[str, str], tmp_path: Path
) -> None:
    plugin = _plugin(images["intruder"], tmp_path)
    for job in ("job-a", "job-b"):  # the second run must not see what the first left
        in_dir, out_dir, scratch = _job_folders(tmp_path, job, "0.mhd")
        run_plugin(plugin, in_dir, out_dir, tmp_path / f"{job}.log", scratch)
        found = json.loads((out_dir / "results.json").read_text())["results"]["found"]
        assert found["write its input"] == "refused: Read-only file system", found
        assert found["delete its input"] == "refused: Read-only file system", found
        assert (in_dir / "0.mhd").read_text() == "input\n"
        assert not (in_dir / "planted").exists()
        assert found["reach the network"] == "refused: Network is unreachable", found
        assert found["reach the host"] == "refused: Network is unreachable", found
        assert found["interfaces"] == ["lo"], found
        assert found["uid"] != 0, found
        assert int(str(found["effective capabilities"]), 16) == 0, found
        assert int(str(found["bounding capabilities"]), 16) == 0, found  # none to regain
        assert found["no new privileges"] == "1", found
        assert found["left by an earlier run"] is False, found
        assert os.stat(out_dir / "results.json").st_uid == os.geteuid()  # given back
        assert "done" in (tmp_path / f"{job}.log").read_text()  # its output is in the log
    assert containers() == []


def test_a_container_past_its_time_out_is_killed_and_removed(
    images: dict[str, str], tmp_path: Path
) -> None:
    plugin = _plugin(images["sleeper 1.0.0"], tmp_path, timeout=3)
    in_dir, out_dir, scratch = _job_folders(tmp_path, "job-c")
    with pytest.raises(PluginError, match="timed out after 3 s"):
        run_plugin(plugin, in_dir, out_dir, tmp_path / "job-c.log", scratch)
    assert "sleeping" in (tmp_path / "job-c.log").read_text()
    assert containers() == []


def test_a_container_that_outlived_its_job_is_removed_before_the_next(
    images: dict[str, str], tmp_path: Path
) -> None:
    """A flow process killed outright takes the ``docker run`` client with it, not the
    container: the machine's next image job removes it (and only its home's)."""

    def started(owner: str) -> str:
        label = f"{docker.LABEL}={owner}"
        run = docker.docker("run", "--detach", "--label", label, images["sleeper 1.0.0"])
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    machine, _, home = docker.owner().partition("@")
    orphan, other = started(docker.owner()), started(f"{machine}@another-home")
    in_dir, out_dir, scratch = _job_folders(tmp_path, "job-d", "0.mhd")
    run_plugin(_plugin(images["intruder"], tmp_path), in_dir, out_dir, tmp_path / "d.log", scratch)
    left = containers()
    assert not any(orphan.startswith(c) for c in left)
    assert any(other.startswith(c) for c in left)
    docker.docker("rm", "--force", other)
    assert containers() == []


def test_a_job_whose_image_or_engine_is_missing_fails_saying_which(
    images: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = _plugin("sha256:" + "0" * 64, tmp_path)
    in_dir, out_dir, scratch = _job_folders(tmp_path, "job-e", "0.mhd")
    with pytest.raises(PluginError, match=r"image sha256:0+ .*is not on this machine: load it"):
        run_plugin(gone, in_dir, out_dir, tmp_path / "e.log", scratch)
    assert gone.unavailable_reason() is not None

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    docker.engine_unavailable.cache_clear()
    try:
        present = _plugin(images["intruder"], tmp_path)
        with pytest.raises(PluginError, match=r"no container engine answers at unix://.*start one"):
            run_plugin(present, in_dir, out_dir, tmp_path / "e.log", scratch)
    finally:
        docker.engine_unavailable.cache_clear()
    assert not any(out_dir.iterdir())


def test_registering_refuses_what_is_not_a_plugin_image(images: dict[str, str]) -> None:
    from circus_tasks.plugins.images import add_plugin_image

    with pytest.raises(PluginError, match="is not on this machine"):
        add_plugin_image("circus-test/nothing:9.9.9")
    with pytest.raises(PluginError, match="not an image name"):
        add_plugin_image("--privileged")
    stripped = example_image.build(
        "circus-test/no-manifest:1.0.0", {"/intruder.py": INTRUDER}, SLEEP
    )
    with pytest.raises(PluginError, match="has no /plugin.json"):
        add_plugin_image(stripped)
    assert containers() == []  # reading the manifest left no container


@pytest.mark.prefect
def test_an_image_registered_as_circus_does_runs_through_a_worker(
    images: dict[str, str], engine: str, tmp_path: Path
) -> None:
    """``circus plugins add``, a job through a real worker, results equal to the folder
    plug-in's; the job names the image it ran even after the tag moves; abort and time-out
    kill the container."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CIRCUS_", "PREFECT_"))},
        "CIRCUS_HOME": str(tmp_path / "home"),
        "CIRCUS_PREFECT_PORT": str(free_port()),
        "DOCKER_HOST": engine,
    }

    def circus(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([CIRCUS, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    try:
        circus("up", "--no-batch-worker")
        added = circus("plugins", "add", example_image.IMAGE)
        assert images["example"] in added.stdout
        for name in ("circus-test/sleeper:1.0.0", "circus-test/sleeper:2.0.0"):
            circus("plugins", "add", name)
        listed = circus("plugins").stdout
        assert re.search(r"hu-histogram-image@1\.0\.0.*yes", listed), listed
        uid = "1.2.826.0.1.3680043.8.498.4711"
        write_series(tmp_path / "series", make_volume(5), series_uid=uid)
        circus("import", str(tmp_path / "series"))

        results = {}
        for plugin in ("hu-histogram@1.0.0", example_image.PLUGIN_ID):
            submitted = circus("submit", plugin, uid, "--wait", "180").stdout
            assert ": finished" in submitted, submitted
            job_id = re.findall(r"Job (\S+) registered", submitted)[0]
            shown = circus("results", job_id).stdout.split("\n", 1)[1]
            results[plugin] = json.JSONDecoder().raw_decode(shown)[0]
        assert results[example_image.PLUGIN_ID] == results["hu-histogram@1.0.0"]
        assert results["hu-histogram@1.0.0"]  # a real histogram, not two empty answers

        # the tag moves to another image: the job still names the one it ran
        docker.docker("tag", images["example rebuilt"], example_image.IMAGE)
        shown = circus("show", job_id).stdout
        assert f"Plug-in image: {images['example']}" in shown
        again = subprocess.run(
            [CIRCUS, "plugins", "add", example_image.IMAGE], env=env, capture_output=True, text=True
        )
        assert again.returncode == 1 and "new version" in again.stdout, again.stdout

        timed_out = circus("submit", "sleeper@2.0.0", uid, "--wait", "180").stdout
        assert "failed Plug-in sleeper@2.0.0 timed out after 4 s" in timed_out, timed_out
        assert containers() == []

        job_id = re.findall(r"Job (\S+) registered", circus("submit", "sleeper@1.0.0", uid).stdout)[
            0
        ]
        wait_until(lambda: docker.docker("ps", "--quiet").stdout.strip(), 120, "the container")
        circus("abort", job_id, "--user", "dr-abort")
        wait_until(lambda: '"status": "failed"' in circus("show", job_id).stdout, 90, "failed")
        assert '"error_message": "aborted by dr-abort"' in circus("show", job_id).stdout
        wait_until(lambda: containers() == [], 30, "no container left")
    finally:
        subprocess.run([CIRCUS, "down"], env=env, capture_output=True)
