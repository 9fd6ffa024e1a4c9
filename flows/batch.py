"""A CIRCUS batch: feed its jobs to the machines until all are done. Wiring only."""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from circus_tasks.batches.plan import BatchRequest
from circus_tasks.orchestration.batches import cancel_for_flow_run, run_requested


def _cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    cancel_for_flow_run(str(flow_run.id))


@flow(name="circus-batch", persist_result=False, on_cancellation=[_cancelled])
def circus_batch(batch_id: str | None = None, request: BatchRequest | None = None) -> Any:
    """Run one batch: the one ``batch_id`` names, or a new one started from ``request``."""
    return run_requested(batch_id, request, str(runtime.flow_run.id))
