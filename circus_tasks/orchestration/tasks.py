"""Prefect tasks: each receives its input, calls one plain function and returns its output.

They pass real values: pre-processing returns the input folder, main processing takes it and
returns the output folder, post-processing takes that. Nothing is cached: a job's steps run
every time its flow runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from circus_tasks.db.engine import session_scope
from circus_tasks.jobs import steps, transitions
from circus_tasks.jobs.folders import results_folder
from circus_tasks.jobs.steps import JobContext
from circus_tasks.orchestration.artifacts import publish_job_artifacts
from circus_tasks.statuses import JobStage


def _stage(context: JobContext, stage: JobStage) -> None:
    with session_scope() as session:
        transitions.set_stage(context.job_id, stage, session=session)


@task(name="pre-processing", retries=0, cache_policy=NO_CACHE)
def pre_process(context: JobContext) -> Path:
    """Build the plug-in's input volumes; returns the input folder."""
    _stage(context, JobStage.PRE)
    return steps.prepare_inputs(context)


@task(name="main-processing", retries=0, cache_policy=NO_CACHE)
def main_process(context: JobContext, inputs: Path) -> Path:
    """Run the plug-in on ``inputs``; returns its output folder."""
    _stage(context, JobStage.MAIN)
    return steps.run_main(context, inputs)


@task(name="post-processing", retries=0, cache_policy=NO_CACHE)
def post_process(context: JobContext, outputs: Path) -> dict[str, Any]:
    """Validate and store the results in ``outputs``; the job is finished."""
    _stage(context, JobStage.POST)
    results = steps.store_results(context, outputs)
    publish_job_artifacts(context.job_id, results, results_folder(context.job_id))
    with session_scope() as session:
        transitions.finish(context.job_id, results, session=session)
    return results
