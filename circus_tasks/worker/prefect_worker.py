"""This machine's Prefect worker: Prefect's process worker that polls when there is work.

A stock process worker asks the server for scheduled runs every ``PREFECT_WORKER_QUERY_SECONDS``;
a job submitted just after a poll waits out the rest of the interval, and the next job waits
likewise after the last one finished. Asking more often costs the server a write each time (a
poll marks the pool's queues ready), for every machine, all day.

:class:`CircusWorker` is that same worker (the pool stays a ``process`` pool; everything from
the claim on is Prefect's) with a cheaper trigger. Every :data:`TICK_SECONDS` a thread of its
own reads our jobs table, the source of truth, for the newest queued job that has its flow run
(one index read); the worker asks Prefect's server for runs only when

- that job changed since the last poll (a job was submitted, or the newest one started),
- its one run slot has just been freed (the last job ended: the next one starts at once), or
- ``poll_seconds`` passed since its last poll (runs our table does not show: a job restarted
  with a new run, a run scheduled for later, a database that does not answer),

and never while its slot is taken (the server's answer could not be used). Between the claim
(Pending) and the start it also asks less: a deployment read in the last few seconds and a flow
read before are not read again, the worker's labels are sent beside the start instead of
before it, the clients of its runs share one TLS context, and the warm client starts without the
site-packages scan.

Run as ``python -m circus_tasks.worker.prefect_worker --pool P --name N --limit 1
--poll-seconds S``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from prefect.settings import PREFECT_WORKER_HEARTBEAT_SECONDS, temporary_settings
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS as QUERY_SECONDS
from prefect.types._datetime import now as utc_now
from prefect.workers.process import ProcessWorker

from circus_tasks.worker import warm_client
from circus_tasks.worker.run_settings import shared_tls_contexts
from circus_tasks.worker.stack import WORK_POOL_TEMPLATE

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05
"""How often the worker looks at our jobs table (an index read; no request to Prefect)."""

MIN_POLL_SECONDS = 0.1
"""The shortest gap between two polls of Prefect's server, however busy the table is."""

Mark = Callable[[], Hashable]


@functools.cache
def _newest_queued_query() -> Any:
    from sqlmodel import col, select

    from circus_tasks.db.models import Job
    from circus_tasks.statuses import JobStatus

    return (
        select(Job.id, Job.flow_run_id)
        .where(Job.status == JobStatus.IN_QUEUE, col(Job.flow_run_id).is_not(None))
        .order_by(col(Job.id).desc())
        .limit(1)
    )


def newest_queued_run() -> Hashable:
    """The newest queued job that has its flow run, as ``(job id, flow run id)``: it changes
    when a job is submitted (after its run exists) and when the newest one starts. One read of
    the (status, id) index; the statement is built once (this runs every tick)."""
    from circus_tasks.db.engine import get_engine

    with get_engine().connect() as connection:
        return tuple(connection.execute(_newest_queued_query()).first() or ())


class CircusWorker(ProcessWorker):
    """Prefect's process worker, polling when our table shows work or its slot frees."""

    @classmethod
    def __dispatch_key__(cls) -> str:
        # registered apart from the stock "process" worker (the pool's type stays "process")
        return "circus-process"

    def __init__(self, *args: Any, mark: Mark, poll_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mark = mark
        self._poll_seconds = poll_seconds
        self._latest_mark: Hashable = ()
        self._last_mark: Hashable = object()
        self._last_poll = 0.0
        self._owed = False

    def refresh_mark(self) -> None:
        """Read the jobs table's mark (in the watching thread: a database that hangs holds up
        that thread only, never the worker's event loop)."""
        try:
            self._latest_mark = self._mark()
        except Exception:  # noqa: BLE001 - our database away: the timed polls go on
            log.debug("could not read the jobs table", exc_info=True)

    def watch_table(self, stop: threading.Event) -> None:
        """Refresh the mark every :data:`TICK_SECONDS` until ``stop``."""
        while not stop.wait(TICK_SECONDS):
            self.refresh_mark()

    def _slot_free(self) -> bool:
        return self._limiter is None or self._limiter.available_tokens > 0

    def should_poll(self, now: float) -> bool:
        """Whether this tick asks the server (see the module's docstring)."""
        if not self._slot_free():
            self._owed = True  # the slot is taken: ask the moment it frees
            return False
        if now - self._last_poll < MIN_POLL_SECONDS:
            return False
        mark = self._latest_mark
        changed, self._last_mark = mark != self._last_mark, mark
        return self._owed or changed or now - self._last_poll >= self._poll_seconds

    async def get_and_submit_flow_runs(self) -> list[Any]:
        if not self._has_successfully_synced:
            return await super().get_and_submit_flow_runs()  # skips, not a poll
        if not self.should_poll(time.monotonic()):
            # the health check counts ticks as polls: the worker is alive and watching
            self._last_polled_time = utc_now("UTC")
            return []
        self._last_poll, self._owed = time.monotonic(), False
        return await super().get_and_submit_flow_runs()

    async def _give_worker_labels_to_flow_run(self, flow_run_id: Any) -> None:
        # for the UI: sent beside the run's start, not before it (a label is no state: it
        # cannot move the run, whenever it arrives)
        async def label() -> None:
            try:
                await ProcessWorker._give_worker_labels_to_flow_run(self, flow_run_id)
            except Exception:  # noqa: BLE001 - a label is not worth a run
                log.warning("could not label flow run %s", flow_run_id, exc_info=True)

        assert self._runs_task_group is not None
        self._runs_task_group.start_soon(label)

    async def setup(self) -> None:
        await super().setup()
        remember_reads(self.client)

    async def run(
        self,
        flow_run: Any,
        configuration: Any,
        task_status: Any = None,
    ) -> Any:
        if configuration.command == WARM_CLIENT_COMMAND:
            # the same program, without the site-packages scan (it needs only the standard
            # library; the flow's own interpreter is the warm zygote)
            configuration.command = shlex.join([sys.executable, "-I", "-S", warm_client.__file__])
        return await super().run(flow_run, configuration, task_status)


WARM_CLIENT_COMMAND: str = json.loads(WORK_POOL_TEMPLATE.read_text())["job_configuration"][
    "command"
]
"""The pool's command for a run, as its base job template (deployments/work-pool.json) says."""

DEPLOYMENT_SECONDS = 5.0
"""How long a deployment read stays good: the worker reads a run's deployment twice, in a
few milliseconds, for each run (does it still exist; its job variables)."""


def remember_reads(client: Any) -> None:
    """Let ``client`` answer a deployment it read in the last :data:`DEPLOYMENT_SECONDS`, and
    a flow it read before (a flow's id and name never change), without asking again."""
    read_deployment, read_flow = client.read_deployment, client.read_flow
    deployments: dict[Any, tuple[float, Any]] = {}
    flows: dict[Any, Any] = {}

    async def deployment(deployment_id: Any) -> Any:
        now = time.monotonic()
        kept = deployments.get(deployment_id)
        if kept is None or now - kept[0] > DEPLOYMENT_SECONDS:
            kept = deployments[deployment_id] = (now, await read_deployment(deployment_id))
        return kept[1]

    async def flow(flow_id: Any) -> Any:
        if flow_id not in flows:
            flows[flow_id] = await read_flow(flow_id)
        return flows[flow_id]

    client.read_deployment, client.read_flow = deployment, flow


async def serve(args: argparse.Namespace) -> None:
    """Run the worker until SIGTERM or SIGINT (which stop it as a whole: its flow runs are
    in its process group and get the same signal)."""
    worker = CircusWorker(
        name=args.name,
        work_pool_name=args.pool,
        limit=args.limit,
        prefetch_seconds=0,
        heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
        mark=newest_queued_run,
        poll_seconds=args.poll_seconds,
    )
    # each run's executor makes a new Prefect client: one TLS context for all of them
    shared_tls_contexts()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main_task.cancel)
    stop = threading.Event()
    threading.Thread(target=worker.watch_table, args=(stop,), daemon=True).start()
    with temporary_settings(updates={QUERY_SECONDS: TICK_SECONDS}):
        try:
            await worker.start(printer=print)
        except asyncio.CancelledError:
            print(f"Worker {args.name!r} stopped.")
        finally:
            stop.set()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="circus_tasks.worker.prefect_worker")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, default=1)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
