"""One settings object, read from ``CIRCUS_*`` environment variables."""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from circus_tasks.home import Subfolder, default_database_url, default_home

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The checkout this package runs from: holds ``flows/``, ``plugins/`` and ``prefect.yaml``."""


class Settings(BaseSettings):
    """Where CIRCUS keeps its data and how it reaches Prefect.

    Every field has a default that works on a laptop with nothing set.
    """

    model_config = SettingsConfigDict(env_prefix="CIRCUS_", extra="ignore")

    home: Path = Field(
        default_factory=default_home,
        description="Holds the database, the DICOM store, job folders, results and Prefect's data.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in CIRCUS_HOME (WAL mode)."
    )
    machine: str = Field(
        default_factory=socket.gethostname, description="This machine's name (one job at a time)."
    )
    prefect_port: int = Field(default=4200, description="Port of the embedded Prefect server.")
    postgres_port: int = Field(
        default=5439, description="Port of the home's own PostgreSQL (circus up --postgres)."
    )
    plugins_dir: Path = Field(default=PROJECT_DIR / "plugins", description="Plug-in folders.")
    work_pool: str = Field(default="circus", description="Prefect work pool of the job runs.")
    deployment: str = Field(default="circus-job/circus-job", description="flow/deployment name.")
    batch_work_pool: str = Field(
        default="circus-batch", description="Prefect work pool of the batch runs (not jobs)."
    )
    batch_deployment: str = Field(
        default="circus-batch/circus-batch", description="flow/deployment of the batch runs."
    )
    batch_poll_seconds: float = Field(default=2.0, description="How often a batch feeds.")
    heartbeat_seconds: float = Field(default=5.0, description="How often a running job beats.")
    stale_after_seconds: float = Field(
        default=45.0, description="A processing job whose heartbeat is older than this has died."
    )
    reconcile_seconds: float = Field(default=10.0, description="Reconciler period.")
    worker_poll_seconds: float = Field(default=0.5, description="How often a worker polls.")
    allow_unisolated: bool = Field(
        default=False,
        description="Run command and Python plug-ins where this machine cannot sandbox them.",
    )
    dispatch_window: int = Field(
        default=20,
        ge=1,
        description="Most queued jobs of a priority or higher with a Prefect flow run at once.",
    )
    max_output_bytes: int = Field(
        default=2 << 30, ge=1, description="Most bytes a plug-in's output folder may store."
    )
    plugin_env: list[str] = Field(
        default_factory=list,
        description="Names of further environment variables passed on to plug-ins (JSON list).",
    )
    sandbox_uid: int = Field(
        default=65534, ge=1, description="User id plug-ins run as where the worker is root."
    )
    import_copy: Literal["copy", "reflink"] = Field(
        default="copy",
        description="How import stores a file: copy, or reflink (a copy-on-write clone where "
        "the file system can make one, else a copy). Never a hard link: see "
        "circus_tasks/store/copying.py.",
    )

    @property
    def db_url(self) -> str:
        """The database URL in force."""
        return self.database_url or default_database_url(self.home)

    dicom_dir: ClassVar[Subfolder] = Subfolder(
        "dicom", "The DICOM store: one folder per series.", under="home"
    )
    jobs_dir: ClassVar[Subfolder] = Subfolder(
        "jobs", "Job working folders (input and output of each plug-in run).", under="home"
    )
    results_dir: ClassVar[Subfolder] = Subfolder(
        "results", "The results store: one folder per job id.", under="home"
    )
    plugin_images_dir: ClassVar[Subfolder] = Subfolder(
        "plugin-images", "Registered plug-in images: one manifest folder each.", under="home"
    )
    engine_dir: ClassVar[Subfolder] = Subfolder(
        "engine", "The container engine circus up starts (podman's API service).", under="home"
    )
    locks_dir: ClassVar[Subfolder] = Subfolder("locks", "Per-machine lock files.", under="home")
    prefect_home: ClassVar[Subfolder] = Subfolder(
        "prefect", "The embedded Prefect server's data folder.", under="home"
    )
    run_dir: ClassVar[Subfolder] = Subfolder(
        "run", "Process ids and logs of the processes ``circus up`` starts.", under="home"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings in force (read once per process; tests clear the cache)."""
    return Settings()
