"""The CIRCUS job flow: pre-processing -> main processing -> post-processing. Wiring only."""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime
from prefect.states import Cancelled

from circus_tasks.orchestration.run import job_execution
from circus_tasks.orchestration.tasks import main_process, post_process, pre_process


@flow(name="circus-job", persist_result=False)
def circus_job(job_id: str) -> Any:
    """Run one CIRCUS job on this machine, one job at a time."""
    with job_execution(job_id, runtime.flow_run.id) as run:
        if run.context is None:
            return Cancelled(message=run.reason)
        inputs = pre_process(run.context)
        outputs = main_process(run.context, inputs)
        return post_process(run.context, outputs)
