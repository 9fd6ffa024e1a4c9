"""The three parts of a job as plain functions: pre-processing, main processing,
post-processing. Tasks in :mod:`circus_tasks.orchestration.tasks` call them; tests call them
directly.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job, JobSeries
from circus_tasks.errors import JobNotFoundError, ResultsError
from circus_tasks.plugins.registry import get_plugin, run_plugin
from circus_tasks.plugins.results import load_results
from circus_tasks.settings import get_settings
from circus_tasks.store.ranges import ImageRange
from circus_tasks.store.series import series_images, stored_facts
from circus_tasks.volume.stored import StoredSlice
from circus_tasks.volume.writer import write_volume

PLUGIN_LOG = "plugin-log.txt"


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


def series_slices(job_id: str) -> list[tuple[list[Path], list[StoredSlice | None]]]:
    """For each series of the job, in job order, its image files in range order and the
    facts import stored for each (``None`` where there are none)."""
    with session_scope() as session:
        if session.get(Job, job_id) is None:
            raise JobNotFoundError(f"No job {job_id}.")
        entries = session.exec(
            select(JobSeries).where(JobSeries.job_id == job_id).order_by(col(JobSeries.position))
        ).all()
        volumes = []
        for entry in entries:
            # series_images' order (number, then import order) decides duplicates the way
            # `circus volume` does: the image imported last wins
            by_number = {
                image.instance_number: image
                for image in series_images(entry.series_uid, session=session)
            }
            image_range = ImageRange(entry.start, entry.end, entry.delta)
            image_range.check_exists(by_number, entry.series_uid)
            images = [by_number[n] for n in image_range.numbers()]
            volumes.append(
                (
                    [Path(image.path) for image in images],
                    [stored_facts(image) for image in images],
                )
            )
    return volumes


def prepare_inputs(job_id: str) -> Path:
    """Pre-processing: write ``N.mhd``/``N.raw``/``N.json`` of each series into a fresh input
    folder (and an empty output folder). Returns the input folder."""
    folders = job_folders(job_id)
    if folders.root.exists():
        shutil.rmtree(folders.root)
    folders.input.mkdir(parents=True)
    folders.output.mkdir()
    folders.scratch.mkdir()
    for index, (files, stored) in enumerate(series_slices(job_id)):
        write_volume(files, folders.input, index, stored=stored)
    return folders.input


def run_main(job_id: str) -> Path:
    """Main processing: run the job's plug-in on its input folder. Returns the output folder."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"No job {job_id}.")
        plugin_id = job.plugin_id
    folders = job_folders(job_id)
    run_plugin(get_plugin(plugin_id), folders.input, folders.output, folders.log, folders.scratch)
    return folders.output


def check_output_tree(out_dir: Path) -> None:
    """Refuse an output folder holding anything that points outside it.

    Raises:
        ResultsError: naming each symbolic link or special file found.
    """
    bad = []
    for root, dirs, files in os.walk(out_dir):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                bad.append(f"{path.relative_to(out_dir)} (symbolic link to {os.readlink(path)})")
            elif not (path.is_dir() or path.is_file()):
                bad.append(f"{path.relative_to(out_dir)} (not a regular file)")
    if bad:
        raise ResultsError(
            "The plug-in's output holds entries that are not plain files: "
            + ", ".join(bad)
            + ". A plug-in may only write regular files inside its output folder."
        )


def store_results(job_id: str) -> dict[str, Any]:
    """Post-processing: validate ``results.json``, copy the output folder and the plug-in log
    to the results store under the job id. Returns the parsed results.

    The copy is written beside its place and renamed in, so a failure leaves nothing behind.
    """
    folders = job_folders(job_id)
    check_output_tree(folders.output)
    results = load_results(folders.output)
    target = results_folder(job_id)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folders.output, partial, symlinks=True)
    if folders.log.exists():
        shutil.copyfile(folders.log, partial / PLUGIN_LOG)
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return results


@dataclass(frozen=True)
class JobResults:
    """A job's results: the parsed results.json and where its files are."""

    job_id: str
    status: str
    results: dict[str, Any] | None
    folder: Path | None
    files: list[Path]
    log: Path | None


def get_job_results(job_id: str) -> JobResults:
    """results.json and the output files of a job (files only once post-processing stored them).

    Raises:
        JobNotFoundError: for an unknown job.
    """
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"No job {job_id}; list jobs with circus jobs.")
        status, results = str(job.status), job.results
    folder = results_folder(job_id)
    stored = folder if folder.is_dir() else None
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if stored else []
    log = next((p for p in (folder / PLUGIN_LOG, job_folders(job_id).log) if p.is_file()), None)
    return JobResults(job_id, status, results, stored, files, log)
