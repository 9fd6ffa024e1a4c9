"""Batch schedules: Prefect deployment schedules of the ``circus-batch`` deployment whose
parameters are a batch request. Prefect's scheduler creates the runs; each run starts a batch
from the request, and refuses to when the request's previous batch is still running or paused,
so that two runs of one schedule never overlap, and runs that were missed while the server was
down and then start together make one batch, not many.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from circus_tasks.batches.plan import BatchRequest
from circus_tasks.errors import CircusError
from circus_tasks.orchestration.client import prefect_calls
from circus_tasks.settings import get_settings


class ScheduleError(CircusError, ValueError):
    """A schedule that cannot be added, found or changed."""


@dataclass(frozen=True)
class BatchSchedule:
    """A batch schedule as Prefect holds it."""

    name: str
    when: str
    active: bool
    request: dict[str, Any] | None


def _deployment(client: Any) -> Any:
    return client.read_deployment_by_name(get_settings().batch_deployment)


def _describe(schedule: Any) -> str:
    rule = schedule.schedule
    if getattr(rule, "cron", None):
        return f"cron {rule.cron} ({rule.timezone or 'UTC'})"
    if getattr(rule, "interval", None):
        return f"every {rule.interval.total_seconds():g} s"
    return str(rule)


def list_schedules() -> list[BatchSchedule]:
    """The batch deployment's schedules: those added here and those of ``prefect.yaml``."""
    with prefect_calls() as client:
        schedules = client.read_deployment_schedules(_deployment(client).id)
    return [
        BatchSchedule(
            s.slug or str(s.id), _describe(s), s.active, (s.parameters or {}).get("request")
        )
        for s in schedules
    ]


def add_schedule(
    name: str,
    request: BatchRequest,
    *,
    cron: str | None = None,
    timezone: str | None = None,
    every_seconds: float | None = None,
    active: bool = True,
) -> BatchSchedule:
    """Add a schedule named ``name`` that starts ``request`` by ``cron`` (in ``timezone``) or
    every ``every_seconds``.

    Raises:
        ScheduleError: neither or both of cron and every_seconds, or the name is taken.
    """
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if (cron is None) == (every_seconds is None):
        raise ScheduleError("Give a schedule either a cron expression or an interval.")
    if any(s.name == name for s in list_schedules()):
        raise ScheduleError(f"There is a batch schedule named {name!r}; remove it or pick another.")
    rule = (
        CronSchedule(cron=cron, timezone=timezone or "UTC")
        if cron is not None
        else IntervalSchedule(interval=timedelta(seconds=every_seconds or 0))
    )
    create = DeploymentScheduleCreate(
        schedule=rule,
        active=active,
        parameters={"request": request.model_dump(mode="json")},
        slug=name,
    )
    with prefect_calls() as client:
        client.create_deployment_schedules(_deployment(client).id, [create])
    (added,) = [s for s in list_schedules() if s.name == name]
    return added


def _find(client: Any, name: str) -> tuple[Any, Any]:
    deployment = _deployment(client)
    for schedule in client.read_deployment_schedules(deployment.id):
        if schedule.slug == name or str(schedule.id) == name:
            return deployment, schedule
    raise ScheduleError(f"No batch schedule {name!r}; list them with circus batch schedule list.")


def set_active(name: str, active: bool) -> None:
    """Pause (``False``) or resume (``True``) a schedule.

    Raises:
        ScheduleError: no schedule has this name.
    """
    with prefect_calls() as client:
        deployment, schedule = _find(client, name)
        client.update_deployment_schedule(deployment.id, schedule.id, active=active)


def remove_schedule(name: str) -> None:
    """Remove a schedule.

    Raises:
        ScheduleError: no schedule has this name.
    """
    with prefect_calls() as client:
        deployment, schedule = _find(client, name)
        client.delete_deployment_schedule(deployment.id, schedule.id)
