"""What a value from outside may be: DICOM UIDs, user names and reasons, paths built from
outside content, and text printed in a terminal. Each check gives the error a user can act on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from circus_tasks.errors import InvalidValueError

UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
"""The DICOM UI grammar: components of digits, no leading zero, separated by dots."""
UID_LENGTH = 64
MAX_NUMBER = 2**31 - 1
"""The largest image number (an IS value) and range bound."""
LIMITS = {
    "user": 200,
    "reason": 2000,
    "plugin_id": 200,
    "name": 200,
    "series_uid": UID_LENGTH,
    "patient_id": 200,
    "status": 20,
    "job id": 26,
}
"""The longest user name, reason, plug-in id, batch name, series UID, patient ID, job status
and job id taken."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a DICOM UID, or ``None``."""
    if len(value) > UID_LENGTH:
        return f"is {len(value)} characters long; a UID has at most {UID_LENGTH}"
    if not UID.fullmatch(value):
        return "is not digits and dots (each component without a leading zero)"
    return None


def check_text(value: object, what: str, *, optional: bool = True) -> str | None:
    """``value`` as a one-line text of at most ``LIMITS[what]`` characters.

    Raises:
        InvalidValueError: naming the field and what is wrong with it.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidValueError(f"The {what} must be text, not {type(value).__name__}.")
    limit = LIMITS[what]
    if len(value) > limit:
        raise InvalidValueError(
            f"The {what} is {len(value):,} characters long; give at most {limit}."
        )
    if _CONTROL.search(value):
        raise InvalidValueError(
            f"The {what} {printable(value[:60])!r} holds control characters (a line break, "
            "an escape code, ...); give it on one line of plain text."
        )
    return value


def check_int(value: object, what: str, low: int, high: int) -> int:
    """``value`` as an integer in ``[low, high]``.

    Raises:
        InvalidValueError: naming the field, the value and the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValueError(f"The {what} must be an integer, not {value!r}.")
    if not low <= value <= high:
        raise InvalidValueError(f"The {what} {value} is out of bounds; give {low} to {high}.")
    return value


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes, safe to print in a terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, checked to stay under ``root``.

    Raises:
        InvalidValueError: the path leaves its root (``..``, an absolute part, a link).
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InvalidValueError(f"{path} leaves {root}; nothing is written outside it.")
    return resolved


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
