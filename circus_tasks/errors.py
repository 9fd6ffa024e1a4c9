"""The error tree: one root, ``CircusError``; each error also inherits the built-in it resembles.

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence


class CircusError(Exception):
    """Root of every error this package raises on purpose."""


class InvalidValueError(CircusError, ValueError):
    """A value given from outside (an argument, a DICOM attribute) that cannot be taken."""


class InvalidRangeError(CircusError, ValueError):
    """An image range breaks the CIRCUS rules or names images the series does not hold."""


class DicomImportError(CircusError, ValueError):
    """A file could not be imported as DICOM."""


class VolumeError(CircusError, ValueError):
    """The images of a series cannot be stacked into one plug-in input volume."""


class ResultsError(CircusError, ValueError):
    """A plug-in's ``results.json`` is missing or invalid."""


class StorageError(CircusError, OSError):
    """A job's results could not be written to the results store (e.g. the disk is full)."""


class PluginError(CircusError, RuntimeError):
    """A plug-in's manifest is invalid, or its run failed."""


class InputConditionError(CircusError, ValueError):
    """A job breaks the input conditions its plug-in declares (``force`` does not help)."""

    def __init__(self, plugin_id: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"The job does not meet the input conditions of plug-in {plugin_id}: "
            + "; ".join(problems)
            + ". Pick series that do, or another plug-in."
        )


class SeriesNotFoundError(CircusError, LookupError):
    """No imported series has this UID."""

    @classmethod
    def for_uid(cls, series_uid: str) -> SeriesNotFoundError:
        """The error for a series UID that is not in the index."""
        return cls(
            f"Series {series_uid} is not imported; import its files first (circus import PATH)."
        )


class PluginNotFoundError(CircusError, LookupError):
    """No registered plug-in has this id."""


class JobNotFoundError(CircusError, LookupError):
    """No job has this id."""

    @classmethod
    def for_id(cls, job_id: str) -> JobNotFoundError:
        """The error for a job id that is not in the database."""
        return cls(f"No job {job_id}; list jobs with circus jobs.")

    @classmethod
    def for_flow_run(cls, job_id: str, database: str) -> JobNotFoundError:
        """The error for a flow run whose job is not in ``database`` (shown without password)."""
        return cls(
            f"No job {job_id} in the CIRCUS database ({database}): this flow run was not "
            "created by CIRCUS, or the worker uses another database (CIRCUS_DATABASE_URL). "
            "Submit jobs with `circus submit` or submit_job()."
        )


class BatchNotFoundError(CircusError, LookupError):
    """No batch has this id."""

    @classmethod
    def for_id(cls, batch_id: str) -> BatchNotFoundError:
        """The error for a batch id that is not in the database."""
        return cls(f"No batch {batch_id}; list batches with circus batch list.")


class JobStateError(CircusError, RuntimeError):
    """A status move the CIRCUS state machine does not allow (cancel, invalidate, ...)."""


class DuplicateJobError(CircusError):
    """An equivalent job is already registered; resend with ``force`` to register anyway."""

    def __init__(self, existing_job_ids: Sequence[str]) -> None:
        self.existing_job_ids = list(existing_job_ids)
        super().__init__(
            "There is a duplicate job that is already registered "
            f"({', '.join(self.existing_job_ids)}); resubmit with force to register it anyway."
        )


class PrefectUnavailableError(CircusError, ConnectionError):
    """The Prefect server does not answer."""
