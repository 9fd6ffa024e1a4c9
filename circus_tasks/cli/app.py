"""The ``circus`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from circus_tasks.cli.batch import batch_app
from circus_tasks.cli.console import add_plain_row, shown
from circus_tasks.cli.output import console, jobs_table, or_exit, print_error
from circus_tasks.cli.plugins import plugins_app
from circus_tasks.errors import CircusError

app = typer.Typer(help="CIRCUS CS jobs on Prefect.", no_args_is_help=True, add_completion=False)
app.add_typer(batch_app, name="batch")
app.add_typer(plugins_app, name="plugins")


@app.command()
def up(
    worker: Annotated[bool, typer.Option(help="Start this machine's worker too.")] = True,
    batch_worker: Annotated[bool, typer.Option(help="Start the batch pool's worker.")] = True,
    postgres: Annotated[
        bool,
        typer.Option(help="Keep Prefect's data and ours in a PostgreSQL cluster in CIRCUS_HOME."),
    ] = False,
    engine: Annotated[
        bool | None,
        typer.Option(
            help="Start podman's Docker API for image plug-ins in CIRCUS_HOME [default: as root "
            "where podman is installed and no Docker engine answers]."
        ),
    ] = None,
) -> None:
    """Start the Prefect server (embedded, unless PREFECT_API_URL names one), create the work
    pools and deployments, and start this machine's worker and the batch worker. Safe to run
    again. With --postgres (once: the home keeps it) both databases live in the home's own
    PostgreSQL cluster, started here and stopped by ``circus down``; likewise the container
    engine for image plug-ins."""
    from circus_tasks.db.engine import reset_caches
    from circus_tasks.home import local_postgres_urls
    from circus_tasks.settings import get_settings
    from circus_tasks.worker import postgres as local_postgres
    from circus_tasks.worker import stack

    settings = get_settings()
    if postgres or local_postgres_urls(settings.home):
        if postgres and stack.running_pid(stack.SERVER) and not local_postgres.running():
            print_error(RuntimeError("The Prefect server runs on SQLite: run circus down first."))
            raise typer.Exit(1)
        with console.status("Starting PostgreSQL ..."):
            or_exit(local_postgres.ensure_cluster, local_postgres.PostgresError)
        reset_caches()
        console.print(f"PostgreSQL: {local_postgres.cluster_root()} (Prefect's data and ours)")
    from circus_tasks.worker import engine as container_engine

    if engine if engine is not None else container_engine.wanted():
        with console.status("Starting the container engine (podman) ..."):
            host = or_exit(container_engine.start, RuntimeError)
        console.print(f"Container engine for image plug-ins: {host}")
    with console.status("Starting the Prefect server ..."):
        stack.start_server()
    with console.status("Creating the work pool and deployments ..."):
        stack.ensure_pool_and_deployments()
    from circus_tasks.plugins.registry import sync_plugins

    console.print(f"Plug-ins: {', '.join(p.plugin_id for p in sync_plugins()) or 'none'}")
    if worker:
        pid = stack.start_worker()
        console.print(f"Worker for machine [bold]{settings.machine}[/bold] runs (pid {pid}).")
    if batch_worker:
        console.print(f"Batch worker runs (pid {stack.start_batch_worker()}).")
    console.print(f"CIRCUS home: {settings.home}")
    console.print(f"Prefect UI: [bold]{stack.ui_url()}[/bold]")


@app.command()
def down() -> None:
    """Stop the workers, the embedded server and the PostgreSQL cluster started by ``circus
    up``."""
    from circus_tasks.worker import engine, postgres, stack

    stopped = stack.stop_all()
    if postgres.stop_cluster():
        stopped.append("postgres")
    if engine.stop():
        stopped.append("container engine")
    console.print(f"Stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def worker(
    machine: Annotated[str | None, typer.Option(help="Machine name (CIRCUS_MACHINE).")] = None,
    poll: Annotated[float | None, typer.Option(help="Seconds between polls.")] = None,
) -> None:
    """Run this machine's worker in the foreground: one job at a time, plus the reconciler."""
    import os

    from circus_tasks.db.engine import reset_caches
    from circus_tasks.settings import get_settings
    from circus_tasks.worker.machine import run_worker

    if machine:
        os.environ["CIRCUS_MACHINE"] = machine
        reset_caches()
    settings = get_settings()
    raise typer.Exit(run_worker(settings.machine, poll or settings.worker_poll_seconds))


@app.command("import")
def import_(paths: Annotated[list[Path], typer.Argument(help="DICOM files or folders.")]) -> None:
    """Import DICOM files into the store (non-DICOM and broken files are listed, not fatal)."""
    from circus_tasks.cli.importing import run_import

    code = run_import(paths)
    if code:
        raise typer.Exit(code)


@app.command()
def series(
    patient: Annotated[str | None, typer.Option(help="Patient ID.")] = None,
    modality: Annotated[str | None, typer.Option()] = None,
) -> None:
    """List imported series."""
    from circus_tasks.store.series import list_series

    table = Table("series UID", "patient", "modality", "date", "images", "description")
    for s in list_series(patient_id=patient, modality=modality):
        cells = (s.series_uid, s.patient_id, s.modality, s.series_date, s.image_count)
        add_plain_row(table, *cells, s.description)
    console.print(table)


def parse_series_spec(spec: str) -> object:
    """``UID`` or ``UID:auto`` or ``UID:START:END[:DELTA]`` -> a SeriesInput."""
    from circus_tasks.api import SeriesInput

    uid, _, rest = spec.partition(":")
    return SeriesInput(uid, rest or "auto")


@app.command()
def submit(
    plugin_id: Annotated[str, typer.Argument(help="Plug-in id, name@version.")],
    series_specs: Annotated[
        list[str], typer.Argument(help="SERIES_UID[:START:END[:DELTA]], in order.")
    ],
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    force: Annotated[bool, typer.Option(help="Register even if a duplicate exists.")] = False,
    user: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[float | None, typer.Option(help="Wait up to N s for the job to end.")] = None,
) -> None:
    """Register a job."""
    from circus_tasks.api import submit_job, wait_for_job
    from circus_tasks.errors import DuplicateJobError

    try:
        job = submit_job(
            plugin_id,
            [parse_series_spec(s) for s in series_specs],  # type: ignore[misc]
            priority=priority,
            force=force,
            user=user,
        )
    except DuplicateJobError as exc:
        print_error(exc)
        raise typer.Exit(3) from None
    except CircusError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    console.print(f"Job [bold]{job.id}[/bold] registered ({job.status}).")
    if wait:
        job = wait_for_job(job.id, wait)
        console.print(f"Job {job.id}: {job.status} {shown(job.error_message or '')}")


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option()] = None,
    plugin: Annotated[str | None, typer.Option()] = None,
    series_uid: Annotated[str | None, typer.Option("--series")] = None,
    user: Annotated[str | None, typer.Option()] = None,
    patient: Annotated[str | None, typer.Option(help="Patient ID.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """List jobs, newest first."""
    # The console script runs well-formed calls through circus_tasks.cli.jobs.main without
    # loading this module; both check the options with list_jobs' own checks.
    from circus_tasks.jobs.queries import list_jobs

    filters: dict[str, Any] = {
        "plugin_id": plugin,
        "series_uid": series_uid,
        "user": user,
        "patient_id": patient,
    }
    rows = or_exit(lambda: list_jobs(status=status, limit=limit, **filters), ValueError)
    console.print(jobs_table(rows))


@app.command()
def show(job_id: str) -> None:
    """Show one job, its events and where its results are."""
    from circus_tasks.api import job_events
    from circus_tasks.jobs.folders import results_folder
    from circus_tasks.jobs.queries import require_job

    job = or_exit(lambda: require_job(job_id))
    console.print_json(json.dumps(job.model_dump(mode="json")))
    if (job.plugin_digest or "").startswith("sha256:"):
        console.print(f"Plug-in image: {job.plugin_digest}")
    table = Table("at", "from", "to", "by", "reason", "prefect")
    for e in job_events(job_id):
        add_plain_row(
            table,
            e.at.isoformat(timespec="seconds"),
            str(e.from_status or ""),
            str(e.to_status),
            e.by or "",
            e.reason or "",
            e.prefect_state or "",
        )
    console.print(table)
    folder = results_folder(job_id)
    if folder.exists():
        console.print(f"Results: {folder}")


@app.command()
def cancel(job_id: str, user: Annotated[str | None, typer.Option()] = None) -> None:
    """Cancel a job that is still in the queue."""
    from circus_tasks.api import cancel_job

    job = or_exit(lambda: cancel_job(job_id, user=user))
    console.print(f"Job {job.id}: {job.status}")


@app.command()
def abort(job_id: str, user: Annotated[str | None, typer.Option()] = None) -> None:
    """Stop a running job (it ends failed, "aborted by USER")."""
    from circus_tasks.api import abort_job

    job = or_exit(lambda: abort_job(job_id, user=user))
    console.print(f"Job {job.id}: abort requested; the job ends failed when its process stops.")


@app.command()
def results(job_id: str) -> None:
    """Print a job's results.json and the paths of its output files."""
    from circus_tasks.api import get_job_results

    found = or_exit(lambda: get_job_results(job_id))
    console.print(f"Job {job_id}: {found.status}")
    if found.results is not None:
        console.print_json(json.dumps(found.results))
    for path in found.files:
        console.print(str(path))


@app.command()
def log(job_id: str) -> None:
    """Print a job's plug-in log (runner lines and the plug-in's output)."""
    from circus_tasks.api import get_job_results

    found = or_exit(lambda: get_job_results(job_id))
    if found.log is None:
        console.print(f"[red]error:[/red] Job {job_id} has no plug-in log yet ({found.status}).")
        raise typer.Exit(1)
    sys.stdout.write(found.log.read_text(encoding="utf-8", errors="replace"))


@app.command()
def invalidate(
    job_id: str,
    reason: Annotated[str, typer.Option(help="Why the results are not valid.")],
    user: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Mark a finished job invalid."""
    from circus_tasks.api import invalidate_job

    job = or_exit(lambda: invalidate_job(job_id, reason=reason, user=user))
    console.print(f"Job {job.id}: {job.status}")


@app.command()
def reconcile() -> None:
    """Run one reconciler pass now."""
    from circus_tasks.orchestration.reconciler import reconcile_once

    for line in reconcile_once():
        console.print(line)


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the jobs.")] = 600,
) -> None:
    """Import demo data, register jobs and show them run (needs ``circus up``)."""
    from circus_tasks.cli.demo import run_demo

    ok = or_exit(lambda: run_demo(console, timeout=timeout))
    raise typer.Exit(0 if ok else 1)


@app.command("volume")
def volume_(
    series_spec: Annotated[
        str, typer.Argument(help="SERIES_UID[:START:END[:DELTA]]; no range: auto.")
    ],
    out_dir: Annotated[Path, typer.Argument(help="Folder for 0.mhd, 0.raw and 0.json.")],
    include_private: Annotated[
        bool, typer.Option(help="Keep private attributes in 0.json.")
    ] = False,
) -> None:
    """Write one series range as a plug-in input volume (0.mhd, 0.raw, 0.json), exactly as
    pre-processing does."""
    # The console script runs well-formed calls through circus_tasks.cli.volume.main without
    # loading this module; both end in run_volume.
    from circus_tasks.cli.volume import VolumeArguments, run_volume, summary

    info = or_exit(lambda: run_volume(VolumeArguments(series_spec, out_dir, include_private)))
    console.print(summary(info), markup=False)


def main() -> None:
    """Entry point for ``python -m circus_tasks.cli.app`` (the ``circus`` script is
    :func:`circus_tasks.cli.launcher.main`)."""
    app()


if __name__ == "__main__":
    main()
