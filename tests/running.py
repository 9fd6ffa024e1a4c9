"""Status moves and job steps as tests call them: each in a session of its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from circus_tasks.db.engine import session_scope
from circus_tasks.jobs import transitions
from circus_tasks.jobs.registration import JobRequest, SeriesInput, register_job
from circus_tasks.jobs.steps import JobContext, claim_job, prepare_inputs, run_main, store_results


def register(plugin: str, series: list[SeriesInput | str], **options: Any) -> str:
    """Register a job (no dispatch); its id."""
    with session_scope() as session:
        return register_job(JobRequest(plugin, series, **options), session=session).id


def claim(job_id: str, machine: str = "test-machine") -> JobContext | None:
    """The run's claim: its context, or ``None`` when the job was not ``in_queue``."""
    with session_scope() as session:
        return claim_job(job_id, machine=machine, flow_run_id=None, session=session)


def finish(job_id: str, results: dict[str, Any]) -> bool:
    with session_scope() as session:
        return transitions.finish(job_id, results, session=session)


def fail(job_id: str, message: str) -> bool:
    with session_scope() as session:
        return transitions.fail(job_id, message, session=session)


def run_steps(context: JobContext) -> dict[str, Any]:
    """Pre-, main and post-processing, each given the folder the step before returned."""
    return store_results(context, run_main(context, prepare_inputs(context)))


@contextmanager
def prefect_unreachable() -> Iterator[None]:
    """Point Prefect's client at a local port where nothing listens."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        yield
