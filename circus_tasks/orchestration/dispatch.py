"""Creating the Prefect flow runs of registered jobs, many to a request.

Our tables are the source of truth: a job is committed ``in_queue`` before its run exists, and a
job whose run Prefect did not take is dispatched again by the reconciler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, update
from sqlmodel import col, select

from circus_tasks.db.engine import CHUNK, session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.jobs.queries import jobs_with_series
from circus_tasks.orchestration.client import prefect_client, unreachable_errors
from circus_tasks.orchestration.queues import ensure_priority_queues
from circus_tasks.settings import get_settings
from circus_tasks.statuses import JobStatus, RunState

log = logging.getLogger(__name__)

BULK = 100
"""Flow runs per request to Prefect's bulk endpoint (``POST /deployments/{id}/create_flow_run/
bulk``; the server takes at most 100). The server creates a request's runs in one transaction,
so a batch pays for the request, the deployment read and the commit once instead of per run."""

BUSY_RETRIES = 8
"""How often the runs that the server could not write ("database is locked": its SQLite was
taken by another writer, e.g. its event persister) are asked for again, after a short pause."""


@dataclass(frozen=True)
class RunRequest:
    """What a job's flow run is created from."""

    job_id: str
    priority: int
    tags: list[str]
    key: str = ""
    """The idempotency key: the job id for its first run, then one per restart."""


def run_requests(
    job_ids: Sequence[str], *, again: bool = False
) -> tuple[list[RunRequest], dict[str, str]]:
    """The ``in_queue`` jobs among ``job_ids`` that have no flow run yet (``again``: or have
    one), and the flow run ids of those that have one (read in a few queries, not one per
    job)."""
    requests: list[RunRequest] = []
    existing: dict[str, str] = {}
    with session_scope() as session:
        for job, series in jobs_with_series(job_ids, session=session):
            if job.flow_run_id:
                existing[job.id] = job.flow_run_id
            if job.status == JobStatus.IN_QUEUE and (again or not job.flow_run_id):
                tags = [f"plugin:{job.plugin_id}", *(f"series:{s.series_uid}" for s in series)]
                if job.user:
                    tags.append(f"user:{job.user}")
                requests.append(RunRequest(job.id, job.priority, tags))
    requests.sort(key=lambda r: r.job_id)
    return requests, existing


class RunCreationError(RuntimeError):
    """Prefect refused to create a job's flow run for a reason that asking again will not fix."""


class PrefectBusyError(RuntimeError):
    """The Prefect server's database stayed busy: the runs can be asked for again later."""


def _busy(error: str) -> bool:
    """Whether a refusal from the bulk endpoint means "the database was busy, ask again"."""
    return "database is locked" in error or "could not serialize" in error


def _run_body(request: RunRequest, queue: str | None, scheduled_time: datetime) -> dict[str, Any]:
    """One flow run of the bulk endpoint's request body (``queue`` None: the deployment's)."""
    body: dict[str, Any] = {
        "name": request.job_id,
        "parameters": {"job_id": request.job_id},
        "tags": request.tags,
        "idempotency_key": request.key or request.job_id,
        "state": {
            "type": RunState.SCHEDULED.value,
            "name": "Scheduled",
            "state_details": {"scheduled_time": scheduled_time.isoformat()},
        },
    }
    if queue is not None:
        body["work_queue_name"] = queue
    return body


def _other(queue: str, own: str | None) -> str | None:
    return None if queue == own else queue


def create_runs(
    requests: Sequence[RunRequest], delay: float = 0.0
) -> tuple[dict[str, str], list[BaseException]]:
    """Create the flow runs, :data:`BULK` to a request, one request at a time.

    The deployment and the priority queues are read once. The runs are scheduled a microsecond
    apart in job id (registration) order, so that each queue stays first in, first out. Runs
    that the server could not write because its database was busy are asked for again (the
    idempotency key, the job id, makes a repeat return the run that exists).

    Returns:
        The flow run id of each job whose run was created, and the errors of the others.
    """
    created: dict[str, str] = {}
    errors: list[BaseException] = []
    with prefect_client() as client:
        deployment = client.read_deployment_by_name(get_settings().deployment)
        queues = ensure_priority_queues(client, {r.priority for r in requests})
        now = datetime.now(UTC) + timedelta(seconds=delay)
        # a run for the deployment's own queue names none: the server then skips a lookup
        own = deployment.work_queue_name
        bodies = [
            (r, _run_body(r, _other(queues[r.priority], own), now + timedelta(microseconds=n)))
            for n, r in enumerate(requests)
        ]
        for start in range(0, len(bodies), BULK):
            pending = bodies[start : start + BULK]
            for attempt in range(BUSY_RETRIES + 1):
                if attempt:
                    log.info(
                        "%d flow run(s) asked for again (attempt %d): the Prefect server's "
                        "database was busy",
                        len(pending),
                        attempt,
                    )
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                try:
                    response = client.request(
                        "POST",
                        "/deployments/{id}/create_flow_run/bulk",  # type: ignore[arg-type]
                        path_params={"id": deployment.id},
                        json=[body for _, body in pending],
                    )
                except Exception as exc:  # noqa: BLE001 - the request failed: stop here
                    errors.append(exc)
                    return created, errors
                busy = []
                for (request, body), result in zip(
                    pending, response.json()["results"], strict=True
                ):
                    if result["status"] == "CREATED":
                        created[request.job_id] = str(result["flow_run_id"])
                    elif _busy(result.get("error") or ""):
                        busy.append((request, body))
                    else:
                        errors.append(
                            RunCreationError(
                                f"Prefect refused the flow run of job {request.job_id}: "
                                f"{result.get('error')}"
                            )
                        )
                pending = busy
                if not pending:
                    break
            if pending:
                errors.append(
                    PrefectBusyError(
                        f"{len(pending)} flow run(s) not written: the Prefect server's database "
                        f"stayed busy after {BUSY_RETRIES} retries"
                    )
                )
    return created, errors


def _store_run_ids(created: dict[str, str]) -> None:
    """Record the flow run ids: one UPDATE per chunk, never over an id already there."""
    items = sorted(created.items())
    with session_scope() as session:
        for start in range(0, len(items), CHUNK):
            chunk = dict(items[start : start + CHUNK])
            session.execute(
                update(Job)
                .where(col(Job.id).in_(list(chunk)), col(Job.flow_run_id).is_(None))
                .values(flow_run_id=case(chunk, value=col(Job.id)))
            )


def dispatch_jobs(job_ids: Sequence[str]) -> dict[str, str]:
    """Create the flow runs of the ``in_queue`` jobs among ``job_ids`` that have none.

    One Prefect client for the batch: the deployment and the priority queues are read once, and
    the runs are created :data:`BULK` to a request. Idempotent: each run's idempotency key is
    its job id, so two dispatchers that race create one run per job.

    Returns:
        The flow run id of every job of ``job_ids`` that has one now (jobs that are not
        ``in_queue`` and have no run are left out).

    Raises:
        PrefectUnavailableError: when Prefect does not answer; the runs created before that
            are recorded, the other jobs stay registered for the reconciler.
    """
    chosen = _within_window(job_ids)
    asked = set(job_ids)
    existing = _runs_of(job_ids)
    requests, _ = run_requests(chosen)
    if not requests:
        return existing
    try:
        created, errors = create_runs(requests)
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
    _store_run_ids(created)
    for error in errors:
        if not unanswered(error):
            raise error
    if errors:
        left = len(requests) - len(created)
        raise PrefectUnavailableError(
            f"Prefect does not answer: {errors[0]} ({left} job(s) left to the reconciler)"
        ) from errors[0]
    return {**existing, **{j: r for j, r in created.items() if j in asked}}


def _runs_of(job_ids: Sequence[str]) -> dict[str, str]:
    """The flow run id of each of ``job_ids`` that has one."""
    runs: dict[str, str] = {}
    with session_scope() as session:
        for start in range(0, len(job_ids), CHUNK):
            chunk = list(job_ids[start : start + CHUNK])
            query = select(Job.id, Job.flow_run_id).where(
                col(Job.id).in_(chunk), col(Job.flow_run_id).is_not(None)
            )
            runs.update({job_id: run for job_id, run in session.exec(query).all() if run})
    return runs


def _within_window(job_ids: Sequence[str]) -> list[str]:
    """The jobs that get a flow run now: of ``job_ids`` and of the jobs waiting for one (never
    a batch's: its feeder asks for those), highest priority first, then oldest first, while
    fewer than ``CIRCUS_DISPATCH_WINDOW`` queued jobs of that priority or higher have a run. The
    others stay registered (``in_queue``, no run yet) until room frees. Every worker's poll
    reads the queued runs, so a short queue in Prefect keeps its server's cost per run flat
    however many jobs wait in ours."""
    window = get_settings().dispatch_window
    waiting = (col(Job.status) == JobStatus.IN_QUEUE) & col(Job.flow_run_id).is_(None)
    with session_scope() as session:
        queued = session.exec(
            select(Job.priority, func.count())
            .where(Job.status == JobStatus.IN_QUEUE, col(Job.flow_run_id).is_not(None))
            .group_by(col(Job.priority))
        ).all()
        candidates = dict(
            session.exec(
                select(Job.id, Job.priority)
                .where(waiting, col(Job.batch_id).is_(None))
                .order_by(col(Job.priority).desc(), col(Job.id))
                .limit(window)
            ).all()
        )
        for start in range(0, len(job_ids), CHUNK):
            chunk = list(job_ids[start : start + CHUNK])
            asked = select(Job.id, Job.priority).where(waiting, col(Job.id).in_(chunk))
            candidates.update(session.exec(asked).all())
    taken: list[str] = []
    for job_id, priority in sorted(candidates.items(), key=lambda c: (-c[1], c[0])):
        ahead = sum(n for p, n in queued if p >= priority) + len(taken)
        if ahead < window:
            taken.append(job_id)
    return taken


def unanswered(error: BaseException) -> bool:
    """Whether a flow run creation failed because Prefect could not take it now: no server,
    or a server error left after the client's retries (e.g. its database stayed locked)."""
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(error, PrefectHTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, (PrefectBusyError, *unreachable_errors()))


def try_dispatch_jobs(job_ids: Sequence[str]) -> dict[str, str]:
    """:func:`dispatch_jobs`, leaving what Prefect did not take to the reconciler."""
    try:
        return dispatch_jobs(job_ids)
    except PrefectUnavailableError as exc:
        log.warning(
            "%d job(s) registered; dispatch deferred to the reconciler: %s", len(job_ids), exc
        )
        return {}
