"""``circus batch``: plan, start and follow batches."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from circus_tasks.cli.console import add_plain_row, shown
from circus_tasks.cli.output import console, or_exit, print_error
from circus_tasks.cli.schedules import schedule_app
from circus_tasks.errors import CircusError
from circus_tasks.statuses import ACTIVE_BATCH

batch_app = typer.Typer(help="Re-run a plug-in over many series or jobs.", no_args_is_help=True)

Name = Annotated[str, typer.Option("--name", help="A name for the batch.")]
Many = Annotated[list[str] | None, typer.Option()]
Date = Annotated[datetime | None, typer.Option()]


def _request(plugin_id: str, name: str, options: dict[str, Any]) -> Any:
    """The batch request the command line describes (one selection kind at a time)."""
    from circus_tasks.batch_api import (
        BatchRequest,
        ChangedSelection,
        FailedSelection,
        JobsSelection,
        SeriesSelection,
    )

    series_file = options.pop("series_file")
    rerun, versions, statuses = (options.pop(k) for k in ("rerun", "versions", "status"))
    failed_since, failed_before = options.pop("failed_since"), options.pop("failed_before")
    failed_within = options.pop("failed_within")
    changed = options.pop("changed")
    common = {k: options.pop(k) for k in ("priority", "max_in_flight", "user")}
    selection: Any
    if rerun is not None:
        chosen = {"statuses": statuses} if statuses else {}
        selection = JobsSelection(plugin_name=rerun, versions=versions, **chosen)
    elif changed:
        selection = ChangedSelection(range=options["range"])
    elif failed_since is not None or failed_within is not None:
        window = {"since": failed_since, "within_hours": failed_within, "before": failed_before}
        selection = FailedSelection(**window)
    else:
        if series_file is not None:
            listed = Path(series_file).read_text().split()
            options["series_uids"] = [*(options["series_uids"] or []), *listed]
        selection = SeriesSelection(**{k: v for k, v in options.items() if v is not None})
    return BatchRequest(name=name, plugin_id=plugin_id, selection=selection, **common)


def plan_or_start(
    ctx: typer.Context,
    plugin_id: Annotated[str, typer.Argument(help="The plug-in to run, name@version.")],
    name: Name = "batch",
    series: Annotated[list[str] | None, typer.Option("--series", help="A series UID.")] = None,
    series_file: Annotated[Path | None, typer.Option(help="A file of series UIDs.")] = None,
    modality: Many = None,
    patient: Annotated[list[str] | None, typer.Option(help="A patient ID.")] = None,
    study_from: Annotated[str | None, typer.Option(help="YYYYMMDD")] = None,
    study_to: Annotated[str | None, typer.Option(help="YYYYMMDD")] = None,
    description: Annotated[str | None, typer.Option(help="Pattern, * and ?.")] = None,
    imported_since: Date = None,
    imported_before: Date = None,
    min_images: Annotated[int | None, typer.Option()] = None,
    range_: Annotated[str, typer.Option("--range", help='"auto" or START:END[:DELTA]')] = "auto",
    rerun: Annotated[str | None, typer.Option(help="Re-run jobs of this plug-in name.")] = None,
    versions: Annotated[str | None, typer.Option(help="Their versions, e.g. <1.1.0")] = None,
    status: Many = None,
    failed_since: Date = None,
    failed_before: Date = None,
    changed: Annotated[
        bool, typer.Option(help="Series whose images changed since their job.")
    ] = False,
    failed_within: Annotated[float | None, typer.Option(help="Failed in the last N hours.")] = None,
    cron: Annotated[str | None, typer.Option(help="schedule add: when, e.g. '0 3 * * *'")] = None,
    timezone: Annotated[str | None, typer.Option(help="schedule add: the cron's zone")] = None,
    every: Annotated[float | None, typer.Option(help="schedule add: every N seconds")] = None,
    priority: Annotated[int, typer.Option(help="Below 0: after interactive jobs.")] = -5,
    max_in_flight: Annotated[int, typer.Option(help="Jobs queued at a time.")] = 4,
    user: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Plan a batch (what would run, be skipped or refused, and why), start it, or schedule it
    (``schedule add``, with --cron and --timezone or --every; --name names the schedule)."""
    options = dict(locals())
    when: dict[str, Any] = {"cron": cron, "timezone": timezone, "every_seconds": every}
    for key in ("ctx", "plugin_id", "name", "cron", "timezone", "every"):
        options.pop(key)
    options["series_uids"], options["patient_ids"] = options.pop("series"), options.pop("patient")
    options["study_date_from"], options["study_date_to"] = (
        options.pop("study_from"),
        options.pop("study_to"),
    )
    options["range"] = options.pop("range_")
    from circus_tasks.batch_api import add_schedule, plan_batch, start_batch

    try:
        request = _request(plugin_id, name, options)
        if ctx.info_name != "add" and any(v is not None for v in when.values()):
            raise ValueError("--cron, --timezone and --every are for `circus batch schedule add`.")
        if ctx.info_name == "add":
            added = add_schedule(name, request, **when)
            what = shown(f"{added.name}: {added.when}")
            console.print(f"Schedule {what}, active {added.active}.")
            return
        if ctx.info_name == "start":
            batch = start_batch(request)
        else:
            plan = plan_batch(request)
    except (CircusError, ValueError) as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    if ctx.info_name == "start":
        console.print(
            f"Batch [bold]{batch.id}[/bold] {batch.status}: {batch.planned_run} job(s) to run, "
            f"{batch.planned_skipped} skipped, {batch.planned_refused} refused."
        )
        return
    table = Table("#", "series", "outcome", "reason")
    for item in plan.items:
        series_text = ", ".join(f"{s['series_uid']}[{s['range']}]" for s in item.series)
        add_plain_row(table, item.position, series_text, item.outcome, item.reason or "")
    console.print(table)
    counts = plan.counts()
    console.print(", ".join(f"{n} {outcome}" for outcome, n in counts.items()))


batch_app.command("plan")(plan_or_start)
batch_app.command("start")(plan_or_start)
batch_app.add_typer(schedule_app, name="schedule")
schedule_app.command("add")(plan_or_start)


@batch_app.command("list")
def list_() -> None:
    """Batches, newest first."""
    from circus_tasks.batch_api import list_batches

    table = Table("batch id", "name", "plug-in", "status", "run", "skipped", "refused")
    for b in list_batches():
        counts = (str(b.planned_run), str(b.planned_skipped), str(b.planned_refused))
        add_plain_row(table, b.id, b.name, b.plugin_id, b.status, *counts)
    console.print(table)


@batch_app.command()
def show(
    batch_id: str,
    follow: Annotated[bool, typer.Option(help="Follow its progress until it ends.")] = False,
) -> None:
    """A batch, its items and its jobs' progress."""
    from circus_tasks.batch_api import batch_items, batch_progress, get_batch

    batch = or_exit(lambda: get_batch(batch_id))
    items = batch_items(batch_id)
    console.print(f"Batch {batch.id} ({shown(batch.name)}): {batch.plugin_id}, {batch.status}")
    table = Table("#", "series", "outcome", "job", "reason")
    for item in items:
        series_text = ", ".join(f"{s['series_uid']}[{s['range']}]" for s in item.series)
        add_plain_row(
            table, item.position, series_text, item.outcome, item.job_id or "", item.reason or ""
        )
    console.print(table)
    progress = batch_progress(batch_id)
    if not follow:
        console.print(f"{progress.done} of {progress.total} job(s) in a final status.")
        return
    columns = (
        TextColumn("Batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[s]}"),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("batch", total=progress.total, s=str(progress.status))
        while True:
            progress = batch_progress(batch_id)
            bar.update(task, completed=progress.done, s=str(progress.status))
            if progress.status not in ACTIVE_BATCH:
                break
            time.sleep(1.0)


def _change(verb: str, batch_id: str, user: str | None) -> None:
    from circus_tasks import batch_api

    def status(batch: Any) -> str:
        return f"Batch {batch.id}: {batch.status}"

    calls: dict[str, tuple[Callable[[], Any], Callable[[Any], str]]] = {
        "pause": (lambda: batch_api.pause_batch(batch_id), status),
        "resume": (lambda: batch_api.resume_batch(batch_id), status),
        "cancel": (lambda: batch_api.cancel_batch(batch_id, user=user), status),
        "retry": (
            lambda: batch_api.retry_failed(batch_id, user=user),
            lambda ids: f"Batch {batch_id}: {len(ids)} failed item(s) queued again.",
        ),
        "promote": (
            lambda: batch_api.promote_batch(batch_id, user=user),
            lambda ids: f"Batch {batch_id}: {len(ids)} superseded job(s) invalidated.",
        ),
    }
    call, say = calls[verb]
    console.print(say(or_exit(call)))


User = Annotated[str | None, typer.Option(help="Who asks (recorded on the jobs).")]


@batch_app.command()
def pause(batch_id: str) -> None:
    """Stop feeding a batch's jobs (those queued or running go on)."""
    _change("pause", batch_id, None)


@batch_app.command()
def resume(batch_id: str) -> None:
    """Feed a paused batch again."""
    _change("resume", batch_id, None)


@batch_app.command()
def cancel(batch_id: str, user: User = None) -> None:
    """Cancel a batch and its queued jobs; running jobs finish."""
    _change("cancel", batch_id, user)


@batch_app.command("retry-failed")
def retry_failed(batch_id: str, user: User = None) -> None:
    """New jobs for a batch's failed items only, linked to the jobs they retry."""
    _change("retry", batch_id, user)


@batch_app.command()
def promote(batch_id: str, user: User = None) -> None:
    """Invalidate each job the batch re-ran whose new job finished."""
    _change("promote", batch_id, user)


@batch_app.command()
def compare(
    batch_id: str,
    out: Annotated[
        Path | None, typer.Option(help="Write the CSV here (default: print it).")
    ] = None,
) -> None:
    """Old and new results of each re-run item side by side, as CSV (the batch's flow run
    publishes them as a Prefect table when the batch ends)."""
    from circus_tasks.batch_api import compare_batch

    text = or_exit(lambda: compare_batch(batch_id))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        console.print(f"Comparison written to {out}.")
