"""The plug-in manifest (``plugin.json``): the CIRCUS fields plus how to run the plug-in, its
time-out and the input conditions it sets on the series of a job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from circus_tasks.errors import PluginError

MANIFEST = "plugin.json"
SEMVER = r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
DEFAULT_TIMEOUT = 3000
"""Seconds, as CIRCUS."""

IMAGE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*$"
"""An image's name or id as ``docker`` takes it (never an option)."""

Orientation = Literal["axial", "coronal", "sagittal", "oblique"]


class DockerRunner(BaseModel):
    """A CIRCUS Docker image: input at ``/circus/in``, output at ``/circus/out``."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=255, pattern=IMAGE_NAME)
    gpus: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_,=.\"-]*$",
        description='passed to "docker run --gpus"',
    )
    memory: str | None = Field(
        default=None, pattern=r"^\d+[bkmg]?$", description="memory limit, e.g. 4g (no swap)"
    )
    cpus: float | None = Field(default=None, gt=0, le=1024, description="CPU limit, e.g. 1.5")
    ref: str | None = Field(
        default=None,
        max_length=255,
        pattern=IMAGE_NAME,
        description="the name the image was registered by (image is its id)",
    )


class Runner(BaseModel):
    """How to run a plug-in: exactly one of a Python callable ``module:function`` (called as
    ``function(in_dir, out_dir)`` in a child process), a command line (``{in}`` and ``{out}``
    stand for the folders) or a Docker image."""

    model_config = ConfigDict(extra="forbid")

    python: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    command: list[str] | None = Field(default=None, min_length=1)
    docker: DockerRunner | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Runner:
        given = [k for k in ("python", "command", "docker") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'python', 'command' or 'docker'")
        return self

    @property
    def kind(self) -> str:
        """``python``, ``command`` or ``docker``."""
        return "python" if self.python else "command" if self.command else "docker"


class Bounds(BaseModel):
    """An inclusive numeric interval; either end may be left open."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        low = "" if self.min is None else f"{self.min:g}"
        high = "" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high}]"


class SeriesConditions(BaseModel):
    """What a plug-in needs of one series; every field optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    modality: list[str] | None = None
    min_images: int | None = Field(default=None, alias="minImages", ge=1)
    max_images: int | None = Field(default=None, alias="maxImages", ge=1)
    required_attributes: list[str] | None = Field(default=None, alias="requiredAttributes")
    pixel_spacing_mm: Bounds | None = Field(default=None, alias="pixelSpacingMm")
    orientation: list[Orientation] | None = None


class InputConditions(BaseModel):
    """How many series a plug-in takes and what each must be (CIRCUS left this "for the
    future"). ``series[i]`` applies to the job's series ``i``; the last entry applies to the
    rest."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    min_series: int = Field(default=1, alias="minSeries", ge=1)
    max_series: int | None = Field(default=None, alias="maxSeries", ge=1)
    series: list[SeriesConditions] = Field(default_factory=list)

    def for_position(self, position: int) -> SeriesConditions | None:
        """The conditions on the job's series at ``position``."""
        if not self.series:
            return None
        return self.series[min(position, len(self.series) - 1)]


class PluginManifest(BaseModel):
    """The CIRCUS manifest fields plus ours (runner, time-out, input conditions)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    plugin_name: str = Field(alias="pluginName", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = Field(pattern=SEMVER)
    type: Literal["CAD"] = "CAD"
    description: str = ""
    icon: dict[str, str] | None = None
    display_strategy: list[dict[str, object]] | None = Field(default=None, alias="displayStrategy")
    runner: Runner
    timeout: int = Field(default=DEFAULT_TIMEOUT, gt=0, description="seconds")
    input_conditions: InputConditions = Field(
        default_factory=InputConditions, alias="inputConditions"
    )

    @property
    def plugin_id(self) -> str:
        """``name@version``: two versions of a plug-in live side by side."""
        return f"{self.plugin_name}@{self.version}"


def load_manifest(folder: Path) -> PluginManifest:
    """Read and validate ``folder/plugin.json``.

    Raises:
        PluginError: naming every problem of the manifest.
    """
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PluginError(f"Cannot read plug-in manifest {path}: {exc}") from None
    try:
        return PluginManifest.model_validate(data)
    except ValidationError as exc:
        raise PluginError(f"Invalid plug-in manifest {path}: {describe_errors(exc)}") from None


def describe_errors(error: ValidationError) -> str:
    """Every problem pydantic found, as ``field.path: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in error.errors()
    )
