"""``submit_jobs`` through a real Prefect server (started for this module the way
``tests/worker/test_stack.py`` starts its own; no worker runs, so the flow runs just queue)."""

from __future__ import annotations

import contextvars
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import update
from sqlmodel import col

from circus_tasks.api import JobRequest, SeriesInput, submit_jobs
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job, JobRead
from circus_tasks.errors import DuplicateJobError
from circus_tasks.orchestration import dispatch
from circus_tasks.orchestration.queues import queue_name
from circus_tasks.statuses import JobStatus
from circus_tasks.worker import stack as stack_module
from tests.worker.test_stack import RECORD, Stack, series_uid, stack  # noqa: F401  (fixtures)

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


def _runs_named(on: Stack, names: list[str]) -> list[Any]:
    """Every flow run (of any state) whose name is one of ``names``."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    runs: list[Any] = []
    with on.client() as client:
        for start in range(0, len(names), 100):  # the server answers 200 runs at most
            chunk = names[start : start + 100]
            runs += client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=chunk)), limit=200
            )
    return runs


def test_a_batch_bigger_than_one_request_keeps_registration_order(
    stack: Stack,  # noqa: F811
    series_uid: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatch, "BULK", 7)  # 25 jobs: four requests to the bulk endpoint
    outcomes = submit_jobs([JobRequest(RECORD, [series_uid], force=True) for _ in range(25)])
    jobs = [o for o in outcomes if isinstance(o, JobRead)]
    assert len(jobs) == 25 and all(j.flow_run_id for j in jobs)
    runs = {r.name: r for r in _runs_named(stack, [j.id for j in jobs])}
    assert len(runs) == 25
    assert {str(r.id) for r in runs.values()} == {j.flow_run_id for j in jobs}
    by_start = sorted(runs.values(), key=lambda r: r.next_scheduled_start_time)
    assert [r.name for r in by_start] == sorted(j.id for j in jobs)


def test_dispatching_again_finds_the_run_that_exists(
    stack: Stack,  # noqa: F811
    series_uid: str,  # noqa: F811
) -> None:
    # as if the runs were created but the dispatcher died before it stored their ids
    outcomes = submit_jobs([JobRequest(RECORD, [series_uid], force=True) for _ in range(5)])
    jobs = [o for o in outcomes if isinstance(o, JobRead)]
    first = {j.id: j.flow_run_id for j in jobs}
    with session_scope() as session:
        session.execute(update(Job).where(col(Job.id).in_(list(first))).values(flow_run_id=None))
    assert dispatch.dispatch_jobs(list(first)) == first
    assert {str(r.id) for r in _runs_named(stack, list(first))} == set(first.values())


def test_two_batches_submitted_at_once_each_get_one_run_per_job(
    stack: Stack,  # noqa: F811
    series_uid: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two submitters write to the server's SQLite at the same time: requests that find it
    # taken are answered "database is locked" for each run, and must be asked for again.
    caplog.set_level(logging.INFO, logger="circus_tasks.orchestration.dispatch")
    requests = [JobRequest(RECORD, [series_uid], force=True, user="two") for _ in range(120)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # each with this test's Prefect settings
        futures = [
            pool.submit(contextvars.copy_context().run, submit_jobs, requests) for _ in range(2)
        ]
        batches = [f.result() for f in futures]
    jobs = [o for batch in batches for o in batch if isinstance(o, JobRead)]
    assert len(jobs) == 240 and all(j.flow_run_id for j in jobs), [
        o for batch in batches for o in batch if not isinstance(o, JobRead)
    ][:3]
    runs = _runs_named(stack, [j.id for j in jobs])
    assert len(runs) == 240
    assert {str(r.id) for r in runs} == {j.flow_run_id for j in jobs}
    retried = [r for r in caplog.records if "asked for again" in r.getMessage()]
    print(f"{len(retried)} request(s) retried after 'database is locked'")


def test_the_work_pool_starts_runs_through_the_warm_client_without_job_variables(
    stack: Stack,  # noqa: F811
) -> None:
    from circus_tasks.settings import get_settings

    with stack.client() as client:
        pool = client.read_work_pool(get_settings().work_pool)
        deployment = client.read_deployment_by_name(get_settings().deployment)
    assert pool.base_job_template == json.loads(stack_module.WORK_POOL_TEMPLATE.read_text())
    assert pool.base_job_template["job_configuration"]["command"] == (
        "python -m circus_tasks.worker.warm_client"
    )
    assert deployment.job_variables == {} and deployment.enforce_parameter_schema is False


def _set_run_state(stack: Stack, flow_run_id: str, state: Any) -> None:  # noqa: F811
    with stack.client() as client:
        client.set_flow_run_state(flow_run_id, state, force=True)


def test_a_run_that_dies_before_its_job_starts_is_replaced_not_failed(
    stack: Stack,  # noqa: F811
    series_uid: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a worker leaves when the server answered 503 or restarted while it handed the run
    to its process (Crashed), or when it died with the run Pending: the job stays queued on a
    new run; the old run can no longer claim it; after START_ATTEMPTS the job fails."""
    from prefect.states import Crashed, Pending

    from circus_tasks.api import get_job
    from circus_tasks.jobs import transitions
    from circus_tasks.orchestration import reconciler
    from circus_tasks.orchestration.restart import restart_job

    (job,) = submit_jobs([JobRequest(RECORD, [series_uid], force=True)])
    assert isinstance(job, JobRead) and job.flow_run_id
    runs = [job.flow_run_id]
    crash = "Flow run infrastructure exited with non-zero status code 1 (503 Service Unavailable)"
    _set_run_state(stack, runs[-1], Crashed(message=crash))
    monkeypatch.setattr(reconciler, "PENDING_STALE_SECONDS", 0.0)
    for attempt in range(reconciler.START_ATTEMPTS - 1):
        actions = reconciler.reconcile_once()
        now = get_job(job.id)
        assert now is not None and now.status == JobStatus.IN_QUEUE, (attempt, actions)
        assert now.flow_run_id and now.flow_run_id not in runs
        assert any(f"{job.id}: flow run {now.flow_run_id} created" in a for a in actions)
        if attempt == 0:  # a second reconciler that saw the same failure changes nothing
            assert restart_job(job.id, runs[-1], "seen twice") is None
            assert stack.run_state_of(now.flow_run_id).type.value == "SCHEDULED"
            assert get_job(job.id).flow_run_id == now.flow_run_id  # type: ignore[union-attr]
        runs.append(now.flow_run_id)
        # every other try: a worker took the run (Pending) and died
        state = Pending() if attempt % 2 else Crashed(message=crash)
        _set_run_state(stack, runs[-1], state)
    with stack.client() as client:
        first, last = client.read_flow_run(runs[0]), client.read_flow_run(runs[-1])
    assert first.work_queue_name == last.work_queue_name and last.name == job.id
    with session_scope() as session:  # an old run cannot start the job any more
        assert not transitions.claim(job.id, machine="m", flow_run_id=runs[0], session=session)

    reconciler.reconcile_once()
    failed = get_job(job.id)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.error_message and "could not start the job's flow run (5 tries)" in (
        failed.error_message
    )
    assert failed.flow_run_id == runs[-1]


def test_only_a_window_of_jobs_has_flow_runs_and_the_reconciler_tops_it_up(
    stack: Stack,  # noqa: F811
    series_uid: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 3 to a window (priorities 7 and 8: above every other job of this module), a job
    gets its run while fewer than 3 queued jobs of its priority or higher have one; a higher
    priority is never held behind lower ones; freed room is filled oldest first."""
    from circus_tasks.api import cancel_job, get_job
    from circus_tasks.db.engine import reset_caches
    from circus_tasks.orchestration import reconciler

    monkeypatch.setenv("CIRCUS_DISPATCH_WINDOW", "3")
    reset_caches()
    first = submit_jobs([JobRequest(RECORD, [series_uid], priority=7, force=True)] * 5)
    jobs = [j for j in first if isinstance(j, JobRead)]
    assert [bool(j.flow_run_id) for j in jobs] == [True, True, True, False, False]
    assert all(j.status == JobStatus.IN_QUEUE for j in jobs)
    (urgent,) = submit_jobs([JobRequest(RECORD, [series_uid], priority=8, force=True)])
    assert isinstance(urgent, JobRead) and urgent.flow_run_id  # not held behind priority 7
    (late,) = submit_jobs([JobRequest(RECORD, [series_uid], priority=7, force=True)])
    assert isinstance(late, JobRead) and late.flow_run_id is None

    for job in jobs[:2]:
        cancel_job(job.id)  # two runs leave; the urgent job's counts: room for one
    monkeypatch.setattr(reconciler, "DISPATCH_GRACE_SECONDS", 0.0)
    actions = [a for a in reconciler.reconcile_once() if "dispatched" in a]
    assert actions == [f"{jobs[3].id}: dispatched"]
    cancel_job(urgent.id)
    actions = [a for a in reconciler.reconcile_once() if "dispatched" in a]
    assert actions == [f"{jobs[4].id}: dispatched"]  # the oldest first
    held = get_job(late.id)
    assert held is not None and held.flow_run_id is None and held.status == JobStatus.IN_QUEUE
    for job in [*jobs[2:], late]:
        cancel_job(job.id)
