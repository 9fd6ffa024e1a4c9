"""The CIRCUS duplicate rule: a job is a duplicate of a registered job of the same plug-in on
the same series and ranges, unless that job failed, was cancelled or was invalidated."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlmodel import Session, col, select

from circus_tasks.db.engine import CHUNK
from circus_tasks.db.models import Job
from circus_tasks.statuses import IGNORED_BY_DUPLICATE_CHECK
from circus_tasks.store.ranges import ImageRange


def job_signature(resolved: Iterable[tuple[str, ImageRange]]) -> str:
    """The duplicate-check key: each series UID and range, in job order."""
    return "|".join(f"{uid}:{r}" for uid, r in resolved)


def find_duplicates(plugin_id: str, signature: str, *, session: Session) -> list[str]:
    """Ids of jobs that make a new job with this plug-in and series a duplicate."""
    return find_many_duplicates([(plugin_id, signature)], session=session).get(
        (plugin_id, signature), []
    )


def find_many_duplicates(
    keys: Iterable[tuple[str, str]], *, session: Session
) -> dict[tuple[str, str], list[str]]:
    """:func:`find_duplicates` of many (plug-in, signature) pairs, a query per chunk; each
    pair's job ids oldest first."""
    by_plugin: dict[str, list[str]] = defaultdict(list)
    for plugin_id, signature in dict.fromkeys(keys):
        by_plugin[plugin_id].append(signature)
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for plugin_id, signatures in by_plugin.items():
        for start in range(0, len(signatures), CHUNK):
            # No ORDER BY: asked for the jobs in id order, SQLite walks all the plug-in's
            # jobs in its (plugin_id, id) index instead of looking the signatures up in
            # (plugin_id, signature); the few ids found are sorted below.
            query = select(Job.id, Job.signature).where(
                Job.plugin_id == plugin_id,
                col(Job.signature).in_(signatures[start : start + CHUNK]),
                col(Job.status).not_in(list(IGNORED_BY_DUPLICATE_CHECK)),
            )
            for job_id, signature in session.exec(query):
                found[(plugin_id, signature)].append(job_id)
    for ids in found.values():
        ids.sort()
    return found
