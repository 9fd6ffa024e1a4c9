"""A plug-in folder's fingerprint: what a job records of the plug-in that ran it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SKIPPED = frozenset({"__pycache__", ".git"})
"""Folders whose contents are not the plug-in's own (caches, version control)."""


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file's path (relative, in sorted order) and contents."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            path = Path(root) / name
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() if path.is_file() else b"")
            digest.update(b"\0")
    return digest.hexdigest()
