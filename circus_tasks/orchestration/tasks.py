"""Prefect tasks: each receives its input, calls one plain function and returns its output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from circus_tasks.jobs import steps as pipeline
from circus_tasks.orchestration.artifacts import publish_job_artifacts
from circus_tasks.orchestration.run import finish_job, set_stage
from circus_tasks.statuses import JobStage


@task(name="pre-processing", retries=0)
def pre_process(job_id: str) -> Path:
    """Build the plug-in's input volumes."""
    set_stage(job_id, JobStage.PRE)
    return pipeline.prepare_inputs(job_id)


@task(name="main-processing", retries=0)
def main_process(job_id: str, inputs: Path) -> Path:
    """Run the plug-in on ``inputs``."""
    set_stage(job_id, JobStage.MAIN)
    return pipeline.run_main(job_id)


@task(name="post-processing", retries=0)
def post_process(job_id: str, outputs: Path) -> dict[str, Any]:
    """Validate and store the results; the job is finished."""
    set_stage(job_id, JobStage.POST)
    results = pipeline.store_results(job_id)
    publish_job_artifacts(job_id, results, pipeline.results_folder(job_id))
    finish_job(job_id, results)
    return results
