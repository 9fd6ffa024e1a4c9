"""The reconciler fails a job whose heartbeat stopped, by our own table alone (no Prefect crash
state needed: Prefect does not answer here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col

from circus_tasks.api import get_job
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job, utcnow
from circus_tasks.orchestration.reconciler import reconcile_once
from circus_tasks.settings import get_settings
from circus_tasks.statuses import JobStatus
from tests.running import claim, prefect_unreachable, register


def test_a_silent_job_is_failed_and_a_beating_one_is_not(
    series_factory: Callable[..., str],
) -> None:
    uid = series_factory(slices=2)
    silent, beating = register("record@1.0.0", [uid]), register("record@1.0.0", [uid], force=True)
    assert claim(silent, machine="gone") is not None and claim(beating) is not None
    old = utcnow() - timedelta(seconds=get_settings().stale_after_seconds + 5)
    with session_scope() as session:
        session.execute(update(Job).where(col(Job.id) == silent).values(heartbeat_at=old))
    with prefect_unreachable():
        actions = reconcile_once()
    assert f"{silent}: failed (no heartbeat)" in actions
    failed, alive = get_job(silent), get_job(beating)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert (
        failed.error_message is not None
        and "machine gone stopped: no heartbeat" in failed.error_message
    )
    assert alive is not None and alive.status == JobStatus.PROCESSING
