"""``circus import`` without the weight of the full command line.

The ``circus`` console script (:mod:`circus_tasks.cli.launcher`) sends ``circus import PATH...``
here when no argument looks like an option, and everything else (``--help``, an option, no
path) to the typer application in :mod:`circus_tasks.cli.app`, whose ``import`` command runs
:func:`run_import` too: the same import, bar and report either way.

What it leaves out is imports: typer, pydantic settings, SQLAlchemy, SQLModel and the table
models (with the default SQLite database, :mod:`circus_tasks.store.importer`), and the parts of
pydicom that only download test files (:mod:`circus_tasks.cli.deferred_imports`). pydicom is
loaded before the files are read, so that the workers that read them start with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from circus_tasks.cli.console import console, print_error
from circus_tasks.cli.deferred_imports import UNUSED_BY_PYDICOM_READING, deferred_imports
from circus_tasks.errors import CircusError
from circus_tasks.values import printable


def parse_arguments(args: Sequence[str]) -> list[Path] | None:
    """The paths of ``circus import PATH...``.

    Args:
        args: What follows ``import`` on the command line.

    Returns:
        The paths, or ``None`` when there is none or an argument starts with ``-`` (help,
        an option, ``--``): the typer command handles and reports those.
    """
    if not args or any(arg.startswith("-") for arg in args):
        return None
    return [Path(arg) for arg in args]


def run_import(paths: Sequence[Path]) -> int:
    """Import ``paths`` with a progress bar (files done, files per second), then print the
    report and every refused file.

    Returns:
        The exit code: 1 when a path is missing or a setting is refused (nothing is imported)
        or when nothing of what was asked could be imported, else 0.
    """
    with deferred_imports(UNUSED_BY_PYDICOM_READING):
        from circus_tasks.store.importer import import_dicom

    missing = [p for p in paths if not p.exists()]
    if missing:
        names = ", ".join(printable(str(p)) for p in missing)
        print_error(ValueError(f"No such file or folder: {names}; nothing was imported."))
        return 1
    progress = Progress(
        TextColumn("Importing"),
        BarColumn(),
        MofNCompleteColumn(),
        _FilesPerSecond(),
        console=console,
    )
    bar = progress.add_task("import", total=None)
    shown: list[bool] = []

    def started(total: int) -> None:  # the workers are forked: the bar's thread may start
        progress.update(bar, total=total)
        progress.start()
        shown.append(True)

    try:
        report = import_dicom(*paths, progress=lambda _path: progress.advance(bar), started=started)
    except CircusError as exc:  # a setting or a store it refuses: nothing more to do
        if shown:
            progress.stop()
        print_error(exc)
        return 1
    except BaseException:
        if shown:
            progress.stop()
        raise
    progress.stop()
    console.print(str(report))
    for path, reason in report.problems:
        console.print(f"  [yellow]refused[/yellow] {escape(printable(f'{path}: {reason}'))}")
    if report.problems and not (report.imported or report.already_present):
        return 1  # nothing of what was asked could be imported
    return 0


class _FilesPerSecond(ProgressColumn):
    """How many files a second the import reads (over the last 30 s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} files/s", style="progress.data")


def main(paths: Sequence[Path]) -> int:
    """``circus import PATH...`` as a whole: run it, print to the terminal; the exit code."""
    return run_import(paths)
