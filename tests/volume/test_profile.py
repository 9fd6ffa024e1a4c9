"""No identity reaches a plug-in: every attribute of the DICOM confidentiality profile (PS3.15
Annex E) filled with a value of its own is found nowhere in the input folder, whether the volume
is written from the headers import stored or by parsing the files."""

from __future__ import annotations

import warnings
from pathlib import Path

from pydicom.datadict import dictionary_VR, keyword_for_tag

from circus_tasks.store.importer import import_dicom
from circus_tasks.store.ranges import ImageRange
from circus_tasks.store.slices import image_rows_from_sqlite, pick_slices
from circus_tasks.testing.synthetic import write_series
from circus_tasks.volume.profile import _table
from circus_tasks.volume.writer import write_volume
from tests.conftest import make_volume

TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS"}


def _markers() -> dict[str, str]:
    """A value of its own for each text attribute of the profile, by keyword."""
    singles, _ = _table()
    values = {}
    for n, tag in enumerate(sorted(singles)):
        keyword = keyword_for_tag(tag)
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if tag >> 16 in (0x0000, 0x0002, 0x0004):  # command, file meta, directory: not in files
            continue
        if keyword and vr in TEXT_VRS:
            values[keyword] = f"ID{n:04d}X" if vr in {"CS", "AE"} else f"Secret{n:04d}"
        elif keyword and vr == "UI":
            values[keyword] = f"1.2.826.0.1.3680043.10.99.{n}"
    return values


def _written_text(folder: Path) -> str:
    return "".join(p.read_text() for p in folder.glob("*.json")) + "".join(
        p.read_text() for p in folder.glob("*.mhd")
    )


def test_no_attribute_of_the_profile_reaches_the_input(home: Path, tmp_path: Path) -> None:
    markers = _markers()
    assert len(markers) > 150  # the profile's text and UID attributes
    kept_uids = {"SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"}
    extra = {k: v for k, v in markers.items() if k not in kept_uids}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some profile attributes are retired
        files = write_series(tmp_path / "s", make_volume(3), extra=extra)
    (uid,) = import_dicom(tmp_path / "s").series_uids
    rows = image_rows_from_sqlite(uid)
    assert rows is not None
    stored = pick_slices(rows, ImageRange(1, 3), uid)
    assert all(s is not None for s in stored.stored)  # the stored path is taken

    from_facts = write_volume(stored.files, tmp_path / "facts", 0, stored=stored.stored)
    parsed = write_volume(files, tmp_path / "parsed", 0)
    for info in (from_facts, parsed):
        text = _written_text(info.json.parent)
        found = [k for k, v in extra.items() if v in text]
        assert found == [], found
        assert uid not in text and "Doe^Jane" not in text and "P0001" not in text
        assert '"0028,1052"' in text  # the rescale a plug-in needs is there


def test_headers_stored_by_an_older_import_are_filtered_again(home: Path, tmp_path: Path) -> None:
    from sqlmodel import select

    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Image

    write_series(tmp_path / "s", make_volume(2))
    (uid,) = import_dicom(tmp_path / "s").series_uids
    with session_scope() as session:  # as an import before the profile would have kept them
        for image in session.exec(select(Image)):
            image.header = {
                **(image.header or {}),
                "0010,1000": "OLD-OTHER-ID",
                "0008,0050": "ACC-1",
            }
            session.add(image)
    rows = image_rows_from_sqlite(uid)
    assert rows is not None
    stored = pick_slices(rows, ImageRange(1, 2), uid)
    info = write_volume(stored.files, tmp_path / "in", 0, stored=stored.stored)
    text = _written_text(info.json.parent)
    assert "OLD-OTHER-ID" not in text and "ACC-1" not in text
