"""The reconciler: brings our tables and Prefect back into agreement.

- a ``processing`` job whose heartbeat stopped (its flow or worker process died), or whose
  flow run ended without our flow saying so, is failed with the reason;
- an ``in_queue`` job with no flow run (Prefect was down at submit) is dispatched;
- an ``in_queue`` job whose flow run was cancelled or deleted in Prefect's UI is cancelled;
- an ``in_queue`` job whose flow run failed, crashed or hung Pending before the job started (a
  busy or restarting server, a worker or process killed on the way) gets a new flow run;
- cancelled and invalidated jobs are shown so on their flow runs.

Every change goes through the same compare-and-set as everything else, so any number of
reconcilers (one per machine) can run at once.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlmodel import col, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Batch, Job, utcnow
from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.jobs import transitions
from circus_tasks.jobs.queries import age_seconds, start_failures
from circus_tasks.orchestration.batches import (
    FEEDING,
    cancel_for_flow_run,
    ensure_feeder,
    launch,
)
from circus_tasks.orchestration.client import prefect_client, unreachable_errors
from circus_tasks.orchestration.dispatch import try_dispatch_jobs
from circus_tasks.orchestration.events import relay_events
from circus_tasks.orchestration.mirror import try_mirror_state
from circus_tasks.orchestration.restart import restart_job
from circus_tasks.orchestration.run import PREFECT_USER, fail_job
from circus_tasks.settings import get_settings
from circus_tasks.statuses import (
    PREFECT_CANCEL_TYPES,
    RUN_MIRRORS,
    JobStatus,
    RunState,
    job_status_for,
    run_mirror,
)

log = logging.getLogger(__name__)

DISPATCH_GRACE_SECONDS = 5.0
"""An undispatched job younger than this is left to its submitter."""

PENDING_STALE_SECONDS = 300.0
"""A queued job's run Pending this long was taken by a worker or process that stopped (a start
takes seconds, and a process waits out at most about four minutes of a busy server): it is
crashed and the job given a new run."""

START_ATTEMPTS = 5
"""Flow runs a job may lose before it starts (a busy or restarting server, a killed worker) and
still be run; then it fails with the last reason."""

ENDED_RUN_GRACE_SECONDS = 10.0
"""How long a processing job's run may look ended before we believe it (the flow may still be
writing its own final status)."""


def _read_runs(client: Any, run_ids: list[str]) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: dict[str, Any] = {}
    for start in range(0, len(run_ids), 200):
        chunk = [UUID(r) for r in run_ids[start : start + 200]]
        for run in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        ):
            runs[str(run.id)] = run
    return runs


def reconcile_once() -> list[str]:
    """One pass; returns a line per change made."""
    settings = get_settings()
    actions: list[str] = []
    with session_scope() as session:
        processing = list(session.exec(select(Job).where(Job.status == JobStatus.PROCESSING)))
        held = col(Job.batch_id).is_not(None) & col(Job.flow_run_id).is_(None)
        queued = list(session.exec(select(Job).where(Job.status == JobStatus.IN_QUEUE, ~held)))
        orphans = list(  # held for a batch that no longer feeds (a cancel cut short)
            session.exec(
                select(Job.id)
                .join(Batch, col(Batch.id) == col(Job.batch_id))
                .where(Job.status == JobStatus.IN_QUEUE, held)
                .where(col(Batch.status).not_in(list(FEEDING)))
            )
        )
        feeding = list(session.exec(select(Batch).where(col(Batch.status).in_(list(FEEDING)))))
        unlaunched = [b.id for b in feeding if b.flow_run_id is None]
        recent = utcnow() - timedelta(minutes=30)
        mirrored = list(
            session.exec(
                select(Job).where(
                    col(Job.status).in_(list(RUN_MIRRORS)),
                    col(Job.updated_at) >= recent,
                    col(Job.flow_run_id).is_not(None),
                )
            )
        )

    for job in processing:
        silence = age_seconds(job.heartbeat_at or job.started_at)
        if silence is not None and silence > settings.stale_after_seconds:
            message = (
                f"The job's process on machine {job.machine} stopped: no heartbeat for "
                f"{silence:.0f} s. Resubmit the job (with force) to run it again."
            )
            if fail_job(job.id, message, by="reconciler", prefect_state=RunState.CRASHED):
                actions.append(f"{job.id}: failed (no heartbeat)")
                _crash_run(job.flow_run_id, message)

    # jobs waiting for a flow run get theirs as the dispatch window has room (a batch's jobs
    # wait for its flow run to feed them; a batch without one gets it again)
    undispatched = [
        job.id
        for job in queued
        if job.flow_run_id is None and (age_seconds(job.created_at) or 0) > DISPATCH_GRACE_SECONDS
    ]
    for job_id in orphans:
        with session_scope() as session:
            reason = "its batch no longer runs"
            if transitions.end_queued(
                job_id, JobStatus.CANCELLED, reason, by="reconciler", session=session
            ):
                actions.append(f"{job_id}: cancelled ({reason})")
    if undispatched:  # the window picks among them, highest priority and oldest first
        actions += [f"{job_id}: dispatched" for job_id in try_dispatch_jobs(undispatched)]
    actions += [f"batch {b}: flow run created" for b in unlaunched if launch(b)]

    run_ids = [j.flow_run_id for j in processing + queued + mirrored if j.flow_run_id]
    run_ids += [b.flow_run_id for b in feeding if b.flow_run_id]
    try:
        with prefect_client() as client:
            runs = _read_runs(client, run_ids)
            healthy = client.api_healthcheck() is None
    except unreachable_errors() as exc:
        log.warning("reconciler: Prefect does not answer: %s", exc)
        return actions

    for job in queued:
        if job.flow_run_id is None:
            continue
        run = runs.get(job.flow_run_id)
        if run is None:
            actions += _end_queued(job, JobStatus.CANCELLED, "its flow run was deleted in Prefect")
        elif run.state is not None:
            seen = job_status_for(run.state.type)
            waited = age_seconds(run.state.timestamp) or 0
            if seen == JobStatus.CANCELLED:
                actions += _end_queued(job, seen, "its flow run was cancelled in Prefect")
            elif seen == JobStatus.FAILED:  # it died before the job started: not the job's fault
                actions += _restart(job, run.state.message or run.state.name)
            elif run.state.type.value == RunState.PENDING and waited > PENDING_STALE_SECONDS:
                message = (
                    f"its flow run stayed Pending for {waited:.0f} s: the worker or process "
                    "that took it stopped before the job started"
                )
                if _crash_run(job.flow_run_id, message, only_state=run.state.id):
                    actions += _restart(job, message)

    for job in processing:
        run = runs.get(job.flow_run_id) if job.flow_run_id else None
        if run is not None and run.state is not None and not job.abort_requested_by:
            if run.state.type.value in PREFECT_CANCEL_TYPES:
                job.abort_requested_by = _mark_aborted(job.id, PREFECT_USER)
        if run is None or run.state is None or not run.state.is_final():
            continue
        if (age_seconds(run.state.timestamp) or 0) < ENDED_RUN_GRACE_SECONDS:
            continue
        message = (
            f"aborted by {job.abort_requested_by}"
            if job.abort_requested_by
            else f"The job's flow run ended {run.state.type.value} without finishing the job: "
            f"{run.state.message or run.state.name}"
        )
        if fail_job(job.id, message, by="reconciler", prefect_state=run.state.type.value):
            actions.append(f"{job.id}: failed (flow run {run.state.type.value})")

    for batch in feeding:
        run = runs.get(batch.flow_run_id or "")
        if run is None or run.state is None:
            continue
        if run.state.type.value in PREFECT_CANCEL_TYPES:  # cancelled in Prefect: the batch too
            cancel_for_flow_run(str(run.id))
            actions.append(f"batch {batch.id}: cancelled (its flow run was cancelled)")
        elif (
            run.state.is_final()
            and (age_seconds(run.state.timestamp) or 0) > ENDED_RUN_GRACE_SECONDS
        ):
            if ensure_feeder(batch.id):  # its feeder ended (crashed, failed) before the batch
                actions.append(f"batch {batch.id}: flow run created again ({run.state.type.value})")

    for job in mirrored:
        run = runs.get(job.flow_run_id or "")
        if run is None or run.state is None:
            continue
        if run_mirror(job.status, run.state.type, run.state.name) is not None:
            try_mirror_state(job.id)
            actions.append(f"{job.id}: Prefect state set to {job.status}")
    if healthy and (sent := relay_events()):  # last: a failure here spoils nothing above
        actions.append(f"{sent} event(s) sent to Prefect")
    return actions


def _restart(job: Job, why: str) -> list[str]:
    """A new flow run for a job whose run died before the job started, or, after
    :data:`START_ATTEMPTS` such runs, the job failed with the last reason."""
    with session_scope() as session:
        runs = start_failures(job.id, session=session) + 1
    if runs >= START_ATTEMPTS:
        message = f"Prefect could not start the job's flow run ({runs} tries); the last: {why}"
        return _end_queued(job, JobStatus.FAILED, message)
    try:
        reason = f"its flow run {job.flow_run_id} did not start: {why}"
        new_run = restart_job(job.id, job.flow_run_id or "", reason)
    except PrefectUnavailableError as exc:
        log.warning("reconciler: job %s not restarted now: %s", job.id, exc)
        return []
    return (
        [f"{job.id}: flow run {new_run} created (the last did not start: {why})"] if new_run else []
    )


def _mark_aborted(job_id: str, who: str) -> str:
    with session_scope() as session:
        transitions.mark_abort(job_id, who, session=session)
    return who


def _end_queued(job: Job, to: JobStatus, reason: str) -> list[str]:
    with session_scope() as session:
        won = transitions.end_queued(job.id, to, reason, by="reconciler", session=session)
    return [f"{job.id}: {to} ({reason})"] if won else []


def _crash_run(flow_run_id: str | None, message: str, only_state: object = None) -> bool:
    """Mark a run Crashed unless it is over (with ``only_state``: only while it is still in
    that state, so that a run that has just started is left alone). Whether it was marked."""
    if not flow_run_id:
        return False
    from prefect.states import Crashed

    try:
        with prefect_client() as client:
            run = client.read_flow_run(flow_run_id)
            if run.state is None or run.state.is_final():
                return False
            if only_state is not None and run.state.id != only_state:
                return False
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
            return True
    except unreachable_errors() as exc:
        log.warning("reconciler: could not mark flow run %s crashed: %s", flow_run_id, exc)
        return False


def reconcile_forever(stop: threading.Event, period: float | None = None) -> None:
    """Reconcile every ``period`` seconds until ``stop`` is set."""
    every = period or get_settings().reconcile_seconds
    while not stop.wait(every):
        try:
            for line in reconcile_once():
                log.info("reconciler: %s", line)
        except Exception:  # keep the loop alive; the next pass retries
            log.exception("reconciler pass failed")
