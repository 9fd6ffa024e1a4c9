"""Per-job overhead through the real stack, against a stock Prefect process worker.

Run: ``.venv/bin/python benchmarks/overhead.py [--jobs 30]`` (after ``make test`` built .venv).

Starts a Prefect server in a temporary CIRCUS_HOME, then:
1. ours: one ``circus worker`` (warm flow-run processes, one job at a time), a plug-in that does
   nothing; submit-to-processing latency of jobs submitted one at a time, and jobs per minute
   of a batch submitted at once;
2. the peer: a plain three-task flow deployed on a ``prefect worker start --type process
   --limit 1`` with default settings (polling every 10 s); the same figures, from Prefect's
   own flow run times;
3. the floor: the same three-task flow called in a loop in this (warm) process against the same
   server: Prefect's own orchestration cost per run, with no worker and no process start.
Each side runs ``--repeats`` times (default 3) and the medians are printed, with where our time
per job goes (from the flow runs' states and our job rows). The last line starts with the ratio
of our time per job to the floor's.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from benchmarks.table import record  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=40)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def measure_ours(
    jobs: int, work: Path, env: dict[str, str]
) -> tuple[list[float], float, dict[str, float]]:
    import numpy as np

    from circus_tasks.api import submit_job, wait_for_job
    from circus_tasks.statuses import JobStatus
    from circus_tasks.store.importer import import_dicom
    from circus_tasks.testing.synthetic import write_series

    work.mkdir(parents=True, exist_ok=True)
    write_series(work / "series", np.zeros((1, 8, 8), dtype=np.int16))
    (uid,) = import_dicom(work / "series").series_uids
    worker = start([str(BIN / "circus"), "worker", "--machine", "bench"], env, work / "ours.log")
    try:
        wait_for_job(submit_job("noop@1.0.0", [uid], force=True).id, 120)  # warm-up
        latencies, alone = [], []
        for _ in range(max(10, jobs // 3)):
            job = submit_job("noop@1.0.0", [uid], force=True)
            done = wait_for_job(job.id, 120)
            assert done.status == JobStatus.FINISHED, done.error_message
            assert done.started_at is not None
            latencies.append((done.started_at - done.created_at).total_seconds())
            alone.append(job.id)
        began = time.monotonic()
        ids = [submit_job("noop@1.0.0", [uid], force=True).id for _ in range(jobs)]
        for job_id in ids:
            assert wait_for_job(job_id, 600).status == JobStatus.FINISHED
        per_minute = jobs / (time.monotonic() - began) * 60
        breakdown = where_the_time_goes(ids)
        # a job submitted to an idle machine: its wait for the claim (in a batch, the queue's)
        breakdown[STEPS[0]] = where_the_time_goes(alone)[STEPS[0]]
    finally:
        stop(worker)
    return latencies, per_minute, breakdown


STEPS = (
    "submit to claim",
    "claim to process start",
    "process start to job start",
    "job (three tasks)",
    "job end to flow end",
    "flow end to next claim",
)
"""Where a job's time goes, in order: the run claimed by the worker (Pending), the flow run's
process running the flow (Running), our claim of the job (``started_at``), the job's three
tasks (to ``finished_at``), the flow run's end (its final state), the next run claimed."""


def where_the_time_goes(ids: list[str]) -> dict[str, float]:
    """Median seconds of each step over a batch of jobs run one after another."""
    from circus_tasks.api import get_job
    from circus_tasks.orchestration.client import prefect_client

    marks = []
    with prefect_client() as client:
        for job_id in ids:
            job = get_job(job_id)
            assert job is not None and job.flow_run_id and job.started_at and job.finished_at
            states = client.read_flow_run_states(job.flow_run_id)

            def first(kind: str, states: list = states) -> float:  # type: ignore[type-arg]
                return min(s.timestamp.timestamp() for s in states if s.type.value == kind)

            final = max(s.timestamp.timestamp() for s in states if s.is_final())
            marks.append(
                (
                    job.created_at.timestamp(),
                    first("PENDING"),
                    first("RUNNING"),
                    job.started_at.timestamp(),
                    job.finished_at.timestamp(),
                    final,
                )
            )
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    for index, mark in enumerate(marks):
        for step, (a, b) in zip(STEPS[:5], itertools.pairwise(mark), strict=True):
            steps[step].append(b - a)
        if index + 1 < len(marks):
            steps[STEPS[5]].append(marks[index + 1][1] - mark[5])
    return {step: statistics.median(values) for step, values in steps.items() if values}


def measure_floor(jobs: int) -> float:
    """Seconds per run of the plain three-task flow called in a loop in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "plain_flow", ROOT / "benchmarks/peer/plain_flow.py"
    )
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    plain_three_tasks = peer.plain_three_tasks

    plain_three_tasks()  # warm-up
    began = time.monotonic()
    for _ in range(jobs):
        plain_three_tasks()
    return (time.monotonic() - began) / jobs


def measure_stock(
    jobs: int, work: Path, env: dict[str, str], first: bool = True
) -> tuple[list[float], float]:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    if first:
        subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", "stock", "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
        )
        source = flow.from_source(
            str(ROOT / "benchmarks" / "peer"), "plain_flow.py:plain_three_tasks"
        )
        source.deploy(
            name="plain", work_pool_name="stock", build=False, push=False, print_next_steps=False
        )
    stock_env = {k: v for k, v in env.items() if not k.startswith(("PREFECT_WORKER_", "CIRCUS_"))}
    worker = start(
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            "stock",
            "--type",
            "process",
            "--limit",
            "1",
        ],
        stock_env,
        work / "stock.log",
    )

    def wait_done(run_id: object) -> object:
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(run_id)
                if run.state and run.state.is_final():
                    return run
                time.sleep(0.2)

    name = "plain-three-tasks/plain"
    try:
        wait_done(run_deployment(name, timeout=0).id)  # warm-up
        latencies = []
        for _ in range(max(3, jobs // 3)):
            run = wait_done(run_deployment(name, timeout=0).id)
            latencies.append((run.start_time - run.created).total_seconds())  # type: ignore[attr-defined]
        began = time.monotonic()
        ids = [run_deployment(name, timeout=0).id for _ in range(jobs)]
        for run_id in ids:
            wait_done(run_id)
        per_minute = jobs / (time.monotonic() - began) * 60
    finally:
        stop(worker)
    return latencies, per_minute


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--stock-jobs", type=int, default=10, help="the stock worker's batch (0: no stock runs)"
    )
    parser.add_argument("--logs", type=Path, help="keep the workers' and server's logs here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="circus-overhead-"))
    port = free_port()
    plugins = work / "plugins"
    shutil.copytree(ROOT / "benchmarks" / "plugins", plugins)
    env = {
        **os.environ,
        "CIRCUS_HOME": str(work / "home"),
        "CIRCUS_PREFECT_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "CIRCUS_PLUGINS_DIR": str(plugins),
    }
    os.environ.update(env)
    up = subprocess.run(
        [str(BIN / "circus"), "up", "--no-worker", "--no-batch-worker", "--no-engine"],
        env=env,
        capture_output=True,
    )
    if up.returncode != 0:
        print(up.stdout.decode(), up.stderr.decode())
        return 1
    ours: list[tuple[list[float], float, dict[str, float]]] = []
    stock: list[tuple[list[float], float]] = []
    floor: list[float] = []
    try:
        for repeat in range(args.repeats):
            ours.append(measure_ours(args.jobs, work / f"ours-{repeat}", env))
            floor.append(measure_floor(args.jobs))
            if args.stock_jobs:
                stock.append(measure_stock(args.stock_jobs, work, env, first=repeat == 0))
    finally:
        subprocess.run([str(BIN / "circus"), "down"], env=env, capture_output=True)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in [*work.rglob("*.log")]:
                shutil.copy(log, args.logs / f"{log.parent.name}-{log.name}")
        shutil.rmtree(work, ignore_errors=True)
    report(args, ours, stock, floor)
    return 0


def report(
    args: argparse.Namespace,
    ours: list[tuple[list[float], float, dict[str, float]]],
    stock: list[tuple[list[float], float]],
    floor: list[float],
) -> None:
    """Medians over the repeats: per job, latency, and where our time goes."""
    med = statistics.median
    our_job = med(60 / rate for _, rate, _ in ours)
    stock_job = med(60 / rate for _, rate in stock) if stock else float("nan")
    floor_job = med(floor)
    our_latency = med(med(lat) for lat, _, _ in ours)
    stock_latency = med(med(lat) for lat, _ in stock) if stock else float("nan")
    print(f"medians of {args.repeats} runs; {args.jobs} jobs per batch ({args.stock_jobs} stock)")
    print(f"{'':34} {'circus worker':>14} {'floor':>10} {'stock worker':>14}")
    print(f"{'seconds per job':34} {our_job:14.2f} {floor_job:10.2f} {stock_job:14.2f}")
    print(
        f"{'submit-to-processing median (s)':34} {our_latency:14.2f} {'':>10} {stock_latency:14.2f}"
    )
    print("where our time per job goes (median s):")
    for step in STEPS:
        values = [b[step] for _, _, b in ours if step in b]
        if values:
            print(f"  {step:32} {med(values):8.2f}")
    print(
        f"{our_job / floor_job:.2f}x the in-process floor per job (circus {our_job:.2f} s, "
        f"floor {floor_job:.2f} s, stock worker {stock_job:.2f} s = {stock_job / our_job:.1f}x "
        f"ours); submit-to-processing median {our_latency:.2f} s (goals: <= 1.5x, <= 0.5 s)"
    )
    record(
        "trivial job, seconds per job",
        f"{our_job:.2f} s",
        f"{floor_job:.2f} s (in-process floor)",
        f"{our_job / floor_job:.2f}x",
        "<= 1.5x",
        our_job / floor_job <= 1.5,
    )
    record(
        "submit-to-processing median",
        f"{our_latency:.2f} s (job created to started)",
        f"{stock_latency:.2f} s (stock worker: run created to started)",
        "-",
        "<= 0.5 s",
        our_latency <= 0.5,
    )


if __name__ == "__main__":
    sys.exit(main())
