"""Showing our decisions on the jobs' flow runs: Cancelled, "Invalidated", Cancelling.

Our tables are the source of truth; what fails here because Prefect does not answer is done
again by the reconciler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.orchestration.client import prefect_calls
from circus_tasks.statuses import run_mirror

log = logging.getLogger(__name__)


def _on_run(job_id: str, act: Callable[[Job, Any], None]) -> None:
    """``act(job, client)`` if the job exists and has a flow run.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.flow_run_id is None:
            return
        session.expunge(job)
    with prefect_calls() as client:
        act(job, client)


def mirror_state(job_id: str) -> None:
    """Show our decision on the job's flow run (:data:`~circus_tasks.statuses.RUN_MIRRORS`):
    Cancelled, or "Invalidated" (Completed type).

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.client.schemas.objects import State, StateType

    def show(job: Job, client: Any) -> None:
        run = client.read_flow_run(job.flow_run_id)
        mirror = run.state and run_mirror(job.status, run.state.type, run.state.name)
        if not mirror:
            return
        message = mirror.message or job.invalidation_reason
        state = State(type=StateType(mirror.state_type), name=mirror.state_name, message=message)
        client.set_flow_run_state(job.flow_run_id, state, force=True)

    _on_run(job_id, show)


def request_cancellation(job_id: str) -> None:
    """Move a running job's flow run to Cancelling: Prefect stops the flow process.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.states import Cancelling

    def cancel(job: Job, client: Any) -> None:
        message = f"aborted by {job.abort_requested_by}"
        client.set_flow_run_state(job.flow_run_id, Cancelling(message=message), force=True)

    _on_run(job_id, cancel)


def try_mirror_state(job_id: str) -> None:
    """:func:`mirror_state`, leaving it to the reconciler if Prefect does not answer."""
    try:
        mirror_state(job_id)
    except PrefectUnavailableError as exc:
        log.warning("Job %s: Prefect state left to the reconciler: %s", job_id, exc)
