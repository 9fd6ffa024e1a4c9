"""CIRCUS CS job management on Prefect.

Public names are imported lazily, so that ``import circus_tasks`` stays cheap (Prefect alone
is slow to import) and a plug-in's process loads nothing it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from circus_tasks.api import (
        JobRequest,
        JobResults,
        SeriesInput,
        abort_job,
        cancel_job,
        get_job,
        get_job_results,
        invalidate_job,
        job_events,
        list_jobs,
        submit_job,
        submit_jobs,
        wait_for_job,
    )
    from circus_tasks.errors import (
        CircusError,
        DicomImportError,
        DuplicateJobError,
        InputConditionError,
        InvalidRangeError,
        JobNotFoundError,
        JobStateError,
        PluginError,
        PluginNotFoundError,
        PrefectUnavailableError,
        ResultsError,
        SeriesNotFoundError,
        VolumeError,
    )
    from circus_tasks.plugins.registry import get_plugin, list_plugins
    from circus_tasks.settings import Settings, get_settings
    from circus_tasks.statuses import JobStatus
    from circus_tasks.store.importer import ImportReport, import_dicom
    from circus_tasks.store.ranges import ImageRange, resolve_auto_range
    from circus_tasks.store.series import get_series, list_series

_EXPORTS: dict[str, str] = {
    "CircusError": "errors",
    "DicomImportError": "errors",
    "DuplicateJobError": "errors",
    "InvalidRangeError": "errors",
    "JobNotFoundError": "errors",
    "JobStateError": "errors",
    "PluginError": "errors",
    "PluginNotFoundError": "errors",
    "PrefectUnavailableError": "errors",
    "ResultsError": "errors",
    "SeriesNotFoundError": "errors",
    "VolumeError": "errors",
    "ImportReport": "store.importer",
    "import_dicom": "store.importer",
    "JobRequest": "api",
    "SeriesInput": "api",
    "abort_job": "api",
    "get_job_results": "api",
    "JobResults": "api",
    "InputConditionError": "errors",
    "cancel_job": "api",
    "get_job": "api",
    "invalidate_job": "api",
    "job_events": "api",
    "list_jobs": "api",
    "submit_job": "api",
    "submit_jobs": "api",
    "wait_for_job": "api",
    "get_plugin": "plugins.registry",
    "list_plugins": "plugins.registry",
    "ImageRange": "store.ranges",
    "resolve_auto_range": "store.ranges",
    "get_series": "store.series",
    "list_series": "store.series",
    "Settings": "settings",
    "get_settings": "settings",
    "JobStatus": "statuses",
}

__all__ = [
    "CircusError",
    "DicomImportError",
    "DuplicateJobError",
    "ImageRange",
    "ImportReport",
    "InputConditionError",
    "InvalidRangeError",
    "JobNotFoundError",
    "JobRequest",
    "JobResults",
    "JobStateError",
    "JobStatus",
    "PluginError",
    "PluginNotFoundError",
    "PrefectUnavailableError",
    "ResultsError",
    "SeriesInput",
    "SeriesNotFoundError",
    "Settings",
    "VolumeError",
    "abort_job",
    "cancel_job",
    "get_job",
    "get_job_results",
    "get_plugin",
    "get_series",
    "get_settings",
    "import_dicom",
    "invalidate_job",
    "job_events",
    "list_jobs",
    "list_plugins",
    "list_series",
    "resolve_auto_range",
    "submit_job",
    "submit_jobs",
    "wait_for_job",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"circus_tasks.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'circus_tasks' has no attribute {name!r}")
