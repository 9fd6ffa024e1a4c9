"""The job state machine, as data: statuses, allowed moves, Prefect state mapping."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    """Status of a CIRCUS job."""

    IN_QUEUE = "in_queue"
    PROCESSING = "processing"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    INVALIDATED = "invalidated"
    FAILED = "failed"


class JobStage(StrEnum):
    """Which part of a processing job is running."""

    PRE = "pre"
    MAIN = "main"
    POST = "post"


class BatchStatus(StrEnum):
    """Status of a batch: ``running`` feeds its jobs to the machines, ``paused`` does not."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


BATCH_MOVES: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.RUNNING: frozenset(
        {BatchStatus.PAUSED, BatchStatus.CANCELLED, BatchStatus.COMPLETED}
    ),
    BatchStatus.PAUSED: frozenset({BatchStatus.RUNNING, BatchStatus.CANCELLED}),
    BatchStatus.CANCELLED: frozenset(),
    BatchStatus.COMPLETED: frozenset({BatchStatus.RUNNING}),
}
"""from -> allowed to. ``completed -> running``: retry-failed adds jobs to a finished batch."""


ACTIVE_BATCH: frozenset[BatchStatus] = frozenset({BatchStatus.RUNNING, BatchStatus.PAUSED})
"""A batch in these statuses is fed (or waits to be): one per request at a time."""

USER_BATCH_MOVES: dict[str, tuple[frozenset[BatchStatus], BatchStatus]] = {
    "pause": (frozenset({BatchStatus.RUNNING}), BatchStatus.PAUSED),
    "resume": (frozenset({BatchStatus.PAUSED}), BatchStatus.RUNNING),
    "cancel": (ACTIVE_BATCH, BatchStatus.CANCELLED),
}
"""The batch moves a user asks for by name: the statuses each starts from, and where it goes.
(``completed -> running`` is retry-failed's own.)"""


class ItemOutcome(StrEnum):
    """What a batch's plan decided for one selected input."""

    RUN = "run"
    SKIPPED = "skipped"
    """Done already or in flight (the CIRCUS duplicate rule)."""
    REFUSED = "refused"
    """Broke a registration rule or an input condition."""


class RunState(StrEnum):
    """The types of a Prefect flow run's state (``StateType.value``), named here so that this
    module and the Prefect-free wings need not import Prefect. Never match on state *names*:
    queued runs turn "Late" after a while."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    PAUSED = "PAUSED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"


ALLOWED_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_QUEUE: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.FINISHED, JobStatus.FAILED}),
    JobStatus.FINISHED: frozenset({JobStatus.INVALIDATED}),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.INVALIDATED: frozenset(),
    JobStatus.FAILED: frozenset(),
}
"""from -> allowed to. ``in_queue -> failed`` is ours: a run Prefect could not start at all."""

IGNORED_BY_DUPLICATE_CHECK: frozenset[JobStatus] = frozenset(
    {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INVALIDATED}
)
"""Jobs in these statuses never make a new job a duplicate."""

TERMINAL: frozenset[JobStatus] = frozenset(s for s, to in ALLOWED_MOVES.items() if not to)
"""Statuses a job never leaves."""

PREFECT_TO_JOB: dict[RunState, JobStatus] = {
    RunState.SCHEDULED: JobStatus.IN_QUEUE,
    RunState.PENDING: JobStatus.IN_QUEUE,
    RunState.PAUSED: JobStatus.IN_QUEUE,
    RunState.RUNNING: JobStatus.PROCESSING,
    RunState.CANCELLING: JobStatus.PROCESSING,
    RunState.COMPLETED: JobStatus.FINISHED,
    RunState.FAILED: JobStatus.FAILED,
    RunState.CRASHED: JobStatus.FAILED,
    RunState.CANCELLED: JobStatus.CANCELLED,
}
"""What a Prefect flow run's state type means for its job."""

PREFECT_CANCEL_TYPES: frozenset[RunState] = frozenset({RunState.CANCELLING, RunState.CANCELLED})
"""Prefect state types that mean someone cancelled the run in Prefect (UI or API)."""

PREFECT_FINAL_TYPES: frozenset[RunState] = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.CRASHED}
)
"""Prefect state types a flow run never leaves by itself."""


@dataclass(frozen=True)
class RunMirror:
    """How a job status decided in CIRCUS is shown on the job's flow run."""

    state_type: RunState
    """The Prefect state type set on the run."""
    state_name: str
    replaces: frozenset[RunState]
    """The run state types it is set over (others are left alone)."""
    message: str | None
    """The state's message (``None``: the job's invalidation reason)."""


RUN_MIRRORS: dict[JobStatus, RunMirror] = {
    JobStatus.CANCELLED: RunMirror(
        RunState.CANCELLED,
        "Cancelled",
        frozenset(PREFECT_TO_JOB) - PREFECT_FINAL_TYPES,
        "cancelled in CIRCUS before it ran",
    ),
    JobStatus.INVALIDATED: RunMirror(
        RunState.COMPLETED, "Invalidated", frozenset({RunState.COMPLETED}), None
    ),
}
"""Job statuses that our users decide and Prefect cannot know of, and how their runs show
them. A cancelled job's run that already ended stays as it ended."""


def run_mirror(status: JobStatus, run_type: object, run_name: str | None) -> RunMirror | None:
    """The state to set on a job's flow run (of state ``run_type``/``run_name``) to show the
    job's ``status``, or ``None`` when the run shows it already or must be left alone."""
    mirror = RUN_MIRRORS.get(status)
    kind = str(getattr(run_type, "value", run_type))
    if mirror is None or kind not in mirror.replaces or run_name == mirror.state_name:
        return None
    return mirror


def job_status_for(state_type: object) -> JobStatus:
    """Our status for a Prefect ``StateType`` (or its value)."""
    return PREFECT_TO_JOB[RunState(str(getattr(state_type, "value", state_type)))]


def can_move(current: JobStatus, new: JobStatus) -> bool:
    """Whether the state machine allows ``current -> new``."""
    return new in ALLOWED_MOVES[current]
