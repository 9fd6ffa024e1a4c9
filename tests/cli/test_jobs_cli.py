"""The lean ``circus jobs`` (circus_tasks/cli/jobs.py) against the typer command it stands in
for: the same table and the same errors for the same options, whichever way it reads."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlmodel import col
from typer.testing import CliRunner

from circus_tasks.cli import jobs as jobs_command
from circus_tasks.cli import launcher
from circus_tasks.cli.app import app
from circus_tasks.cli.jobs import JobsArguments, parse_arguments
from circus_tasks.db.engine import alembic_config, get_engine, reset_caches, session_scope
from circus_tasks.db.models import Job
from circus_tasks.jobs import pages
from circus_tasks.jobs.registration import SeriesInput
from circus_tasks.statuses import JobStage, JobStatus
from tests.running import register

runner = CliRunner()
SeriesFactory = Callable[..., str]
CIRCUS = Path(sys.executable).parent / "circus"


@pytest.fixture
def listed(series_factory: SeriesFactory) -> dict[str, str]:
    """Jobs of every status, two patients, two plug-ins and users, one with two series, an
    error message with control characters and a plug-in id with an escape code."""
    ann = series_factory(patient_id="ANN")
    bob = series_factory(patient_id="BOB", modality="MR")
    ids = {
        "queued": register("record@1.0.0", [ann], user="ann"),
        "two series": register(
            "record@1.0.0", [SeriesInput(ann, "1:5"), SeriesInput(bob, "2:4")], user="bob"
        ),
        "finished": register("hu-histogram@1.0.0", [ann], user="ann", priority=3),
        "failed": register("record@1.0.0", [SeriesInput(bob, "1:3")], user="ann"),
        "processing": register("record@1.0.0", [SeriesInput(bob, "1:4")], user="bob"),
        "cancelled": register("record@1.0.0", [SeriesInput(ann, "2:5")], user="bob"),
        "escaped": register("record@1.0.0", [SeriesInput(bob, "1:2")]),
        "markup": register("record@1.0.0", [SeriesInput(bob, "2:3")]),
    }
    moves = {
        "finished": {"status": JobStatus.FINISHED, "machine": "ws-1"},
        "failed": {
            "status": JobStatus.FAILED,
            "machine": "ws-2",
            "error_message": "plug-in exited with code 2\n\x1b[31mred\x1b[0m" + "x" * 80,
        },
        "processing": {"status": JobStatus.PROCESSING, "stage": JobStage.MAIN, "machine": "ws-1"},
        "cancelled": {"status": JobStatus.CANCELLED},
        "escaped": {"plugin_id": "evil\x1b[2J@1.0.0"},
        # brackets are text, never rich markup (a stray closing tag would end the table)
        "markup": {
            "status": JobStatus.FAILED,
            "machine": "[red]ws-3",
            "error_message": "[/] no [b]",
        },
    }
    with session_scope() as session:
        for name, values in moves.items():
            session.execute(update(Job).where(col(Job.id) == ids[name]).values(**values))
    return ids


OPTION_SETS = [
    [],
    ["--status", "failed"],
    ["--status=processing"],
    ["--plugin", "record@1.0.0"],
    ["--plugin", "evil\x1b[2J@1.0.0"],
    ["--user", "ann"],
    ["--user", "bob", "--status", "cancelled"],
    ["--patient", "BOB"],
    ["--patient", "ANN", "--plugin", "hu-histogram@1.0.0", "--user", "ann"],
    ["--limit", "2"],
    ["--limit", "002", "--user", "bob"],
    ["--status", "in_queue", "--status", "finished"],  # the last one counts, as with typer
    ["--user", "nobody"],
    # refused by list_jobs' checks, the same way
    ["--status", "bogus"],
    ["--status", ""],
    ["--status", "FAILED"],
    ["--limit", "0"],
    ["--limit", "10001"],
    ["--user", "a\x1bb"],
    ["--plugin", "p" * 201],
    ["--series", "1." * 40],
    ["--patient", "P" * 201],
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=repr)
def test_the_lean_command_prints_what_the_typer_command_prints(
    listed: dict[str, str], capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    arguments = parse_arguments(options)
    assert arguments is not None

    code = jobs_command.main(arguments)
    lean = capsys.readouterr().out
    full = runner.invoke(app, ["jobs", *options])

    assert (code, lean) == (full.exit_code, full.output)
    if code:
        assert lean.startswith("error: ")
    else:
        assert lean.startswith("┏") and "job id" in lean


def test_the_series_filter_and_the_table_cells(
    listed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with session_scope() as session:
        uid = session.execute(
            text("SELECT series_uid FROM jobseries WHERE job_id = :id AND position = 1"),
            {"id": listed["two series"]},
        ).scalar_one()
    for options in (["--series", uid], ["--series", uid, "--user", "bob"]):
        assert jobs_command.main(parse_arguments(options)) == 0  # type: ignore[arg-type]
        lean = capsys.readouterr().out
        assert lean == runner.invoke(app, ["jobs", *options]).output
    assert listed["two series"] in lean and f"{uid[-12:]}[2:4:1]" in lean
    assert jobs_command.main(JobsArguments()) == 0
    lean = capsys.readouterr().out
    assert "\\x1b[2J" in lean and "\x1b" not in lean  # escapes shown, never sent
    assert "main" in lean and "ws-2" in lean
    assert "[/] no [b]" in lean and "[red]ws-3" in lean


def test_the_status_error_names_the_statuses(
    listed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert jobs_command.main(JobsArguments({"status": "bogus"})) == 1
    message = " ".join(capsys.readouterr().out.split())
    assert message == (
        "error: The status 'bogus' is not a job status; give one of in_queue, processing, "
        "finished, cancelled, invalidated, failed."
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], JobsArguments()),
        (["--limit", "7"], JobsArguments({}, 7)),
        (["--status=failed", "--user", "x=y"], JobsArguments({"status": "failed", "user": "x=y"})),
        (["--series", "1.2", "--patient", "P"], JobsArguments({"series_uid": "1.2", "patient_id": "P"})),  # noqa: E501
        (["--status", ""], JobsArguments({"status": ""})),
        (["--help"], None),
        (["--limit", "-1"], None),
        (["--limit", "x"], None),
        (["--limit", "1e3"], None),
        (["--limit", "٣"], None),  # a digit, but not one click reads
        (["--status"], None),
        (["--user", "--status", "failed"], None),
        (["--bogus", "1"], None),
        (["extra"], None),
        (["--"], None),
        (["--stat", "failed"], None),
    ],
)  # fmt: skip
def test_parse_arguments(args: list[str], expected: JobsArguments | None) -> None:
    assert parse_arguments(args) == expected


def test_well_formed_jobs_calls_take_the_lean_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[JobsArguments] = []
    monkeypatch.setattr(jobs_command, "main", lambda args: taken.append(args) or 5)

    assert launcher.main(["jobs", "--user", "ann", "--limit", "3"]) == 5
    assert taken == [JobsArguments({"user": "ann"}, 3)]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["jobs", "--help"], 0, "List jobs, newest first."),
        (["jobs", "--limit", "x"], 2, "Invalid value for '--limit'"),
        (["jobs", "--bogus"], 2, "No such option: --bogus"),
        (["jobs", "extra"], 2, "unexpected extra argument"),
    ],
)
def test_everything_else_goes_to_the_typer_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.setattr(jobs_command, "main", lambda args: pytest.fail("lean path taken"))
    monkeypatch.setenv("COLUMNS", "200")

    with pytest.raises(SystemExit) as exited:
        launcher.main(argv)

    assert exited.value.code == code
    captured = capsys.readouterr()
    assert message in " ".join((captured.out + captured.err).split())


def test_the_page_is_read_with_sqlite3_alone(
    listed: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from circus_tasks.jobs import queries

    monkeypatch.setattr(queries, "list_jobs", lambda **_: pytest.fail("SQLAlchemy used"))
    assert jobs_command.main(JobsArguments({"user": "ann"})) == 0
    assert listed["finished"] in capsys.readouterr().out


def test_an_older_schema_is_migrated_by_the_full_path_first(
    listed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from alembic import command

    with get_engine().begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    reset_caches()  # a new process: its engine migrates the database when it is made
    filters = pages.page_filters(user="ann")
    assert pages.page_from_database(filters) is None  # not read by a query the schema lacks

    assert jobs_command.main(JobsArguments({"user": "ann"})) == 0
    lean = capsys.readouterr().out
    assert listed["finished"] in lean
    assert pages.page_from_database(filters) is not None  # migrated: the lean read again


def test_without_a_database_the_full_path_makes_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not (home / "circus.db").exists()
    assert jobs_command.main(JobsArguments()) == 0
    assert "job id" in capsys.readouterr().out
    assert (home / "circus.db").exists()


def test_other_databases_and_spellings_go_through_sqlalchemy(
    listed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    filters = pages.page_filters()
    assert pages.page_from_database(filters) is not None
    monkeypatch.setenv("circus_machine", "lower-case spelling: only the settings can tell")
    assert pages.page_from_database(filters) is None
    monkeypatch.delenv("circus_machine")
    monkeypatch.setenv("CIRCUS_DATABASE_URL", "mysql://nowhere/circus")
    assert pages.page_from_database(filters) is None


def test_the_console_script_lists_jobs_without_the_heavy_imports(listed: dict[str, str]) -> None:
    probe = (
        "import sys; from circus_tasks.cli.launcher import main; code = main(sys.argv[1:]);"
        "heavy = ('typer', 'click', 'sqlalchemy', 'sqlmodel', 'pydantic', 'pydantic_settings',"
        " 'alembic', 'prefect', 'psycopg');"
        "print(sorted(m for m in heavy if m in sys.modules)); sys.exit(code)"
    )
    options = ["--user", "ann", "--limit", "5"]
    done = subprocess.run(
        [sys.executable, "-c", probe, "jobs", *options], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"

    script = subprocess.run(
        [str(CIRCUS), "jobs", *options], capture_output=True, text=True, env=dict(os.environ)
    )
    typer = subprocess.run(
        [sys.executable, "-m", "circus_tasks.cli.app", "jobs", *options],
        capture_output=True,
        text=True,
    )
    assert script.returncode == typer.returncode == 0, script.stderr + typer.stderr
    assert script.stdout == typer.stdout
    assert listed["finished"] in script.stdout and listed["queued"] in script.stdout

    refused = subprocess.run(
        [str(CIRCUS), "jobs", "--status", "bogus"], capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stdout.startswith("error: The status 'bogus' is not a job status")
