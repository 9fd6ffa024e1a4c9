"""The runner kinds a manifest may name, one module each (``python``, ``command``,
``docker``): each builds the plug-in's own command line and says whether it can run here."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from circus_tasks.plugins.manifest import Runner
from circus_tasks.plugins.runners import command, docker, python

KINDS: dict[str, ModuleType] = {"python": python, "command": command, "docker": docker}
"""Each runner kind's module, by the manifest key that names it."""


def kind(runner: Runner) -> ModuleType:
    """The module of the runner kind the manifest names."""
    return next(module for key, module in KINDS.items() if getattr(runner, key) is not None)


def plugin_command(runner: Runner, folder: Path, in_dir: Path, out_dir: Path) -> list[str]:
    """The plug-in's own command line (without the sandbox)."""
    line: list[str] = kind(runner).command_line(runner, folder, in_dir, out_dir)
    return line


def unavailable_reason(runner: Runner) -> str | None:
    """``None`` if this machine can run the plug-in, else why not."""
    reason: str | None = kind(runner).unavailable_reason(runner)
    return reason
