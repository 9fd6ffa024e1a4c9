"""Where a job's files live: its working folders while it runs, its results after."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from circus_tasks.settings import get_settings

PLUGIN_LOG = "plugin-log.txt"
"""The plug-in's output and error stream, kept with its results."""


@dataclass(frozen=True)
class JobFolders:
    """A job's working folders: the plug-in reads ``input`` and writes ``output``."""

    root: Path

    @property
    def input(self) -> Path:
        return self.root / "in"

    @property
    def output(self) -> Path:
        return self.root / "out"

    @property
    def scratch(self) -> Path:
        """The plug-in's TMPDIR and HOME: writable, not kept."""
        return self.root / "tmp"

    @property
    def log(self) -> Path:
        return self.root / PLUGIN_LOG


def job_folders(job_id: str) -> JobFolders:
    """The working folders of a job."""
    return JobFolders(get_settings().jobs_dir / job_id)


def results_folder(job_id: str) -> Path:
    """Where a job's output is kept after post-processing."""
    return get_settings().results_dir / job_id
