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
from rich.text import Text

from circus_tasks.values import printable

# Not a terminal (make, CI, a pipe): wide enough for the job table all the same.
console = Console(width=None if sys.stdout.isatty() else 160)


def print_error(exc: Exception) -> None:
    """Print an error the way every command reports one."""
    console.print(f"[red]error:[/red] {shown(exc)}")


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


def shown(value: object) -> str:
    """``value`` for a rich line: control characters escaped, brackets not markup."""
    return escape(printable(str(value)))


def add_plain_row(table: Table, *cells: object) -> None:
    """Add a row of values shown as they are: control characters escaped (``printable``) and a
    bracket never read as rich markup (a stray "[/]" in a series description, an error message
    or a batch name would otherwise stop the command with a MarkupError)."""
    table.add_row(*(Text(printable(str(cell))) for cell in cells))


def jobs_table(rows: Sequence[JobRow]) -> Table:
    """The job table the CLI and the demo print."""
    table = Table("job id", "plug-in", "status", "stage", "machine", "prio", "series", "error")
    for j in rows:
        series_text = ", ".join(
            f"{s.series_uid[-12:]}[{s.start}:{s.end}:{s.delta}]" for s in j.series
        )
        cells = (
            j.id,
            printable(j.plugin_id),
            str(j.status),
            str(j.stage or ""),
            printable(j.machine or ""),
            str(j.priority),
            series_text,
            printable((j.error_message or "")[:60]),
        )
        add_plain_row(table, *cells)
    return table
