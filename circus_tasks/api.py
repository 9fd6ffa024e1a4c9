"""What users call: submit, cancel, abort and invalidate jobs, and find them.

Each call checks its arguments, makes its change through :mod:`circus_tasks.jobs` (our tables
are the source of truth) and then tells Prefect (:mod:`circus_tasks.orchestration`). If
Prefect does not answer, the change stands and the reconciler tells Prefect later.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from circus_tasks.db.engine import CHUNK, session_scope
from circus_tasks.db.models import Job, JobRead
from circus_tasks.errors import CircusError
from circus_tasks.jobs import transitions
from circus_tasks.jobs.queries import (
    JobResults,
    get_job,
    get_job_results,
    job_events,
    list_jobs,
    read_jobs,
    require_job,
)
from circus_tasks.jobs.registration import JobRequest, SeriesInput, register_job, register_jobs
from circus_tasks.orchestration.dispatch import try_dispatch_jobs
from circus_tasks.orchestration.mirror import request_cancellation, try_mirror_state
from circus_tasks.statuses import TERMINAL, JobStatus
from circus_tasks.values import check_text

__all__ = [
    "JobRequest",
    "JobResults",
    "SeriesInput",
    "abort_job",
    "cancel_job",
    "get_job",
    "get_job_results",
    "invalidate_job",
    "job_events",
    "list_jobs",
    "submit_job",
    "submit_jobs",
    "wait_for_job",
]


def submit_job(
    plugin_id: str,
    series: Sequence[SeriesInput | str],
    *,
    priority: int = 0,
    force: bool = False,
    user: str | None = None,
) -> JobRead:
    """Register a job and create its Prefect flow run.

    The job row is committed before anything can run it. If Prefect does not answer, the job
    stays registered and the reconciler dispatches it when Prefect is back; so it does while
    ``CIRCUS_DISPATCH_WINDOW`` queued jobs of its priority or higher already have a flow run
    (its ``flow_run_id`` is then ``None`` until it gets one).

    Args:
        plugin_id: ``name@version`` of the plug-in.
        series: series UIDs (range "auto") or :class:`SeriesInput` items, in order.
        priority: higher runs first; first in, first out within a priority.
        force: register even if a duplicate exists.
        user: who submits (recorded on the job and its events).

    Raises:
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError, InputConditionError,
        DuplicateJobError.
    """
    with session_scope() as session:
        request = JobRequest(plugin_id, series, priority=priority, force=force, user=user)  # type: ignore[arg-type]
        job_id = register_job(request, session=session).id
    try_dispatch_jobs([job_id])
    return require_job(job_id)


def submit_jobs(requests: Sequence[JobRequest]) -> list[JobRead | CircusError]:
    """Register many jobs and create their Prefect flow runs, by the rules of
    :func:`submit_job`.

    Each request is judged on its own: the result holds, in request order, the registered job
    or the error that refused the request (``DuplicateJobError`` also for a repeat of an
    earlier request of the batch, unless forced). The valid jobs are committed first, a chunk
    at a time; then their flow runs are created together, many to a request.

    Example:
        >>> submit_jobs([JobRequest("volumetry@1.0.0", [uid]) for uid in uids])  # doctest: +SKIP
    """
    outcomes: list[Job | CircusError] = []
    for start in range(0, len(requests), CHUNK):
        with session_scope() as session:
            outcomes += register_jobs(requests[start : start + CHUNK], session=session)
    job_ids = [o.id for o in outcomes if isinstance(o, Job)]
    try_dispatch_jobs(job_ids)
    with session_scope() as session:
        reads = read_jobs(job_ids, session=session)
    return [reads[o.id] if isinstance(o, Job) else o for o in outcomes]


def cancel_job(job_id: str, *, user: str | None = None) -> JobRead:
    """Cancel a job that is still ``in_queue``; its flow run ends Cancelled.

    Raises:
        JobNotFoundError, JobStateError ("You cannot cancel this job because its status is X").
    """
    check_text(user, "user")
    with session_scope() as session:
        transitions.cancel(job_id, user=user, session=session)
    try_mirror_state(job_id)
    return require_job(job_id)


def abort_job(job_id: str, *, user: str | None = None) -> JobRead:
    """Stop a ``processing`` job through Prefect's cancellation (CIRCUS cannot).

    The plug-in's processes are killed, the job ends ``failed`` with "aborted by USER", and the
    machine takes its next job.

    Raises:
        JobNotFoundError, JobStateError ("You cannot abort this job because its status is X").
    """
    check_text(user, "user")
    with session_scope() as session:
        transitions.request_abort(job_id, user=user or "unknown user", session=session)
    request_cancellation(job_id)
    return require_job(job_id)


def invalidate_job(job_id: str, *, reason: str, user: str | None = None) -> JobRead:
    """Mark a ``finished`` job invalid (who, when, why); its flow run shows "Invalidated".

    Raises:
        JobNotFoundError, JobStateError ("You cannot invalidate this job because ...").
    """
    check_text(reason, "reason", optional=False)
    check_text(user, "user")
    with session_scope() as session:
        transitions.invalidate(job_id, reason=reason, user=user, session=session)
    try_mirror_state(job_id)
    return require_job(job_id)


def wait_for_job(
    job_id: str, timeout: float, *, until: Iterable[JobStatus] = TERMINAL | {JobStatus.FINISHED}
) -> JobRead:
    """Wait until a job reaches one of ``until`` (default: finished or any end status).

    Raises:
        JobNotFoundError: for an unknown job.
        TimeoutError: naming the job's status when ``timeout`` seconds have passed.
    """
    wanted = set(until)
    deadline = time.monotonic() + timeout
    while True:
        job = require_job(job_id)
        if job.status in wanted:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"Job {job_id} is still {job.status} after {timeout} s.")
        time.sleep(0.25)
