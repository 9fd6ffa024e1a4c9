"""``circus plugins``: list the plug-ins (folders and images); ``circus plugins add IMAGE``
registers a CIRCUS plug-in image."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from circus_tasks.cli.output import console, or_exit
from circus_tasks.values import printable

plugins_app = typer.Typer(
    help="The plug-ins: list them (no sub-command), or register an image (add)."
)


@plugins_app.callback(invoke_without_command=True)
def plugins(context: typer.Context) -> None:
    """List the plug-ins: whether each can run here and why not, and how it is fenced in."""
    if context.invoked_subcommand is not None:
        return
    from circus_tasks.jobs.queries import plugins_changed_since_run
    from circus_tasks.plugins.registry import find_invalid_plugins, list_plugins
    from circus_tasks.plugins.runners.docker import FENCE
    from circus_tasks.plugins.sandbox import machine_isolation
    from circus_tasks.settings import get_settings

    table = Table("plug-in id", "runner", "time-out", "runnable here", "description")
    found = list_plugins()
    for p in found:
        reason = p.unavailable_reason()
        docker = p.manifest.runner.docker
        runner = f"image {docker.ref or docker.image[:19]}" if docker else p.manifest.runner.kind
        table.add_row(
            p.plugin_id,
            escape(printable(runner)),
            f"{p.manifest.timeout} s",
            "yes" if reason is None else f"[red]no[/red]: {escape(reason)}",
            escape(printable(p.manifest.description.split(". ")[0][:70])),
        )
    console.print(table)
    console.print(
        f"Isolation of command and Python plug-ins here: {machine_isolation().describe()}"
    )
    if not machine_isolation().sandboxed:
        allowed = get_settings().allow_unisolated
        console.print(
            "They run without a sandbox (CIRCUS_ALLOW_UNISOLATED is set)."
            if allowed
            else "[red]They are not run here[/red]: set CIRCUS_ALLOW_UNISOLATED=1 to run them "
            "without a sandbox."
        )
    console.print(f"Image plug-ins run in a container: {FENCE}.")
    for invalid in find_invalid_plugins():
        console.print(f"[red]refused[/red] {invalid.path}: {escape(invalid.problem)}")
    fingerprints = {p.plugin_id: p.fingerprint() for p in found}
    for plugin_id, job_id in plugins_changed_since_run(fingerprints).items():
        console.print(
            f"[yellow]warning[/yellow] {plugin_id}: its files changed since job {job_id} ran "
            "with the same version; give the changed plug-in a new version."
        )


@plugins_app.command()
def add(
    image: Annotated[str, typer.Argument(help="A local image: name[:tag] or its id.")],
    timeout: Annotated[
        int | None, typer.Option(min=1, help="Seconds (else the image's manifest's, or 3000).")
    ] = None,
    gpus: Annotated[str | None, typer.Option(help='As "docker run --gpus", e.g. all.')] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 4g.")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit, e.g. 1.5.")] = None,
) -> None:
    """Register a CIRCUS plug-in image: its /plugin.json is read (the image is not run) and
    the plug-in registered as name@version, pinned to the image's id."""
    from circus_tasks.plugins.images import add_plugin_image

    manifest = or_exit(
        lambda: add_plugin_image(image, timeout=timeout, gpus=gpus, memory=memory, cpus=cpus)
    )
    assert manifest.runner.docker is not None
    console.print(
        f"Registered {manifest.plugin_id}: image {manifest.runner.docker.image} "
        f"(from {escape(image)}), time-out {manifest.timeout} s"
    )
