"""Plug-ins: found as folders with a ``plugin.json`` manifest, run as child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from circus_tasks.errors import PluginError, PluginNotFoundError
from circus_tasks.settings import get_settings

MANIFEST = "plugin.json"
SEMVER = r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"


class Runner(BaseModel):
    """How to run a plug-in: a Python callable ``module:function`` or a command line.

    The command's arguments may use ``{in}`` and ``{out}`` for the input and output folders.
    """

    model_config = ConfigDict(extra="forbid")

    python: str | None = Field(default=None, pattern=r"^[\w.]+:[\w]+$")
    command: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Runner:
        if (self.python is None) == (self.command is None):
            raise ValueError("give exactly one of 'python' (module:function) or 'command'")
        return self


class PluginManifest(BaseModel):
    """The CIRCUS manifest fields plus how to run the plug-in."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    plugin_name: str = Field(alias="pluginName", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = Field(pattern=SEMVER)
    type: Literal["CAD"] = "CAD"
    description: str = ""
    icon: dict[str, str] | None = None
    display_strategy: list[dict[str, object]] | None = Field(default=None, alias="displayStrategy")
    runner: Runner
    timeout: int = Field(default=3000, gt=0)

    @property
    def plugin_id(self) -> str:
        """``name@version``: two versions of a plug-in live side by side."""
        return f"{self.plugin_name}@{self.version}"


class Plugin(BaseModel):
    """A registered plug-in: its id, folder and manifest."""

    plugin_id: str
    path: Path
    manifest: PluginManifest


def load_manifest(folder: Path) -> PluginManifest:
    """Read and validate ``folder/plugin.json``.

    Raises:
        PluginError: naming every problem of the manifest.
    """
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PluginError(f"Cannot read plug-in manifest {path}: {exc}") from None
    try:
        return PluginManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PluginError(f"Invalid plug-in manifest {path}: {problems}") from None


def discover_plugins(plugins_dir: Path | None = None) -> dict[str, Plugin]:
    """Every plug-in folder under ``plugins_dir`` whose manifest is valid, by id."""
    root = plugins_dir or get_settings().plugins_dir
    found: dict[str, Plugin] = {}
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
        try:
            manifest = load_manifest(folder)
        except PluginError:
            continue
        found[manifest.plugin_id] = Plugin(
            plugin_id=manifest.plugin_id, path=folder.resolve(), manifest=manifest
        )
    return found


def sync_plugins() -> list[Plugin]:
    """Find the plug-ins and record each in the plug-in table (insert or update)."""
    from circus_tasks.db import session_scope
    from circus_tasks.models import PluginRecord, utcnow

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


def plugin_command(plugin: Plugin, in_dir: Path, out_dir: Path) -> list[str]:
    """The command line that runs ``plugin`` on ``in_dir`` -> ``out_dir``."""
    runner = plugin.manifest.runner
    if runner.python is not None:
        return [
            sys.executable,
            "-m",
            "circus_tasks.plugin_host",
            str(plugin.path),
            runner.python,
            str(in_dir),
            str(out_dir),
        ]
    assert runner.command is not None
    return [
        arg.replace("{in}", str(in_dir)).replace("{out}", str(out_dir)) for arg in runner.command
    ]


def run_plugin(plugin: Plugin, in_dir: Path, out_dir: Path, log_path: Path) -> None:
    """Run a plug-in in its own process group, its output appended to ``log_path``.

    The whole process group is killed on time-out, and when the caller is interrupted
    (including Prefect cancelling the flow run).

    Raises:
        PluginError: on a non-zero exit or a time-out.
    """
    timeout = plugin.manifest.timeout
    command = plugin_command(plugin, in_dir, out_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CIRCUS_"))}
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"[runner] {time.strftime('%Y-%m-%dT%H:%M:%S')} start {plugin.plugin_id}\n")
        log.write(f"[runner] command: {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=plugin.path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=_die_with_parent,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            log.write(f"[runner] timed out after {timeout} s; process group killed\n")
            raise PluginError(f"Plug-in {plugin.plugin_id} timed out after {timeout} s.") from None
        except BaseException:
            _kill_group(process)
            log.write("[runner] interrupted; process group killed\n")
            raise
        log.write(f"[runner] exit code {code}\n")
    if code != 0:
        raise PluginError(
            f"Plug-in {plugin.plugin_id} exited with code {code}; "
            "its output is in plugin-log.txt (circus show JOB)."
        )


def _die_with_parent() -> None:
    """In the child: have Linux kill the plug-in if the job's process dies (no orphans)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
