"""``circus demo``: real DICOM series imported, jobs registered and run by the real worker."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from circus_tasks.api import (
    SeriesInput,
    cancel_job,
    get_job,
    invalidate_job,
    submit_job,
    wait_for_job,
)
from circus_tasks.errors import CircusError, DuplicateJobError
from circus_tasks.settings import get_settings
from circus_tasks.statuses import JobStatus
from circus_tasks.store.importer import import_dicom

PLUGIN = "lesion-candidates@1.0.0"
DEMO_USER = "demo@circus.local"


def phantom_folder() -> Path:
    """The demo's phantom series (three bright spheres in a water cylinder), written once."""
    from circus_tasks.testing.phantom import phantom_volume
    from circus_tasks.testing.synthetic import write_series

    folder = get_settings().home / "demo-data" / "phantom"
    if not any(folder.glob("*.dcm")):
        write_series(
            folder,
            phantom_volume(),
            pixel_spacing=(0.8, 0.8),
            slice_spacing=1.5,
            series_uid="1.2.826.0.1.3680043.8.498.1000001",
            patient_id="PHANTOM01",
            patient_name="Phantom^Demo",
            series_description="phantom with three spheres",
        )
    return folder


def demo_files() -> list[Path]:
    """The demo's DICOM data: the phantom series and two real single-image series that pydicom
    ships for its tests."""
    from pydicom.data import get_testdata_file

    real = [Path(str(get_testdata_file(name))) for name in ("CT_small.dcm", "MR_small.dcm")]
    return [phantom_folder(), *real]


def run_demo(console: Console, *, timeout: float = 600) -> bool:
    """Run the demo; returns whether every job ended in its expected status."""
    from circus_tasks.cli.output import jobs_table
    from circus_tasks.worker.stack import ui_url

    report = import_dicom(*demo_files())
    console.print(f"Imported: {report}")
    phantom, ct, mr = sorted(report.series_uids, key=_demo_order)
    expected: dict[str, JobStatus] = {}

    # force: a second demo run would otherwise meet the first run's jobs as duplicates
    first = submit_job(PLUGIN, [phantom], user=DEMO_USER, force=True)
    console.print(
        f"Registered {first.id} (phantom, auto range -> {first.series[0].start}:"
        f"{first.series[0].end}:{first.series[0].delta})"
    )
    for uid in (ct, mr):
        expected[submit_job(PLUGIN, [uid], user=DEMO_USER, force=True).id] = JobStatus.FINISHED
    try:
        submit_job(PLUGIN, [phantom], user=DEMO_USER)
        console.print("[red]The duplicate was not refused.[/red]")
        return False
    except DuplicateJobError as exc:
        console.print(f"Duplicate refused as CIRCUS does: {exc}")
    forced = submit_job(PLUGIN, [phantom], user=DEMO_USER, force=True)
    console.print(f"Registered {forced.id} with force")
    expected[forced.id] = JobStatus.FINISHED
    try:
        submit_job(PLUGIN, [SeriesInput(phantom, "1:6:2")], user=DEMO_USER)
    except CircusError as exc:
        console.print(f"Bad range refused: {exc}")
    for plugin_id, uid in (("volumetry@1.0.0", phantom), ("hu-histogram@1.0.0", ct)):
        expected[submit_job(plugin_id, [uid], user=DEMO_USER, force=True).id] = JobStatus.FINISHED
    if image_job := _image_plugin_job(console, ct):
        expected[image_job] = JobStatus.FINISHED
    try:
        submit_job("volumetry@1.0.0", [mr], user=DEMO_USER, force=True)
    except CircusError as exc:
        console.print(f"Input conditions refused a job: {exc}")
    late = submit_job(
        PLUGIN, [SeriesInput(phantom, "10:30:2")], priority=-1, user=DEMO_USER, force=True
    )
    cancel_job(late.id, user=DEMO_USER)
    console.print(f"Registered {late.id} at low priority and cancelled it while queued")
    expected[late.id] = JobStatus.CANCELLED

    console.print("Waiting for the worker to run the jobs (one at a time) ...")
    done = wait_for_job(first.id, timeout)
    if done.status == JobStatus.FINISHED:
        invalidate_job(first.id, reason="demo: pretend the series was incomplete", user=DEMO_USER)
    expected[first.id] = JobStatus.INVALIDATED
    for job_id in expected:
        wait_for_job(job_id, timeout)

    rows = [j for j in (get_job(i) for i in sorted(expected)) if j is not None]
    console.print(jobs_table(rows))
    ok = all(j.status == expected[j.id] for j in rows)
    for j in rows:
        if j.status != expected[j.id]:
            console.print(f"[red]{j.id} is {j.status}, expected {expected[j.id]}[/red]")
    finished = get_job(forced.id)
    if finished and finished.results:
        found = len(finished.results.get("results", {}).get("lesionCandidates", []))
        console.print(f"Job {forced.id} found {found} lesion candidate(s) in the phantom.")
    console.print(f"Results store: {get_settings().results_dir}")
    console.print(f"Prefect UI (flow runs are named by job id): [bold]{ui_url()}[/bold]")
    console.print("The server and worker keep running; `make stop` stops them.")
    return ok


def _image_plugin_job(console: Console, uid: str) -> str | None:
    """Where a container engine answers: the example plug-in image built (once), registered
    as CIRCUS registers images, and a job of it on ``uid``; its id."""
    from circus_tasks.plugins.images import add_plugin_image
    from circus_tasks.plugins.runners import docker
    from circus_tasks.testing import example_image

    if reason := docker.engine_unavailable():
        console.print(f"Image plug-ins are left out: {reason}.")
        return None
    try:
        if docker.image_id(example_image.IMAGE) is None:
            with console.status("Building the example plug-in image from Debian's packages ..."):
                example_image.build()
        manifest = add_plugin_image(example_image.IMAGE)
    except (CircusError, RuntimeError, OSError) as exc:
        console.print(f"[yellow]The example plug-in image is left out:[/yellow] {exc}")
        return None
    assert manifest.runner.docker is not None
    job = submit_job(manifest.plugin_id, [uid], user=DEMO_USER, force=True)
    console.print(f"Registered {job.id}: image plug-in {manifest.runner.docker.image[:19]}")
    return job.id


def _demo_order(uid: str) -> int:
    from circus_tasks.store.series import get_series

    series = get_series(uid)
    modality = series.modality if series else ""
    if series and series.patient_id == "PHANTOM01":
        return 0
    return 1 if modality == "CT" else 2
