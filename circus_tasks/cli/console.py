"""The command line's console, its error line and the job table: rich only, no typer, so that
the lean commands (:mod:`circus_tasks.cli.jobs`, :mod:`circus_tasks.cli.volume`) print exactly
as the typer commands do (:mod:`circus_tasks.cli.output` re-exports these)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from circus_tasks.values import printable

# Not a terminal (make, CI, a pipe): wide enough for the job table all the same.
console = Console(width=None if sys.stdout.isatty() else 160)


def print_error(exc: Exception) -> None:
    """Print an error the way every command reports one."""
    console.print(f"[red]error:[/red] {escape(printable(str(exc)))}")


class SeriesCell(Protocol):
    """What the job table shows of a job's series."""

    @property
    def series_uid(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def delta(self) -> int: ...


class JobRow(Protocol):
    """What the job table shows of a job: an API view
    (:class:`~circus_tasks.db.models.JobRead`) or a page line
    (:class:`~circus_tasks.jobs.pages.JobLine`)."""

    @property
    def id(self) -> str: ...
    @property
    def plugin_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def machine(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def series(self) -> Sequence[SeriesCell]: ...


def jobs_table(rows: Sequence[JobRow]) -> Table:
    """The job table the CLI and the demo print."""
    table = Table("job id", "plug-in", "status", "stage", "machine", "prio", "series", "error")
    for j in rows:
        series_text = ", ".join(
            f"{s.series_uid[-12:]}[{s.start}:{s.end}:{s.delta}]" for s in j.series
        )
        table.add_row(
            j.id,
            printable(j.plugin_id),
            str(j.status),
            str(j.stage or ""),
            j.machine or "",
            str(j.priority),
            series_text,
            printable((j.error_message or "")[:60]),
        )
    return table
