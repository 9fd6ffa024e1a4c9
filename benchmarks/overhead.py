"""Per-job overhead through the real stack, against a stock Prefect process worker.

Run: ``.venv/bin/python benchmarks/overhead.py [--jobs 30]`` (after ``make test`` built .venv).

Starts a Prefect server in a temporary CIRCUS_HOME, then:
1. ours: one ``circus worker`` (warm flow-run processes, one job at a time), a plug-in that does
   nothing; submit-to-processing latency of jobs submitted one at a time, and jobs per minute
   of a batch submitted at once;
2. the peer: a plain three-task flow deployed on a ``prefect worker start --type process
   --limit 1`` with default settings (polling every 10 s); the same figures, from Prefect's
   own flow run times.
The last line starts with the ratio of jobs per minute.
"""

from __future__ import annotations

import argparse
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


def measure_ours(jobs: int, work: Path, env: dict[str, str]) -> tuple[list[float], float]:
    import numpy as np

    from circus_tasks.api import submit_job, wait_for_job
    from circus_tasks.statuses import JobStatus
    from circus_tasks.store.importer import import_dicom
    from circus_tasks.testing.synthetic import write_series

    write_series(work / "series", np.zeros((1, 8, 8), dtype=np.int16))
    (uid,) = import_dicom(work / "series").series_uids
    worker = start([str(BIN / "circus"), "worker", "--machine", "bench"], env, work / "ours.log")
    try:
        wait_for_job(submit_job("noop@1.0.0", [uid], force=True).id, 120)  # warm-up
        latencies = []
        for _ in range(max(10, jobs // 3)):
            job = submit_job("noop@1.0.0", [uid], force=True)
            done = wait_for_job(job.id, 120)
            assert done.status == JobStatus.FINISHED, done.error_message
            assert done.started_at is not None
            latencies.append((done.started_at - done.created_at).total_seconds())
        began = time.monotonic()
        ids = [submit_job("noop@1.0.0", [uid], force=True).id for _ in range(jobs)]
        for job_id in ids:
            assert wait_for_job(job_id, 600).status == JobStatus.FINISHED
        per_minute = jobs / (time.monotonic() - began) * 60
    finally:
        stop(worker)
    return latencies, per_minute


def measure_stock(jobs: int, work: Path, env: dict[str, str]) -> tuple[list[float], float]:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    subprocess.run(
        [str(BIN / "prefect"), "work-pool", "create", "stock", "--type", "process"],
        env=env,
        check=True,
        capture_output=True,
    )
    source = flow.from_source(str(ROOT / "benchmarks" / "peer"), "plain_flow.py:plain_three_tasks")
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
        for _ in range(max(5, jobs // 6)):
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
    up = subprocess.run([str(BIN / "circus"), "up", "--no-worker"], env=env, capture_output=True)
    if up.returncode != 0:
        print(up.stdout.decode(), up.stderr.decode())
        return 1
    try:
        ours_latency, ours_rate = measure_ours(args.jobs, work, env)
        stock_latency, stock_rate = measure_stock(args.jobs, work, env)
    finally:
        subprocess.run([str(BIN / "circus"), "down"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'':34} {'circus worker':>14} {'stock worker':>14}")
    for label, ours, stock in (
        (
            "submit-to-processing median (s)",
            statistics.median(ours_latency),
            statistics.median(stock_latency),
        ),
        (
            "submit-to-processing p95 (s)",
            percentile(ours_latency, 0.95),
            percentile(stock_latency, 0.95),
        ),
        ("jobs per minute", ours_rate, stock_rate),
    ):
        print(f"{label:34} {ours:14.2f} {stock:14.2f}")
    print(
        f"{ours_rate / stock_rate:.1f}x stock worker jobs/min (circus {ours_rate:.1f}/min vs "
        f"stock {stock_rate:.1f}/min, {args.jobs} jobs each); submit-to-processing median "
        f"{statistics.median(ours_latency):.2f} s (p95 {percentile(ours_latency, 0.95):.2f} s) "
        f"vs {statistics.median(stock_latency):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
