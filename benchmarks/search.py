"""Search with 1,000,000 jobs (issue 12, Done when 4), each figure against a floor measured in
the same run.

A temporary CIRCUS_HOME's job table (SQLite, the default) is filled with 1,000,000 realistic
jobs by raw bulk inserts: statuses, plug-ins (12) and users (200) in skewed shares, 25,000
patients with three series each, one job in ten on two series, over a year; finished jobs carry
their machine, times, results and provenance, failed ones their error. Then each figure is the
median of three medians of many calls, ours and the floor taking turns with the same arguments:

- a page (50 jobs) of ``list_jobs`` by each filter, by pairs of them, the newest page, and
  deep pages (by offset, and by the ``before`` cursor); the floor is the same page (the jobs'
  rows and their series) read through the driver (``sqlite3``) on an open connection, no ORM;
- the duplicate check (``find_duplicates`` in the session registration has open, and in a
  session of its own); the floor is its query through the driver;
- ``circus jobs`` and ``circus jobs --patient P`` as whole processes (the console script),
  and the typer command beside them; the floor is ``python -c pass`` of the same interpreter
  (``python -c "import sqlite3"`` is shown too). The lean command's output is checked to be
  the typer command's.

Where PostgreSQL's server programs are on the PATH, all of it runs again on a throw-away
cluster holding the same jobs (filled by ``COPY``, then ``VACUUM ANALYZE`` as autovacuum
would), the floor read with psycopg. Each database's plan of every statement is printed.

Run from the project folder (after ``make test`` has built ``.venv``)::

    .venv/bin/python benchmarks/search.py            # about 8 minutes, 2.5 GB of disk
    .venv/bin/python benchmarks/search.py --jobs 100000 --backend sqlite

It ends with one line per goal (the slowest backend's figure), each recorded for ``make
bench``'s table (:func:`benchmarks.table.record`), and a last line that starts with the
slowest page's ratio to its floor.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchmarks.table import record  # noqa: E402

CIRCUS = str(Path(sys.executable).parent / "circus")
PAGE = 50
REPEATS = 3
GOAL_PAGE_MS = 10.0
GOAL_DUPLICATE_MS = 1.0
GOAL_PROCESS_S = 0.5

STATUS_WEIGHTS = {
    "FINISHED": 85,
    "FAILED": 6,
    "CANCELLED": 3,
    "INVALIDATED": 2,
    "IN_QUEUE": 3,
    "PROCESSING": 1,
}
"""The statuses of the filled jobs (as the table stores them: the enum's names)."""
PLUGINS = [f"cad-{n:02d}@1.0.{n % 3}" for n in range(12)]
USERS = [f"user{n:03d}@example.org" for n in range(200)]
MACHINES = [f"ws-{n:02d}" for n in range(4)]
SERIES_PER_PATIENT = 3
JOBS_PER_PATIENT = 40
JOB_COLUMNS = (
    "id", "plugin_id", "user", "priority", "status", "stage", "error_message", "results",
    "flow_run_id", "machine", "started_at", "finished_at", "invalidated_by", "invalidated_at",
    "invalidation_reason", "signature", "created_at", "updated_at", "input_digest",
    "input_count", "plugin_digest",
)  # fmt: skip
SERIES_COLUMNS = (
    "series_uid", "study_uid", "patient_id", "modality", "description", "series_date",
    "image_count", "rows", "columns", "orientation", "attributes", "created_at",
)  # fmt: skip
JOBSERIES_COLUMNS = ("job_id", "position", "series_uid", "start", "end", "delta")


# --- timing -----------------------------------------------------------------------------------


def median_ms(call: Callable[[], Any], times: int) -> float:
    """The median in milliseconds of ``times`` calls, after one warm-up call."""
    call()
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent)


def paired(
    ours: Callable[[random.Random], Callable[[], Any]],
    floor: Callable[[random.Random], Callable[[], Any]],
    times: int,
) -> tuple[float, float]:
    """Medians of three medians of ``times`` calls each, ours and the floor taking turns; each
    side gets the same sequence of random arguments (a generator of the same seed)."""
    mine, theirs = [], []
    for repeat in range(REPEATS):
        mine.append(median_ms(ours(random.Random(repeat)), times))
        theirs.append(median_ms(floor(random.Random(repeat)), times))
    return statistics.median(mine), statistics.median(theirs)


# --- the jobs ---------------------------------------------------------------------------------


def ulid(moment: datetime, rng: random.Random) -> str:
    """A lower-case ULID of ``moment`` (as registration's ``new_job_id`` makes them)."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = (int(moment.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))


class Population:
    """What the jobs are about: patients and their series, plug-ins, users."""

    def __init__(self, count: int) -> None:
        self.patients = [f"PAT{n:07d}" for n in range(max(1, count // JOBS_PER_PATIENT))]
        self.series_of = {
            p: [f"1.2.826.0.1.3680043.99.{n}.{k}" for k in range(SERIES_PER_PATIENT)]
            for n, p in enumerate(self.patients)
        }
        self.series = [uid for uids in self.series_of.values() for uid in uids]
        self.signatures: list[tuple[str, str]] = []
        """(plug-in, signature) of every 97th job: the duplicate checks' keys."""

    def series_rows(self, now: datetime) -> Iterator[tuple[Any, ...]]:
        for patient, uids in self.series_of.items():
            for k, uid in enumerate(uids):
                yield (
                    uid, uid.rsplit(".", 1)[0], patient, "CT", f"series {k}", "20260101",
                    300, 512, 512, "axial", json.dumps(["PatientID", "Rows", "Columns"]), now,
                )  # fmt: skip


def job_chunks(
    population: Population, count: int, chunk: int = 20_000
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Rows of ``count`` jobs and their series (:data:`JOB_COLUMNS`,
    :data:`JOBSERIES_COLUMNS`), oldest first over a year, ``chunk`` jobs at a time; the same
    rows for the same ``count``."""
    rng = random.Random(12)
    population.signatures.clear()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    start = now - timedelta(days=365)
    step = timedelta(days=365) / count
    statuses = list(STATUS_WEIGHTS)
    plugin_weights = [1 / (n + 1) for n in range(len(PLUGINS))]
    user_weights = [1 / (n + 1) ** 0.7 for n in range(len(USERS))]
    plugin_digests = {p: hashlib.sha256(p.encode()).hexdigest() for p in PLUGINS}
    results = json.dumps({"results": {"candidates": 3, "meanHU": -412.5}, "metadata": {}})
    for first in range(0, count, chunk):
        size = min(count, first + chunk) - first
        picked_status = rng.choices(statuses, list(STATUS_WEIGHTS.values()), k=size)
        picked_plugin = rng.choices(PLUGINS, plugin_weights, k=size)
        picked_user = rng.choices(USERS, user_weights, k=size)
        jobs, entries = [], []
        for i in range(size):
            n = first + i
            created = start + step * n
            job_id = ulid(created, rng)
            patient = rng.choice(population.patients)
            uids = rng.sample(population.series_of[patient], 2 if rng.random() < 0.1 else 1)
            plugin, status = picked_plugin[i], picked_status[i]
            signature = "|".join(f"{uid}:1:300:1" for uid in uids)
            ran = status not in ("IN_QUEUE", "CANCELLED")
            began = created + timedelta(seconds=20) if ran else None
            ended = began + timedelta(seconds=90) if ran and status != "PROCESSING" else None
            jobs.append(
                (
                    job_id, plugin, picked_user[i], 0, status,
                    "MAIN" if status == "PROCESSING" else None,
                    "plug-in exited with code 2: no lung found" if status == "FAILED" else None,
                    results if status in ("FINISHED", "INVALIDATED") else "null",
                    f"{rng.getrandbits(128):032x}", MACHINES[n % len(MACHINES)] if ran else None,
                    began, ended,
                    "admin@example.org" if status == "INVALIDATED" else None,
                    ended + timedelta(days=1) if status == "INVALIDATED" else None,
                    "wrong series" if status == "INVALIDATED" else None,
                    signature, created, ended or began or created,
                    hashlib.sha256(signature.encode()).hexdigest() if ran else None,
                    300 * len(uids) if ran else None, plugin_digests[plugin] if ran else None,
                )
            )  # fmt: skip
            entries += [(job_id, k, uid, 1, 300, 1) for k, uid in enumerate(uids)]
            if n % 97 == 0:
                population.signatures.append((plugin, signature))
        yield jobs, entries


def sqlite_text(moment: datetime | None) -> str | None:
    """A datetime as SQLAlchemy stores it in SQLite (naive UTC)."""
    return None if moment is None else moment.replace(tzinfo=None).isoformat(" ", "microseconds")


def fill_sqlite(path: Path, population: Population, count: int) -> None:
    """Bulk-insert the series and ``count`` jobs with ``sqlite3``; the secondary indexes of the
    job tables are dropped first and made again after (the same indexes, built faster)."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('job', 'jobseries')"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')

        def insert(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            connection.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

        now = sqlite_text(datetime(2026, 12, 1, tzinfo=UTC))
        series = [(*row[:-1], now) for row in population.series_rows(datetime.now(UTC))]
        insert("series", SERIES_COLUMNS, series)
        times = {JOB_COLUMNS.index(c) for c in JOB_COLUMNS if c.endswith("_at")}
        for jobs, entries in job_chunks(population, count):
            rows = [
                tuple(sqlite_text(v) if k in times else v for k, v in enumerate(row))
                for row in jobs
            ]
            insert("job", JOB_COLUMNS, rows)
            insert("jobseries", JOBSERIES_COLUMNS, entries)
        for _, sql in indexes:
            connection.execute(sql)
        connection.commit()
    finally:
        connection.close()


def fill_postgres(url: str, population: Population, count: int) -> None:
    """The same rows with ``COPY``, the secondary indexes made after, then ``ANALYZE``."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('job', 'jobseries') "
            "AND indexname NOT LIKE '%pkey'"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')

        def copy(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
            names = ", ".join(f'"{c}"' for c in columns)
            with connection.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as pipe:
                for row in rows:
                    pipe.write_row(row)

        copy("series", SERIES_COLUMNS, list(population.series_rows(datetime.now(UTC))))
        for jobs, entries in job_chunks(population, count):
            copy("job", JOB_COLUMNS, jobs)
            copy("jobseries", JOBSERIES_COLUMNS, entries)
        for _, sql in indexes:
            connection.execute(sql)
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")


# --- the floor: the same page read with the database's own driver -----------------------------

FLOOR_FILTERS = {
    "status": "status = :value",
    "plugin_id": "plugin_id = :value",
    "user": '"user" = :value',
    "series_uid": "id IN (SELECT job_id FROM jobseries WHERE series_uid = :value)",
    "patient_id": (
        "id IN (SELECT js.job_id FROM series s JOIN jobseries js ON js.series_uid = s.series_uid "
        "WHERE s.patient_id = :value)"
    ),
}
FLOOR_JOB = f"SELECT {', '.join(repr(c).replace(chr(39), chr(34)) for c in JOB_COLUMNS)} FROM job"


class Floor:
    """Pages and duplicate checks through the driver (``sqlite3`` or psycopg), one connection,
    no ORM: the jobs' rows, then their series."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            import sqlite3

            self.connection: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
            self.mark = lambda name: f":{name}"
        else:
            import psycopg

            self.connection = psycopg.connect(
                url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            )
            self.mark = lambda name: f"%({name})s"

    def sql(self, text: str, parameters: dict[str, Any]) -> str:
        """``text`` with the driver's parameter marks."""
        for name in sorted(parameters, key=len, reverse=True):
            text = text.replace(f":{name}", self.mark(name))
        return text

    def page(
        self,
        where: dict[str, Any],
        *,
        offset: int = 0,
        before: str | None = None,
    ) -> list[Any]:
        """The page's jobs, newest first (their ids from the index, then their rows), and
        their series; ``where``: filter name -> value as stored."""
        clauses = [FLOOR_FILTERS[name].replace(":value", f":{name}") for name in where]
        if before is not None:
            clauses.append("id < :before")
        inner = "SELECT id FROM job" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        inner += " ORDER BY id DESC LIMIT :limit OFFSET :offset"
        text = f"{FLOOR_JOB} WHERE id IN ({inner}) ORDER BY id DESC"
        parameters = {**where, "before": before, "limit": PAGE, "offset": offset}
        rows = self.connection.execute(self.sql(text, parameters), parameters).fetchall()
        ids = [row[0] for row in rows]
        if ids:
            marks = ", ".join(self.mark(f"i{n}") for n in range(len(ids)))
            self.connection.execute(
                f'SELECT job_id, position, series_uid, start, "end", delta FROM jobseries '
                f"WHERE job_id IN ({marks}) ORDER BY job_id, position",
                {f"i{n}": i for n, i in enumerate(ids)},
            ).fetchall()
        return rows

    def duplicates(self, plugin: str, signature: str) -> list[Any]:
        text = (
            "SELECT id FROM job WHERE plugin_id = :plugin AND signature = :signature "
            "AND status NOT IN ('FAILED', 'CANCELLED', 'INVALIDATED')"
        )
        parameters = {"plugin": plugin, "signature": signature}
        return sorted(self.connection.execute(self.sql(text, parameters), parameters).fetchall())


# --- the API ----------------------------------------------------------------------------------


def page_kinds(population: Population) -> dict[str, Callable[[random.Random], dict[str, Any]]]:
    """Each page timed: its name and how a call picks its ``list_jobs`` filters."""
    statuses = [s.lower() for s in STATUS_WEIGHTS]
    users = USERS[:50]
    return {
        "by status": lambda rng: {"status": rng.choice(statuses)},
        "by plug-in": lambda rng: {"plugin_id": rng.choice(PLUGINS)},
        "by series": lambda rng: {"series_uid": rng.choice(population.series)},
        "by user": lambda rng: {"user": rng.choice(users)},
        "by patient": lambda rng: {"patient_id": rng.choice(population.patients)},
        "newest (no filter)": lambda rng: {},
        "status + plug-in": lambda rng: {
            "status": rng.choice(statuses),
            "plugin_id": rng.choice(PLUGINS),
        },
        "status + user": lambda rng: {"status": rng.choice(statuses), "user": rng.choice(users)},
        "plug-in + user": lambda rng: {
            "plugin_id": rng.choice(PLUGINS),
            "user": rng.choice(users),
        },
    }


def as_stored(filters: dict[str, Any]) -> dict[str, Any]:
    """``list_jobs`` filters as the floor's query takes them (statuses by the enum's name)."""
    return {k: v.upper() if k == "status" else v for k, v in filters.items()}


def bench_api(url: str, population: Population, count: int, calls: int) -> dict[str, Any]:
    """Pages and the duplicate check on the database of ``url`` (the settings in force)."""
    import inspect

    from circus_tasks.db.engine import session_scope
    from circus_tasks.jobs.duplicates import find_duplicates
    from circus_tasks.jobs.queries import list_jobs

    floor = Floor(url)
    pages: dict[str, tuple[float, float]] = {}
    for name, pick in page_kinds(population).items():

        def ours(rng: random.Random, pick: Any = pick) -> Callable[[], Any]:
            return lambda: list_jobs(limit=PAGE, **pick(rng))

        def raw(rng: random.Random, pick: Any = pick) -> Callable[[], Any]:
            return lambda: floor.page(as_stored(pick(rng)))

        pages[name] = paired(ours, raw, calls)

    # deep pages: by offset (each job before is stepped over) and by cursor, if there is one
    deep: dict[str, tuple[float, float]] = {}
    depth = count // 2
    deep[f"newest, offset {depth:,}"] = paired(
        lambda rng: lambda: list_jobs(limit=PAGE, offset=depth),
        lambda rng: lambda: floor.page({}, offset=depth),
        max(5, calls // 10),
    )
    if "before" in inspect.signature(list_jobs).parameters:
        before = floor.page({}, offset=depth - 1)[0][0]
        deep[f"newest, before the {depth:,}th (cursor)"] = paired(
            lambda rng: lambda: list_jobs(limit=PAGE, before=before),
            lambda rng: lambda: floor.page({}, before=before),
            calls,
        )
        finished = floor.page({"status": "FINISHED"}, offset=depth // 2 - 1)[0][0]
        deep[f"finished, before the {depth // 2:,}th (cursor)"] = paired(
            lambda rng: lambda: list_jobs(limit=PAGE, status="finished", before=finished),
            lambda rng: lambda: floor.page({"status": "FINISHED"}, before=finished),
            calls,
        )

    # as registration calls it: in the session it has open (the floor: an open connection)
    def ours_duplicate(rng: random.Random) -> Callable[[], Any]:
        session = stack.enter_context(session_scope())
        return lambda: find_duplicates(*rng.choice(population.signatures), session=session)

    # and with a session of its own, opened and committed around it
    def own_session(rng: random.Random) -> Callable[[], Any]:
        def check() -> None:
            with session_scope() as session:
                find_duplicates(*rng.choice(population.signatures), session=session)

        return check

    def raw_duplicate(rng: random.Random) -> Callable[[], Any]:
        return lambda: floor.duplicates(*rng.choice(population.signatures))

    with contextlib.ExitStack() as stack:
        duplicate = paired(ours_duplicate, raw_duplicate, calls)
    duplicate_alone = paired(own_session, raw_duplicate, calls)
    floor.connection.close()
    return {
        "pages": pages,
        "deep": deep,
        "duplicate": duplicate,
        "duplicate_alone": duplicate_alone,
        "plans": query_plans(population),
    }


def query_plans(population: Population) -> dict[str, str]:
    """The database's plan of the page statement ``list_jobs`` sends for each kind of page,
    of the two that read a page's jobs and series (the same for every page), and of the
    duplicate check's."""
    from sqlalchemy import event

    from circus_tasks.db.engine import get_engine, session_scope
    from circus_tasks.jobs.duplicates import find_duplicates
    from circus_tasks.jobs.queries import list_jobs

    engine = get_engine()
    sqlite = engine.dialect.name == "sqlite"
    rng = random.Random(7)
    calls: dict[str, Callable[[], Any]] = {
        name: lambda pick=pick: list_jobs(limit=PAGE, **pick(rng))
        for name, pick in page_kinds(population).items()
    }
    calls["cursor (before)"] = lambda: list_jobs(limit=PAGE, status="failed", before="01m")

    def duplicate_check() -> None:
        with session_scope() as session:
            find_duplicates(*population.signatures[0], session=session)

    calls["duplicate check"] = duplicate_check
    plans: dict[str, str] = {}
    for name, call in calls.items():
        seen: list[tuple[str, Any]] = []

        def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append((statement, parameters))  # noqa: B023

        event.listen(engine, "before_cursor_execute", keep)
        try:
            call()
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        shown = seen[:1] if name != "newest (no filter)" else seen
        for k, (statement, parameters) in enumerate(shown):
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            with engine.connect() as connection:
                rows = connection.exec_driver_sql(explain + statement, parameters).fetchall()
            plan = "; ".join(str(row[3] if sqlite else row[0]).strip() for row in rows)
            label = name if k == 0 else ("reading the page's series", "reading its jobs")[k - 1]
            plans[label] = re.sub(r"'\{[^}]{60,}\}'", "'{...}'", plan)
    return plans


# --- whole processes --------------------------------------------------------------------------


def process_seconds(command: list[str], env: dict[str, str], runs: int) -> float:
    """The median wall time of ``runs`` runs of ``command`` (after one warm-up run)."""
    spent = []
    for n in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=PROJECT, capture_output=True, text=True)
        if n:
            spent.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{command} failed:\n{done.stdout}\n{done.stderr}")
    return statistics.median(spent)


def bench_processes(
    env: dict[str, str], patient: str, runs: int, *, yardsticks: bool = True
) -> dict[str, Any]:
    """``circus jobs`` (the console script), the typer command and the yardsticks as whole
    processes, medians of three medians, taking turns."""
    commands = {
        "circus jobs": [CIRCUS, "jobs"],
        f"circus jobs --patient {patient}": [CIRCUS, "jobs", "--patient", patient],
        "python -m circus_tasks.cli.app jobs (typer)": [
            sys.executable, "-m", "circus_tasks.cli.app", "jobs",
        ],
    }  # fmt: skip
    if yardsticks:
        commands["python -c pass"] = [sys.executable, "-c", "pass"]
        commands['python -c "import sqlite3"'] = [sys.executable, "-c", "import sqlite3"]
    outputs = [
        subprocess.run(command, env=env, capture_output=True, text=True)
        for command in (commands["circus jobs"], commands[TYPER])
    ]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(REPEATS):
        for name, command in commands.items():
            times[name].append(process_seconds(command, env, runs))
    lean, full = outputs
    return {
        "seconds": {name: statistics.median(spent) for name, spent in times.items()},
        "same_output": lean.stdout == full.stdout and lean.returncode == full.returncode == 0,
        "lines": lean.stdout.count("\n"),
    }


TYPER = "python -m circus_tasks.cli.app jobs (typer)"


# --- the run ----------------------------------------------------------------------------------


def show_pages(title: str, result: dict[str, Any]) -> None:
    print(title)
    print(
        f"  {'list_jobs, a page of ' + str(PAGE):<44} {'ours ms':>8} {'floor ms':>9} {'ratio':>6}"
    )
    rows = {
        **result["pages"],
        **result["deep"],
        "duplicate check (in registration's session)": result["duplicate"],
        "duplicate check with a session of its own": result["duplicate_alone"],
    }
    for name, (ours, floor) in rows.items():
        print(f"  {name:<44} {ours:>8.2f} {floor:>9.2f} {ours / floor:>5.1f}x")
    print("  plans:")
    for name, plan in result["plans"].items():
        print(f"    {name:<27} {plan}")


def goal_pages(result: dict[str, Any]) -> tuple[str, float, float]:
    """The slowest page the goal covers: every filter, the newest, deep pages by cursor."""
    covered = {
        name: pair
        for name, pair in {**result["pages"], **result["deep"]}.items()
        if "offset" not in name
    }
    name = max(covered, key=lambda n: covered[n][0])
    return name, *covered[name]


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def run_postgres(
    population: Population, count: int, calls: int, runs: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The API part, and ``circus jobs`` as a whole process, on a throw-away PostgreSQL
    cluster holding the same jobs."""
    from circus_tasks.db.engine import get_engine, reset_caches
    from circus_tasks.testing.postgres import available, throwaway_cluster

    if not available():
        return None
    with throwaway_cluster(["synchronous_commit=off"]) as cluster:
        cluster.create_database("circus")
        url = cluster.url("circus")
        os.environ["CIRCUS_DATABASE_URL"] = url
        reset_caches()
        try:
            get_engine()  # the schema, by the migrations
            started = time.perf_counter()
            fill_postgres(url, population, count)
            print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)
            result = bench_api(url, population, count, calls)
            get_engine().dispose()
            processes = bench_processes(
                dict(os.environ), population.patients[11], runs, yardsticks=False
            )
        finally:
            get_engine().dispose()
            os.environ.pop("CIRCUS_DATABASE_URL")
            reset_caches()
    return result, processes


def show_processes(title: str, processes: dict[str, Any], base: float) -> None:
    print(title)
    print(
        f"  (output: {processes['lines']} lines, the same as the typer command's: "
        f"{processes['same_output']})"
    )
    for name, spent in processes["seconds"].items():
        print(f"  {name:<52} {spent:>7.3f} s {spent / base:>6.1f}x python -c pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the table")
    parser.add_argument("--calls", type=int, default=200, help="calls per API median")
    parser.add_argument("--runs", type=int, default=10, help="runs per process median")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "both"],
        default="both",
        help="both: also PostgreSQL, where its server programs are on the PATH",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="circus-search-"))
    home = root / "home"
    # before anything imports circus_tasks, which reads these once
    for name in [n for n in os.environ if n.upper().startswith("CIRCUS_")]:
        if name != "CIRCUS_BENCH_TABLE":
            os.environ.pop(name)
    os.environ.update(CIRCUS_HOME=str(home), PREFECT_LOGGING_LEVEL="WARNING")
    population = Population(args.jobs)
    results: dict[str, dict[str, Any]] = {}
    processes: dict[str, dict[str, Any]] = {}
    try:
        from circus_tasks.db.engine import get_engine, reset_caches
        from circus_tasks.settings import get_settings

        url = get_settings().db_url
        get_engine().dispose()  # the schema, by the migrations
        started = time.perf_counter()
        fill_sqlite(home / "circus.db", population, args.jobs)
        size = (home / "circus.db").stat().st_size / 2**20
        print(
            f"SQLite filled with {args.jobs:,} jobs in {time.perf_counter() - started:.0f} s "
            f"({size:,.0f} MiB)",
            flush=True,
        )
        reset_caches()
        results["SQLite"] = bench_api(url, population, args.jobs, args.calls)
        get_engine().dispose()
        print("Timing circus jobs as a whole process ...", flush=True)
        patient = population.patients[11]
        processes["SQLite"] = bench_processes(dict(os.environ), patient, args.runs)
        if args.backend == "both":
            print("PostgreSQL: a throw-away cluster ...", flush=True)
            found = run_postgres(population, args.jobs, args.calls, args.runs)
            if found is None:
                print("  (no PostgreSQL server programs on the PATH: skipped)")
            else:
                results["PostgreSQL"], processes["PostgreSQL"] = found
    finally:
        from circus_tasks.db.engine import reset_caches

        reset_caches()
        shutil.rmtree(root, ignore_errors=True)

    print()
    print(
        f"Search with {args.jobs:,} jobs; each figure the median of {REPEATS} medians of "
        f"{args.calls} calls (processes: of {args.runs} runs), ours and the floor taking turns"
    )
    for backend, result in results.items():
        print()
        show_pages(f"{backend} (floor: the same rows through the driver, no ORM)", result)
    base = processes["SQLite"]["seconds"]["python -c pass"]
    for backend, timed in processes.items():
        print()
        show_processes(f"Whole processes, {backend}", timed, base)

    # one row per goal: the slowest backend's figure
    page = max(
        ((backend, *goal_pages(result)) for backend, result in results.items()),
        key=lambda found: found[2],
    )
    duplicate = max(
        ((backend, *result["duplicate"]) for backend, result in results.items()),
        key=lambda found: found[1],
    )
    process = max(
        (
            (backend, name, spent)
            for backend, timed in processes.items()
            for name, spent in timed["seconds"].items()
            if name.startswith("circus jobs")
        ),
        key=lambda found: found[2],
    )
    same = all(timed["same_output"] for timed in processes.values())
    count = f"{args.jobs:,} jobs"
    rows = [
        (
            f"list_jobs page, {count} (slowest: {page[0]}, {page[1]})",
            f"{page[2]:.2f} ms", f"{page[3]:.2f} ms", f"{page[2] / page[3]:.1f}x",
            f"<= {GOAL_PAGE_MS:g} ms", page[2] <= GOAL_PAGE_MS,
        ),
        (
            f"duplicate check, {count} (slowest: {duplicate[0]})",
            f"{duplicate[1]:.2f} ms", f"{duplicate[2]:.2f} ms",
            f"{duplicate[1] / duplicate[2]:.1f}x",
            f"<= {GOAL_DUPLICATE_MS:g} ms", duplicate[1] <= GOAL_DUPLICATE_MS,
        ),
        (
            f"`{process[1]}` as a whole process, {count} (slowest: {process[0]})",
            f"{process[2]:.3f} s", f"{base:.3f} s (python -c pass)", f"{process[2] / base:.1f}x",
            f"<= {GOAL_PROCESS_S:g} s", process[2] <= GOAL_PROCESS_S and same,
        ),
    ]  # fmt: skip
    print()
    print("Goals (issue 12, Done when 4): ours vs the floor (ratio), goal")
    for measure, ours, floor, ratio, goal, met in rows:
        print(f"  {measure}: {ours} vs {floor} ({ratio}); {goal}: {verdict(met)}")
        record(measure, ours, floor, ratio, goal, met)
    print(
        f"{rows[0][3]} the floor for the slowest page ({rows[0][1]}, {verdict(rows[0][5])}); "
        f"duplicate check {rows[1][1]} ({verdict(rows[1][5])}); `circus jobs` "
        f"{rows[2][1]} ({verdict(rows[2][5])})"
    )


if __name__ == "__main__":
    main()
