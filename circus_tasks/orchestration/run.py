"""What happens around a job's run on a machine: the machine lock, the start-or-cancel
decision, heartbeats, and the final status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from filelock import FileLock
from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlmodel import col

from circus_tasks.api import move_status
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job, utcnow
from circus_tasks.errors import CircusError, JobNotFoundError
from circus_tasks.settings import get_settings
from circus_tasks.statuses import PREFECT_CANCEL_TYPES, JobStage, JobStatus

log = logging.getLogger(__name__)


PREFECT_USER = "a Prefect UI or API user"
"""Who aborted a running job whose flow run was cancelled in Prefect, not through CIRCUS."""


@contextmanager
def machine_lock(machine: str) -> Iterator[None]:
    """Hold this machine's lock: one job at a time, however many workers run here.

    An OS file lock, so that it is released when the holding process dies.
    """
    path = get_settings().locks_dir / f"{machine}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


def claim_job(job_id: str, *, machine: str, flow_run_id: str | None) -> bool:
    """The start-or-cancel decision: atomically move ``in_queue -> processing``.

    Returns:
        ``True`` if this run may process the job; ``False`` if it was cancelled (or otherwise
        left ``in_queue``) first.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "machine": machine,
        "started_at": now,
        "heartbeat_at": now,
        "stage": JobStage.PRE,
    }
    with session_scope() as session:
        won = move_status(
            job_id,
            JobStatus.IN_QUEUE,
            JobStatus.PROCESSING,
            session=session,
            by=f"machine:{machine}",
            reason="execution started",
            prefect_state="RUNNING",
            **values,
        )
        if won and flow_run_id:
            session.execute(
                update(Job)
                .where(col(Job.id) == job_id, col(Job.flow_run_id).is_(None))
                .values(flow_run_id=flow_run_id)
            )
    return won


def set_stage(job_id: str, stage: JobStage) -> None:
    """Record which part of the job runs now."""
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.status) == JobStatus.PROCESSING)
            .values(stage=stage, updated_at=utcnow())
        )


def beat(job_id: str) -> None:
    """Record that the job's process is alive."""
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.status) == JobStatus.PROCESSING)
            .values(heartbeat_at=utcnow())
        )


@contextmanager
def heartbeat(job_id: str, every: float | None = None) -> Iterator[None]:
    """Beat from a background thread while the block runs."""
    period = every or get_settings().heartbeat_seconds
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            try:
                beat(job_id)
            except Exception:  # a missed beat is retried; the reconciler tolerates several
                log.exception("heartbeat of job %s failed", job_id)

    thread = threading.Thread(target=loop, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def finish_job(job_id: str, results: dict[str, Any]) -> bool:
    """``processing -> finished`` with the results."""
    with session_scope() as session:
        return move_status(
            job_id,
            JobStatus.PROCESSING,
            JobStatus.FINISHED,
            session=session,
            reason="results stored",
            prefect_state="COMPLETED",
            results=results,
            stage=None,
            finished_at=utcnow(),
        )


def fail_job(
    job_id: str, message: str, *, by: str | None = None, prefect_state: str = "FAILED"
) -> bool:
    """``processing -> failed`` with a readable error message."""
    with session_scope() as session:
        return move_status(
            job_id,
            JobStatus.PROCESSING,
            JobStatus.FAILED,
            session=session,
            by=by,
            reason=message,
            prefect_state=prefect_state,
            error_message=message,
            finished_at=utcnow(),
        )


def aborted_by(job_id: str) -> str | None:
    """Who asked to abort the job, if anyone did."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        return job.abort_requested_by if job else None


def _cancelled_in_prefect(flow_run_id: str | None) -> bool:
    """Whether the flow run was moved to Cancelling/Cancelled in Prefect (UI or API)."""
    if flow_run_id is None:
        return False
    from circus_tasks.orchestration.dispatch import prefect_client, unreachable_errors

    try:
        with prefect_client() as client:
            state = client.read_flow_run(flow_run_id).state
    except unreachable_errors():
        return False
    return state is not None and state.type.value in PREFECT_CANCEL_TYPES


def error_message(
    exc: BaseException, job_id: str | None = None, flow_run_id: str | None = None
) -> str:
    """A readable message for a job that failed with ``exc`` ("aborted by USER" if it was)."""
    from prefect.exceptions import TerminationSignal

    who = aborted_by(job_id) if job_id else None
    if who is None and isinstance(exc, TerminationSignal):
        if _cancelled_in_prefect(flow_run_id):
            who = PREFECT_USER  # the run was cancelled in Prefect, not through CIRCUS
        else:
            return "the job's process was stopped by a signal (worker stopped or killed?)"
    if who:
        return f"aborted by {who}"
    if isinstance(exc, CircusError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return f"the job's process was stopped ({type(exc).__name__})"
    text = str(exc) or "no message"
    return f"{type(exc).__name__}: {text}"


@dataclass
class Execution:
    """The outcome of the start-or-cancel decision for one flow run.

    Attributes:
        status: When not claimed, the status that kept the job from starting (usually
            ``cancelled``; ``processing`` or later when another run of it got there first).
    """

    job_id: str
    claimed: bool
    machine: str
    status: JobStatus | None = None

    @property
    def reason(self) -> str:
        """Why the job did not start here (empty when it did)."""
        if self.claimed:
            return ""
        if self.status == JobStatus.CANCELLED:
            return f"job {self.job_id} was cancelled before it started"
        return f"job {self.job_id} was not started: its status is already {self.status}"


@contextmanager
def job_execution(job_id: str, flow_run_id: str | None = None) -> Iterator[Execution]:
    """Run a job on this machine: lock, claim, beat; fail the job if the block raises.

    Yields an :class:`Execution` whose ``claimed`` is ``False`` when the job was cancelled
    (or otherwise left ``in_queue``) before it could start: the caller must then not run
    anything, and :attr:`Execution.reason` says why.

    Raises:
        JobNotFoundError: no job has this id in our database (a run created outside CIRCUS,
            or a worker pointed at another database).
    """
    machine = get_settings().machine
    with machine_lock(machine):
        claimed = claim_job(job_id, machine=machine, flow_run_id=flow_run_id)
        if not claimed:
            with session_scope() as session:
                job = session.get(Job, job_id)
                status = job.status if job is not None else None
            if status is None:
                where = make_url(get_settings().db_url).render_as_string(hide_password=True)
                raise JobNotFoundError(
                    f"No job {job_id} in the CIRCUS database ({where}): this "
                    "flow run was not created by CIRCUS, or the worker uses another database "
                    "(CIRCUS_DATABASE_URL). Submit jobs with `circus submit` or submit_job()."
                )
            yield Execution(job_id, False, machine, status)
            return
        with heartbeat(job_id):
            try:
                yield Execution(job_id, True, machine)
            except BaseException as exc:
                message = error_message(exc, job_id, flow_run_id)
                fail_job(job_id, message, by=f"machine:{machine}")
                raise
