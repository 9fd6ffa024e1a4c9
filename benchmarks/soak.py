"""A soak with faults: many trivial jobs through the real stack while its parts are killed.

Run: ``.venv/bin/python benchmarks/soak.py [--jobs 1000] [--database postgres|sqlite]
[--no-faults]`` (after ``make test`` built .venv; as root for the full set of faults). Not part
of ``make test``. Run it from a clean clone when you go on editing the work tree meanwhile (its
workers import the code as it is on disk): ``PYTHONPATH=CLONE .venv/bin/python
CLONE/benchmarks/soak.py``.

In a fresh CIRCUS_HOME it starts the stack (``circus up``, with ``--postgres``: the home's own
PostgreSQL cluster for both Prefect's data and our tables) and two ``circus worker``s under
two machine names, submits the jobs in requests of 100 at once, and, with faults, on a
schedule through the run: SIGKILL of a running plug-in, of a flow-run process, of a warm
zygote, of a worker's whole process group (started again after a pause), of the Prefect server
(brought back with ``circus up``); a PostgreSQL restart; and the results store full for a
while (a small tmpfs filled up, so that post-processing cannot write). Meanwhile it samples
which plug-ins run, to catch two jobs at once on one machine.

It then prints a table: jobs submitted, finished, failed (each with its reason and the fault
that hit it), stuck, lost, overlaps, the longest time from a fault to the final status of a job
it hit, the longest gap between two job starts on a machine, "database is locked" errors in
the server's log and in the workers' logs, and whether the stack runs new jobs afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MACHINES = ("soak-a", "soak-b")
MARKER = "soak-plugin"
PLUGIN = {
    "pluginName": "soak",
    "version": "1.0.0",
    "type": "CAD",
    "description": "soak: sleeps half a second, then writes a small result",
    "runner": {
        "command": [
            "sh",
            "-c",
            'sleep 0.5; printf \'{"results": {"ok": true}}\' > "$1/results.json"',
            MARKER,
            "{out}",
        ]
    },
    "timeout": 120,
}
# what a failed job's reason must say for each fault that may fail the job it hits
REASONS = {
    "kill plug-in": r"exited with code (-9|137)",
    "kill flow process": r"no heartbeat|without finishing|Crashed",
    "kill worker group": r"no heartbeat|without finishing|Crashed|worker went away",
    "restart PostgreSQL": r"terminating connection|server closed|connection|OperationalError",
    "results store full": r"No space left on device",
}


@dataclass
class Fault:
    name: str
    started: float
    ended: float
    note: str = ""


@dataclass
class Soak:
    work: Path
    env: dict[str, str]
    database: str
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    samples: list[list[str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    results_tmpfs: bool = False

    def circus(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "circus"), *args], env=self.env, capture_output=True, text=True
        )

    def start_worker(self, machine: str) -> None:
        log = (self.work / f"worker-{machine}.log").open("ab")
        self.workers[machine] = subprocess.Popen(
            [str(BIN / "circus"), "worker", "--machine", machine],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # ---- faults ----------------------------------------------------------------------------

    def kill_plugin(self) -> str:
        return kill_first(lambda: next(iter(processes(MARKER, "sh")), None), 60)

    def kill_flow_process(self) -> str:
        def flow_process() -> int | None:
            for pid in processes(MARKER, "sh"):
                up = parent(pid)
                while up > 1 and "bwrap" in cmdline(up).split(" ")[0]:
                    up = parent(up)
                if "circus_tasks.worker.warm" in cmdline(up):
                    return up
            return None

        return kill_first(flow_process, 60)

    def kill_zygote(self) -> str:
        def zygote() -> int | None:  # not one of its children (flow runs): its parent is
            for pid in processes("circus_tasks.worker.warm", ""):  # circus worker
                if "circus worker" in cmdline(parent(pid)):
                    return pid
            return None

        return kill_first(zygote, 30)

    def kill_worker_group(self) -> str:
        machine = MACHINES[1]
        os.killpg(self.workers[machine].pid, signal.SIGKILL)
        self.workers[machine].wait()
        time.sleep(10)
        self.start_worker(machine)
        return f"{machine}, started again after 10 s"

    def kill_server(self) -> str:
        pid = int((Path(self.env["CIRCUS_HOME"]) / "run" / "server.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        time.sleep(5)
        up = self.circus("up", "--no-worker", "--no-batch-worker", "--no-engine")
        return f"back with circus up (exit {up.returncode})"

    def restart_postgres(self) -> str:
        data = Path(self.env["CIRCUS_HOME"]) / "postgres" / "data"
        log = data / "server.log"  # not our pipe: the new server would hold it open
        command = ["pg_ctl", "-D", str(data), "-m", "fast", "-w", "-l", str(log), "restart"]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return f"pg_ctl restart exit {done.returncode}"

    def fill_results_store(self) -> str:
        filler = Path(self.env["CIRCUS_HOME"]) / "results" / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * (1 << 20))
                    out.flush()
            except OSError:
                pass
        time.sleep(15)
        filler.unlink()
        return "full for 15 s"

    def run_faults(self, total: int, done: callable) -> None:  # type: ignore[valid-type]
        plan = [
            (0.08, "kill plug-in", self.kill_plugin),
            (0.20, "kill flow process", self.kill_flow_process),
            (0.32, "kill zygote", self.kill_zygote),
            (0.44, "kill worker group", self.kill_worker_group),
            (0.56, "kill Prefect server", self.kill_server),
            (0.68, "restart PostgreSQL", self.restart_postgres),
            (0.80, "results store full", self.fill_results_store),
        ]
        if self.database != "postgres":
            plan = [p for p in plan if p[1] != "restart PostgreSQL"]
        if not self.results_tmpfs:
            plan = [p for p in plan if p[1] != "results store full"]
        for share, name, act in plan:
            while not self.stop.is_set() and done() < share * total:
                time.sleep(0.5)
            if self.stop.is_set():
                return
            started = time.time()
            try:
                note = act()
            except Exception as exc:  # noqa: BLE001 - a fault that could not be made is reported
                note = f"not made: {exc!r}"
            self.faults.append(Fault(name, started, time.time(), note))
            print(f"  fault: {name} ({note})", flush=True)

    def sample(self) -> None:
        """Which jobs' plug-ins run, twice a second (their output folder names the job)."""
        while not self.stop.wait(0.5):
            running = []
            for pid in processes(MARKER, "sh"):
                if MARKER in cmdline(parent(pid)):
                    continue  # the plug-in's shell forking (before it execs): not another run
                match = re.search(r"/jobs/([0-9a-z]+)/out", cmdline(pid))
                if match:
                    running.append(match.group(1))
            if len(running) > 1:
                self.samples.append(running)


def processes(marker: str, program: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            line = cmdline(int(entry.name))
            if marker in line and Path(line.split(" ")[0]).name.startswith(program):
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def kill_first(probe: callable, timeout: float) -> str:  # type: ignore[valid-type]
    """SIGKILL the process ``probe`` finds within ``timeout`` seconds."""
    pid = wait_for(probe, timeout)
    os.kill(pid, signal.SIGKILL)
    return f"pid {pid}"


def wait_for(probe: callable, timeout: float) -> int:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return int(found)
        time.sleep(0.05)
    raise TimeoutError("nothing to hit")


def stamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--stuck-after", type=float, default=600, help="s without progress")
    parser.add_argument("--logs", type=Path, help="keep the server's and workers' logs here")
    args = parser.parse_args()
    report = run(args.jobs, args.database, not args.no_faults, args.stuck_after, args.logs)
    print(report["table"])
    return 0 if report["ok"] else 1


def run(
    jobs: int, database: str, with_faults: bool, stuck_after: float, logs: Path | None = None
) -> dict[str, object]:
    from benchmarks.overhead import free_port

    work = Path(tempfile.mkdtemp(prefix="circus-soak-"))
    work.chmod(0o755)  # the PostgreSQL user and the sandbox's user walk through it
    plugins = work / "plugins" / "soak"
    plugins.mkdir(parents=True)
    (plugins / "plugin.json").write_text(json.dumps(PLUGIN))
    for folder in (work / "plugins", plugins):
        folder.chmod(0o755)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CIRCUS_", "PREFECT_"))},
        "CIRCUS_HOME": str(work / "home"),
        "CIRCUS_PREFECT_PORT": str(port),
        "CIRCUS_POSTGRES_PORT": str(free_port()),
        "CIRCUS_PLUGINS_DIR": str(work / "plugins"),
    }
    soak = Soak(work, env, database)
    up_args = ["up", "--no-worker", "--no-batch-worker", "--no-engine"]  # no image plug-ins
    up = soak.circus(*up_args, *(["--postgres"] if database == "postgres" else []))
    if up.returncode != 0:
        raise SystemExit(f"circus up failed:\n{up.stdout}\n{up.stderr}")
    os.environ.update(env)
    results = Path(env["CIRCUS_HOME"]) / "results"
    results.mkdir(parents=True, exist_ok=True)
    if with_faults and os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "soak", str(results)])
        soak.results_tmpfs = mounted.returncode == 0
    try:
        return _soak(soak, jobs, with_faults, stuck_after)
    finally:
        soak.stop.set()
        for worker in soak.workers.values():
            try:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=40)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        soak.circus("down")
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            for log in [*work.glob("worker-*.log"), *(work / "home" / "run").glob("*.log")]:
                shutil.copy(log, logs / log.name)
        if soak.results_tmpfs:
            subprocess.run(["umount", str(results)])
        shutil.rmtree(work, ignore_errors=True)


def _soak(soak: Soak, jobs: int, with_faults: bool, stuck_after: float) -> dict[str, object]:
    import numpy as np

    from circus_tasks.api import JobRequest, submit_jobs
    from circus_tasks.db.engine import reset_caches
    from circus_tasks.store.importer import import_dicom
    from circus_tasks.testing.synthetic import write_series

    reset_caches()
    write_series(soak.work / "series", np.zeros((1, 8, 8), dtype=np.int16))
    (uid,) = import_dicom(soak.work / "series").series_uids
    for machine in MACHINES:
        soak.start_worker(machine)
    threading.Thread(target=soak.sample, daemon=True).start()
    began = time.time()
    ids: list[str] = []
    refused = 0
    for start in range(0, jobs, 100):
        count = min(100, jobs - start)
        for outcome in submit_jobs([JobRequest("soak@1.0.0", [uid], force=True)] * count):
            if isinstance(outcome, Exception):
                refused += 1
            else:
                ids.append(outcome.id)
    print(f"  {len(ids)} jobs submitted in {time.time() - began:.1f} s", flush=True)
    if with_faults:
        threading.Thread(
            target=soak.run_faults, args=(len(ids), lambda: _final_count(ids)), daemon=True
        ).start()
    last, last_change = -1, time.monotonic()
    while True:
        final = _final_count(ids)
        if final != last:
            last, last_change = final, time.monotonic()
            print(f"  {final}/{len(ids)} final after {time.time() - began:.0f} s", flush=True)
        if final == len(ids) or time.monotonic() - last_change > stuck_after:
            break
        time.sleep(5)
    soak.stop.set()
    time.sleep(1)
    after = submit_jobs([JobRequest("soak@1.0.0", [uid], force=True)] * 4)
    after_ids = [j.id for j in after if not isinstance(j, Exception)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and _final_count(after_ids) < len(after_ids):
        time.sleep(2)
    return _report(soak, ids, refused, after_ids, time.time() - began)


def _final_count(ids: list[str]) -> int:
    from sqlmodel import col, func, select

    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Job
    from circus_tasks.statuses import JobStatus

    waiting = [JobStatus.IN_QUEUE, JobStatus.PROCESSING]
    with session_scope() as session:
        query = select(func.count()).where(col(Job.status).in_(waiting))
        open_jobs = int(session.exec(query).one())
    # every job of the home is one of ours (the later four included): count the others
    return max(0, len(ids) - open_jobs)


def _report(
    soak: Soak, ids: list[str], refused: int, after_ids: list[str], seconds: float
) -> dict[str, object]:
    from circus_tasks.api import get_job
    from circus_tasks.jobs.folders import results_folder
    from circus_tasks.settings import get_settings
    from circus_tasks.statuses import JobStatus

    jobs = [get_job(i) for i in ids]
    known = [j for j in jobs if j is not None]
    by_status: dict[str, int] = {}
    for job in known:
        by_status[job.status] = by_status.get(job.status, 0) + 1
    finished = [j for j in known if j.status == JobStatus.FINISHED]
    failed = [j for j in known if j.status == JobStatus.FAILED]
    stuck = [j for j in known if j.status in (JobStatus.IN_QUEUE, JobStatus.PROCESSING)]
    cancelled = [j for j in known if j.status == JobStatus.CANCELLED]  # no one cancelled any
    lost = refused + (len(ids) - len(known))
    lost += sum(1 for j in finished if not (results_folder(j.id) / "results.json").is_file())

    rows, unexplained, to_final = [], 0, 0.0
    for job in failed:
        # a job that never started (failed while queued) was hit by no fault while it ran
        start = stamp(job.started_at) or float("inf")
        end = stamp(job.finished_at) or time.time()
        hit = [
            f
            for f in soak.faults
            if f.name in REASONS
            and f.started <= end
            and f.ended >= start - 5
            and re.search(REASONS[f.name], job.error_message or "")
        ]
        fault = hit[0].name if hit else "NONE"
        unexplained += not hit
        if hit:
            to_final = max(to_final, end - hit[0].started)
        rows.append(f"  {job.id} {job.machine}: [{fault}] {(job.error_message or '')[:110]}")

    overlaps = _overlaps(soak, known)
    gaps = _gaps(known, soak.faults)
    home = get_settings().home
    locked_server = _count(home / "run" / "server.log", "database is locked")
    locked_workers = sum(_count(p, "database is locked") for p in soak.work.glob("worker-*.log"))
    after = [get_job(i) for i in after_ids]
    runs_after = sum(1 for j in after if j is not None and j.status == JobStatus.FINISHED)

    lines = [
        f"soak: {len(ids)} jobs, {soak.database}, {len(MACHINES)} machines, "
        f"faults: {', '.join(f.name for f in soak.faults) or 'none'} ({seconds / 60:.1f} min)",
        f"{'measure':44} {'value':>10}  goal",
        f"{'jobs submitted':44} {len(ids) + refused:>10}",
        f"{'finished':44} {len(finished):>10}",
        f"{'failed':44} {len(failed):>10}  only jobs a fault hit",
        f"{'failed with no fault to explain them':44} {unexplained:>10}  0",
        f"{'cancelled (no one asked)':44} {len(cancelled):>10}  0",
        f"{'stuck (in_queue or processing at the end)':44} {len(stuck):>10}  0",
        f"{'lost (refused, missing, or no results)':44} {lost:>10}  0",
        f"{'overlaps on a machine':44} {overlaps:>10}  0",
        f"{'longest fault to final status (s)':44} {to_final:>10.0f}  <= 120",
        f"{'longest gap between starts, no fault (s)':44} {gaps[0]:>10.1f}  <= 10",
        f"{'longest gap between starts, any (s)':44} {gaps[1]:>10.1f}",
        f"{'database is locked: server log':44} {locked_server:>10}",
        f"{'database is locked: reached a worker':44} {locked_workers:>10}  0",
        f"{'new jobs finished afterwards':44} {runs_after:>7} / {len(after_ids)}",
        "faults:",
        *(f"  {f.name}: {f.note}" for f in soak.faults),
        "failed jobs:",
        *rows,
    ]
    goals = {
        "every failed job explained by a fault": unexplained == 0,
        "none cancelled": not cancelled,
        "none stuck": not stuck,
        "none lost": lost == 0,
        "no overlaps": overlaps == 0,
        "no locked error reached a worker": locked_workers == 0,
        "new jobs run afterwards": runs_after == len(after_ids),
        "fault to final status <= 120 s": to_final <= 120,
        "start gaps without a fault <= 10 s": gaps[0] <= 10,
    }
    ok = all(goals.values())
    missed = [name for name, met in goals.items() if not met]
    lines.append("soak: " + ("all goals met" if ok else "GOALS NOT MET: " + "; ".join(missed)))
    return {"table": "\n".join(lines), "ok": ok, "status": by_status}


def _overlaps(soak: Soak, known: list) -> int:  # type: ignore[type-arg]
    """Samples that saw two plug-ins of one machine at once, or one job's plug-in twice."""
    machine = {j.id: j.machine for j in known}
    count = 0
    for running in soak.samples:
        machines = [machine.get(job_id) for job_id in running]
        count += len(machines) != len(set(machines))
    return count


def _gaps(known: list, faults: list[Fault]) -> tuple[float, float]:  # type: ignore[type-arg]
    """The longest time between two job starts on a machine: with no fault in between, and
    at all."""
    quiet, longest = 0.0, 0.0
    for name in MACHINES:
        starts = sorted(s for j in known if j.machine == name and (s := stamp(j.started_at)))
        for a, b in zip(starts, starts[1:], strict=False):
            longest = max(longest, b - a)
            if not any(a - 5 <= f.started <= b for f in faults):
                quiet = max(quiet, b - a)
    return quiet, longest


def _count(path: Path, text: str) -> int:
    try:
        return path.read_text(errors="replace").count(text)
    except OSError:
        return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
