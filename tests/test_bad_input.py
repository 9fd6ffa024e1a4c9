"""Bad input, table-driven: each case names the error class and its message, and checks that
nothing was written outside CIRCUS_HOME and that the tables are unchanged and still readable.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from circus_tasks.api import (
    SeriesInput,
    abort_job,
    cancel_job,
    get_job_results,
    invalidate_job,
    list_jobs,
    submit_job,
)
from circus_tasks.cli.app import app
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Batch, Image, Job, JobEvent, Series
from circus_tasks.errors import (
    CircusError,
    DicomImportError,
    DuplicateJobError,
    InputConditionError,
    InvalidRangeError,
    InvalidValueError,
    JobNotFoundError,
    JobStateError,
    PluginError,
    PluginNotFoundError,
    ResultsError,
    SeriesNotFoundError,
)
from circus_tasks.plugins.images import add_plugin_image
from circus_tasks.plugins.manifest import load_manifest
from circus_tasks.plugins.results import check_output_tree, load_results
from circus_tasks.settings import get_settings
from circus_tasks.store.importer import import_dicom
from circus_tasks.store.ranges import ImageRange
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume
from tests.running import claim, finish, prefect_unreachable, register


class CliFailed(Exception):
    """A command that exited non-zero, with its output."""


@dataclass
class World:
    """What the cases act on: a fresh home with one series, a queued and a finished job."""

    home: Path
    scratch: Path
    uid: str
    queued: str
    finished: str

    def dicom(self, name: str, **attributes: Any) -> Path:
        """One valid slice file, with attributes set or (value None) removed."""
        folder = self.scratch / name
        (path,) = write_series(folder, make_volume(1))
        ds = dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns of the very values tried here
            for keyword, value in attributes.items():
                if value is None:
                    delattr(ds, keyword)
                else:
                    setattr(ds, keyword, value)
            ds.save_as(path)
        return path

    def imported(self, *paths: Path) -> None:
        """Import, turning the first refusal into an error (import never raises)."""
        report = import_dicom(*paths)
        if report.problems:
            raise DicomImportError(report.problems[0][1])

    def cli(self, *args: str) -> None:
        result = CliRunner().invoke(app, list(args))
        if result.exit_code != 0:
            raise CliFailed(result.output)

    def folder(self, name: str, files: dict[str, str]) -> Path:
        folder = self.scratch / name
        folder.mkdir(parents=True)
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
        return folder


@pytest.fixture
def world(home: Path, tmp_path: Path) -> World:
    scratch = tmp_path / "outside-home"
    write_series(scratch / "base", make_volume(3), series_uid="1.2.826.0.1.3680043.10.55.1")
    (uid,) = import_dicom(scratch / "base").series_uids
    queued = register("record@1.0.0", [uid])
    finished = register("hu-histogram@1.0.0", [uid])
    assert claim(finished) is not None and finish(finished, {"results": {}})
    return World(home, scratch, uid, queued, finished)


def _same_slice_other_series(w: World) -> None:
    stored = next((w.home / "dicom" / w.uid).glob("*.dcm"))
    sop = str(dcmread(stored).SOPInstanceUID)
    w.imported(w.dicom("twin", SOPInstanceUID=sop, SeriesInstanceUID="1.2.3.4.5"))


def _same_uid_other_pixels(w: World) -> None:
    stored = next((w.home / "dicom" / w.uid).glob("*.dcm"))
    ds = dcmread(stored)
    ds.PixelData = bytes(len(ds.PixelData))
    changed = w.scratch / "changed.dcm"
    ds.save_as(changed)
    w.imported(changed)


def _text_instance_number(w: World) -> None:
    path = w.dicom("t")
    ds = dcmread(path)
    del ds.InstanceNumber
    ds.add_new(0x00200013, "LO", "abc")  # written as text, as a broken modality might
    ds.save_as(path)
    w.imported(path)


def _truncated(w: World) -> None:
    path = w.dicom("cut")
    path.write_bytes(path.read_bytes()[:300])
    w.imported(path)


def _symlink_out(w: World) -> None:
    out = w.scratch / "out"
    out.mkdir()
    (out / "results.json").symlink_to("/etc/passwd")
    check_output_tree(out)


def _fifo_out(w: World) -> None:
    out = w.scratch / "fifo-out"
    out.mkdir()
    os.mkfifo(out / "pipe")
    check_output_tree(out)


def _huge_out(w: World) -> None:
    out = w.scratch / "huge-out"
    out.mkdir()
    with (out / "huge.bin").open("wb") as sparse:  # sparse: costs no disk
        sparse.truncate(get_settings().max_output_bytes + 1)
    check_output_tree(out)


def _manifest(w: World, name: str, **fields: object) -> object:
    manifest = {"pluginName": "x", "version": "1.0.0", "runner": {"command": ["true"]}, **fields}
    return load_manifest(w.folder(name, {"plugin.json": json.dumps(manifest)}))


CASES: list[tuple[str, Callable[[World], object], type[Exception], str]] = [
    # import
    ("not DICOM", lambda w: w.imported(w.folder("txt", {"a.dcm": "hello"})), DicomImportError, "not a DICOM file"),
    ("truncated", _truncated, DicomImportError, "unreadable|truncated"),
    ("no instance number", lambda w: w.imported(w.dicom("n", InstanceNumber=None)), DicomImportError, "missing required attribute"),
    ("instance number text", _text_instance_number, DicomImportError, "not an integer"),
    ("instance number huge", lambda w: w.imported(w.dicom("h", InstanceNumber=99_999_999_999)), DicomImportError, "out of bounds"),
    ("no pixel data", lambda w: w.imported(w.dicom("p", PixelData=None)), DicomImportError, "missing|no PixelData"),
    ("series uid ../", lambda w: w.imported(w.dicom("s1", SeriesInstanceUID="../../escaped")), DicomImportError, "SeriesInstanceUID .* not a valid DICOM UID"),
    ("series uid absolute", lambda w: w.imported(w.dicom("s2", SeriesInstanceUID="/tmp/escaped")), DicomImportError, "not a valid DICOM UID"),
    ("sop uid ../", lambda w: w.imported(w.dicom("s3", SOPInstanceUID="1.2/../../../x")), DicomImportError, "SOPInstanceUID .* not a valid DICOM UID"),
    ("uid too long", lambda w: w.imported(w.dicom("s4", SeriesInstanceUID="1." + "2" * 70)), DicomImportError, "at most 64"),
    ("uid leading zero", lambda w: w.imported(w.dicom("s5", SeriesInstanceUID="1.02.3")), DicomImportError, "leading zero"),
    ("uid letters", lambda w: w.imported(w.dicom("s6", SeriesInstanceUID="1.2.abc")), DicomImportError, "digits and dots"),
    ("sop in another series", _same_slice_other_series, DicomImportError, "stored already in series"),
    ("sop with other pixels", _same_uid_other_pixels, DicomImportError, "other content"),
    ("import of CIRCUS_HOME", lambda w: w.imported(w.home / "circus.db"), DicomImportError, "own database or working files"),
    # ranges
    ("range beyond IS", lambda w: ImageRange(1, 2**63 + 1, 1), InvalidRangeError, "at most 2147483647"),
    ("range from 0", lambda w: ImageRange(0, 3), InvalidRangeError, "greater than 0"),
    ("delta does not divide", lambda w: ImageRange(1, 4, 2), InvalidRangeError, "does not divide"),
    ("range text", lambda w: ImageRange.parse("1:x"), InvalidRangeError, "must be integers"),
    ("delta sign", lambda w: ImageRange(1, 5, -1), InvalidRangeError, "delta must be positive"),
    ("range of bools", lambda w: ImageRange(True, 3), InvalidRangeError, "must be an integer"),
    # submission
    ("priority text", lambda w: submit_job("record@1.0.0", [w.uid], priority="high"), InvalidValueError, "priority must be an integer"),  # type: ignore[arg-type]
    ("priority huge", lambda w: submit_job("record@1.0.0", [w.uid], priority=10**6), InvalidValueError, "out of bounds"),
    ("user too long", lambda w: submit_job("record@1.0.0", [w.uid], user="u" * 100_000), InvalidValueError, "100,000 characters"),
    ("user escape codes", lambda w: submit_job("record@1.0.0", [w.uid], user="ann\n\x1b[31m"), InvalidValueError, "control characters"),
    ("unknown plug-in", lambda w: submit_job("nope@1.0.0", [w.uid]), PluginNotFoundError, "Unknown plug-in"),
    ("unknown series", lambda w: submit_job("record@1.0.0", ["1.2.3.999"]), SeriesNotFoundError, "is not imported"),
    ("no series", lambda w: submit_job("record@1.0.0", []), JobStateError, "at least one series"),
    ("series as text", lambda w: submit_job("record@1.0.0", w.uid), InvalidValueError, "must be a list"),  # type: ignore[arg-type]
    ("force text", lambda w: submit_job("record@1.0.0", [w.uid], force="yes"), InvalidValueError, "force must be True or False"),  # type: ignore[arg-type]
    ("missing images", lambda w: submit_job("record@1.0.0", [SeriesInput(w.uid, "1:99")]), InvalidRangeError, "do not exist"),
    ("duplicate", lambda w: submit_job("record@1.0.0", [w.uid]), DuplicateJobError, "duplicate job"),
    ("input conditions", lambda w: submit_job("ct-only@1.0.0", [SeriesInput(w.uid, "1:2")]), InputConditionError, "at least 3"),
    # status moves and queries
    ("cancel unknown", lambda w: cancel_job("01h0nosuchjob0000000000000"), JobNotFoundError, "No job"),
    ("cancel finished", lambda w: cancel_job(w.finished), JobStateError, "cannot cancel this job"),
    ("invalidate queued", lambda w: invalidate_job(w.queued, reason="x"), JobStateError, "cannot invalidate"),
    ("reason with bell", lambda w: invalidate_job(w.finished, reason="bad\x07"), InvalidValueError, "control characters"),
    ("reason too long", lambda w: invalidate_job(w.finished, reason="r" * 5000), InvalidValueError, "at most 2000"),
    ("abort queued", lambda w: abort_job(w.queued), JobStateError, "cannot abort"),
    ("cancel by a long user", lambda w: cancel_job(w.queued, user="u" * 300), InvalidValueError, "at most 200"),
    ("page limit", lambda w: list_jobs(limit=-1), InvalidValueError, "limit -1 is out of bounds"),
    ("status unknown", lambda w: list_jobs(status="bogus"), ValueError, "bogus"),
    ("status a number", lambda w: list_jobs(status=3), InvalidValueError, "status must be text"),  # type: ignore[arg-type]
    ("page cursor too long", lambda w: list_jobs(before="x" * 30), InvalidValueError, "at most 26"),
    ("page series too long", lambda w: list_jobs(series_uid="1." * 40), InvalidValueError, "series_uid is 80 characters"),
    # manifests
    ("manifest not JSON", lambda w: load_manifest(w.folder("m1", {"plugin.json": "{"})), PluginError, "plugin.json"),
    ("manifest no runner", lambda w: load_manifest(w.folder("m2", {"plugin.json": json.dumps({"pluginName": "x", "version": "1.0.0"})})), PluginError, "runner"),
    ("manifest bad version", lambda w: load_manifest(w.folder("m3", {"plugin.json": json.dumps({"pluginName": "x", "version": "1.0", "runner": {"command": ["true"]}})})), PluginError, "version"),
    # results
    ("manifest name a path", lambda w: _manifest(w, "m4", pluginName="../../escaped"), PluginError, "pluginName"),
    ("manifest name absolute", lambda w: _manifest(w, "m5", pluginName="/tmp/escaped"), PluginError, "pluginName"),
    ("manifest version a path", lambda w: _manifest(w, "m6", version="1.0.0/../../x"), PluginError, "version"),
    ("runner module a path", lambda w: _manifest(w, "m7", runner={"python": "../../evil:run"}), PluginError, "python"),
    ("image runner an option", lambda w: _manifest(w, "m8", runner={"docker": {"image": "--privileged"}}), PluginError, "image"),
    ("image memory a flag", lambda w: _manifest(w, "m9", runner={"docker": {"image": "a:1", "memory": "1g --privileged"}}), PluginError, "memory"),
    ("image to add an option", lambda w: add_plugin_image("--privileged"), PluginError, "not an image name"),
    ("cli add image an option", lambda w: w.cli("plugins", "add", "-v/:/host"), CliFailed, "not an image name|No such option"),
    ("output with a fifo", _fifo_out, ResultsError, r"pipe \(not a regular file\)"),
    ("output too big", _huge_out, ResultsError, "more than the .*CIRCUS_MAX_OUTPUT_BYTES"),
    ("results of a path", lambda w: get_job_results("../../../etc"), JobNotFoundError, "No job"),
    ("log of a path", lambda w: w.cli("log", "../../../etc/passwd"), CliFailed, "No job"),
    ("results not JSON", lambda w: load_results(w.folder("r1", {"results.json": "{"})), ResultsError, "JSON"),
    ("results NaN", lambda w: load_results(w.folder("r2", {"results.json": '{"results": {"x": NaN}}'})), ResultsError, "NaN|finite"),
    ("results without results", lambda w: load_results(w.folder("r3", {"results.json": "{}"})), ResultsError, "results"),
    ("output with a link", _symlink_out, ResultsError, "symbolic link to /etc/passwd"),
    ("results too big", lambda w: load_results(w.folder("r4", {"results.json": '{"results": {"x": "' + "y" * 11_000_000 + '"}}'})), ResultsError, "at most 10,485,760"),
    # command line
    ("cli import missing", lambda w: w.cli("import", "/nonexistent/path"), CliFailed, "No such file or folder"),
    ("cli bad range", lambda w: w.cli("submit", "record@1.0.0", f"{w.uid}:1:x"), CliFailed, "must be integers"),
    ("cli bad status", lambda w: w.cli("jobs", "--status", "bogus"), CliFailed, "bogus.*give one of in_queue"),
    ("cli jobs patient escape", lambda w: w.cli("jobs", "--patient", "a\x1bb"), CliFailed, "patient_id .* control characters"),
    ("cli cancel unknown", lambda w: w.cli("cancel", "01h0nosuchjob0000000000000"), CliFailed, "No job"),
    ("cli batch range", lambda w: w.cli("batch", "plan", "record@1.0.0", "--range", "1:4:2"), CliFailed, "does not divide"),
    ("cli batch user", lambda w: w.cli("batch", "plan", "record@1.0.0", "--user", "a\x1bb"), CliFailed, "control characters"),
]  # fmt: skip


def _rows() -> dict[str, int]:
    with session_scope() as session:
        return {
            table.__name__: session.exec(select(func.count()).select_from(table)).one()
            for table in (Job, JobEvent, Series, Image, Batch)
        }


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize(("name", "call", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_harms_nothing(
    world: World, name: str, call: Callable[[World], object], error: type[Exception], message: str
) -> None:
    rows = _rows()
    outside = world.home.parent
    before = _files(outside) - _files(world.home)
    with prefect_unreachable(), pytest.raises(error) as caught:
        call(world)
    assert re.search(message, str(caught.value)), str(caught.value)
    assert error is CliFailed or isinstance(caught.value, CircusError | ValueError)
    assert _rows() == rows  # nothing half-written
    assert list_jobs(limit=10)  # and the tables read as before
    after = _files(outside) - _files(world.home)
    assert after - before <= {str(p) for p in world.scratch.rglob("*")}  # only the case's files
    for escaped in (Path("/tmp/escaped"), world.home.parent / "escaped", Path("/x.dcm")):
        assert not escaped.exists()


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
