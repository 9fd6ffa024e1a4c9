"""Database tables (SQLModel), the source of truth for job statuses (Prefect's flow run states
are mirrored into them), and the API's read models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, text
from sqlmodel import Field, SQLModel

from circus_tasks.statuses import BatchStatus, ItemOutcome, JobStage, JobStatus


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class SeriesBase(SQLModel):
    """What the index knows of an imported DICOM series."""

    series_uid: str = Field(primary_key=True, max_length=64)
    study_uid: str = Field(default="", max_length=64)
    patient_id: str = Field(default="", index=True, max_length=64)
    modality: str = Field(default="", max_length=16)
    description: str = Field(default="")
    series_date: str = Field(default="", max_length=8)
    image_count: int = 0
    rows: int | None = None
    columns: int | None = None
    pixel_spacing_row: float | None = None
    pixel_spacing_col: float | None = None
    orientation: str = Field(default="", description="axial, coronal, sagittal or oblique")
    attributes: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON),
        description="keywords of the top-level attributes of the series' first image",
    )


class Series(SeriesBase, table=True):
    """An imported series."""

    created_at: datetime = Field(default_factory=utcnow)


class SeriesRead(SeriesBase):
    """A series as the API returns it."""

    created_at: datetime


class ImageBase(SQLModel):
    """One stored DICOM instance of a series."""

    series_uid: str = Field(foreign_key="series.series_uid", index=True, max_length=64)
    sop_instance_uid: str = Field(unique=True, max_length=64)
    instance_number: int
    z: float | None = None
    path: str


class Image(ImageBase, table=True):
    """An imported image.

    The columns after ``id`` are what import learnt of the slice for pre-processing
    (:class:`circus_tasks.volume.stored.StoredSlice`): all NULL for images imported before
    they existed and for slices that pre-processing must parse (big-endian, deflated, a
    compressed syntax without a fast decoder, ...); ``transfer_syntax`` and ``bits_stored``
    are NULL for native slices too.
    """

    id: int | None = Field(default=None, primary_key=True)
    header: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON),
        description="the slice's N.json object, without private attributes",
    )
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    pixel_representation: int | None = None
    spacing_x: float | None = Field(default=None, description="column spacing (mm)")
    spacing_y: float | None = Field(default=None, description="row spacing (mm)")
    position_x: float | None = None
    position_y: float | None = None
    position_z: float | None = None
    pixel_offset: int | None = Field(
        default=None, sa_type=BigInteger, description="where the pixel data starts in the file"
    )
    file_size: int | None = Field(default=None, sa_type=BigInteger)
    file_mtime_ns: int | None = Field(default=None, sa_type=BigInteger)
    transfer_syntax: str | None = Field(default=None, description="a compressed slice's syntax")
    bits_stored: int | None = Field(default=None, description="a compressed slice's Bits Stored")


class PluginRecord(SQLModel, table=True):
    """A plug-in as last registered: its manifest and folder, kept even if the folder goes."""

    __tablename__ = "plugin"

    plugin_id: str = Field(primary_key=True, description="name@version")
    name: str = Field(index=True)
    version: str
    type: str = "CAD"
    description: str = ""
    path: str
    manifest: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    registered_at: datetime = Field(default_factory=utcnow)


class JobBase(SQLModel):
    """The CIRCUS job record."""

    plugin_id: str
    user: str | None = None
    priority: int = 0
    status: JobStatus = JobStatus.IN_QUEUE
    stage: JobStage | None = None
    error_message: str | None = None
    results: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    flow_run_id: str | None = Field(default=None, index=True)
    machine: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    abort_requested_by: str | None = None
    invalidated_by: str | None = None
    invalidated_at: datetime | None = None
    invalidation_reason: str | None = None
    batch_id: str | None = Field(default=None, foreign_key="batch.id", index=True)
    supersedes_job_id: str | None = Field(default=None, description="the job this one re-runs")
    input_digest: str | None = Field(
        default=None, description="SHA-256 of the SOP instance UIDs it used, series by series"
    )
    input_count: int | None = Field(default=None, description="how many images it used")
    plugin_digest: str | None = Field(
        default=None,
        description="what ran: SHA-256 of its plug-in's folder, or its image's id (sha256:...)",
    )


class Job(JobBase, table=True):
    """A job row; ``signature`` makes the duplicate check an index look-up.

    Each list filter, and each pair of status, plug-in and user, has an index that ends in
    ``id``, so that a page of the newest jobs (``ORDER BY id DESC LIMIT n``) is read from the
    index in order, never sorted from a scan (:mod:`circus_tasks.jobs.pages`).
    """

    __table_args__ = (
        Index("ix_job_plugin_signature", "plugin_id", "signature"),
        Index("ix_job_status_id", "status", "id"),
        Index("ix_job_plugin_id_id", "plugin_id", "id"),
        Index("ix_job_user_id", "user", "id"),
        Index("ix_job_status_plugin_id_id", "status", "plugin_id", "id"),
        Index("ix_job_status_user_id", "status", "user", "id"),
        Index("ix_job_plugin_id_user_id", "plugin_id", "user", "id"),
    )

    id: str = Field(primary_key=True, max_length=26)
    signature: str = Field(description="series uid:start:end:delta of each series, in order")
    heartbeat_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class JobSeriesBase(SQLModel):
    """One series of a job, with its resolved image range."""

    series_uid: str = Field(max_length=64)
    start: int
    end: int
    delta: int


class JobSeries(JobSeriesBase, table=True):
    """A job's series entry; ``position`` keeps the job's order (volume N).

    ``(series_uid, job_id)`` finds a series' jobs newest first from the index alone.
    """

    __table_args__ = (Index("ix_jobseries_series_uid_job_id", "series_uid", "job_id"),)

    job_id: str = Field(foreign_key="job.id", primary_key=True)
    position: int = Field(primary_key=True)


class JobRead(JobBase):
    """A job as the API returns it."""

    id: str
    created_at: datetime
    updated_at: datetime
    series: list[JobSeriesBase] = []


class JobEvent(SQLModel, table=True):
    """One status move of a job: from, to, when, who, why, and the Prefect state."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", index=True)
    from_status: JobStatus | None = None
    to_status: JobStatus
    at: datetime = Field(default_factory=utcnow)
    by: str | None = None
    reason: str | None = None
    prefect_state: str | None = None
    emitted_at: datetime | None = Field(
        default=None, index=True, description="when it was sent to Prefect as an event"
    )


class BatchBase(SQLModel):
    """A batch: one plug-in run over a selection of series or jobs, fed to the machines."""

    name: str
    plugin_id: str
    request_key: str = Field(index=True, description="digest of the request: one batch each")
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    user: str | None = None
    status: BatchStatus = BatchStatus.RUNNING
    planned_run: int = 0
    planned_skipped: int = 0
    planned_refused: int = 0
    flow_run_id: str | None = None


ACTIVE_WHERE = "status IN ('RUNNING', 'PAUSED')"
"""The running and paused batches, as the database stores their status."""


class Batch(BatchBase, table=True):
    """A batch row; its jobs carry its id. One running or paused batch per request."""

    __table_args__ = (
        Index(
            "ux_batch_active_request",
            "request_key",
            unique=True,
            sqlite_where=text(ACTIVE_WHERE),
            postgresql_where=text(ACTIVE_WHERE),
        ),
    )

    id: str = Field(primary_key=True, max_length=26)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class BatchRead(BatchBase):
    """A batch as the API returns it."""

    id: str
    created_at: datetime
    updated_at: datetime


class BatchItemBase(SQLModel):
    """One selected input of a batch and what became of it."""

    position: int
    series: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON),
        description="series_uid, start, end, delta of each series, in job order",
    )
    outcome: ItemOutcome
    reason: str | None = None
    job_id: str | None = Field(default=None, description="the job created for it")
    related_job_ids: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON),
        description="the jobs it duplicates (skipped)",
    )
    supersedes_job_id: str | None = None


class BatchItem(BatchItemBase, table=True):
    """A batch item row."""

    __tablename__ = "batch_item"

    batch_id: str = Field(foreign_key="batch.id", primary_key=True)
    position: int = Field(primary_key=True)


class BatchEvent(SQLModel, table=True):
    """One status move of a batch (its start included), sent to Prefect as an event."""

    __tablename__ = "batch_event"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: str = Field(foreign_key="batch.id", index=True)
    from_status: BatchStatus | None = None
    to_status: BatchStatus
    at: datetime = Field(default_factory=utcnow)
    emitted_at: datetime | None = Field(default=None, index=True)
