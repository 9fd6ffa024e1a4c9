"""Showing our decisions on the jobs' flow runs: Cancelled, "Invalidated", Cancelling.

Our tables are the source of truth; what fails here because Prefect does not answer is done
again by the reconciler.
"""

from __future__ import annotations

import logging

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.orchestration.client import prefect_calls
from circus_tasks.statuses import JobStatus, run_mirror

log = logging.getLogger(__name__)


def _job_with_run(job_id: str) -> Job | None:
    """The job, detached from its session, if it exists and has a flow run."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.flow_run_id is None:
            return None
        session.expunge(job)
        return job


def mirror_state(job_id: str) -> None:
    """Show our decision on the job's flow run (:data:`~circus_tasks.statuses.RUN_MIRRORS`):
    Cancelled, or "Invalidated" (Completed type).

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.client.schemas.objects import State, StateType

    job = _job_with_run(job_id)
    if job is None:
        return
    with prefect_calls() as client:
        run = client.read_flow_run(job.flow_run_id)
        if run.state is None:
            return
        mirror = run_mirror(job.status, run.state.type, run.state.name)
        if mirror is None:
            return
        message = (
            job.invalidation_reason
            if job.status == JobStatus.INVALIDATED
            else "cancelled in CIRCUS before it ran"
        )
        state = State(type=StateType(mirror.state_type), name=mirror.state_name, message=message)
        client.set_flow_run_state(job.flow_run_id, state, force=True)


def request_cancellation(job_id: str) -> None:
    """Move a running job's flow run to Cancelling: Prefect stops the flow process.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.states import Cancelling

    job = _job_with_run(job_id)
    if job is None:
        return
    with prefect_calls() as client:
        client.set_flow_run_state(
            job.flow_run_id, Cancelling(message=f"aborted by {job.abort_requested_by}"), force=True
        )


def try_mirror_state(job_id: str) -> None:
    """:func:`mirror_state`, leaving it to the reconciler if Prefect does not answer."""
    try:
        mirror_state(job_id)
    except PrefectUnavailableError as exc:
        log.warning("Job %s: Prefect state left to the reconciler: %s", job_id, exc)
