"""``circus batch``: plan, start, list, show, pause, resume, cancel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from circus_tasks.cli.app import app
from tests.running import prefect_unreachable

runner = CliRunner()


def test_plan_start_and_control_a_batch(series_factory: Callable[..., str], tmp_path: Path) -> None:
    uids = [series_factory(slices=4), series_factory(slices=2)]
    listed = tmp_path / "series.txt"
    listed.write_text("\n".join(uids))
    args = ["ct-only@1.0.0", "--name", "night", "--series-file", str(listed)]

    planned = runner.invoke(app, ["batch", "plan", *args])
    assert planned.exit_code == 0, planned.output
    assert "1 run, 0 skipped, 1 refused" in planned.output and "at least 3" in planned.output

    with prefect_unreachable():
        started = runner.invoke(app, ["batch", "start", *args, "--max-in-flight", "2"])
    assert started.exit_code == 0, started.output
    assert "1 job(s) to run, 0 skipped, 1 refused" in started.output
    batch_id = started.output.split()[1]

    assert batch_id in runner.invoke(app, ["batch", "list"]).output
    shown = runner.invoke(app, ["batch", "show", batch_id])
    assert "0 of 1 job(s) in a final status" in shown.output
    assert "paused" in runner.invoke(app, ["batch", "pause", batch_id]).output
    assert "running" in runner.invoke(app, ["batch", "resume", batch_id]).output
    with prefect_unreachable():
        assert "cancelled" in runner.invoke(app, ["batch", "cancel", batch_id]).output
    refused = runner.invoke(app, ["batch", "resume", batch_id])
    assert refused.exit_code == 1 and "because it is cancelled" in refused.output
    bad = runner.invoke(app, ["batch", "plan", "ct-only@1.0.0", "--range", "1:4:2"])
    assert bad.exit_code == 1 and "Specified range is invalid" in bad.output


def test_retry_promote_and_compare_from_the_command_line(
    series_factory: Callable[..., str], tmp_path: Path
) -> None:
    from circus_tasks.api import get_job
    from circus_tasks.batch_api import batch_items
    from tests.running import claim, fail, finish, register, run_steps

    old = register("volumetry@1.0.0", [series_factory(slices=3)])
    context = claim(old)
    assert context is not None and finish(old, run_steps(context))
    with prefect_unreachable():
        started = runner.invoke(
            app, ["batch", "start", "volumetry@1.1.0", "--rerun", "volumetry", "--name", "v11"]
        )
    assert "1 job(s) to run" in started.output, started.output
    batch_id = started.output.split()[1]
    (item,) = batch_items(batch_id)
    assert item.supersedes_job_id == old and item.job_id is not None
    assert claim(item.job_id) is not None and fail(item.job_id, "boom")
    with prefect_unreachable():
        retried = runner.invoke(app, ["batch", "retry-failed", batch_id])
    assert "1 failed item(s) queued again" in retried.output
    (item,) = batch_items(batch_id)
    context = claim(item.job_id)  # type: ignore[arg-type]
    assert context is not None and finish(item.job_id, run_steps(context))  # type: ignore[arg-type]
    with prefect_unreachable():
        compared = runner.invoke(app, ["batch", "compare", batch_id, "--out", str(tmp_path / "c")])
        promoted = runner.invoke(app, ["batch", "promote", batch_id, "--user", "lead"])
    assert (
        compared.exit_code == 0 and "thresholdsHU.dense,200,150,-50" in (tmp_path / "c").read_text()
    )
    assert "1 superseded job(s) invalidated" in promoted.output
    assert get_job(old).status == "invalidated"  # type: ignore[union-attr]
