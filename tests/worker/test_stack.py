"""Jobs through the real stack: a Prefect server started once for this module, and real
``circus worker`` processes (each a Prefect process worker with --limit 1 plus the reconciler).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from circus_tasks.api import (
    SeriesInput,
    cancel_job,
    get_job,
    invalidate_job,
    job_events,
    list_jobs,
    submit_job,
    wait_for_job,
)
from circus_tasks.batch_api import batch_items
from circus_tasks.db.engine import reset_caches
from circus_tasks.errors import JobStateError
from circus_tasks.orchestration.reconciler import reconcile_once
from circus_tasks.statuses import RUN_MIRRORS, JobStatus
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from tests.conftest import build_plugins_dir, make_volume
from tests.running import register

pytestmark = [pytest.mark.prefect, pytest.mark.worker]

RECORD = "record@1.0.0"
CIRCUS = str(Path(sys.executable).parent / "circus")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The server of this module and the workers its tests start."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.home = home
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, machine: str, poll: str = "1", **extra: str) -> subprocess.Popen[bytes]:
        log = (self.home / f"worker-{machine}-{len(self.workers)}.log").open("ab")
        process = subprocess.Popen(
            [CIRCUS, "worker", "--machine", machine, "--poll", poll],
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.workers:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.workers.clear()

    def client(self) -> Any:
        from circus_tasks.orchestration.client import prefect_client

        return prefect_client()

    def claimed_at(self, job_id: str) -> Any:
        """When a worker claimed the job's run (its first Pending state)."""
        job = get_job(job_id)
        assert job is not None and job.flow_run_id
        with self.client() as client:
            states = client.read_flow_run_states(job.flow_run_id)
        return min(s.timestamp for s in states if s.type.value == "PENDING")

    def run_state_of(self, flow_run_id: str) -> Any:
        with self.client() as client:
            return client.read_flow_run(flow_run_id).state

    def run_state(self, job_id: str) -> Any:
        job = get_job(job_id)
        assert job is not None and job.flow_run_id
        with self.client() as client:
            return client.read_flow_run(job.flow_run_id).state


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("stack") / "home"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "CIRCUS_HOME": str(home),
        "CIRCUS_PREFECT_PORT": str(port),
        "PREFECT_API_URL": api,
        "CIRCUS_PLUGINS_DIR": str(build_plugins_dir(home.parent / "plugins")),
        "CIRCUS_HEARTBEAT_SECONDS": "2",
        "CIRCUS_STALE_AFTER_SECONDS": "20",
        "CIRCUS_RECONCILE_SECONDS": "3",
        "CIRCUS_BATCH_POLL_SECONDS": "0.5",
        # these tests leave runs queued on purpose (no worker runs in some): a wide window
        "CIRCUS_DISPATCH_WINDOW": "500",
        # the record plug-in's duration, set per worker below, reaches the plug-in
        "CIRCUS_PLUGIN_ENV": '["RECORD_SECONDS"]',
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    saved = dict(os.environ)
    os.environ.update(env)
    reset_caches()
    up = subprocess.run([CIRCUS, "up", "--no-worker"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    stack = Stack(env, home)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            yield stack
    finally:
        stack.stop_workers()
        subprocess.run([CIRCUS, "down"], env=env, capture_output=True)
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()


@pytest.fixture(scope="module")
def series_uid(stack: Stack) -> str:
    folder = stack.home.parent / "series"
    write_series(folder, make_volume(6))
    (uid,) = import_dicom(folder).series_uids
    return uid


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_the_embedded_server_is_ours_with_sqlite_writes_waiting_their_turn(stack: Stack) -> None:
    """``circus up`` starts the server through ``circus_tasks.worker.server`` (which makes its
    SQLite transactions take the write lock at once: tests/worker/test_server.py)."""
    pid = (stack.home / "run" / "server.pid").read_text().strip()
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"circus_tasks.worker.server" in command, command


def test_up_gives_a_pool_of_the_previous_layout_the_current_command(stack: Stack) -> None:
    """A home made before the wings has a pool whose runs start ``circus_tasks.warm_client``;
    ``circus up`` sets today's command (the jobs of the next tests run with it)."""
    from prefect.client.schemas.actions import WorkPoolUpdate

    def command() -> str:
        with stack.client() as client:
            pool = client.read_work_pool("circus")
        return str(pool.base_job_template["job_configuration"]["command"])

    assert command() == "python -m circus_tasks.worker.warm_client"
    with stack.client() as client:
        template = client.read_work_pool("circus").base_job_template
        template["job_configuration"]["command"] = "python -m circus_tasks.warm_client"
        client.update_work_pool("circus", WorkPoolUpdate(base_job_template=template))
    assert command() == "python -m circus_tasks.warm_client"
    up = subprocess.run(
        [CIRCUS, "up", "--no-worker"], env=stack.env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert command() == "python -m circus_tasks.worker.warm_client"


def test_twelve_jobs_two_machines_one_at_a_time_priority_first(
    stack: Stack, series_uid: str
) -> None:
    low = [submit_job(RECORD, [series_uid], force=True, user="low").id for _ in range(8)]
    high = [
        submit_job(RECORD, [series_uid], priority=5, force=True, user="high").id for _ in range(4)
    ]
    # machine A gets two workers: its lock must still keep it to one job at a time
    stack.start_worker("machine-a", RECORD_SECONDS="1")
    stack.start_worker("machine-a", RECORD_SECONDS="1")
    stack.start_worker("machine-b", RECORD_SECONDS="1")
    jobs = [wait_for_job(job_id, 300) for job_id in low + high]
    stack.stop_workers()

    assert [j.status for j in jobs] == [JobStatus.FINISHED] * 12, [j.error_message for j in jobs]
    assert {j.machine for j in jobs} == {"machine-a", "machine-b"}
    for machine in ("machine-a", "machine-b"):
        spans = sorted(
            (j.results["results"]["startedAt"], j.results["results"]["endedAt"])  # type: ignore[index]
            for j in jobs
            if j.machine == machine
        )
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"two jobs at once on {machine}"
    # Priority decides which queued run a free worker claims (Pending): look at claim order.
    # (A claimed run may then wait for its machine's lock, so start order can differ.)
    by_claim = sorted(jobs, key=lambda j: stack.claimed_at(j.id))
    high_ids = set(high)
    # workers claiming in the same instant may swap one pair at the boundary
    inversions = sum(
        1
        for i, early in enumerate(by_claim)
        for late in by_claim[i + 1 :]
        if early.id not in high_ids and late.id in high_ids
    )
    assert inversions <= 1, [(j.id in high_ids) for j in by_claim]
    assert by_claim[0].id in high_ids
    low_order = [j.id for j in by_claim if j.id not in high_ids]
    assert sum(a > b for a, b in zip(low_order, low_order[1:], strict=False)) <= 1  # FIFO


def test_a_worker_takes_a_job_when_it_comes_not_at_its_timed_poll(
    stack: Stack, series_uid: str
) -> None:
    """A worker whose timed poll is an hour away still takes a waiting job the moment its slot
    frees, and a new job the moment it is submitted: our jobs table tells it when to ask."""
    first, second = (submit_job(RECORD, [series_uid], force=True).id for _ in range(2))
    stack.start_worker("machine-c", poll="3600", RECORD_SECONDS="0")
    # the worker's first poll takes one job; the other was there already: only the freed slot
    # tells the worker to ask again
    assert {wait_for_job(job_id, 90).status for job_id in (first, second)} == {JobStatus.FINISHED}
    later = submit_job(RECORD, [series_uid], force=True).id
    assert wait_for_job(later, 60).status == JobStatus.FINISHED
    stack.stop_workers()


def test_cancel_racing_the_start_has_one_winner(stack: Stack, series_uid: str) -> None:
    from prefect.client.schemas.objects import StateType

    stack.start_worker("machine-c", RECORD_SECONDS="0.2")
    outcomes = {}
    # from the very moment of the claim to well past the start of execution
    for delay in (0.0, 0.0, 0.0, 0.2, 0.4, 0.8, 1.5, 3.0):
        job_id = submit_job(RECORD, [series_uid], force=True).id
        wait_until(
            lambda job_id=job_id: (
                stack.run_state(job_id).type in (StateType.PENDING, StateType.RUNNING)
            ),
            60,
            "the worker to claim the run",
        )
        time.sleep(delay)
        try:
            cancel_job(job_id, user="racer")
            outcomes[job_id] = "cancelled"
        except JobStateError as exc:
            assert "already being processed" in str(exc) or "finished" in str(exc)
            outcomes[job_id] = "refused"
        final = wait_for_job(job_id, 120)
        # the runner writes the plug-in log just before it starts the plug-in
        ran = (stack.home / "jobs" / job_id / "plugin-log.txt").exists()
        if outcomes[job_id] == "cancelled":
            assert final.status == JobStatus.CANCELLED and not ran
            wait_until(
                lambda job_id=job_id: stack.run_state(job_id).type == StateType.CANCELLED,
                60,
                "the flow run to end Cancelled",
            )
        else:
            assert final.status == JobStatus.FINISHED and ran
    stack.stop_workers()
    assert set(outcomes.values()) == {"cancelled", "refused"}, outcomes


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _parent(int(entry.name)) == pid:
                    argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    found[int(entry.name)] = argv.decode(errors="replace")
            except (OSError, ValueError):
                continue
    return found


def test_killed_flow_process_fails_the_job_and_the_machine_goes_on(
    stack: Stack, series_uid: str
) -> None:
    """A killed flow process fails its job; then the Prefect worker (which gives up after a
    minute without its server) and the warm zygote are killed and no one restarts the
    machine by hand: ``circus worker`` starts them again and jobs run."""
    worker = stack.start_worker("machine-d")
    job_id = submit_job("sleepy@1.0.0", [series_uid], force=True).id
    wait_until(
        lambda: (j := get_job(job_id)) is not None and j.stage == "main", 90, "the plug-in to start"
    )
    # the plug-in's first ancestor that is not its sandbox (bubblewrap) is the flow run's
    # process (the warm zygote's child)
    (plugin_pid,) = wait_until(
        lambda: plugin_processes("print('sleeping'", "python", stack.home), 30, "the plug-in"
    )
    flow_pid = _parent(plugin_pid)
    while Path(f"/proc/{flow_pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"bwrap"):
        flow_pid = _parent(flow_pid)
    assert b"python" in Path(f"/proc/{flow_pid}/cmdline").read_bytes()
    killed_at = time.monotonic()
    os.kill(flow_pid, signal.SIGKILL)
    failed = wait_for_job(job_id, 120)
    assert failed.status == JobStatus.FAILED
    assert time.monotonic() - killed_at < 120
    assert failed.error_message and (
        "no heartbeat" in failed.error_message or "without finishing" in failed.error_message
    )
    wait_until(
        lambda: not plugin_processes("print('sleeping'", "", stack.home),
        10,
        "the orphaned plug-in to die",
    )
    nxt = wait_for_job(submit_job(RECORD, [series_uid], force=True).id, 120)
    assert nxt.status == JobStatus.FINISHED

    first = _children(worker.pid)
    assert len(first) == 2, first
    for pid in first:
        os.killpg(pid, signal.SIGKILL)
    again = wait_until(
        lambda: len(set(_children(worker.pid)) - set(first)) >= 2 and _children(worker.pid),
        60,
        "the Prefect worker and the zygote to be started again",
    )
    assert any("circus_tasks.worker.prefect_worker" in c for c in again.values()), again
    assert any("circus_tasks.worker.warm" in c for c in again.values()), again
    done = wait_for_job(submit_job(RECORD, [series_uid], force=True).id, 120)
    assert done.status == JobStatus.FINISHED
    stack.stop_workers()
    assert not _children(worker.pid)  # nothing of it is left running


def test_prefect_states_mirror_cancel_and_invalidate(stack: Stack, series_uid: str) -> None:
    from prefect.client.schemas.objects import StateType

    queued = submit_job(RECORD, [series_uid], force=True)  # no worker runs now
    cancel_job(queued.id)
    assert stack.run_state(queued.id).type == StateType.CANCELLED

    stack.start_worker("machine-e")
    done = wait_for_job(submit_job(RECORD, [series_uid], force=True).id, 120)
    assert done.status == JobStatus.FINISHED
    # invalidated at once, maybe before Prefect has the run Completed: the reconciler (in the
    # worker) shows it on the run when the run completes
    invalidate_job(done.id, reason="wrong series", user="dr-who")
    wait_until(
        lambda: stack.run_state(done.id).name == RUN_MIRRORS[JobStatus.INVALIDATED].state_name,
        60,
        "Invalidated in Prefect",
    )
    assert stack.run_state(done.id).type == StateType.COMPLETED
    stack.stop_workers()


def test_runs_cancelled_or_deleted_in_prefect_cancel_their_jobs(
    stack: Stack, series_uid: str
) -> None:
    from prefect.states import Cancelled

    by_ui = submit_job(RECORD, [series_uid], force=True)
    deleted = submit_job(RECORD, [series_uid], force=True)
    with stack.client() as client:
        client.set_flow_run_state(by_ui.flow_run_id, Cancelled(), force=True)
        client.delete_flow_run(deleted.flow_run_id)
    reconcile_once()
    for job_id, reason in ((by_ui.id, "cancelled in Prefect"), (deleted.id, "deleted in Prefect")):
        job = get_job(job_id)
        assert job is not None and job.status == JobStatus.CANCELLED
        assert reason in (job_events(job_id)[-1].reason or "")


def test_submit_while_prefect_is_down_is_dispatched_later(stack: Stack, series_uid: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        job = submit_job(RECORD, [SeriesInput(series_uid, "2:5")], force=True)
    assert job.status == JobStatus.IN_QUEUE and job.flow_run_id is None
    stack.start_worker("machine-f")  # its reconciler dispatches the job
    done = wait_for_job(job.id, 120)
    stack.stop_workers()
    assert done.status == JobStatus.FINISHED and done.flow_run_id


def plugin_processes(marker: str, program: str = "", under: Path | None = None) -> list[int]:
    """Process ids whose command line holds ``marker`` (and whose program, ``argv[0]``, starts
    with ``program``; and, with ``under``, that path: another test file may run the same
    plug-in at the same time in another process of the suite)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        cmdline = b" ".join(argv).decode(errors="replace")
        name = Path(argv[0].decode(errors="replace")).name
        if entry.name.isdigit() and marker in cmdline and name.startswith(program):
            if under is None or str(under) in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["circus", "prefect"])
def test_abort_a_running_job(stack: Stack, series_uid: str, how: str) -> None:
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    from circus_tasks.api import abort_job

    stack.start_worker("machine-g")
    job_id = submit_job("sleepy@1.0.0", [series_uid], force=True).id
    job = wait_until(
        lambda: (j := get_job(job_id)) is not None and j.stage == "main" and j, 90, "the plug-in"
    )
    wait_until(
        lambda: plugin_processes("print('sleeping'", "", stack.home), 30, "the plug-in's process"
    )
    started = time.monotonic()
    if how == "circus":
        abort_job(job_id, user="dr-abort")
        who = "dr-abort"
    else:  # the Cancel button of the Prefect UI does this
        with stack.client() as client:
            client.set_flow_run_state(job.flow_run_id, Cancelling(), force=True)
        who = "a Prefect UI or API user"
    failed = wait_for_job(job_id, 60)
    assert failed.status == JobStatus.FAILED
    assert failed.error_message == f"aborted by {who}"
    assert time.monotonic() - started < 30
    wait_until(
        lambda: not plugin_processes("print('sleeping'", "", stack.home),
        10,
        "the plug-in to be gone",
    )
    wait_until(
        lambda: stack.run_state(job_id).type == StateType.CANCELLED, 60, "the run to end Cancelled"
    )
    nxt = wait_for_job(submit_job(RECORD, [series_uid], force=True).id, 120)
    assert nxt.status == JobStatus.FINISHED
    stack.stop_workers()


def test_a_plugin_past_its_timeout_fails_its_job_and_the_next_runs(
    stack: Stack, series_uid: str
) -> None:
    stack.start_worker("machine-h")
    job_id = submit_job("slow@1.0.0", [series_uid], force=True).id
    wait_until(lambda: plugin_processes("sleep 601"), 90, "the plug-in to start")
    started = time.monotonic()
    failed = wait_for_job(job_id, 60)
    assert failed.status == JobStatus.FAILED
    assert failed.error_message == "Plug-in slow@1.0.0 timed out after 3 s."
    assert time.monotonic() - started < 3 + 30
    assert not plugin_processes("sleep 60")  # the plug-in and its child are gone
    log = (stack.home / "jobs" / job_id / "plugin-log.txt").read_text()
    assert "timed out after 3 s; process group killed" in log
    nxt = wait_for_job(submit_job(RECORD, [series_uid], force=True).id, 120)
    assert nxt.status == JobStatus.FINISHED
    stack.stop_workers()


def test_a_finished_job_shows_its_results_as_prefect_artifacts(stack: Stack) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from circus_tasks.cli.demo import phantom_folder

    (uid,) = import_dicom(phantom_folder()).series_uids
    stack.start_worker("machine-i")
    job = wait_for_job(submit_job("lesion-candidates@1.0.0", [uid], force=True).id, 120)
    stack.stop_workers()
    assert job.status == JobStatus.FINISHED and job.flow_run_id
    with stack.client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[job.flow_run_id])
            )
        )
    by_key = {a.key: a for a in artifacts}
    table = by_key[f"{job.id}-results"]
    assert table.type == "table"
    rows = table.data if isinstance(table.data, list) else __import__("json").loads(table.data)
    assert len(rows) == 3 and {"x", "y", "z", "volumeSize", "confidence"} <= set(rows[0])
    preview = by_key[f"{job.id}-preview-0"]
    assert preview.type == "image"
    assert str(preview.data).startswith("data:image/png;base64,")
    files = by_key[f"{job.id}-files"]
    assert "results.json" in str(files.data) and "preview.png" in str(files.data)


def test_each_step_is_given_the_folder_the_step_before_returned(
    stack: Stack, series_uid: str
) -> None:
    """The flow called in a process of its own against the stack's server: Prefect records
    that main-processing took pre-processing's result, and post-processing main-processing's."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    job_id = register(RECORD, [series_uid], force=True)  # not dispatched: run here
    script = f"from flows.job import circus_job; circus_job({job_id!r})"
    run = subprocess.run(
        [sys.executable, "-c", script], env=stack.env, cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.FINISHED and job.flow_run_id
    with stack.client() as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[job.flow_run_id]))
        )
    by_name = {run.name.rsplit("-", 1)[0]: run for run in runs}
    pre, main, post = (by_name[n] for n in ("pre-processing", "main-processing", "post-processing"))
    assert [i.id for i in main.task_inputs["inputs"]] == [pre.id]  # type: ignore[union-attr]
    assert [i.id for i in post.task_inputs["outputs"]] == [main.id]  # type: ignore[union-attr]


def _batch_flight(batch_id: str) -> int:
    """The batch's jobs that have a flow run and are queued or running."""
    from sqlmodel import col, func, select

    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Job

    with session_scope() as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.batch_id == batch_id,
                    col(Job.flow_run_id).is_not(None),
                    col(Job.status).in_([JobStatus.IN_QUEUE, JobStatus.PROCESSING]),
                )
            ).one()
        )


def _series(stack: Stack, count: int, name: str) -> list[str]:
    uids = []
    for n in range(count):
        folder = stack.home.parent / f"{name}-{n}"
        write_series(folder, make_volume(2))
        uids += list(import_dicom(folder).series_uids)
    return uids


def test_a_batch_feeds_two_machines_within_its_window_after_interactive_jobs(
    stack: Stack,
) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from circus_tasks.batch_api import BatchRequest, SeriesSelection, get_batch, start_batch

    uids = _series(stack, 31, "batch-series")
    selection = SeriesSelection(series_uids=uids[1:])
    request = BatchRequest(name="thirty", plugin_id=RECORD, selection=selection, max_in_flight=4)
    batch = start_batch(request)
    assert batch.planned_run == 30 and batch.flow_run_id
    stack.start_worker("machine-x", RECORD_SECONDS="0.3")
    stack.start_worker("machine-y", RECORD_SECONDS="0.3")
    most = 0
    interactive: str | None = None
    waiting: set[str] = set()
    deadline = time.monotonic() + 400
    while get_batch(batch.id).status != "completed":
        assert time.monotonic() < deadline, "the batch did not complete"
        most = max(most, _batch_flight(batch.id))
        jobs = list_jobs(user=None, limit=1000)
        started = [j for j in jobs if j.batch_id == batch.id and j.started_at is not None]
        if interactive is None and len(started) >= 6:
            interactive = submit_job(RECORD, [uids[0]], user="radiologist").id
            waiting = {j.id for j in jobs if j.batch_id == batch.id and j.started_at is None}
        time.sleep(0.2)
    stack.stop_workers()

    assert most <= 4, most
    assert interactive is not None and len(waiting) >= 15
    first = wait_for_job(interactive, 60)
    assert first.status == JobStatus.FINISHED and first.started_at is not None
    later = [get_job(j) for j in waiting]
    assert all(j is not None and j.status == JobStatus.FINISHED for j in later)
    # at most one batch run per machine was already claimed when the interactive job came
    before = [j for j in later if j and j.started_at and j.started_at < first.started_at]
    assert len(before) <= 2, [j.id for j in before if j]
    with stack.client() as client:
        (progress,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"batch-{batch.id}-progress"])
            )
        )
    assert progress.data == 100.0


def test_a_batch_completes_with_a_single_job_worker(stack: Stack) -> None:
    from circus_tasks.batch_api import BatchRequest, SeriesSelection, get_batch, start_batch

    uids = _series(stack, 5, "single-worker")
    batch = start_batch(
        BatchRequest(name="five", plugin_id=RECORD, selection=SeriesSelection(series_uids=uids))
    )
    stack.start_worker("machine-z", RECORD_SECONDS="0.1")
    deadline = time.monotonic() + 200
    while get_batch(batch.id).status != "completed":
        assert time.monotonic() < deadline, "the batch did not complete"
        time.sleep(0.5)
    stack.stop_workers()
    assert all(get_job(i.job_id).status == JobStatus.FINISHED for i in batch_items(batch.id))  # type: ignore[union-attr]


def _events(stack: Stack, resource_ids: list[str]) -> list[dict[str, Any]]:
    """Prefect's events about these resources (read from its events API)."""
    with stack.client() as client:
        found = client.request(
            "POST",
            "/events/filter",  # type: ignore[arg-type]
            json={"filter": {"resource": {"id": resource_ids}}, "limit": 50},
        ).json()
    return list(found["events"])


def test_moves_are_prefect_events_and_the_example_automation_loads(stack: Stack) -> None:
    from circus_tasks.batch_api import BatchRequest, SeriesSelection, get_batch, start_batch

    uids = _series(stack, 2, "events")
    batch = start_batch(
        BatchRequest(name="events", plugin_id=RECORD, selection=SeriesSelection(series_uids=uids))
    )
    failing = submit_job("crash@1.0.0", [uids[0]], user="events-user").id
    stack.start_worker("machine-e", RECORD_SECONDS="0.1")
    assert wait_for_job(failing, 120).status == JobStatus.FAILED
    wanted = {
        ("circus.job.failed", f"circus.job.{failing}"),
        ("circus.batch.started", f"circus.batch.{batch.id}"),
        ("circus.batch.completed", f"circus.batch.{batch.id}"),
    }
    deadline = time.monotonic() + 120
    while True:
        ids = [f"circus.job.{failing}", f"circus.batch.{batch.id}"]
        seen = {(e["event"], e["resource"]["prefect.resource.id"]) for e in _events(stack, ids)}
        if wanted <= seen:
            break
        assert time.monotonic() < deadline, (wanted - seen, get_batch(batch.id).status)
        time.sleep(1)
    stack.stop_workers()
    (failed,) = [
        e for e in _events(stack, [f"circus.job.{failing}"]) if e["event"] == "circus.job.failed"
    ]
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in failed["related"]}
    assert roles["plugin"] == "circus.plugin.crash@1.0.0"
    assert roles["user"] == "circus.user.events-user" and roles["series"].endswith(uids[0])

    automation = ROOT / "deployments" / "automations" / "notify-on-job-failure.yaml"
    command = [str(Path(sys.executable).parent / "prefect"), "automation", "create"]
    loaded = subprocess.run(
        [*command, "--from-file", str(automation)], env=stack.env, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    with stack.client() as client:
        names = [a.name for a in client.read_automations()]
    assert "circus job failed" in names


def _schedule_runs(stack: Stack, batch_name: str) -> list[Any]:
    """The batch deployment's flow runs that a schedule of this batch name created."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with stack.client() as client:
        deployment = client.read_deployment_by_name("circus-batch/circus-batch")
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    return [r for r in runs if (r.parameters.get("request") or {}).get("name") == batch_name]


def test_batch_schedules_start_batches_never_overlap_and_pause(stack: Stack) -> None:
    from circus_tasks.batch_api import cancel_batch, list_batches, list_schedules

    def circus(*args: str) -> str:
        run = subprocess.run([CIRCUS, *args], env=stack.env, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    uids = _series(stack, 2, "scheduled")
    series = [arg for uid in uids for arg in ("--series", uid)]
    circus("batch", "schedule", "add", RECORD, "--name", "every-10s", "--every", "10", *series)
    listed = {s.name: s for s in list_schedules()}
    assert listed["morning-retry"].active is False  # the one prefect.yaml declares
    assert listed["every-10s"].active and listed["every-10s"].when == "every 10 s"
    assert "every-10s" in circus("batch", "schedule", "list")

    def batches() -> list[Any]:
        return [b for b in list_batches() if b.name == "every-10s"]

    wait_until(batches, 90, "a batch started by the schedule")

    # no job worker runs: the batch keeps running, so the schedule's next run is refused
    def refused_runs() -> list[Any]:
        return [
            r
            for r in _schedule_runs(stack, "every-10s")
            if r.state is not None
            and r.state.type.value == "CANCELLED"
            and (r.state.message or "").startswith("refused: batch")
        ]

    refused = wait_until(refused_runs, 90, "a refused overlapping run")
    assert refused and len(batches()) == 1

    circus("batch", "schedule", "pause", "every-10s")
    time.sleep(12)  # a run created just before the pause may still come
    settled = len(_schedule_runs(stack, "every-10s"))
    time.sleep(25)
    assert len(_schedule_runs(stack, "every-10s")) == settled  # paused: no new run
    assert len(batches()) == 1
    circus("batch", "schedule", "remove", "every-10s")
    assert "every-10s" not in {s.name for s in list_schedules()}
    cancel_batch(batches()[0].id)


def test_pause_resume_cancel_and_retry_failed_end_to_end(stack: Stack) -> None:
    from circus_tasks.batch_api import (
        BatchRequest,
        SeriesSelection,
        batch_progress,
        cancel_batch,
        get_batch,
        pause_batch,
        resume_batch,
        retry_failed,
        start_batch,
    )

    uids = _series(stack, 8, "controls")
    selection = SeriesSelection(series_uids=uids)
    request = BatchRequest(name="controls", plugin_id=RECORD, selection=selection, max_in_flight=2)
    batch = start_batch(request)
    stack.start_worker("machine-p", RECORD_SECONDS="1")
    wait_until(lambda: batch_progress(batch.id).done >= 2, 120, "two jobs done")
    pause_batch(batch.id)
    time.sleep(3)  # what was dispatched before the pause may still run
    paused_at = batch_progress(batch.id).done
    time.sleep(8)
    # paused: nothing new was fed, so at most the window's two finished meanwhile
    assert batch_progress(batch.id).done <= paused_at + 2
    assert _batch_flight(batch.id) == 0
    resume_batch(batch.id)
    wait_until(lambda: batch_progress(batch.id).done >= paused_at + 3, 120, "jobs after resume")
    cancel_batch(batch.id, user="ops")
    stack.stop_workers()
    jobs = [get_job(i.job_id) for i in batch_items(batch.id) if i.job_id]
    assert get_batch(batch.id).status == "cancelled"
    assert not [j for j in jobs if j is not None and j.status == JobStatus.IN_QUEUE]
    assert {j.status for j in jobs if j is not None} <= {
        JobStatus.FINISHED,
        JobStatus.CANCELLED,
        JobStatus.PROCESSING,
    }

    # a batch whose jobs all fail, retried: new jobs for the failed items, linked, run again
    two = SeriesSelection(series_uids=uids[:2])
    failing = start_batch(BatchRequest(name="crashes", plugin_id="crash@1.0.0", selection=two))
    stack.start_worker("machine-p")
    wait_until(lambda: get_batch(failing.id).status == "completed", 120, "the failing batch")
    first = [i.job_id for i in batch_items(failing.id)]
    retried = retry_failed(failing.id, user="ops")
    assert len(retried) == 2 and get_batch(failing.id).status == "running"
    assert [get_job(j).supersedes_job_id for j in retried] == first  # type: ignore[union-attr]
    wait_until(lambda: get_batch(failing.id).status == "completed", 120, "the retried batch")
    stack.stop_workers()
    assert {get_job(j).status for j in retried} == {JobStatus.FAILED}  # type: ignore[union-attr]


def test_cancelling_a_batch_flow_run_in_prefect_cancels_the_batch(stack: Stack) -> None:
    from prefect.states import Cancelling

    from circus_tasks.batch_api import BatchRequest, SeriesSelection, get_batch, start_batch

    uids = _series(stack, 3, "cancel-run")
    selection = SeriesSelection(series_uids=uids)
    batch = start_batch(BatchRequest(name="cancel-run", plugin_id=RECORD, selection=selection))
    assert batch.flow_run_id is not None
    running = wait_until(
        lambda: (s := stack.run_state_of(batch.flow_run_id)) is not None and s.is_running(),
        90,
        "the batch's flow run running",
    )
    assert running
    with stack.client() as client:
        client.set_flow_run_state(batch.flow_run_id, Cancelling(), force=True)
    wait_until(
        lambda: reconcile_once() is not None and get_batch(batch.id).status == "cancelled",
        90,
        "the batch cancelled",
    )
    left = [get_job(i.job_id) for i in batch_items(batch.id) if i.job_id]
    assert not [j for j in left if j is not None and j.status == JobStatus.IN_QUEUE]
