"""The ``results.json`` a CIRCUS plug-in writes, its schema, and how post-processing reads it.

Post-processing refuses a job whose output folder has no ``results.json``, or one that is not
UTF-8 JSON, or one that breaks :data:`RESULTS_SCHEMA`. Every refusal is a
:class:`~circus_tasks.errors.ResultsError` whose message names the file, says what is wrong
(with a JSON path for each schema violation) and what the plug-in author should change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from circus_tasks.errors import ResultsError
from circus_tasks.settings import get_settings

RESULTS_FILE_NAME = "results.json"

_POINT3: dict[str, Any] = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 3,
    "maxItems": 3,
}

_LESION_CANDIDATE: dict[str, Any] = {
    "type": "object",
    "required": ["volumeId", "location", "confidence"],
    "properties": {
        "volumeId": {"type": "integer", "minimum": 0},
        "location": {**_POINT3, "description": "[x, y, z] in voxels of volume volumeId"},
        "confidence": {"type": "number"},
        "rank": {"type": "integer"},
        "volumeSize": {"type": "number"},
    },
}

_DISPLAY_OPTION: dict[str, Any] = {
    "type": "object",
    "required": ["volumeId"],
    "properties": {
        "volumeId": {"type": "integer", "minimum": 0},
        "crop": {
            "type": "object",
            "required": ["origin", "size"],
            "properties": {"origin": _POINT3, "size": _POINT3},
        },
        "window": {
            "type": "object",
            "required": ["level", "width"],
            "properties": {
                "level": {"type": "number"},
                "width": {"type": "number", "exclusiveMinimum": 0},
            },
        },
    },
}

RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://circus-tasks.local/schemas/results.json",
    "title": "CIRCUS CS plug-in results",
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "object",
            "description": "Plug-in specific results; other keys (e.g. numbers) are allowed.",
            "properties": {
                "lesionCandidates": {"type": "array", "items": _LESION_CANDIDATE},
            },
        },
        "metadata": {
            "type": "object",
            "properties": {
                "displayOptions": {"type": "array", "items": _DISPLAY_OPTION},
            },
        },
    },
}
"""JSON Schema (draft 2020-12) of ``results.json``; unknown keys are allowed everywhere."""

_VALIDATOR = Draft202012Validator(RESULTS_SCHEMA)

_AUTHOR_HINT = (
    "The plug-in must write a UTF-8 JSON object with a 'results' object "
    "(see docs/plugin-contract.md)."
)


class _NonFiniteNumberError(ValueError):
    """``NaN`` / ``Infinity`` found while parsing; Python accepts them, JSON does not."""


def _reject_constant(name: str) -> Any:
    """``json.loads`` hook: refuse the non-standard constants ``NaN``, ``Infinity``."""
    raise _NonFiniteNumberError(name)


def _violation_line(error: ValidationError) -> str:
    """Describe one schema violation as ``<json path>: <message>``."""
    return f"  {error.json_path}: {error.message}"


def validate_results(document: Any, *, source: str = RESULTS_FILE_NAME) -> None:
    """Check a parsed ``results.json`` against :data:`RESULTS_SCHEMA`.

    Args:
        document: The parsed JSON value.
        source: How to name the document in the error message (usually its path).

    Raises:
        ResultsError: The document breaks the schema; the message lists every violation
            with its JSON path (``$.results.lesionCandidates[0].location`` ...).
    """
    errors = sorted(_VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = "\n".join(_violation_line(e) for e in errors)
    raise ResultsError(
        f"{source} does not match the CIRCUS results schema "
        f"({len(errors)} problem{'s' if len(errors) != 1 else ''}):\n{lines}\n"
        f"Fix the plug-in so that it writes these values as described. {_AUTHOR_HINT}"
    )


MAX_RESULTS_BYTES = 10 * 1024 * 1024
"""The largest ``results.json`` taken (it is stored in the job's row)."""


def load_results(out_dir: Path) -> dict[str, Any]:
    """Read and validate the ``results.json`` a plug-in wrote into its output folder.

    Args:
        out_dir: The plug-in's output folder.

    Returns:
        The parsed ``results.json`` (a dict with at least a ``results`` object).

    Raises:
        ResultsError: The file is missing, is not UTF-8, is not valid JSON (the message gives
            line and column), or does not match :data:`RESULTS_SCHEMA` (every violation is
            listed with its JSON path).
    """
    path = Path(out_dir) / RESULTS_FILE_NAME
    if path.is_file() and (size := path.stat().st_size) > MAX_RESULTS_BYTES:
        raise ResultsError(
            f"{path} is {size:,} bytes; results.json may hold at most {MAX_RESULTS_BYTES:,} "
            "(it is stored with the job): put large data in other files of the output folder."
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(
            f"{path} is missing: the plug-in finished without writing {RESULTS_FILE_NAME} "
            f"into its output folder. {_AUTHOR_HINT}"
        ) from None
    except IsADirectoryError:
        raise ResultsError(f"{path} is a folder, not a file. {_AUTHOR_HINT}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(
            f"{path} is not UTF-8 text (invalid byte at offset {exc.start}). "
            f"Write it with encoding='utf-8'. {_AUTHOR_HINT}"
        ) from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
            f"Write it with a JSON library (e.g. json.dump) rather than by hand. {_AUTHOR_HINT}"
        ) from None
    except _NonFiniteNumberError as exc:
        raise ResultsError(
            f"{path} contains {exc.args[0]}, which is not a JSON number (browsers cannot read "
            f"it). Replace non-finite values with null or leave the key out. {_AUTHOR_HINT}"
        ) from None
    validate_results(document, source=str(path))
    results: dict[str, Any] = document  # the schema guarantees a top-level object
    return results


def check_output_tree(out_dir: Path) -> None:
    """Refuse an output folder holding anything that points outside it.

    Raises:
        ResultsError: naming each symbolic link or special file found, or when the files
            add up to more than ``CIRCUS_MAX_OUTPUT_BYTES``.
    """
    bad, total = [], 0
    for root, dirs, files in os.walk(out_dir):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                bad.append(f"{path.relative_to(out_dir)} (symbolic link to {os.readlink(path)})")
            elif not (path.is_dir() or path.is_file()):
                bad.append(f"{path.relative_to(out_dir)} (not a regular file)")
            else:
                total += path.lstat().st_size
    limit = get_settings().max_output_bytes
    if total > limit:
        raise ResultsError(
            f"The plug-in's output holds {total:,} bytes, more than the {limit:,} a job may "
            "store (CIRCUS_MAX_OUTPUT_BYTES). Nothing was stored."
        )
    if bad:
        raise ResultsError(
            "The plug-in's output holds entries that are not plain files: "
            + ", ".join(bad)
            + ". A plug-in may only write regular files inside its output folder."
        )
