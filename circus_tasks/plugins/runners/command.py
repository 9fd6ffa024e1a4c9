"""A command line, ``{in}`` and ``{out}`` standing for the folders; run in the plug-in's
folder."""

from __future__ import annotations

from pathlib import Path

from circus_tasks.plugins.manifest import Runner


def command_line(runner: Runner, folder: Path, in_dir: Path, out_dir: Path) -> list[str]:
    assert runner.command is not None
    return [a.replace("{in}", str(in_dir)).replace("{out}", str(out_dir)) for a in runner.command]


def unavailable_reason(runner: Runner) -> str | None:
    """Always available: what the command needs is the plug-in's business."""
    return None
