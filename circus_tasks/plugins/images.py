"""CIRCUS plug-in images: registered the CIRCUS way, from the ``/plugin.json`` at the image's
root, and pinned to the image's id, so that a job records exactly which image ran.

A registration is a folder ``CIRCUS_HOME/plugin-images/NAME@VERSION`` holding the manifest the
registry reads (the image's own fields, plus a ``docker`` runner naming the image by its id and
the run configuration given at registration). Nothing in the image runs to register it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile

from pydantic import ValidationError

from circus_tasks.errors import PluginError
from circus_tasks.plugins.manifest import IMAGE_NAME, MANIFEST, PluginManifest, describe_errors
from circus_tasks.plugins.registry import discover_plugins
from circus_tasks.plugins.runners import docker as engine
from circus_tasks.settings import get_settings

MAX_MANIFEST_BYTES = 1 << 20
"""A ``plugin.json`` larger than this is refused unread."""


def read_image_manifest(image_id: str) -> dict[str, object]:
    """``/plugin.json`` of a local image, read from a container that is created, never started,
    and removed.

    Raises:
        PluginError: when the image has no readable ``/plugin.json``.
    """
    created = engine.docker("create", "--network", "none", image_id, "/plugin.json")
    if created.returncode != 0:
        raise PluginError(f"Cannot read image {image_id}: {created.stderr.strip()}")
    container = created.stdout.strip().splitlines()[-1]
    try:
        copied = _docker_bytes("cp", f"{container}:/{MANIFEST}", "-")
    finally:
        engine.docker("rm", "--force", "--volumes", container)
    if copied is None:
        raise PluginError(
            f"Image {image_id} has no /{MANIFEST} at its root: a CIRCUS plug-in image carries "
            "its manifest there."
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(copied)) as tar:
            member = tar.next()
            if member is None or not member.isfile() or member.size > MAX_MANIFEST_BYTES:
                raise PluginError(f"/{MANIFEST} of image {image_id} is not a small regular file.")
            handle = tar.extractfile(member)
            assert handle is not None
            data = json.loads(handle.read().decode("utf-8"))
    except (tarfile.TarError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PluginError(f"/{MANIFEST} of image {image_id} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PluginError(f"/{MANIFEST} of image {image_id} is not a JSON object.")
    return data


def _docker_bytes(*args: str) -> bytes | None:
    """The client's output, read up to :data:`MAX_MANIFEST_BYTES` and a tar header or two;
    ``None`` if it failed or said more."""
    limit = MAX_MANIFEST_BYTES + 64 * 1024
    with subprocess.Popen(
        ["docker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=engine.client_environment(),
    ) as client:
        assert client.stdout is not None
        data = client.stdout.read(limit + 1)
        if len(data) > limit:
            client.kill()
            return None
        try:
            code = client.wait(timeout=60)
        except subprocess.TimeoutExpired:
            client.kill()
            return None
    return data if code == 0 else None


def add_plugin_image(
    image: str,
    *,
    timeout: int | None = None,
    gpus: str | None = None,
    memory: str | None = None,
    cpus: float | None = None,
) -> PluginManifest:
    """Register a CIRCUS plug-in image present on this machine as ``name@version``.

    ``timeout``, ``gpus``, ``memory`` and ``cpus`` are the run configuration (CIRCUS keeps
    the first two in its registry); the image's manifest may state them too, and what is given
    here wins. Registering the same image again is a no-op; another image under a registered
    ``name@version`` is refused (a new image is a new version).

    Raises:
        PluginError: the engine does not answer, the image is not here, or its manifest is
            refused (naming every problem).
    """
    if len(image) > 255 or not re.fullmatch(IMAGE_NAME, image):
        raise PluginError(f"{image!r} is not an image name or id (e.g. circus/hu-histogram:1.0).")
    if reason := engine.engine_unavailable():
        raise PluginError(f"Cannot register {image!r}: {reason}.")
    ident = engine.image_id(image)
    if ident is None:
        raise PluginError(
            f"Image {image!r} is not on this machine: load or pull it first "
            "(docker load -i FILE, docker pull NAME)."
        )
    data = read_image_manifest(ident)
    manifest = _validated(data, ident, image, timeout, gpus, memory, cpus)
    if manifest.plugin_id in discover_plugins(get_settings().plugins_dir):
        raise PluginError(
            f"{manifest.plugin_id} is a plug-in folder's id already; give the image's plug-in "
            f"another 'pluginName' or 'version' in its /{MANIFEST}."
        )
    folder = get_settings().plugin_images_dir / manifest.plugin_id
    existing = folder / MANIFEST
    if existing.is_file():
        try:
            before = json.loads(existing.read_text(encoding="utf-8"))
            pinned = before["runner"]["docker"]["image"]
        except (OSError, ValueError, KeyError, TypeError):
            pinned = None  # a broken registration is replaced
        if pinned is not None and pinned != ident:
            raise PluginError(
                f"{manifest.plugin_id} is already registered to image {pinned}; {image!r} is "
                f"{ident}. A new image is a new version: raise 'version' in its /{MANIFEST}."
            )
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f".{MANIFEST}.{os.getpid()}"
    staged.write_text(
        json.dumps(manifest.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2)
    )
    staged.replace(existing)
    return manifest


def _validated(
    data: dict[str, object],
    ident: str,
    image: str,
    timeout: int | None,
    gpus: str | None,
    memory: str | None,
    cpus: float | None,
) -> PluginManifest:
    """The image's manifest with its runner pinned to the image id, validated like a folder's."""
    stated = data.get("runner")
    if stated is not None and not (isinstance(stated, dict) and set(stated) == {"docker"}):
        raise PluginError(
            f"/{MANIFEST} of image {image!r} names a runner other than 'docker': an image "
            "plug-in runs as its container."
        )
    spec = dict(stated["docker"]) if isinstance(stated, dict) else {}
    given = {"gpus": gpus, "memory": memory, "cpus": cpus}
    spec.update({k: v for k, v in given.items() if v is not None})
    spec.update(image=ident, ref=image)
    data = {**data, "runner": {"docker": spec}}
    run_configuration = data.pop("runConfiguration", None)  # CIRCUS's registry fields
    if isinstance(run_configuration, dict):
        data.setdefault("timeout", run_configuration.get("timeout"))
    if timeout is not None:
        data["timeout"] = timeout
    if data.get("timeout") is None:
        data.pop("timeout", None)
    try:
        return PluginManifest.model_validate(data)
    except ValidationError as exc:
        raise PluginError(
            f"Invalid /{MANIFEST} in image {image!r}: {describe_errors(exc)}"
        ) from None
