"""Running a job, as plain functions: the claim, which hands the run everything it needs, then
pre-processing, main processing and post-processing, each taking the folder the step before
returned. The Prefect tasks in :mod:`circus_tasks.orchestration.tasks` call them; tests call
them directly.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from circus_tasks.db.models import Job, JobSeries
from circus_tasks.errors import StorageError
from circus_tasks.jobs import transitions
from circus_tasks.jobs.folders import (
    INPUTS_FILE,
    PLUGIN_LOG,
    JobFolders,
    job_folders,
    results_folder,
)
from circus_tasks.plugins.launch import run_plugin
from circus_tasks.plugins.registry import Plugin, get_plugin
from circus_tasks.plugins.results import check_output_tree, load_results
from circus_tasks.store.ranges import ImageRange
from circus_tasks.store.series import image_rows
from circus_tasks.store.slices import SeriesSlices, input_digest, pick_slices
from circus_tasks.volume.writer import write_volume


@dataclass(frozen=True)
class JobContext:
    """What a claimed job's run needs, read once when it is claimed."""

    job_id: str
    plugin: Plugin
    series: list[SeriesSlices]
    """Each series of the job, in job order: its files in range order and their stored facts."""
    folders: JobFolders


def load_context(job: Job, *, session: Session) -> JobContext:
    """The run context of ``job``: its plug-in, its series' ranges resolved to files.

    Raises:
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError: the job's plug-in or
            images are gone since it was registered.
    """
    entries = session.exec(
        select(JobSeries).where(JobSeries.job_id == job.id).order_by(col(JobSeries.position))
    ).all()
    series = [
        pick_slices(
            image_rows(entry.series_uid, session=session),
            ImageRange(entry.start, entry.end, entry.delta),
            entry.series_uid,
        )
        for entry in entries
    ]
    return JobContext(job.id, get_plugin(job.plugin_id), series, job_folders(job.id))


def claim_job(
    job_id: str, *, machine: str, flow_run_id: str | None, session: Session
) -> JobContext | None:
    """Claim the job for this run (``in_queue -> processing``) and read what the run needs.

    Returns:
        The run's context, or ``None`` when the job was not ``in_queue`` (cancelled first, or
        claimed by another run). When the context cannot be read, the claim is not made either:
        the caller's session rolls back.
    """
    if not transitions.claim(job_id, machine=machine, flow_run_id=flow_run_id, session=session):
        return None
    job = session.get(Job, job_id)
    assert job is not None
    context = load_context(job, session=session)
    job.input_digest = input_digest([s.sop_uids for s in context.series])
    job.input_count = sum(len(s.sop_uids) for s in context.series)
    job.plugin_digest = context.plugin.fingerprint()
    session.add(job)
    return context


def prepare_inputs(context: JobContext) -> Path:
    """Pre-processing: write ``N.mhd``/``N.raw``/``N.json`` of each series into a fresh input
    folder (and empty output and scratch folders). Returns the input folder."""
    folders = context.folders
    if folders.root.exists():
        shutil.rmtree(folders.root)
    folders.input.mkdir(parents=True)
    folders.output.mkdir()
    folders.scratch.mkdir()
    for index, (files, stored, _) in enumerate(context.series):
        write_volume(files, folders.input, index, stored=stored)
    lines = [f"# series {i}" + "\n" + "\n".join(s.sop_uids) for i, s in enumerate(context.series)]
    (folders.root / INPUTS_FILE).write_text("\n".join(lines) + "\n")
    return folders.input


def run_main(context: JobContext, in_dir: Path) -> Path:
    """Main processing: run the job's plug-in on ``in_dir``. Returns the output folder."""
    folders = context.folders
    run_plugin(context.plugin, in_dir, folders.output, folders.log, folders.scratch)
    return folders.output


MAX_KEPT_LOG_BYTES = 20 * 1024 * 1024
"""The most of the plug-in log kept with the results: its start and its end, the middle cut."""


def copy_bounded(source: Path, target: Path, limit: int) -> None:
    """Copy ``source``, keeping at most ``limit`` bytes: its first and last halves, and a line
    that says how much was left out between them."""
    size = source.stat().st_size
    if size <= limit:
        shutil.copyfile(source, target)
        return
    half = limit // 2
    with source.open("rb") as read, target.open("wb") as write:
        write.write(read.read(half))
        write.write(f"\n[runner] ... {size - 2 * half:,} bytes left out ...\n".encode())
        read.seek(size - half)
        write.write(read.read(half))


def store_results(context: JobContext, out_dir: Path) -> dict[str, Any]:
    """Post-processing: validate ``results.json`` in ``out_dir``, copy the folder and the
    plug-in log to the results store under the job id. Returns the parsed results.

    The copy is written beside its place and renamed in, so a failure leaves nothing behind.
    """
    check_output_tree(out_dir)
    results = load_results(out_dir)
    target = results_folder(context.job_id)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out_dir, partial, symlinks=True)
        for kept in (PLUGIN_LOG, INPUTS_FILE):
            if (context.folders.root / kept).exists():
                copy_bounded(context.folders.root / kept, partial / kept, MAX_KEPT_LOG_BYTES)
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise StorageError(
            f"The results of job {context.job_id} could not be stored in {target.parent}: "
            f"{_why(exc)}. Free space there (or fix it) and resubmit the job."
        ) from exc
    return results


def _why(exc: OSError | shutil.Error) -> str:
    """The first cause of a failed copy (``shutil.Error`` lists one per file)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        first = exc.args[0][0]
        return str(first[2]) if len(first) == 3 else str(first)
    return exc.strerror or str(exc)
