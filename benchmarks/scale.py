"""Submission and search at scale (issue 4, section 3), measured against their peers in one run.

(a) Submission: a real stack (Prefect server, work pool, deployments; no worker, so runs just
    queue) in a temporary CIRCUS_HOME on a free port, once with the embedded server on SQLite
    (the default) and once with the server and our tables on a throw-away PostgreSQL cluster
    (production). ``submit_jobs`` registers a batch of jobs and creates their flow runs; the
    peer is a plain ``run_deployment(name, timeout=0)`` per job on the same stack, and
    ``submit_job`` one job at a time is shown beside them.
(b) Search: the job table is filled with 100,000 jobs (bulk inserts, a spread of statuses,
    plug-ins, series, users and patients); a page of ``list_jobs`` by each filter and the
    duplicate check are timed, median and p95 over many calls.

Run from the project folder (after ``make test`` has built ``.venv``)::

    .venv/bin/python benchmarks/scale.py

The last line starts with the ratio against the peer (on SQLite). ``--no-stack`` skips part
(a); ``--backend sqlite`` or ``--backend postgres`` runs it on one of them only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
CIRCUS = str(Path(sys.executable).parent / "circus")
PLUGIN = "hu-histogram@1.0.0"
PAGE = 50
GOAL_JOBS_PER_SECOND = 50.0
GOAL_PAGE_MS = 50.0
GOAL_DUPLICATE_MS = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed_ms(call: Callable[[], Any], times: int) -> tuple[float, float]:
    """Median and p95 in milliseconds of ``times`` calls (after one warm-up call)."""
    call()
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent), percentile(spent, 0.95)


# --- (a) submission ---------------------------------------------------------------------------


def import_series(home: Path) -> str:
    import numpy as np

    from circus_tasks.store.importer import import_dicom
    from circus_tasks.testing.synthetic import write_series

    folder = home.parent / "series"
    volume = (np.arange(6 * 8 * 8).reshape(6, 8, 8) % 300).astype("int16")
    write_series(folder, volume, rescale=(1.0, -1024.0))
    (uid,) = import_dicom(folder).series_uids
    return uid


def bench_submission(home: Path, jobs: int, peer_jobs: int, single_jobs: int) -> dict[str, Any]:
    from prefect.deployments import run_deployment
    from sqlmodel import col, func, select

    from circus_tasks.api import JobRequest, submit_job, submit_jobs
    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Job
    from circus_tasks.jobs.registration import register_jobs
    from circus_tasks.settings import get_settings

    uid = import_series(home)
    deployment = get_settings().deployment
    request = JobRequest(PLUGIN, [uid], force=True, user="bench")

    # warm up both paths once: imports, first connection, queue creation
    submit_jobs([request] * 2)
    run_deployment(deployment, parameters={"job_id": "peer-warm-up"}, timeout=0)

    # The peer goes first, on the fresh server: later paths find more queued runs, which the
    # server's late-runs service keeps marking Late (SQLite writes that compete with theirs),
    # so this order is the conservative one for ours.
    started = time.perf_counter()
    for n in range(peer_jobs):
        run_deployment(deployment, parameters={"job_id": f"peer-{n:04d}"}, timeout=0)
    peer_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for _ in range(single_jobs):
        submit_job(PLUGIN, [uid], force=True, user="bench")
    single_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with session_scope() as session:
        registered = register_jobs([request] * jobs, session=session)
    register_seconds = time.perf_counter() - started
    assert all(not isinstance(o, Exception) for o in registered)

    started = time.perf_counter()
    outcomes = submit_jobs([request] * jobs)
    batch_seconds = time.perf_counter() - started
    ids = [o.id for o in outcomes if not isinstance(o, Exception)]
    assert len(ids) == jobs, [o for o in outcomes if isinstance(o, Exception)][:3]
    with session_scope() as session:
        dispatched = session.exec(
            select(func.count())
            .select_from(Job)
            .where(col(Job.id).in_(ids), col(Job.flow_run_id).is_not(None))
        ).one()

    return {
        "jobs": jobs,
        "dispatched": dispatched,
        "register_per_s": jobs / register_seconds,
        "batch_per_s": jobs / batch_seconds,
        "single_jobs": single_jobs,
        "single_per_s": single_jobs / single_seconds,
        "peer_jobs": peer_jobs,
        "peer_per_s": peer_jobs / peer_seconds,
    }


# --- (b) search -------------------------------------------------------------------------------

STATUS_WEIGHTS = {
    "finished": 85,
    "failed": 6,
    "cancelled": 3,
    "invalidated": 2,
    "in_queue": 3,
    "processing": 1,
}


def fill_jobs(count: int, rng: random.Random) -> dict[str, list[Any]]:
    """Bulk-insert ``count`` jobs (and the series they use) through SQLAlchemy core.

    5,000 patients with 3 series each; 12 plug-ins and 200 users with skewed use; one job in
    ten takes two series of one patient; ids are ULIDs spread over a year, oldest first.
    """
    from sqlalchemy import insert
    from ulid import ULID

    from circus_tasks.db.engine import get_engine
    from circus_tasks.db.models import Job, JobSeries, Series
    from circus_tasks.statuses import JobStatus

    patients = [f"PAT{n:05d}" for n in range(5000)]
    series_of = {
        p: [f"1.2.826.0.1.3680043.99.{n}.{k}" for k in range(3)] for n, p in enumerate(patients)
    }
    plugins = [f"cad-{n:02d}@1.0.0" for n in range(12)]
    plugin_weights = [1 / (n + 1) for n in range(len(plugins))]
    users = [f"user{n:03d}@example.org" for n in range(200)]
    user_weights = [1 / (n + 1) ** 0.7 for n in range(len(users))]
    statuses = [JobStatus(s) for s in STATUS_WEIGHTS]
    status_weights = list(STATUS_WEIGHTS.values())
    now = datetime.now(UTC)
    series_rows = [
        {
            "series_uid": uid,
            "study_uid": f"{uid}.0",
            "patient_id": patient,
            "modality": "CT",
            "description": "bench",
            "series_date": "20260101",
            "image_count": 120,
            "orientation": "axial",
            "attributes": [],
            "created_at": now,
        }
        for patient, uids in series_of.items()
        for uid in uids
    ]
    engine = get_engine()
    with engine.begin() as connection:
        connection.execute(insert(Series.__table__), series_rows)  # type: ignore[attr-defined]
    start = now - timedelta(days=365)
    step = timedelta(days=365) / count
    used: dict[str, list[Any]] = {"signature": []}
    chunk = 10_000
    for first in range(0, count, chunk):
        jobs, entries = [], []
        for n in range(first, min(count, first + chunk)):
            created = start + step * n
            job_id = str(ULID.from_datetime(created)).lower()
            patient = rng.choice(patients)
            picked = rng.sample(series_of[patient], 2 if rng.random() < 0.1 else 1)
            plugin = rng.choices(plugins, plugin_weights)[0]
            signature = "|".join(f"{uid}:1:120:1" for uid in picked)
            jobs.append(
                {
                    "id": job_id,
                    "plugin_id": plugin,
                    "user": rng.choices(users, user_weights)[0],
                    "priority": 0,
                    "status": rng.choices(statuses, status_weights)[0],
                    "signature": signature,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            entries += [
                {
                    "job_id": job_id,
                    "position": k,
                    "series_uid": uid,
                    "start": 1,
                    "end": 120,
                    "delta": 1,
                }
                for k, uid in enumerate(picked)
            ]
            if n % 97 == 0:
                used["signature"].append((plugin, signature))
        with engine.begin() as connection:
            connection.execute(insert(Job.__table__), jobs)  # type: ignore[attr-defined]
            connection.execute(insert(JobSeries.__table__), entries)  # type: ignore[attr-defined]
    used["plugin"] = plugins
    used["user"] = users[:50]
    used["status"] = statuses
    used["patient"] = patients
    used["series"] = [uid for uids in series_of.values() for uid in uids]
    return used


def query_plans() -> dict[str, str]:
    """SQLite's plan for each filter's page query, as ``list_jobs`` sends it."""
    from sqlalchemy import event

    from circus_tasks.api import list_jobs
    from circus_tasks.db.engine import get_engine

    engine = get_engine()
    if engine.dialect.name != "sqlite":
        return {}
    filters = {
        "status": {"status": "failed"},
        "plug-in": {"plugin_id": "cad-03@1.0.0"},
        "series": {"series_uid": "1.2.826.0.1.3680043.99.7.1"},
        "user": {"user": "user007@example.org"},
        "patient": {"patient_id": "PAT00007"},
    }
    plans = {}
    for name, kwargs in filters.items():
        seen: list[tuple[str, Any]] = []

        def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            seen.append((statement, parameters))  # noqa: B023

        event.listen(engine, "before_cursor_execute", keep)
        try:
            list_jobs(limit=PAGE, **kwargs)  # type: ignore[arg-type]
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        statement, parameters = seen[0]
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans[name] = "; ".join(str(row[3]) for row in rows)
    return plans


def bench_search(count: int, calls: int) -> dict[str, Any]:
    from circus_tasks.api import list_jobs
    from circus_tasks.db.engine import session_scope
    from circus_tasks.jobs.duplicates import find_duplicates

    rng = random.Random(4)
    started = time.perf_counter()
    used = fill_jobs(count, rng)
    fill_seconds = time.perf_counter() - started

    def page(kind: str, argument: str) -> Callable[[], Any]:
        return lambda: list_jobs(limit=PAGE, **{argument: rng.choice(used[kind])})

    timings = {
        "status": timed_ms(page("status", "status"), calls),
        "plug-in": timed_ms(page("plugin", "plugin_id"), calls),
        "series": timed_ms(page("series", "series_uid"), calls),
        "user": timed_ms(page("user", "user"), calls),
        "patient": timed_ms(page("patient", "patient_id"), calls),
        "newest (no filter)": timed_ms(lambda: list_jobs(limit=PAGE), calls),
    }

    def duplicate_check() -> None:
        plugin, signature = rng.choice(used["signature"])
        with session_scope() as session:
            find_duplicates(plugin, signature, session=session)

    duplicate = timed_ms(duplicate_check, calls)
    return {
        "count": count,
        "fill_seconds": fill_seconds,
        "pages": timings,
        "duplicate": duplicate,
        "plans": query_plans(),
    }


# --- the run ----------------------------------------------------------------------------------


BACKENDS = {
    "sqlite": "embedded server, SQLite (the default)",
    "postgres": "server on PostgreSQL (production)",
}


def report(submissions: dict[str, dict[str, Any]], search: dict[str, Any], calls: int) -> None:
    print()
    for backend, submission in submissions.items():
        print(f"Submission into a running stack, {BACKENDS[backend]} (no worker: runs queue)")
        rows = [
            ("path", "jobs", "jobs/s"),
            ("register_jobs only (no flow runs)", submission["jobs"], submission["register_per_s"]),
            ("submit_jobs (one batch)", submission["jobs"], submission["batch_per_s"]),
            (
                "submit_job (one call per job)",
                submission["single_jobs"],
                submission["single_per_s"],
            ),
            (
                "run_deployment(timeout=0) per job (peer)",
                submission["peer_jobs"],
                submission["peer_per_s"],
            ),
        ]
        for label, jobs, rate in rows:
            shown = rate if isinstance(rate, str) else f"{rate:.1f}"
            print(f"  {label:<42} {jobs:>6} {shown:>8}")
        print(f"  flow runs created for the batch: {submission['dispatched']}/{submission['jobs']}")
        print()
    print(
        f"Search with {search['count']:,} jobs (filled in {search['fill_seconds']:.1f} s); "
        f"page of {PAGE}, {calls} calls each"
    )
    print(f"  {'query':<28} {'median ms':>10} {'p95 ms':>8}")
    for name, (median, p95) in search["pages"].items():
        print(f"  {'list_jobs by ' + name:<28} {median:>10.2f} {p95:>8.2f}")
    median, p95 = search["duplicate"]
    print(f"  {'duplicate check':<28} {median:>10.2f} {p95:>8.2f}")
    if search["plans"]:
        print()
        print("SQLite query plans of the page queries")
        for name, plan in search["plans"].items():
            print(f"  {name:<8} {plan}")
    print()
    filtered = [m for name, (m, _) in search["pages"].items() if "no filter" not in name]
    worst_page = max(filtered)
    dup = search["duplicate"][0]
    search_part = (
        f"list_jobs page median <= {worst_page:.1f} ms; duplicate check median {dup:.2f} ms"
    )
    if submissions:
        first = next(iter(submissions.values()))
        ratio = first["batch_per_s"] / first["peer_per_s"]
        rates = ", ".join(
            f"{b} {r['batch_per_s']:.0f}/s vs {r['peer_per_s']:.1f}/s"
            for b, r in submissions.items()
        )
        print(f"{ratio:.1f}x run_deployment jobs/s (submit_jobs {rates}); {search_part}")
    else:
        print(f"(no stack) {search_part}")


def submission_child(args: argparse.Namespace) -> None:
    """Part (a) on one backend, in a process of its own (settings are read once per process):
    start the stack, measure, stop it, print the figures as one JSON line."""
    home = Path(os.environ["CIRCUS_HOME"])
    try:
        up = subprocess.run(
            [CIRCUS, "up", "--no-worker"], cwd=PROJECT, capture_output=True, text=True
        )
        if up.returncode != 0:
            raise SystemExit(f"circus up failed:\n{up.stdout}\n{up.stderr}")
        result = bench_submission(home, args.submit, args.peer, args.single)
    finally:
        subprocess.run([CIRCUS, "down"], cwd=PROJECT, capture_output=True)
    print("RESULT " + json.dumps(result), flush=True)


def run_submission(backend: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`submission_child` for ``backend`` (a throw-away PostgreSQL cluster for
    ``postgres``, holding both the Prefect server's database and ours)."""
    from circus_tasks.testing.postgres import throwaway_cluster

    home = root / backend / "home"
    port = free_port()
    env = {
        **os.environ,
        "CIRCUS_HOME": str(home),
        "CIRCUS_PREFECT_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # every job its flow run at once: this measures creating them, not the window
        "CIRCUS_DISPATCH_WINDOW": "10000000",
    }
    command = [sys.executable, __file__, "--submission-child", backend]
    command += ["--submit", str(args.submit), "--single", str(args.single)]
    command += ["--peer", str(args.peer)]
    print(f"Submission on {BACKENDS[backend]}: stack on port {port} in {home} ...", flush=True)
    with contextlib.ExitStack() as stack:
        if backend == "postgres":
            # durable against a crash of the server process, like the embedded SQLite server
            # (WAL, synchronous=NORMAL): commits are not flushed to disk one by one
            cluster = stack.enter_context(throwaway_cluster(["synchronous_commit=off"]))
            for name in ("prefect", "circus"):
                cluster.create_database(name)
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = cluster.url("prefect", "asyncpg")
            env["CIRCUS_DATABASE_URL"] = cluster.url("circus")
        child = subprocess.run(command, env=env, cwd=PROJECT, capture_output=True, text=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
    if child.returncode != 0 or not lines:
        raise SystemExit(f"submission on {backend} failed:\n{child.stdout}\n{child.stderr}")
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


def main() -> None:
    from circus_tasks.testing.postgres import available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the table for (b)")
    parser.add_argument("--submit", type=int, default=500, help="jobs in the submit_jobs batch")
    parser.add_argument("--single", type=int, default=30, help="jobs through submit_job")
    parser.add_argument("--peer", type=int, default=100, help="jobs through run_deployment")
    parser.add_argument("--calls", type=int, default=50, help="calls per search timing")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "both"],
        default="both" if available() else "sqlite",
        help="the Prefect server's database for (a); default both (postgres if PostgreSQL's "
        "server programs are on the PATH)",
    )
    parser.add_argument("--no-stack", action="store_true", help="skip (a): no Prefect server")
    parser.add_argument("--submission-child", choices=list(BACKENDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.submission_child:
        submission_child(args)
        return

    root = Path(tempfile.mkdtemp(prefix="circus-scale-"))
    home = root / "home"
    # before anything imports circus_tasks, which reads these once
    os.environ.update(CIRCUS_HOME=str(home), PREFECT_LOGGING_LEVEL="WARNING")
    os.environ.pop("CIRCUS_DATABASE_URL", None)
    os.environ.pop("CIRCUS_PLUGINS_DIR", None)
    submissions: dict[str, dict[str, Any]] = {}
    try:
        if not args.no_stack:
            backends = list(BACKENDS) if args.backend == "both" else [args.backend]
            for backend in backends:
                submissions[backend] = run_submission(backend, root, args)
        print(f"Filling the job table with {args.jobs:,} jobs ...", flush=True)
        search = bench_search(args.jobs, args.calls)
        report(submissions, search, args.calls)
    finally:
        from circus_tasks.db.engine import reset_caches

        reset_caches()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
