"""When our Prefect worker asks its server for runs (the polling trigger, without a server)."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Hashable
from typing import Any

import pytest
from prefect.workers import base as prefect_workers

from circus_tasks.worker import prefect_worker
from circus_tasks.worker.prefect_worker import MIN_POLL_SECONDS, CircusWorker, remember_reads


class Table:
    """Stands in for the jobs table's newest queued run."""

    def __init__(self) -> None:
        self.mark: Hashable = ()
        self.broken = False

    def __call__(self) -> Hashable:
        if self.broken:
            raise OSError("database is away")
        return self.mark


def make_worker(table: Table, poll_seconds: float = 3600.0) -> CircusWorker:
    worker = CircusWorker(
        name="w", work_pool_name="circus", limit=1, mark=table, poll_seconds=poll_seconds
    )
    worker._limiter = prefect_workers.anyio.CapacityLimiter(1)  # as the worker's setup makes it
    worker.refresh_mark()
    return worker


def test_the_first_tick_polls_then_only_a_change_or_the_timed_poll_does() -> None:
    table = Table()
    worker = make_worker(table, poll_seconds=10.0)
    now = 1000.0
    assert worker.should_poll(now)
    worker._last_poll = now
    # nothing new: no poll, however often it ticks, until the timed poll is due
    assert not any(worker.should_poll(now + step / 10) for step in range(1, 99))
    assert worker.should_poll(now + 10.0)
    worker._last_poll = now + 10.0
    table.mark = ("job-2", "run-2")  # a job submitted, with its run
    worker.refresh_mark()
    assert not worker.should_poll(now + 10.0 + MIN_POLL_SECONDS / 2)  # not twice in a row
    assert worker.should_poll(now + 10.0 + MIN_POLL_SECONDS)


def test_a_taken_slot_never_polls_and_a_freed_one_polls_at_once() -> None:
    table = Table()
    table.mark = ("job-3", "run-3")  # a second job waits, seen at the first poll
    worker = make_worker(table)
    assert worker.should_poll(1000.0)
    worker._last_poll = 1000.0

    async def a_job_runs() -> list[bool]:
        assert worker._limiter is not None
        token = object()
        worker._limiter.acquire_on_behalf_of_nowait(token)
        taken = [worker.should_poll(1001.0), worker.should_poll(5000.0)]
        worker._limiter.release_on_behalf_of(token)
        return taken

    # not even the timed poll while the slot is taken: the answer would be of no use
    assert asyncio.run(a_job_runs()) == [False, False]
    # nothing changed in the table, but the waiting job is owed a poll the moment it frees
    assert worker.should_poll(5000.1)
    worker._last_poll, worker._owed = 5000.1, False
    assert not worker.should_poll(5000.3)


def test_an_unreadable_table_leaves_the_timed_poll() -> None:
    table = Table()
    worker = make_worker(table, poll_seconds=2.0)
    assert worker.should_poll(1000.0)
    worker._last_poll = 1000.0
    table.broken = True
    worker.refresh_mark()
    assert not worker.should_poll(1001.0)
    assert worker.should_poll(1002.0)


def test_the_table_is_watched_in_a_thread_of_its_own() -> None:
    import threading
    import time

    table = Table()
    worker = make_worker(table)
    stop = threading.Event()
    watcher = threading.Thread(target=worker.watch_table, args=(stop,), daemon=True)
    watcher.start()
    table.mark = ("job-4", "run-4")
    deadline = time.monotonic() + 30
    while worker._latest_mark != table.mark and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    watcher.join(5)
    assert worker._latest_mark == ("job-4", "run-4") and not watcher.is_alive()


def test_prefect_still_has_what_the_worker_builds_on() -> None:
    """A yardstick on Prefect itself: when an upgrade renames or stops using one of these,
    this fails and prefect_worker.py must be looked at again."""
    import inspect

    from prefect.workers.base import BaseWorker

    start = inspect.getsource(BaseWorker.start)
    assert "workload=self.get_and_submit_flow_runs" in start
    assert "PREFECT_WORKER_QUERY_SECONDS.value()" in start
    assert "self._limiter = (" in inspect.getsource(BaseWorker.setup)
    polling = inspect.getsource(BaseWorker.get_and_submit_flow_runs)
    assert "self._has_successfully_synced" in polling and "self._last_polled_time" in polling
    submit = inspect.getsource(BaseWorker._submit_run_and_capture_errors)
    assert "await self._give_worker_labels_to_flow_run(flow_run.id)" in submit
    assert "resolve_for_flow_run(" in submit and "client=self.client" in submit
    assert "client.read_deployment(" in inspect.getsource(BaseWorker._submit_run)


def test_runs_start_through_the_warm_client_without_site_packages() -> None:
    seen: list[str] = []

    class Configuration:
        command = prefect_worker.WARM_CLIENT_COMMAND

    async def fake_run(_self: Any, _flow_run: Any, configuration: Any, _status: Any) -> None:
        seen.append(configuration.command)

    worker = make_worker(Table())
    original = prefect_worker.ProcessWorker.run
    prefect_worker.ProcessWorker.run = fake_run  # type: ignore[method-assign,assignment]
    try:
        asyncio.run(worker.run(object(), Configuration(), None))
    finally:
        prefect_worker.ProcessWorker.run = original  # type: ignore[method-assign]
    argv = shlex.split(seen[0])
    assert argv[:3] == [sys.executable, "-I", "-S"]
    assert argv[3].endswith("circus_tasks/worker/warm_client.py")


class Reads:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_deployment(self, deployment_id: str) -> str:
        self.calls.append(f"deployment {deployment_id}")
        return f"D{len(self.calls)}"

    async def read_flow(self, flow_id: str) -> str:
        self.calls.append(f"flow {flow_id}")
        return f"F{len(self.calls)}"


def test_deployment_reads_are_kept_a_few_seconds_and_flow_reads_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = Reads()
    remember_reads(client)
    clock = [100.0]
    monkeypatch.setattr(prefect_worker.time, "monotonic", lambda: clock[0])

    async def reads() -> list[str]:
        first = await client.read_deployment("d")
        again = await client.read_deployment("d")
        flow = await client.read_flow("f")
        clock[0] += prefect_worker.DEPLOYMENT_SECONDS + 1
        later = await client.read_deployment("d")
        flow_again = await client.read_flow("f")
        return [first, again, flow, later, flow_again]

    assert asyncio.run(reads()) == ["D1", "D1", "F2", "D3", "F2"]
    assert client.calls == ["deployment d", "flow f", "deployment d"]
