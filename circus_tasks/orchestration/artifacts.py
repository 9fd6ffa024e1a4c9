"""What a finished job shows in the Prefect UI: artifacts on its flow run.

The rows and file lists are plain functions; :func:`publish_job_artifacts` sends them to
Prefect and must run inside the job's flow run.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

PREVIEW_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
MAX_PREVIEW_BYTES = 2_000_000
"""Previews larger than this are listed, not embedded (artifacts live in Prefect's database)."""


def result_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The results as table rows: one per lesion candidate, else one per numeric result."""
    body = results.get("results", {})
    candidates = body.get("lesionCandidates")
    if candidates:
        return [
            {
                "rank": c.get("rank", i + 1),
                "volumeId": c["volumeId"],
                "x": c["location"][0],
                "y": c["location"][1],
                "z": c["location"][2],
                "volumeSize": c.get("volumeSize"),
                "confidence": c["confidence"],
            }
            for i, c in enumerate(candidates)
        ]
    return [{"result": key, "value": value} for key, value in _flatten(body)]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows = []
        for key, item in value.items():
            rows += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, bool | int | float | str) or value is None:
        return [(prefix, value)]
    if (
        isinstance(value, list)
        and len(value) <= 10
        and all(isinstance(v, int | float) for v in value)
    ):
        return [(prefix, ", ".join(f"{v:g}" for v in value))]
    return [(prefix, f"({type(value).__name__} of {len(value)})")]


def output_files(folder: Path) -> list[dict[str, Any]]:
    """Every file of a results folder with its size, sorted by path."""
    return [
        {"file": str(p.relative_to(folder)), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def preview_images(folder: Path) -> list[Path]:
    """The plug-in's preview images in a results folder."""
    return [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in PREVIEW_SUFFIXES]


def data_url(image: Path) -> str:
    """The image as a ``data:`` URL (the UI shows it with nothing else to serve)."""
    kind = PREVIEW_SUFFIXES[image.suffix.lower()]
    return f"data:{kind};base64,{base64.b64encode(image.read_bytes()).decode()}"


def publish_job_artifacts(job_id: str, results: dict[str, Any], folder: Path) -> list[str]:
    """Publish the results table, the preview images and the file list on the current flow run.

    Returns:
        The artifact keys.
    """
    from prefect.artifacts import (
        create_image_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    keys = [f"{job_id}-results", f"{job_id}-files"]
    create_table_artifact(
        table=result_rows(results), key=keys[0], description=f"Results of CIRCUS job {job_id}"
    )
    files = output_files(folder)
    lines = [f"| `{f['file']}` | {f['bytes']:,} |" for f in files]
    create_markdown_artifact(
        markdown="\n".join(
            [
                f"Output of job {job_id} in `{folder}`",
                "",
                "| file | bytes |",
                "| --- | ---: |",
                *lines,
            ]
        ),
        key=keys[1],
        description="Output files",
    )
    for index, image in enumerate(preview_images(folder)):
        if image.stat().st_size > MAX_PREVIEW_BYTES:
            continue
        key = f"{job_id}-preview-{index}"
        create_image_artifact(image_url=data_url(image), key=key, description=image.name)
        keys.append(key)
    return keys
