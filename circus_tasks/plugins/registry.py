"""The plug-in registry: folders with a ``plugin.json``, found under the plug-ins folder, and
the plug-in images registered in ``CIRCUS_HOME`` (:mod:`circus_tasks.plugins.images`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from circus_tasks.errors import PluginError, PluginNotFoundError
from circus_tasks.plugins import runners
from circus_tasks.plugins.digest import folder_digest
from circus_tasks.plugins.manifest import MANIFEST, PluginManifest, load_manifest
from circus_tasks.settings import get_settings

__all__ = [
    "Plugin",
    "InvalidPlugin",
    "discover_plugins",
    "find_invalid_plugins",
    "get_plugin",
    "list_plugins",
    "sync_plugins",
]


class Plugin(BaseModel):
    """A registered plug-in: its id, folder and manifest."""

    plugin_id: str
    path: Path
    manifest: PluginManifest

    def unavailable_reason(self) -> str | None:
        """``None`` if this machine can run the plug-in, else why not."""
        return runners.unavailable_reason(self.manifest.runner)

    def fingerprint(self) -> str:
        """What a job records of the plug-in that ran it: an image's id (``sha256:...``),
        a folder's digest (:func:`folder_digest`)."""
        docker = self.manifest.runner.docker
        if docker is not None and docker.image.startswith("sha256:"):
            return docker.image
        return folder_digest(self.path)


class InvalidPlugin(BaseModel):
    """A plug-in folder whose manifest was refused, with every problem named."""

    path: Path
    problem: str


def _folders(root: Path | None) -> list[Path]:
    """The plug-in folders of ``root``; by default the plug-ins folder's, then the images'."""
    if root is None:
        settings = get_settings()
        return _folders(settings.plugins_dir) + _folders(settings.plugin_images_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST).is_file())


def discover_plugins(plugins_dir: Path | None = None) -> dict[str, Plugin]:
    """Every plug-in folder under ``plugins_dir`` whose manifest is valid, by id."""
    found: dict[str, Plugin] = {}
    for folder in _folders(plugins_dir):
        try:
            manifest = load_manifest(folder)
        except PluginError:
            continue
        if manifest.plugin_id in found:  # a plug-in folder's id wins over an image's
            continue
        found[manifest.plugin_id] = Plugin(
            plugin_id=manifest.plugin_id, path=folder.resolve(), manifest=manifest
        )
    return found


def find_invalid_plugins(plugins_dir: Path | None = None) -> list[InvalidPlugin]:
    """The plug-in folders that are refused, each with its manifest's problems."""
    refused = []
    for folder in _folders(plugins_dir):
        try:
            load_manifest(folder)
        except PluginError as exc:
            refused.append(InvalidPlugin(path=folder, problem=str(exc)))
    return refused


def sync_plugins() -> list[Plugin]:
    """Find the plug-ins and record each in the plug-in table (insert or update)."""
    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import PluginRecord, utcnow

    plugins = sorted(discover_plugins().values(), key=lambda p: p.plugin_id)
    with session_scope() as session:
        for plugin in plugins:
            record = session.get(PluginRecord, plugin.plugin_id) or PluginRecord(
                plugin_id=plugin.plugin_id,
                name=plugin.manifest.plugin_name,
                version=plugin.manifest.version,
                path=str(plugin.path),
            )
            record.type = plugin.manifest.type
            record.description = plugin.manifest.description
            record.path = str(plugin.path)
            record.manifest = plugin.manifest.model_dump(mode="json", by_alias=True)
            record.registered_at = utcnow()
            session.add(record)
    return plugins


def list_plugins() -> list[Plugin]:
    """The plug-ins found in the plug-ins folder, sorted by id (and recorded in the table)."""
    return sync_plugins()


def get_plugin(plugin_id: str) -> Plugin:
    """One plug-in by id (``name@version``).

    Raises:
        PluginNotFoundError: naming the plug-ins there are.
    """
    plugins = discover_plugins()
    if plugin_id not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        raise PluginNotFoundError(
            f"Unknown plug-in {plugin_id!r}; registered plug-ins: {known} (see circus plugins)."
        )
    return plugins[plugin_id]
