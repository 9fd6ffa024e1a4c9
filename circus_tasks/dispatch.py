"""Creating and updating the Prefect flow runs of jobs.

Our tables are the source of truth; Prefect is told about each job (its flow run) and mirrors
our decisions (Cancelled, "Invalidated"). Anything that fails here because Prefect does not
answer is done again by the reconciler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from circus_tasks.db import session_scope
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.models import Job, JobSeries
from circus_tasks.settings import get_settings
from circus_tasks.statuses import INVALIDATED_STATE_NAME, JobStatus

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

log = logging.getLogger(__name__)

_known_queues: set[str] = set()


def queue_name(priority: int) -> str:
    """The work queue of a job priority (``priority+0``, ``priority+5``, ``priority-2``)."""
    return f"priority{priority:+d}"


def _priority_of(name: str) -> int | None:
    try:
        return int(name.removeprefix("priority")) if name.startswith("priority") else None
    except ValueError:
        return None


def ensure_priority_queue(client: SyncPrefectClient, priority: int) -> str:
    """Create the work queue of ``priority`` if needed, and keep queue priorities in order.

    Prefect serves queues by their rank (1 first); our higher job priority gets the lower rank.
    """
    from prefect.exceptions import ObjectAlreadyExists

    settings = get_settings()
    name = queue_name(priority)
    if name in _known_queues:
        return name
    queues = client.read_work_queues(work_pool_name=settings.work_pool)
    if name not in {q.name for q in queues}:
        try:
            client.create_work_queue(name=name, work_pool_name=settings.work_pool)
        except ObjectAlreadyExists:
            pass
        queues = client.read_work_queues(work_pool_name=settings.work_pool)
    ours = sorted(
        (q for q in queues if _priority_of(q.name) is not None),
        key=lambda q: -(_priority_of(q.name) or 0),
    )
    for rank, queue in enumerate(ours, start=1):
        if queue.priority != rank:
            client.update_work_queue(queue.id, priority=rank)
    _known_queues.update(q.name for q in ours)
    return name


def prefect_client() -> Any:
    """A synchronous Prefect client (import deferred: Prefect costs ~2 s to import)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def dispatch_job(job_id: str) -> str | None:
    """Create the flow run of an ``in_queue`` job that has none; return its id.

    Idempotent: the flow run's idempotency key is the job id, so two dispatchers that race
    create one run.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    settings = get_settings()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.IN_QUEUE or job.flow_run_id:
            return job.flow_run_id if job else None
        series = list(session.exec(select(JobSeries.series_uid).where(JobSeries.job_id == job_id)))
        priority, plugin_id, user = job.priority, job.plugin_id, job.user
    tags = [f"plugin:{plugin_id}", *(f"series:{uid}" for uid in series)]
    if user:
        tags.append(f"user:{user}")
    try:
        with prefect_client() as client:
            deployment = client.read_deployment_by_name(settings.deployment)
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"job_id": job_id},
                name=job_id,
                tags=tags,
                idempotency_key=job_id,
                work_queue_name=ensure_priority_queue(client, priority),
            )
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.flow_run_id).is_(None))
            .values(flow_run_id=str(run.id))
        )
    return str(run.id)


def try_dispatch(job_id: str) -> str | None:
    """:func:`dispatch_job`, leaving the job to the reconciler if Prefect does not answer."""
    try:
        return dispatch_job(job_id)
    except PrefectUnavailableError as exc:
        log.warning("Job %s registered; dispatch deferred to the reconciler: %s", job_id, exc)
        return None


def mirror_state(job_id: str) -> None:
    """Show our decision on the job's flow run: Cancelled, or "Invalidated" (Completed type).

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.states import Cancelled, Completed

    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.flow_run_id is None:
            return
        status, run_id, reason = job.status, job.flow_run_id, job.invalidation_reason
    try:
        with prefect_client() as client:
            run = client.read_flow_run(run_id)
            if status == JobStatus.CANCELLED and run.state and not run.state.is_final():
                client.set_flow_run_state(
                    run_id, Cancelled(message="cancelled in CIRCUS before it ran"), force=True
                )
            elif status == JobStatus.INVALIDATED and run.state and run.state.is_completed():
                if run.state.name != INVALIDATED_STATE_NAME:
                    client.set_flow_run_state(
                        run_id,
                        Completed(name=INVALIDATED_STATE_NAME, message=reason),
                        force=True,
                    )
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc


def request_cancellation(job_id: str) -> None:
    """Move a running job's flow run to Cancelling: Prefect stops the flow process.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.states import Cancelling

    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.flow_run_id is None:
            return
        run_id, who = job.flow_run_id, job.abort_requested_by
    try:
        with prefect_client() as client:
            client.set_flow_run_state(run_id, Cancelling(message=f"aborted by {who}"), force=True)
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc


def try_mirror_state(job_id: str) -> None:
    """:func:`mirror_state`, leaving it to the reconciler if Prefect does not answer."""
    try:
        mirror_state(job_id)
    except PrefectUnavailableError as exc:
        log.warning("Job %s: Prefect state left to the reconciler: %s", job_id, exc)


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "Prefect is not there (yet)": no server, or no pool/deployment yet."""
    import httpx
    from prefect.exceptions import ObjectNotFound

    return (httpx.TransportError, OSError, ObjectNotFound)
