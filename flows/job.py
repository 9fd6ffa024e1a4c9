"""The CIRCUS job flow: pre-processing -> main processing -> post-processing. Wiring only."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, runtime
from prefect.states import Cancelled
from prefect.utilities.annotations import quote

from circus_tasks.jobs.steps import JobContext
from circus_tasks.orchestration.run import job_execution
from circus_tasks.orchestration.tasks import main_process, post_process, pre_process


@flow(name="circus-job", persist_result=False)
def circus_job(job_id: str) -> Any:
    """Run one CIRCUS job on this machine, one job at a time."""
    with job_execution(job_id, runtime.flow_run.id) as run:
        if run.context is None:
            return Cancelled(message=run.reason)
        # the tasks get the context itself; quoted, Prefect does not search it for futures
        context = cast(JobContext, quote(run.context))
        inputs = pre_process(context)
        outputs = main_process(context, inputs)
        return post_process(context, outputs)
