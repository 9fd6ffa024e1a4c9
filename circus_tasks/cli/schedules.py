"""``circus batch schedule``: batches on a schedule (Prefect deployment schedules)."""

from __future__ import annotations

import typer
from rich.table import Table

from circus_tasks.cli.console import add_plain_row, shown
from circus_tasks.cli.output import console, or_exit

schedule_app = typer.Typer(help="Batches on a schedule (Prefect deployment schedules).")


@schedule_app.command("list")
def schedule_list() -> None:
    """The batch schedules Prefect holds (added here or declared in prefect.yaml)."""
    from circus_tasks.batch_api import list_schedules

    table = Table("schedule", "when", "active", "plug-in", "batch")
    for s in or_exit(list_schedules):
        request = s.request or {}
        add_plain_row(
            table, s.name, s.when, s.active, request.get("plugin_id", ""), request.get("name", "")
        )
    console.print(table)


@schedule_app.command("pause")
def schedule_pause(name: str) -> None:
    """Stop a schedule from starting batches."""
    from circus_tasks.batch_api import pause_schedule

    or_exit(lambda: pause_schedule(name))
    console.print(f"Schedule {shown(name)} paused.")


@schedule_app.command("resume")
def schedule_resume(name: str) -> None:
    """Let a paused schedule start batches again."""
    from circus_tasks.batch_api import resume_schedule

    or_exit(lambda: resume_schedule(name))
    console.print(f"Schedule {shown(name)} resumed.")


@schedule_app.command("remove")
def schedule_remove(name: str) -> None:
    """Remove a schedule."""
    from circus_tasks.batch_api import remove_schedule

    or_exit(lambda: remove_schedule(name))
    console.print(f"Schedule {shown(name)} removed.")
