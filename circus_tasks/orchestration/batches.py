"""Feeding a batch's jobs to the machines, on Prefect.

A started batch holds its jobs ``in_queue`` without flow runs; its own flow run (deployment
``circus-batch``, on a pool of its own, never in a job slot) creates their runs a window at a
time, at most ``max_in_flight`` queued or running, at the batch's priority, and keeps a
progress and a summary artifact on its run until every job is in a final status.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlmodel import select

from circus_tasks.batches import records
from circus_tasks.batches.compare import compare_items
from circus_tasks.batches.plan import BatchRequest, start_batch_records
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Batch, BatchRead
from circus_tasks.orchestration.client import prefect_calls
from circus_tasks.orchestration.dispatch import try_dispatch_jobs
from circus_tasks.orchestration.mirror import try_mirror_state
from circus_tasks.settings import get_settings
from circus_tasks.statuses import BatchStatus

log = logging.getLogger(__name__)

FEEDING: frozenset[BatchStatus] = frozenset({BatchStatus.RUNNING, BatchStatus.PAUSED})
"""Statuses in which a batch's flow run keeps watching it."""


def feed_once(batch_id: str) -> records.BatchProgress:
    """Dispatch the batch's next jobs (if it is running) and complete it when all are done."""
    with session_scope() as session:
        batch = records.require_batch(batch_id, session=session)
        limit = int(batch.options.get("max_in_flight", 4))
        due = (
            records.jobs_to_feed(batch_id, limit, session=session)
            if batch.status == BatchStatus.RUNNING
            else []
        )
    if due:
        try_dispatch_jobs(due)
    with session_scope() as session:
        records.complete_if_done(batch_id, session=session)
    with session_scope() as session:
        return records.progress(batch_id, session=session)


def cancel_batch(batch_id: str, *, by: str) -> BatchRead:
    """Cancel the batch with its held jobs (one transaction), then its jobs already queued in
    Prefect, each shown Cancelled on its flow run; running jobs finish.

    Raises:
        BatchNotFoundError, JobStateError (a completed batch).
    """
    with session_scope() as session:
        batch = BatchRead.model_validate(records.user_move(batch_id, "cancel", session=session))
        records.cancel_queued(batch_id, by=by, session=session, held_only=True)
    with session_scope() as session:
        dispatched = records.cancel_queued(batch_id, by=by, session=session)
    for job_id in dispatched:
        try_mirror_state(job_id)
    return batch


def _run_ended(run_id: str) -> bool | None:
    """Whether the flow run has ended (or is gone); ``None`` when Prefect does not answer."""
    from circus_tasks.errors import PrefectUnavailableError

    try:
        with prefect_calls() as client:
            state = client.read_flow_run(run_id).state
    except PrefectUnavailableError:
        return None
    return state is None or state.is_final()


def _feeding_run(batch_id: str) -> str | None:
    with session_scope() as session:
        return records.require_batch(batch_id, session=session).flow_run_id


def launch(batch_id: str, *, attempt: str = "", replacing: str | None = None) -> str | None:
    """Create the batch's flow run (idempotent: its key is the batch id and ``attempt``) and
    record it, unless another one took the batch first (``replacing``: the ended run it
    replaces).

    Returns:
        The flow run id, or ``None`` when Prefect does not answer (the reconciler tries again).
    """
    from circus_tasks.errors import PrefectUnavailableError

    try:
        with prefect_calls() as client:
            deployment = client.read_deployment_by_name(get_settings().batch_deployment)
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"batch_id": batch_id},
                idempotency_key=f"batch-{batch_id}{attempt}",
                tags=[f"batch:{batch_id}"],
            )
    except PrefectUnavailableError as exc:
        log.warning("Batch %s: its flow run is left to the reconciler: %s", batch_id, exc)
        return None
    with session_scope() as session:
        records.take_feeding(batch_id, str(run.id), replacing=replacing, session=session)
    return str(run.id)


def ensure_feeder(batch_id: str) -> str | None:
    """A flow run feeding the batch: the one it has while that has not ended, else a new one.

    Returns:
        The flow run id, or ``None`` when Prefect does not answer.
    """
    from circus_tasks.jobs.registration import new_job_id

    run_id = _feeding_run(batch_id)
    if run_id is not None:
        ended = _run_ended(run_id)
        if not ended:
            return run_id if ended is False else None
    return launch(batch_id, attempt=f"-{new_job_id()}", replacing=run_id)


def _publish_comparison(batch_id: str) -> None:
    """The batch's comparison (:mod:`circus_tasks.batches.compare`) as a table artifact of its
    flow run, ``batch-ID-comparison``, when it re-ran earlier jobs."""
    from prefect.artifacts import create_table_artifact

    with session_scope() as session:
        rows = [row.as_row() for row in compare_items(batch_id, session=session)]
    if rows:
        create_table_artifact(
            table=rows,
            key=f"batch-{batch_id}-comparison",
            description=f"Batch {batch_id}: old and new results, item by item",
        )


def run_requested(batch_id: str | None, request: BatchRequest | None, flow_run_id: str) -> Any:
    """What the batch flow run does: feed the batch ``batch_id`` names, or start one from
    ``request`` first (a schedule, or Prefect's Run form) and feed it, or end Cancelled with
    the reason when that request's batch of an earlier run is still running."""
    from prefect.states import Cancelled

    if batch_id is None:
        if request is None:
            raise ValueError("Give the batch flow a batch_id or a request.")
        batch_id, refusal = start_from_request(request, flow_run_id)
        if refusal:
            return Cancelled(message=refusal)
    return run_batch(batch_id, flow_run_id=flow_run_id)


def start_from_request(request: BatchRequest, flow_run_id: str | None) -> tuple[str, str | None]:
    """Start a batch from inside its own flow run (a schedule or Prefect's Run form).

    Returns:
        The batch id, and why this run must not feed it (the request's batch of an earlier run
        is still running or paused: runs of one schedule never overlap), or ``None``.
    """
    with session_scope() as session:
        batch, created = start_batch_records(request, session=session)
        if not created:
            return batch.id, (
                f"refused: batch {batch.id} of this request is still {batch.status} "
                f"(flow run {batch.flow_run_id}); runs of one schedule do not overlap. Let it end, "
                f"or cancel it (circus batch cancel {batch.id}) for the next run to start one"
            )
        batch.flow_run_id = flow_run_id
        session.add(batch)
        return batch.id, None


def _publish(progress: records.BatchProgress, artifact_id: Any) -> Any:
    """Create or update the progress artifact and the summary table of the batch's run."""
    from prefect.artifacts import (
        create_progress_artifact,
        create_table_artifact,
        update_progress_artifact,
    )

    if artifact_id is None:
        artifact_id = create_progress_artifact(
            progress.percent,
            key=f"batch-{progress.batch_id}-progress",
            description=f"Jobs of batch {progress.batch_id} in a final status",
        )
    else:
        update_progress_artifact(artifact_id, progress.percent)
    create_table_artifact(
        table=[{"status": str(s), "jobs": n} for s, n in progress.jobs.items() if n],
        key=f"batch-{progress.batch_id}-summary",
        description=f"Batch {progress.batch_id}: {progress.status}",
    )
    return artifact_id


def _owner_ended(batch_id: str, me: str) -> str | None:
    """The batch's feeding run if it is another one that has ended (or is gone), else None."""
    owner = _feeding_run(batch_id)
    if owner is None or owner == me:
        return None
    return owner if _run_ended(owner) else None


def run_batch(
    batch_id: str, *, flow_run_id: str | None = None, poll_seconds: float | None = None
) -> dict[str, Any]:
    """Feed the batch until it is completed or cancelled, publishing its progress. One run
    feeds a batch at a time: ``flow_run_id`` takes the batch first (or replaces a run of it that
    ended), else this run refuses.

    Returns:
        The batch's final status and its jobs counted by status (or why this run refused).
    """
    if flow_run_id is not None:
        with session_scope() as session:
            owned = records.take_feeding(
                batch_id,
                flow_run_id,
                replacing=_owner_ended(batch_id, flow_run_id),
                session=session,
            )
        if not owned:
            return {"refused": f"another flow run feeds batch {batch_id}"}
    every = poll_seconds or get_settings().batch_poll_seconds
    artifact_id, shown = None, None
    while True:
        progress = feed_once(batch_id)
        if (progress.status, progress.jobs) != shown:  # publish what changed, not every poll
            artifact_id, shown = _publish(progress, artifact_id), (progress.status, progress.jobs)
        if progress.status not in FEEDING:
            _publish_comparison(batch_id)
            with session_scope() as session:  # retry-failed may have made it run again
                if records.require_batch(batch_id, session=session).status in FEEDING:
                    continue
            return {
                "status": str(progress.status),
                "jobs": {str(s): n for s, n in progress.jobs.items()},
            }
        time.sleep(every)


def cancel_for_flow_run(flow_run_id: str) -> None:
    """The batch whose flow run was cancelled in Prefect is cancelled, with its queued jobs."""
    with session_scope() as session:
        batch = session.exec(select(Batch).where(Batch.flow_run_id == flow_run_id)).first()
        if batch is None or batch.status not in FEEDING:
            return
        batch_id = batch.id
    cancel_batch(batch_id, by="a Prefect UI or API user")
