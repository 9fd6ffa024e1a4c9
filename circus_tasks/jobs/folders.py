"""Where a job's files live: its working folders while it runs, its results after."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from circus_tasks.home import Subfolder
from circus_tasks.settings import get_settings

PLUGIN_LOG = "plugin-log.txt"
"""The plug-in's output and error stream, kept with its results."""

INPUTS_FILE = "input-images.txt"
"""The SOP instance UIDs a job used, series by series, kept with its results (the job row
holds their digest and count)."""


@dataclass(frozen=True)
class JobFolders:
    """A job's working folders: the plug-in reads ``input`` and writes ``output``."""

    root: Path

    input: ClassVar[Subfolder] = Subfolder("in", "What the plug-in reads.", under="root")
    output: ClassVar[Subfolder] = Subfolder("out", "What the plug-in writes.", under="root")
    scratch: ClassVar[Subfolder] = Subfolder(
        "tmp", "The plug-in's TMPDIR and HOME: writable, not kept.", under="root"
    )
    log: ClassVar[Subfolder] = Subfolder(PLUGIN_LOG, "The plug-in's log.", under="root")


def job_folders(job_id: str) -> JobFolders:
    """The working folders of a job."""
    return JobFolders(get_settings().jobs_dir / job_id)


def results_folder(job_id: str) -> Path:
    """Where a job's output is kept after post-processing."""
    return get_settings().results_dir / job_id
