"""What happens around a job's run on a machine: the machine lock, the start-or-cancel
decision, heartbeats, and the job failed with a readable reason if the run raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from filelock import FileLock
from sqlalchemy.engine import make_url

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import CircusError, JobNotFoundError
from circus_tasks.jobs import transitions
from circus_tasks.jobs.steps import JobContext, claim_job
from circus_tasks.orchestration.client import prefect_client, unreachable_errors
from circus_tasks.settings import get_settings
from circus_tasks.statuses import PREFECT_CANCEL_TYPES, JobStatus, RunState

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


@contextmanager
def heartbeat(job_id: str, every: float | None = None) -> Iterator[None]:
    """Beat from a background thread while the block runs."""
    period = every or get_settings().heartbeat_seconds
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            try:
                with session_scope() as session:
                    transitions.beat(job_id, session=session)
            except Exception:  # a missed beat is retried; the reconciler tolerates several
                log.exception("heartbeat of job %s failed", job_id)

    thread = threading.Thread(target=loop, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_job(
    job_id: str, message: str, *, by: str | None = None, prefect_state: str = RunState.FAILED
) -> bool:
    """``processing -> failed`` with a readable message, in a session of its own."""
    with session_scope() as session:
        return transitions.fail(
            job_id, message, session=session, by=by, prefect_state=prefect_state
        )


def _cancelled_in_prefect(flow_run_id: str | None) -> bool:
    """Whether the flow run was moved to Cancelling/Cancelled in Prefect (UI or API)."""
    if flow_run_id is None:
        return False
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

    who = None
    if job_id:
        with session_scope() as session:
            job = session.get(Job, job_id)
            who = job.abort_requested_by if job else None
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
        return (
            "the job's process was stopped: its worker went away or was stopped "
            f"({type(exc).__name__})"
        )
    text = str(exc) or "no message"
    return f"{type(exc).__name__}: {text}"


@dataclass
class Execution:
    """The outcome of the start-or-cancel decision for one flow run.

    Attributes:
        context: What the run needs, when it claimed the job; ``None`` when it did not.
        status: When not claimed, the status that kept the job from starting (usually
            ``cancelled``; ``processing`` or later when another run of it got there first).
    """

    job_id: str
    machine: str
    context: JobContext | None = None
    status: JobStatus | None = None

    @property
    def claimed(self) -> bool:
        return self.context is not None

    @property
    def reason(self) -> str:
        """Why the job did not start here (empty when it did)."""
        if self.claimed:
            return ""
        if self.status == JobStatus.CANCELLED:
            return f"job {self.job_id} was cancelled before it started"
        return f"job {self.job_id} was not started: its status is already {self.status}"


def _claim(job_id: str, machine: str, flow_run_id: str | None) -> Execution:
    """Claim the job and read its run context in one session, or say why not.

    A job whose context cannot be read (its plug-in or images gone since registration, the
    database failing) is failed with the reason, not left queued.
    """
    try:
        with session_scope() as session:
            context = claim_job(job_id, machine=machine, flow_run_id=flow_run_id, session=session)
            job = None if context else session.get(Job, job_id)
            status = job.status if job is not None else None
    except Exception as exc:  # recorded on the job, then raised: the run fails with it
        message = error_message(exc)
        with session_scope() as session:
            if transitions.claim(job_id, machine=machine, flow_run_id=flow_run_id, session=session):
                transitions.fail(job_id, message, session=session, by=f"machine:{machine}")
        raise
    if context is None and status is None:
        where = make_url(get_settings().db_url).render_as_string(hide_password=True)
        raise JobNotFoundError.for_flow_run(job_id, where)
    return Execution(job_id, machine, context, status)


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
        execution = _claim(job_id, machine, flow_run_id)
        if not execution.claimed:
            yield execution
            return
        with heartbeat(job_id):
            try:
                yield execution
            except BaseException as exc:
                fail_job(job_id, error_message(exc, job_id, flow_run_id), by=f"machine:{machine}")
                raise
