"""Submission at scale (issue 12, Done when 4), against Prefect's own floor in one run.

A real stack (Prefect server, work pool, deployments; no worker, so runs just queue) in a
temporary CIRCUS_HOME on a free port, once with the embedded server on SQLite (the default) and
once with the server and our tables on a throw-away PostgreSQL cluster (production). Every job
gets its flow run at once (the dispatch window is off: the server's worst case).

- ``submit_jobs`` of ``--submit`` jobs (register them, then create their runs) against the raw
  bulk floor: the same runs (parameters, tags, idempotency keys) made with Prefect's client and
  its bulk endpoint, 100 to a request, and nothing of ours. ``--repeats`` rounds, alternating
  which goes first; medians per run.
- Whether a run costs more as the queue grows: ``submit_jobs`` of 100 jobs with 1 to 300 runs
  queued (three rounds), then again once ``--deep`` runs are queued (filled with the floor's
  requests).
- ``submit_jobs`` jobs per second on the embedded server, against 3x the 7 jobs/s issue 12
  measured.

Run from the project folder (after ``make test`` has built ``.venv``)::

    .venv/bin/python benchmarks/scale.py [--backend sqlite|postgres|both]

The last line gives each backend's ratios. Search at scale is ``benchmarks/search.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
CIRCUS = str(Path(sys.executable).parent / "circus")
PLUGIN = "hu-histogram@1.0.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def bulk_floor(count: int, tags: list[str], label: str) -> float:
    """Prefect's own cost of the same runs: its client and its bulk endpoint, 100 runs to a
    request, the same parameters, tags, idempotency keys and Scheduled state as ours, the
    deployment read once; nothing of ours (no tables, no window). Seconds."""
    from prefect.client.orchestration import get_client

    from circus_tasks.settings import get_settings

    started = time.perf_counter()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(get_settings().deployment)
        now = datetime.now(UTC).isoformat()
        bodies = [
            {
                "name": f"{label}-{n:05d}",
                "parameters": {"job_id": f"{label}-{n:05d}"},
                "tags": tags,
                "idempotency_key": f"{label}-{n:05d}",
                "state": {
                    "type": "SCHEDULED",
                    "name": "Scheduled",
                    "state_details": {"scheduled_time": now},
                },
            }
            for n in range(count)
        ]
        for start in range(0, count, 100):
            response = client.request(
                "POST",
                "/deployments/{id}/create_flow_run/bulk",  # type: ignore[arg-type]
                path_params={"id": deployment.id},
                json=bodies[start : start + 100],
            )
            statuses = {r["status"] for r in response.json()["results"]}
            assert statuses == {"CREATED"}, response.json()["results"][:2]
    return time.perf_counter() - started


def bench_submission(home: Path, jobs: int, deep: int, rounds: int) -> dict[str, Any]:
    """Ours against the floor, ``rounds`` times each in alternating order (the queue grows by
    both alike); then 100 jobs at a time with 100 and with ``deep`` runs queued. Every job gets
    its run at once (the dispatch window is off): the worst case for the server."""
    from prefect.client.orchestration import get_client

    from circus_tasks.api import JobRequest, submit_jobs

    uid = import_series(home)
    request = JobRequest(PLUGIN, [uid], force=True, user="bench")

    def ours(count: int) -> float:
        started = time.perf_counter()
        outcomes = submit_jobs([request] * count)
        seconds = time.perf_counter() - started
        runs = [o.flow_run_id for o in outcomes if not isinstance(o, Exception)]
        assert len(runs) == count and all(runs), [o for o in outcomes if isinstance(o, Exception)]
        return seconds

    # warm up both paths once: imports, first connection, queue creation; the floor's runs
    # carry the tags ours do
    (warm,) = submit_jobs([request])
    assert not isinstance(warm, Exception) and warm.flow_run_id
    with get_client(sync_client=True) as client:
        tags = list(client.read_flow_run(UUID(warm.flow_run_id)).tags)
    bulk_floor(2, tags, "floor-warm")

    shallow_ours = [ours(100) / 100 for _ in range(rounds)]  # 1 to 300 runs queued
    paired: dict[str, list[float]] = {"ours": [], "floor": []}
    for n in range(rounds):
        order = ["floor", "ours"] if n % 2 == 0 else ["ours", "floor"]
        for side in order:
            seconds = ours(jobs) if side == "ours" else bulk_floor(jobs, tags, f"floor{n}")
            paired[side].append(seconds / jobs)
    queued = 1 + 100 * rounds + 2 * jobs * rounds
    if deep > queued:
        bulk_floor(deep - queued, tags, "fill")
    deep_ours = [ours(100) / 100 for _ in range(rounds)]
    return {
        "jobs": jobs,
        "deep": deep,
        "ours_per_run": statistics.median(paired["ours"]),
        "floor_per_run": statistics.median(paired["floor"]),
        "shallow_per_run": statistics.median(shallow_ours),
        "deep_per_run": statistics.median(deep_ours),
    }


# --- the run ----------------------------------------------------------------------------------


BACKENDS = {
    "sqlite": "embedded server, SQLite (the default)",
    "postgres": "server on PostgreSQL (production)",
}
GOAL_FLOOR_RATIO = 1.2
GOAL_DEEP_RATIO = 1.2
GOAL_JOBS_PER_SECOND = 21.0  # 3x the 7 jobs/s issue 12 measured on the embedded server


def report(submissions: dict[str, dict[str, Any]], rounds: int) -> None:
    from benchmarks.table import record

    print()
    print(f"Submission into a running stack (no worker: runs queue); medians of {rounds}")
    head = f"  {'':34} {'ours ms/run':>12} {'yardstick':>10} {'ratio':>7}  goal"
    lines = []
    for backend, r in submissions.items():
        floor_ratio = r["ours_per_run"] / r["floor_per_run"]
        deep_ratio = r["deep_per_run"] / r["shallow_per_run"]
        rate = 1 / r["ours_per_run"]
        print(f"{BACKENDS[backend]}")
        print(head)
        print(
            f"  {'submit_jobs vs raw bulk floor':34} {r['ours_per_run'] * 1000:12.1f} "
            f"{r['floor_per_run'] * 1000:10.1f} {floor_ratio:6.2f}x  <= {GOAL_FLOOR_RATIO}x"
        )
        print(
            f"  {'100 jobs: ' + format(r['deep'], ',') + ' vs 1-300 queued':34} "
            f"{r['deep_per_run'] * 1000:12.1f} {r['shallow_per_run'] * 1000:10.1f} "
            f"{deep_ratio:6.2f}x  <= {GOAL_DEEP_RATIO}x"
        )
        goal = f"goal >= {GOAL_JOBS_PER_SECOND:.0f}"
        print(f"  submit_jobs of {r['jobs']}: {rate:.1f} jobs/s ({goal})")
        print()
        record(
            f"submit_jobs per run vs raw bulk floor ({backend})",
            f"{r['ours_per_run'] * 1000:.1f} ms",
            f"{r['floor_per_run'] * 1000:.1f} ms",
            f"{floor_ratio:.2f}x",
            f"<= {GOAL_FLOOR_RATIO}x",
            floor_ratio <= GOAL_FLOOR_RATIO,
        )
        record(
            f"per run with {r['deep']:,} vs 1-300 runs queued ({backend})",
            f"{r['deep_per_run'] * 1000:.1f} ms",
            f"{r['shallow_per_run'] * 1000:.1f} ms",
            f"{deep_ratio:.2f}x",
            f"<= {GOAL_DEEP_RATIO}x",
            deep_ratio <= GOAL_DEEP_RATIO,
        )
        if backend == "sqlite":
            record(
                "submit_jobs jobs/s, embedded server",
                f"{rate:.1f}/s",
                "7/s (issue 12)",
                f"{rate / 7:.1f}x",
                ">= 3x",
                rate >= GOAL_JOBS_PER_SECOND,
            )
        lines.append(f"{backend} {floor_ratio:.2f}x floor, {deep_ratio:.2f}x deep, {rate:.0f}/s")
    print("submit_jobs: " + "; ".join(lines))


def submission_child(args: argparse.Namespace) -> None:
    """Part (a) on one backend, in a process of its own (settings are read once per process):
    start the stack, measure, stop it, print the figures as one JSON line."""
    home = Path(os.environ["CIRCUS_HOME"])
    try:
        up = subprocess.run(
            [CIRCUS, "up", "--no-worker", "--no-batch-worker", "--no-engine"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
        )
        if up.returncode != 0:
            raise SystemExit(f"circus up failed:\n{up.stdout}\n{up.stderr}")
        result = bench_submission(home, args.submit, args.deep, args.repeats)
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
    command += ["--submit", str(args.submit), "--deep", str(args.deep)]
    command += ["--repeats", str(args.repeats)]
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
    parser.add_argument("--submit", type=int, default=500, help="jobs per submit_jobs round")
    parser.add_argument("--deep", type=int, default=5000, help="runs queued for the deep case")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each measure")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "both"],
        default="both" if available() else "sqlite",
        help="the Prefect server's database; default both (postgres if PostgreSQL's server "
        "programs are on the PATH)",
    )
    parser.add_argument("--submission-child", choices=list(BACKENDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.submission_child:
        submission_child(args)
        return

    root = Path(tempfile.mkdtemp(prefix="circus-scale-"))
    os.environ.pop("CIRCUS_DATABASE_URL", None)
    os.environ.pop("CIRCUS_PLUGINS_DIR", None)
    submissions: dict[str, dict[str, Any]] = {}
    try:
        backends = list(BACKENDS) if args.backend == "both" else [args.backend]
        for backend in backends:
            submissions[backend] = run_submission(backend, root, args)
        report(submissions, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
