"""Importing DICOM files: indexing, the store, bad files, idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from circus_tasks.settings import get_settings
from circus_tasks.store.importer import import_dicom
from circus_tasks.store.series import get_series, list_series
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume


def test_import_indexes_series_and_images(home: Path, tmp_path: Path) -> None:
    files = write_series(
        tmp_path / "s", make_volume(4), instance_numbers=[3, 4, 5, 6], patient_id="PID7"
    )
    report = import_dicom(tmp_path / "s")
    assert report.imported == 4 and not report.problems
    (uid,) = report.series_uids
    series = get_series(uid)
    assert series is not None
    assert (series.patient_id, series.modality, series.image_count) == ("PID7", "CT", 4)
    stored = sorted((get_settings().dicom_dir / uid).glob("*.dcm"))
    assert len(stored) == 4 and all(
        p.read_bytes() in {f.read_bytes() for f in files} for p in stored
    )


def test_importing_twice_changes_nothing(home: Path, tmp_path: Path) -> None:
    write_series(tmp_path / "s", make_volume(3))
    import_dicom(tmp_path / "s")
    before = list_series()
    again = import_dicom(tmp_path / "s")
    assert again.imported == 0 and again.already_present == 3
    assert list_series() == before


def test_bad_files_are_listed_with_the_reason_and_never_fatal(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    files = write_series(folder, make_volume(3))
    (folder / "notes.txt").write_text("not an image")
    truncated = folder / "truncated.dcm"
    data = files[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    no_pixels = Path(str(get_testdata_file("rtplan.dcm")))
    report = import_dicom(folder, no_pixels, tmp_path / "missing.dcm")
    reasons = {p.name: r for p, r in report.problems}
    assert report.imported == 3
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "truncated" in reasons["truncated.dcm"]
    assert "not an image" in reasons["rtplan.dcm"]
    assert "no such file" in reasons["missing.dcm"]


def test_missing_required_tag_is_named(home: Path, tmp_path: Path) -> None:
    write_series(tmp_path / "s", make_volume(1), extra={"InstanceNumber": None})
    report = import_dicom(tmp_path / "s")
    ((_, reason),) = report.problems
    assert "InstanceNumber" in reason


def test_real_pydicom_files_import(home: Path) -> None:
    report = import_dicom(get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm"))
    assert report.imported == 2 and len(report.series_uids) == 2
    assert {s.modality for s in list_series()} == {"CT", "MR"}


def test_importing_a_folder_that_holds_circus_home_opens_none_of_its_working_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circus_tasks.store import parsing
    from circus_tasks.testing.synthetic import write_series

    write_series(home / "demo-data" / "s", make_volume(2))  # DICOM kept inside the home
    import_dicom(home / "demo-data")  # the database exists now
    assert (home / "circus.db").is_file()
    opened: list[Path] = []
    real = parsing.read_file  # (fewer than PARALLEL_FROM files: read in this process)
    monkeypatch.setattr(parsing, "read_file", lambda p, *a: opened.append(p) or real(p, *a))
    report = import_dicom(home.parent)
    assert opened and not [p for p in opened if p.name.startswith("circus.db")]
    assert report.already_present == 4 and not report.problems  # the demo data and the store


def _rows() -> list[tuple[object, ...]]:
    from sqlmodel import select

    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Image

    with session_scope() as session:
        images = session.exec(select(Image).order_by(Image.sop_instance_uid)).all()
        return [
            (i.sop_instance_uid, i.series_uid, i.instance_number, i.z, i.pixel_offset, i.header)
            for i in images
        ]


def test_a_large_import_parsed_on_every_core_stores_what_one_core_does(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing
    import os
    import shutil

    from circus_tasks.db.engine import reset_caches
    from circus_tasks.store import importer, parsing

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU here: the import parses on one core")
    pools = []
    real_context = multiprocessing.get_context
    monkeypatch.setattr(
        multiprocessing, "get_context", lambda *a: pools.append(a) or real_context(*a)
    )
    monkeypatch.setattr(importer, "LOOKUP_BATCH", 7)  # many chunks while the pool runs
    source = tmp_path / "big"
    write_series(source / "a", make_volume(40))
    write_series(source / "b", make_volume(40))
    (source / "junk.dcm").write_bytes(b"not DICOM")
    shutil.copy(next((source / "a").iterdir()), source / "again.dcm")  # the same instance twice
    assert 40 + 40 + 2 >= parsing.PARALLEL_FROM

    report = import_dicom(source)
    assert pools == [("fork",)]  # the files were parsed by a pool of workers
    assert (report.imported, report.already_present, len(report.problems)) == (80, 1, 1)
    assert "not a DICOM file" in report.problems[0][1]
    parallel = _rows()
    assert len(parallel) == 80 and all(row[4] is not None for row in parallel)

    monkeypatch.setenv("CIRCUS_HOME", str(tmp_path / "one-core-home"))
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10**9)
    reset_caches()
    again = import_dicom(source)
    assert pools == [("fork",)]  # no pool this time
    assert (again.imported, again.already_present, again.problems) == (
        report.imported,
        report.already_present,
        report.problems,
    )
    assert _rows() == parallel


@pytest.fixture(params=["one process", "workers"])
def readers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Import in this process, or with a pool of workers however few the files."""
    from circus_tasks.store import parsing

    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10**9 if request.param == "one process" else 1)
    return str(request.param)


def test_a_stored_file_removed_since_stays_removed_when_imported_again(
    home: Path, tmp_path: Path, readers: str
) -> None:
    write_series(tmp_path / "s", make_volume(3))
    import_dicom(tmp_path / "s")
    stored = sorted((home / "dicom").glob("*/*.dcm"))
    stored[1].unlink()  # as before: import does not mend the store behind the index's back

    again = import_dicom(tmp_path / "s")

    assert (again.imported, again.already_present, again.problems) == (0, 3, [])
    assert sorted((home / "dicom").glob("*/*.dcm")) == [stored[0], stored[2]]


def test_an_instance_claimed_by_two_series_leaves_no_copy_in_the_second(
    home: Path, tmp_path: Path, readers: str
) -> None:
    import pydicom

    (first,) = write_series(tmp_path / "a", make_volume(1))
    twin = pydicom.dcmread(first)
    twin.SeriesInstanceUID = "1.2.3.4.5.6"
    twin.save_as(tmp_path / "b.dcm")

    report = import_dicom(tmp_path / "a", tmp_path / "b.dcm")

    assert report.imported == 1 and "two instances share one UID" in report.problems[0][1]
    assert not (home / "dicom" / "1.2.3.4.5.6").exists()
    assert len(list((home / "dicom").glob("*/*.dcm"))) == 1


def test_progress_is_told_of_every_file_in_order(home: Path, tmp_path: Path, readers: str) -> None:
    from circus_tasks.store.files import iter_files

    write_series(tmp_path / "s", make_volume(5))
    (tmp_path / "s" / "junk.txt").write_text("not DICOM")
    told: list[object] = []

    report = import_dicom(tmp_path / "s", progress=told.append, started=told.append)

    assert told == [6, *iter_files([tmp_path / "s"])]
    assert report.imported == 5 and len(report.problems) == 1


def test_files_are_listed_as_os_walk_lists_them(tmp_path: Path) -> None:
    import os

    from circus_tasks.store.files import iter_files

    root = tmp_path / "tree"
    for name in ("b/x", "b/a", "a/z/y", "c", "a/m"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    (root / "link-to-a").symlink_to(root / "a")  # a folder link: not followed
    (root / "a" / "link-to-c").symlink_to(root / "c")  # a file link: listed
    (root / "dead").symlink_to(root / "nowhere")  # listed, refused when read
    skipped = root / "b"

    def walked() -> list[Path]:
        found = []
        for folder, folders, names in os.walk(root):
            folders[:] = sorted(d for d in folders if Path(folder, d).resolve() != skipped)
            found += [Path(folder) / name for name in sorted(names)]
        return found

    assert list(iter_files([root], skip=[skipped])) == walked()
    assert list(iter_files([root / "c", root / "b" / "x"], skip=[skipped])) == [root / "c"]
    assert list(iter_files([root / "a" / "link-to-c"], skip=[root / "c"])) == []


def test_two_imports_of_the_same_files_at_once_store_each_file_once(
    home: Path, tmp_path: Path
) -> None:
    """The readers write a new file to its place before the importing process decides about it:
    a second import of the same files at the same moment would replace the first one's copies
    under its rows (and then fail at its own rows). The second waits for the first, then finds
    every file stored."""
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    for n in range(4):
        write_series(folder / f"s{n}", make_volume(40))
    go = tmp_path / "go"
    script = (  # both processes loaded, then both start at once
        "import os, sys, time; from circus_tasks.store.importer import import_dicom\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.002)\n"
        "r = import_dicom(sys.argv[1]); print(r.imported, r.already_present, len(r.problems))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder), str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    time.sleep(3)  # not a timing assertion: time for both to load before the start
    go.touch()
    outputs = sorted(run.communicate(timeout=300)[0].split() for run in runs)
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs == [["0", "160", "0"], ["160", "0", "0"]]  # one stored them, one found them
    from sqlmodel import select

    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Image

    with session_scope() as session:
        images = session.exec(select(Image)).all()
    assert len(images) == 160
    for image in images:
        stored = Path(image.path)
        assert image.file_size == stored.stat().st_size  # the row describes the file there
        assert image.file_mtime_ns == stored.stat().st_mtime_ns
