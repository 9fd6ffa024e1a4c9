"""Creating and updating the Prefect flow runs of jobs.

Our tables are the source of truth; Prefect is told about each job (its flow run) and mirrors
our decisions (Cancelled, "Invalidated"). Anything that fails here because Prefect does not
answer is done again by the reconciler.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, update
from sqlmodel import col, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job, JobSeries
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.settings import get_settings
from circus_tasks.statuses import INVALIDATED_STATE_NAME, JobStatus

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import WorkQueue

log = logging.getLogger(__name__)

BULK = 100
"""Flow runs per request to Prefect's bulk endpoint (``POST /deployments/{id}/create_flow_run/
bulk``; the server takes at most 100). The server creates a request's runs in one transaction,
so a batch pays for the request, the deployment read and the commit once instead of per run."""

BUSY_RETRIES = 8
"""How often the runs that the server could not write ("database is locked": its SQLite was
taken by another writer, e.g. its event persister) are asked for again, after a short pause."""

CHUNK = 500
"""Jobs per database statement when reading or updating many at once."""

_known_queues: set[str] = set()


def queue_name(priority: int) -> str:
    """The work queue of a job priority (``priority+0``, ``priority+5``, ``priority-2``)."""
    return f"priority{priority:+d}"


def _priority_of(name: str) -> int | None:
    try:
        return int(name.removeprefix("priority")) if name.startswith("priority") else None
    except ValueError:
        return None


def _queue_ranks(queues: Iterable[WorkQueue]) -> list[tuple[Any, int]]:
    """``(queue id, rank)`` for each of our priority queues whose rank is out of order."""
    ours = sorted(
        (q for q in queues if _priority_of(q.name) is not None),
        key=lambda q: -(_priority_of(q.name) or 0),
    )
    return [(q.id, rank) for rank, q in enumerate(ours, start=1) if q.priority != rank]


def ensure_priority_queues(client: SyncPrefectClient, priorities: Iterable[int]) -> dict[int, str]:
    """Create the work queues of ``priorities`` if needed, and keep queue priorities in order.

    Prefect serves queues by their rank (1 first); our higher job priority gets the lower rank.

    Returns:
        The queue name of each priority.
    """
    from prefect.exceptions import ObjectAlreadyExists

    pool = get_settings().work_pool
    names = {priority: queue_name(priority) for priority in priorities}
    if set(names.values()) <= _known_queues:
        return names
    queues = client.read_work_queues(work_pool_name=pool)
    missing = set(names.values()) - {q.name for q in queues}
    for name in sorted(missing):
        try:
            client.create_work_queue(name=name, work_pool_name=pool)
        except ObjectAlreadyExists:
            pass
    if missing:
        queues = client.read_work_queues(work_pool_name=pool)
    for queue_id, rank in _queue_ranks(queues):
        client.update_work_queue(queue_id, priority=rank)
    _known_queues.update(q.name for q in queues if _priority_of(q.name) is not None)
    return names


def prefect_client() -> Any:
    """A synchronous Prefect client (import deferred: Prefect costs ~2 s to import)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True, httpx_settings=client_settings())


def client_settings() -> dict[str, Any]:
    """httpx settings for our Prefect clients.

    Prefect builds a TLS context and loads a certificate bundle for every new client (~20 ms
    here, a quarter of a ``submit_job`` call), even when the API is plain HTTP and never uses
    it. For a plain-HTTP API the clients of this process share one context instead; for HTTPS,
    Prefect's own handling (its certificate settings) applies unchanged.
    """
    from prefect.settings import PREFECT_API_URL

    if (PREFECT_API_URL.value() or "").startswith("http://"):
        return {"verify": _unused_tls_context()}
    return {}


@lru_cache(maxsize=1)
def _unused_tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


@dataclass(frozen=True)
class _RunRequest:
    """What a job's flow run is created from."""

    job_id: str
    priority: int
    tags: list[str]


def _run_requests(job_ids: Sequence[str]) -> tuple[list[_RunRequest], dict[str, str]]:
    """The ``in_queue`` jobs among ``job_ids`` that have no flow run yet, and the flow run ids
    of those that have one (read in a few queries, not one per job)."""
    wanted = list(dict.fromkeys(job_ids))
    requests: list[_RunRequest] = []
    existing: dict[str, str] = {}
    with session_scope() as session:
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            jobs = session.exec(select(Job).where(col(Job.id).in_(chunk))).all()
            series: dict[str, list[str]] = defaultdict(list)
            for job_id, uid in session.exec(
                select(JobSeries.job_id, JobSeries.series_uid)
                .where(col(JobSeries.job_id).in_(chunk))
                .order_by(col(JobSeries.job_id), col(JobSeries.position))
            ):
                series[job_id].append(uid)
            for job in jobs:
                if job.flow_run_id:
                    existing[job.id] = job.flow_run_id
                elif job.status == JobStatus.IN_QUEUE:
                    tags = [f"plugin:{job.plugin_id}", *(f"series:{u}" for u in series[job.id])]
                    if job.user:
                        tags.append(f"user:{job.user}")
                    requests.append(_RunRequest(job.id, job.priority, tags))
    requests.sort(key=lambda r: r.job_id)
    return requests, existing


class RunCreationError(RuntimeError):
    """Prefect refused to create a job's flow run for a reason that asking again will not fix."""


class PrefectBusyError(RuntimeError):
    """The Prefect server's database stayed busy: the runs can be asked for again later."""


def _busy(error: str) -> bool:
    """Whether a refusal from the bulk endpoint means "the database was busy, ask again"."""
    return "database is locked" in error or "could not serialize" in error


def _run_body(request: _RunRequest, queue: str | None, scheduled_time: datetime) -> dict[str, Any]:
    """One flow run of the bulk endpoint's request body (``queue`` None: the deployment's)."""
    body: dict[str, Any] = {
        "name": request.job_id,
        "parameters": {"job_id": request.job_id},
        "tags": request.tags,
        "idempotency_key": request.job_id,
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": scheduled_time.isoformat()},
        },
    }
    if queue is not None:
        body["work_queue_name"] = queue
    return body


def _other(queue: str, own: str | None) -> str | None:
    return None if queue == own else queue


def _create_runs(
    requests: Sequence[_RunRequest],
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
        now = datetime.now(UTC)
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
    requests, existing = _run_requests(job_ids)
    if not requests:
        return existing
    try:
        created, errors = _create_runs(requests)
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
    _store_run_ids(created)
    for error in errors:
        if not _unanswered(error):
            raise error
    if errors:
        left = len(requests) - len(created)
        raise PrefectUnavailableError(
            f"Prefect does not answer: {errors[0]} ({left} job(s) left to the reconciler)"
        ) from errors[0]
    return {**existing, **created}


def _unanswered(error: BaseException) -> bool:
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


def dispatch_job(job_id: str) -> str | None:
    """Create the flow run of an ``in_queue`` job that has none; return its id.

    Idempotent: the flow run's idempotency key is the job id, so two dispatchers that race
    create one run.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    return dispatch_jobs([job_id]).get(job_id)


def try_dispatch(job_id: str) -> str | None:
    """:func:`dispatch_job`, leaving the job to the reconciler if Prefect does not answer."""
    try:
        return dispatch_job(job_id)
    except PrefectUnavailableError as exc:
        log.warning("Job %s registered; dispatch deferred to the reconciler: %s", job_id, exc)
        return None


@contextmanager
def _prefect_calls() -> Iterator[Any]:
    """A Prefect client whose "not there" errors become :class:`PrefectUnavailableError`."""
    try:
        with prefect_client() as client:
            yield client
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc


def _job_with_run(job_id: str) -> Job | None:
    """The job, detached from its session, if it exists and has a flow run."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.flow_run_id is None:
            return None
        session.expunge(job)
        return job


def mirror_state(job_id: str) -> None:
    """Show our decision on the job's flow run: Cancelled, or "Invalidated" (Completed type).

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.states import Cancelled, Completed

    job = _job_with_run(job_id)
    if job is None:
        return
    status, run_id, reason = job.status, job.flow_run_id, job.invalidation_reason
    with _prefect_calls() as client:
        run = client.read_flow_run(run_id)
        if status == JobStatus.CANCELLED and run.state and not run.state.is_final():
            client.set_flow_run_state(
                run_id, Cancelled(message="cancelled in CIRCUS before it ran"), force=True
            )
        elif status == JobStatus.INVALIDATED and run.state and run.state.is_completed():
            if run.state.name != INVALIDATED_STATE_NAME:
                client.set_flow_run_state(
                    run_id, Completed(name=INVALIDATED_STATE_NAME, message=reason), force=True
                )


def request_cancellation(job_id: str) -> None:
    """Move a running job's flow run to Cancelling: Prefect stops the flow process.

    Raises:
        PrefectUnavailableError: when Prefect does not answer.
    """
    from prefect.states import Cancelling

    job = _job_with_run(job_id)
    if job is None:
        return
    with _prefect_calls() as client:
        client.set_flow_run_state(
            job.flow_run_id, Cancelling(message=f"aborted by {job.abort_requested_by}"), force=True
        )


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
