"""A Python callable ``module:function``, called as ``function(in_dir, out_dir)`` by
:mod:`circus_tasks.plugins.host` in a child process of this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from circus_tasks.plugins.manifest import Runner


def command_line(runner: Runner, folder: Path, in_dir: Path, out_dir: Path) -> list[str]:
    assert runner.python is not None
    host = "circus_tasks.plugins.host"
    return [sys.executable, "-m", host, str(folder), runner.python, str(in_dir), str(out_dir)]


def unavailable_reason(runner: Runner) -> str | None:
    """Always available: it runs on this interpreter."""
    return None
