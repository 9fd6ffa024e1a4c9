"""New flow runs for queued jobs whose run died before the job started."""

from __future__ import annotations

import logging
from dataclasses import replace

from circus_tasks.db.engine import session_scope
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.jobs import transitions
from circus_tasks.jobs.queries import start_failures
from circus_tasks.orchestration.client import prefect_client, unreachable_errors
from circus_tasks.orchestration.dispatch import create_runs, run_requests, unanswered

log = logging.getLogger(__name__)


def restart_job(job_id: str, reason: str) -> str | None:
    """Give a queued job whose flow run died before the job started (a busy or restarting
    server, a worker or flow process killed on the way) a new flow run, and record why.

    Returns:
        The new flow run's id, or ``None`` when the job no longer waits on its old run.

    Raises:
        PrefectUnavailableError: when Prefect does not answer (the reconciler tries again).
    """
    requests, existing = run_requests([job_id], again=True)
    if not requests or job_id not in existing:
        return None
    with session_scope() as session:
        attempt = start_failures(job_id, session=session) + 2
    request = replace(requests[0], key=f"{job_id}#{attempt}")
    try:
        created, errors = create_runs([request])
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
    if errors:
        if unanswered(errors[0]):
            raise PrefectUnavailableError(f"Prefect does not answer: {errors[0]}") from errors[0]
        raise errors[0]
    with session_scope() as session:
        won = transitions.replace_run(
            job_id, existing[job_id], created[job_id], reason, session=session
        )
    if not won:  # cancelled or started meanwhile: the new run is not needed
        _cancel_spare_run(created[job_id])
        return None
    return created[job_id]


def _cancel_spare_run(flow_run_id: str) -> None:
    from prefect.states import Cancelled

    try:
        with prefect_client() as client:
            client.set_flow_run_state(flow_run_id, Cancelled(message="not needed"), force=True)
    except unreachable_errors() as exc:
        log.warning("flow run %s not needed, but not cancelled: %s", flow_run_id, exc)
