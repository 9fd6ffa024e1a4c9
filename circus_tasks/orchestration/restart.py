"""New flow runs for queued jobs whose run died before the job started."""

from __future__ import annotations

import logging
from dataclasses import replace
from uuid import uuid4

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.jobs import transitions
from circus_tasks.orchestration.client import prefect_client, unreachable_errors
from circus_tasks.orchestration.dispatch import (
    RunRequest,
    create_runs,
    run_requests,
    unanswered,
)

log = logging.getLogger(__name__)


RESTART_DELAY_SECONDS = 10.0
"""A new run is due this long after it is created, so that no worker starts it before the job
names it (a run the job does not name cannot claim the job)."""


def restart_job(job_id: str, failed_run: str, reason: str) -> str | None:
    """Give a queued job whose flow run ``failed_run`` died before the job started (a busy or
    restarting server, a worker or flow process killed on the way) a new flow run, and record
    why.

    Every reconciler that sees the same failed run asks for the same new run (its idempotency
    key names the failed run), and only the first binds it: the others find the job on it.

    Returns:
        The new flow run's id, or ``None`` when the job no longer waits on ``failed_run``.

    Raises:
        PrefectUnavailableError: when Prefect does not answer (the reconciler tries again).
    """
    requests, existing = run_requests([job_id], again=True)
    if not requests or existing.get(job_id) != failed_run:
        return None
    request = replace(requests[0], key=f"{job_id}#after-{failed_run}")
    new_run = _create(request)
    if _over(new_run):  # made by a pass that died before binding it, and ended since
        new_run = _create(replace(request, key=f"{request.key}-{uuid4().hex[:12]}"))
    with session_scope() as session:
        won = transitions.replace_run(job_id, failed_run, new_run, reason, session=session)
        now_on = session.get(Job, job_id)
        current = now_on.flow_run_id if now_on else None
    if not won:
        if current != new_run:  # cancelled or started meanwhile: the new run is not needed
            _cancel_spare_run(new_run)
        return None
    return new_run


def _create(request: RunRequest) -> str:
    try:
        created, errors = create_runs([request], delay=RESTART_DELAY_SECONDS)
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
    if errors:
        if unanswered(errors[0]):
            raise PrefectUnavailableError(f"Prefect does not answer: {errors[0]}") from errors[0]
        raise errors[0]
    return created[request.job_id]


def _over(flow_run_id: str) -> bool:
    try:
        with prefect_client() as client:
            state = client.read_flow_run(flow_run_id).state
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
    return state is not None and state.is_final()


def _cancel_spare_run(flow_run_id: str) -> None:
    from prefect.states import Cancelled

    try:
        with prefect_client() as client:
            client.set_flow_run_state(flow_run_id, Cancelled(message="not needed"), force=True)
    except unreachable_errors() as exc:
        log.warning("flow run %s not needed, but not cancelled: %s", flow_run_id, exc)
