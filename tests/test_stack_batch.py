"""``submit_jobs`` through a real Prefect server (started for this module the way
``tests/test_stack.py`` starts its own; no worker runs, so the flow runs just queue)."""

from __future__ import annotations

from uuid import UUID

import pytest

from circus_tasks.dispatch import queue_name
from circus_tasks.errors import DuplicateJobError
from circus_tasks.jobs import JobRequest, SeriesInput, submit_jobs
from circus_tasks.models import JobRead
from circus_tasks.statuses import JobStatus
from tests.test_stack import RECORD, Stack, series_uid, stack  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.prefect, pytest.mark.worker]


def test_every_job_of_a_batch_gets_its_run_in_its_priority_queue(
    stack: Stack,  # noqa: F811
    series_uid: str,  # noqa: F811
) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    requests = [
        JobRequest(RECORD, [series_uid], priority=(3 if n % 3 == 0 else 0), force=True, user="b")
        for n in range(30)
    ]
    requests.append(JobRequest(RECORD, [SeriesInput(series_uid, "1:2")]))
    requests.append(JobRequest(RECORD, [SeriesInput(series_uid, "1:2:1")]))  # duplicate of it
    outcomes = submit_jobs(requests)

    assert isinstance(outcomes[-1], DuplicateJobError)
    jobs = outcomes[:-1]
    assert all(isinstance(j, JobRead) for j in jobs), jobs
    jobs_read = [j for j in jobs if isinstance(j, JobRead)]
    assert all(j.status == JobStatus.IN_QUEUE and j.flow_run_id for j in jobs_read)
    with stack.client() as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(j.flow_run_id) for j in jobs_read if j.flow_run_id])
            ),
            limit=100,
        )
    by_id = {str(r.id): r for r in runs}
    assert len(by_id) == len(jobs_read)
    for job in jobs_read:
        run = by_id[job.flow_run_id or ""]
        assert run.name == job.id and run.parameters == {"job_id": job.id}
        assert run.work_queue_name == queue_name(job.priority)
        assert f"plugin:{RECORD}" in run.tags and f"series:{series_uid}" in run.tags
        assert run.state is not None and run.state.type.value == "SCHEDULED"
    # each queue hands its runs out in registration (job id) order
    for priority in (0, 3):
        queued = sorted(
            (j for j in jobs_read if j.priority == priority),
            key=lambda j: by_id[j.flow_run_id or ""].next_scheduled_start_time,
        )
        assert [j.id for j in queued] == sorted(j.id for j in queued)
