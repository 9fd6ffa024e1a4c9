"""Job priorities as Prefect work queues: one queue a priority in the job pool, ranked so that
a higher job priority is served first (first in, first out within a queue)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from circus_tasks.settings import get_settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import WorkQueue

_known_queues: set[str] = set()


def queue_name(priority: int) -> str:
    """The work queue of a job priority (``priority+0``, ``priority+5``, ``priority-2``)."""
    return f"priority{priority:+d}"


def _priority_of(name: str) -> int | None:
    try:
        return int(name.removeprefix("priority")) if name.startswith("priority") else None
    except ValueError:
        return None


def _queue_ranks(queues: Iterable[WorkQueue]) -> list[tuple[Any, int]]:
    """``(queue id, rank)`` for each of our priority queues whose rank is out of order."""
    ours = sorted(
        (q for q in queues if _priority_of(q.name) is not None),
        key=lambda q: -(_priority_of(q.name) or 0),
    )
    return [(q.id, rank) for rank, q in enumerate(ours, start=1) if q.priority != rank]


def ensure_priority_queues(client: SyncPrefectClient, priorities: Iterable[int]) -> dict[int, str]:
    """Create the work queues of ``priorities`` if needed, and keep queue priorities in order.

    Prefect serves queues by their rank (1 first); our higher job priority gets the lower rank.

    Returns:
        The queue name of each priority.
    """
    from prefect.exceptions import ObjectAlreadyExists

    pool = get_settings().work_pool
    names = {priority: queue_name(priority) for priority in priorities}
    if set(names.values()) <= _known_queues:
        return names
    queues = client.read_work_queues(work_pool_name=pool)
    missing = set(names.values()) - {q.name for q in queues}
    for name in sorted(missing):
        try:
            client.create_work_queue(name=name, work_pool_name=pool)
        except ObjectAlreadyExists:
            pass
    if missing:
        queues = client.read_work_queues(work_pool_name=pool)
    for queue_id, rank in _queue_ranks(queues):
        client.update_work_queue(queue_id, priority=rank)
    _known_queues.update(q.name for q in queues if _priority_of(q.name) is not None)
    return names
