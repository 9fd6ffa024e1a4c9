"""The sandbox holds for both kinds of plug-in: an intruder tries every way out and is refused.

Whether this machine must sandbox is decided here without the code under test: as root (CI and
these machines) it must, so a broken sandbox fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from circus_tasks.db.engine import reset_caches
from circus_tasks.jobs.steps import prepare_inputs, run_main, store_results
from circus_tasks.settings import get_settings
from tests.running import claim, register

REFUSED = (
    "write input",
    "new file in input",
    "write beside output",
    "write plug-in folder",
    "write /proc/sys",
    "write /sys",
    "new device file",
    "read the store",
    "read the database",
    "signal the worker",
    "see outside processes",
    "stay root",
    "read a password from the environment",
    "network",
)
MUST_SANDBOX = os.geteuid() == 0


@pytest.mark.parametrize("plugin", ["intruder@1.0.0", "intruder-py@1.0.0"])
def test_an_intruder_of_either_kind_is_refused_every_way_out(
    series_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    if not MUST_SANDBOX:
        pytest.skip("not root: whether this machine can sandbox is not known here")
    series = series_factory()
    listener = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("INTRUDER_PORT", str(listener.getsockname()[1]))
    monkeypatch.setenv("INTRUDER_PID", str(os.getpid()))
    stored = next(p for p in get_settings().dicom_dir.rglob("*") if p.is_file())
    monkeypatch.setenv("INTRUDER_STORE", str(stored))
    database = get_settings().db_url.removeprefix("sqlite:///")
    assert Path(database).is_file()
    monkeypatch.setenv("INTRUDER_DB", database)
    monkeypatch.setenv("PGPASSWORD", "the worker's secret")  # never passed on
    targets = ["INTRUDER_PORT", "INTRUDER_PID", "INTRUDER_STORE", "INTRUDER_DB"]
    monkeypatch.setenv("CIRCUS_PLUGIN_ENV", json.dumps(targets))
    reset_caches()
    Path("/tmp/circus-intruder-was-here").unlink(missing_ok=True)
    job = claim(register(plugin, [series], force=True))
    assert job is not None
    inputs = prepare_inputs(job)
    raw_before = (inputs / "0.raw").read_bytes()
    try:
        outputs = run_main(job, inputs)
    finally:
        listener.close()
    attempts = store_results(job, outputs)["results"]["attempts"]
    for allowed in ("write scratch", "write /tmp", "semaphore in /dev/shm"):  # private ones
        assert attempts[allowed] == "done", (allowed, attempts[allowed])
    not_refused = {n: attempts[n] for n in REFUSED if not attempts[n].startswith("refused")}
    assert not not_refused
    assert (inputs / "0.raw").read_bytes() == raw_before
    assert not (job.folders.root / "escaped.txt").exists()
    assert not Path("/tmp/circus-intruder-was-here").exists()
    assert not list(get_settings().plugins_dir.glob("*/dropped.txt"))
