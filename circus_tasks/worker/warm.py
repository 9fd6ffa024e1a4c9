"""Warm flow-run processes: a pre-loaded "zygote" forks one child per flow run.

A stock process worker starts every flow run in a new interpreter that imports Prefect and
loads the flow (seconds a run: benchmarks/README.md). ``circus worker`` starts this zygote once
per machine: it imports Prefect and the job flow, then waits on a Unix socket. The deployment's
command is :mod:`circus_tasks.worker.warm_client`, a small standard-library program that hands
the zygote its standard streams and environment; the zygote forks, the child runs the flow run
exactly as ``python -m prefect.engine`` would (minus the imports), and the client exits with
the child's exit code. Signals to the client reach the child; if the client dies, the child
stops too. The zygote also builds the runs' Prefect settings once and leaves out the flow-run
suspension observer (:mod:`circus_tasks.worker.run_settings`).

Run as ``python -m circus_tasks.worker.warm SOCKET``.
"""

from __future__ import annotations

import array
import atexit
import json
import os
import select
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from circus_tasks.worker.run_settings import (
    settings_for,
    shared_tls_contexts,
    using,
    without_suspension_observer,
)

MAX_FDS = 3


def receive_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Read the client's request: a JSON line, with its standard streams attached."""
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        chunk, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
        if not chunk:
            raise ConnectionError("the client went away before its request was complete")
        data += chunk
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return json.loads(data), list(fds)


def _watch_client(conn: socket.socket) -> None:
    """In the child: stop when the client asks (a signal name) or goes away (EOF)."""
    while True:
        data = conn.recv(64)
        if not data:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        for name in data.decode(errors="ignore").split():
            if name in ("TERM", "INT", "KILL"):
                os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def run_flow_run(flow: Any, settings: Any) -> int:
    """In the child: run the flow run named by ``PREFECT__FLOW_RUN_ID`` (as prefect.engine),
    with ``settings`` (:func:`circus_tasks.worker.run_settings.settings_for` its request)."""
    from uuid import UUID

    from prefect._internal.control_listener import configure_from_env
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow_run, run_flow

    if isinstance(settings, Exception):
        print(f"The flow run cannot start: Prefect's settings are invalid: {settings}", flush=True)
        return 1
    flow_run_id = UUID(os.environ["PREFECT__FLOW_RUN_ID"])
    configure_from_env()
    try:
        with using(settings), handle_engine_signals(flow_run_id):
            flow_run = load_flow_run(flow_run_id=flow_run_id)
            logger = flow_run_logger(flow_run=flow_run)
            run_flow(flow, flow_run=flow_run, error_logger=logger)  # type: ignore[arg-type]
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _child(
    conn: socket.socket, request: dict[str, Any], fds: list[int], flow: Any, settings: Any
) -> None:
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request.get("cwd") or "/")
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
    code = 1
    try:
        code = run_flow_run(flow, settings)
    finally:
        _exit_like_the_interpreter(code)


def _exit_like_the_interpreter(code: int) -> None:
    """Finish the child as a normal interpreter exit would (Prefect drains its log and event
    services in threading's exit hooks, logging flushes in atexit), but without unwinding into
    the zygote's loop."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def serve(path: Path, flow: Any) -> None:
    """Fork a child per request until SIGTERM; tell each client its child's exit code."""
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    clients: dict[int, socket.socket] = {}
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        ready, _, _ = select.select([server], [], [], 0.02)
        if ready:
            conn, _ = server.accept()
            try:
                request, fds = receive_request(conn)
            except (ConnectionError, ValueError, OSError):
                conn.close()
                continue
            try:
                settings = settings_for(request["env"])
            except Exception as exc:  # noqa: BLE001 - the child reports it, the zygote goes on
                settings = exc
            pid = os.fork()
            if pid == 0:
                server.close()
                _child(conn, request, fds, flow, settings)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"pid {pid}\n".encode())
            clients[pid] = conn
        while clients:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            waiting = clients.pop(pid, None)
            if waiting is not None:
                try:
                    waiting.sendall(f"exit {_exit_code(status)}\n".encode())
                except OSError:
                    pass
                waiting.close()
    server.close()
    path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    """Load Prefect and the job flow, then serve."""
    from circus_tasks.settings import PROJECT_DIR

    sys.path.insert(0, str(PROJECT_DIR))
    import prefect.engine  # noqa: F401  (loaded once, before any fork)
    import prefect.flow_engine  # noqa: F401

    without_suspension_observer()
    shared_tls_contexts()

    from flows.job import circus_job

    serve(Path(argv[0]), circus_job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
