"""``circus jobs`` without the weight of the full command line.

The ``circus`` console script (:mod:`circus_tasks.cli.launcher`) sends a well-formed
``circus jobs [--status S] [--plugin P] [--series UID] [--user U] [--patient ID] [--limit N]``
here, and everything else (``--help``, unknown options, a value that looks like an option, a
limit that is not digits) to the typer command in :mod:`circus_tasks.cli.app`, which
documents the command and reports usage errors. Both check the options with
:func:`circus_tasks.jobs.pages.page_filters` and print :func:`circus_tasks.cli.console.
jobs_table` on the same console, so both print the same table and the same errors.

What it leaves out is imports: typer, pydantic settings, SQLAlchemy, SQLModel, the table
models and Prefect. The page is read by the statement ``list_jobs`` sends, through the
database's own driver (:func:`circus_tasks.jobs.pages.page_from_database`): the standard
library's :mod:`sqlite3`, read-only, for the default SQLite database, psycopg for
PostgreSQL. Any other database, or one whose schema is not the newest yet, goes through
:func:`circus_tasks.jobs.queries.list_jobs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

OPTIONS = {
    "--status": "status",
    "--plugin": "plugin_id",
    "--series": "series_uid",
    "--user": "user",
    "--patient": "patient_id",
    "--limit": "limit",
}
"""The typer command's options and the ``list_jobs`` argument each gives."""
DEFAULT_LIMIT = 50
"""The typer command's ``--limit`` default."""


@dataclass(frozen=True)
class JobsArguments:
    """The options of ``circus jobs``, as ``list_jobs`` arguments."""

    filters: dict[str, Any] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT


def parse_arguments(args: Sequence[str]) -> JobsArguments | None:
    """Read ``--option VALUE`` and ``--option=VALUE`` pairs; of an option given twice the last
    counts, as with the typer command.

    Args:
        args: What follows ``jobs`` on the command line.

    Returns:
        The arguments, or ``None`` for anything else (help, another option, an argument, a
        missing value, a value that starts with ``-``, a limit that is not digits): the typer
        command handles and reports those.
    """
    values: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, equals, value = arg.partition("=")
        if name not in OPTIONS:
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if value.startswith("-"):
            return None
        values[OPTIONS[name]] = value
    limit_text = values.pop("limit", None)
    if limit_text is None:
        return JobsArguments(values)
    if not (limit_text.isascii() and limit_text.isdigit()):
        return None
    return JobsArguments(values, int(limit_text))


def main(arguments: JobsArguments) -> int:
    """Print the page of jobs; errors are printed as the typer command prints them.

    Returns:
        The exit code: 0, or 1 when an option's value cannot be taken.
    """
    from circus_tasks.cli.console import console, jobs_table, print_error
    from circus_tasks.jobs.pages import page_filters, page_from_database

    try:
        filters = page_filters(limit=arguments.limit, **arguments.filters)
    except ValueError as exc:
        print_error(exc)
        return 1
    rows: Sequence[Any] | None = page_from_database(filters)
    if rows is None:
        from circus_tasks.jobs.queries import list_jobs

        rows = list_jobs(limit=arguments.limit, **arguments.filters)
    console.print(jobs_table(rows))
    return 0
