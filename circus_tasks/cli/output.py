"""How the command line prints: one console, errors, the job table."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from circus_tasks.errors import CircusError
from circus_tasks.values import printable

if TYPE_CHECKING:
    from circus_tasks.db.models import JobRead

# Not a terminal (make, CI, a pipe): wide enough for the job table all the same.
console = Console(width=None if sys.stdout.isatty() else 160)


T = TypeVar("T")


def print_error(exc: Exception) -> None:
    """Print an error the way every command reports one."""
    console.print(f"[red]error:[/red] {escape(printable(str(exc)))}")


def or_exit(call: Callable[[], T], refusal: type[Exception] = CircusError) -> T:
    """``call()``; a ``refusal`` is printed as an error and the command exits with 1."""
    try:
        return call()
    except refusal as exc:
        print_error(exc)
        raise typer.Exit(1) from None


def jobs_table(rows: Sequence[JobRead]) -> Table:
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
