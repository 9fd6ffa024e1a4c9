"""Tests for circus_tasks/volume/stored.py: volumes written from what import stored.

Every volume written from the stored facts is compared byte for byte with the one the parsing
path writes from the same files; the cases where the facts must not be used are checked to
take the parsing path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless
from sqlalchemy import text

from circus_tasks.cli.volume import series_slices
from circus_tasks.db.engine import session_scope
from circus_tasks.errors import VolumeError
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from circus_tasks.volume import writer as volume_module
from circus_tasks.volume.stored import STORED_COLUMNS, StoredSlice, split_headers
from circus_tasks.volume.writer import write_volume
from tests.jobs.test_steps import new_job
from tests.volume.test_writer import IDENTIFYING_KEYS, _header_keys

SeriesFactory = Callable[..., str]


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many volumes were written by parsing their files (the stored facts unused)."""
    calls: list[int] = []
    real = volume_module._parse_slices

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(volume_module, "_parse_slices", counting)
    return calls


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _both_ways(
    spec: str, tmp_path: Path, parsed: list[int], **options: Any
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The files written with the stored facts, and by parsing (no facts passed).

    ``parsed`` then counts one more call, or two if the facts could not be used.
    """
    files, stored, _ = series_slices(spec)
    write_volume(files, tmp_path / "stored", 0, stored=stored, **options)
    write_volume(files, tmp_path / "parsed", 0, **options)
    return _outputs(tmp_path / "stored"), _outputs(tmp_path / "parsed")


def _import(folder: Path) -> str:
    report = import_dicom(folder)
    assert not report.problems, report.problems
    (uid,) = report.series_uids
    return uid


def _item(value: str, meaning: str, nested: str | None = None) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99TEST", meaning
    if nested is not None:
        inner = Dataset()
        inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = nested, "99TEST", "x"
        item.ModifierCodeSequence = [inner]
    return item


VARIED: dict[str, Any] = {
    # only in some slices ("DROP" leaves the attribute out), empty in one
    "ConvolutionKernel": lambda i: {1: "noted", 3: "noted", 5: ""}.get(i, "DROP"),
    # equal in every slice but one
    "AcquisitionNumber": lambda i: 2 if i == 4 else 1,
    "SeriesNumber": lambda i: 9 if i == 0 else 7,
    # sequences with nested items, equal except in one slice, and different in every slice
    "AnatomicRegionSequence": lambda i: [_item("T1", "Thorax", "L" if i == 2 else "R")],
    "ReferencedImageSequence": lambda i: [_item(f"R{i}", "ref"), _item("R", "same")],
    "WindowCenter": lambda i: [40.0, 400.5 + i],
    "InstitutionName": lambda i: f"Hospital {i}",  # identifying, and varied
}


def _varied_series(tmp_path: Path, dtype: str = "int16", slices: int = 6) -> str:
    volume = (np.arange(slices * 6 * 5) % 200).reshape(slices, 6, 5).astype(dtype)
    files = write_series(tmp_path / "varied", volume, extra=VARIED)
    for path in files:
        ds = pydicom.dcmread(path)
        if ds.ConvolutionKernel == "DROP":
            del ds.ConvolutionKernel
            ds.save_as(path, enforce_file_format=True)
    return _import(tmp_path / "varied")


@pytest.mark.parametrize("range_text", ["", ":1:6", ":2:5", ":6:1:-1", ":1:5:2", ":3:3:1"])
@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int8"])
def test_varied_series_give_the_parsing_paths_files(
    tmp_path: Path, parsed: list[int], range_text: str, dtype: str
) -> None:
    uid = _varied_series(tmp_path, dtype)

    stored, by_parsing = _both_ways(uid + range_text, tmp_path, parsed)

    assert parsed == [1]  # the facts were used
    assert stored == by_parsing
    document = json.loads(stored["0.json"])
    assert not IDENTIFYING_KEYS & set(_header_keys(document))
    if range_text in ("", ":1:6"):
        unique = document["unique"]
        assert [u.get("0018,1210") for u in unique] == [None, "noted", None, "noted", None, ""]
        assert "0020,0012" not in document["common"] and "0008,2218" not in document["common"]
        assert "0028,1050" not in document["common"]


def test_a_plain_series_and_the_lean_command_use_the_facts(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int]
) -> None:
    uid = series_factory(slices=7)

    stored, by_parsing = _both_ways(uid, tmp_path, parsed)

    assert parsed == [1]
    assert stored == by_parsing
    assert not IDENTIFYING_KEYS & set(_header_keys(json.loads(stored["0.json"])))


@pytest.mark.parametrize(
    ("name", "has_facts"),
    [
        ("CT_small.dcm", True),
        ("MR_small.dcm", True),
        ("MR_small_implicit.dcm", True),
        ("MR_small_bigendian.dcm", False),
        ("MR_small_RLE.dcm", True),  # decoded from its fragments (tests/volume/test_compressed.py)
        ("MR_small_jpeg_ls_lossless.dcm", True),
        ("MR_small_jp2klossless.dcm", False),  # JPEG 2000: no fast decoder, pydicom decodes it
    ],
)
def test_pydicoms_own_files(tmp_path: Path, parsed: list[int], name: str, has_facts: bool) -> None:
    report = import_dicom(get_testdata_file(name))
    (uid,) = report.series_uids
    _, stored, _ = series_slices(f"{uid}:1:1")  # each file is image 1 of its series

    with_facts, by_parsing = _both_ways(f"{uid}:1:1", tmp_path, parsed)

    assert (stored[0] is not None) is has_facts
    assert len(parsed) == (1 if has_facts else 2)
    assert with_facts == by_parsing
    assert not IDENTIFYING_KEYS & set(_header_keys(json.loads(with_facts["0.json"])))


def test_the_console_script_imports_neither_pydicom_nor_numpy(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    plain = series_factory(slices=4)
    compressed = series_factory(slices=4, transfer_syntax=RLELossless)
    big_endian = series_factory(slices=4, transfer_syntax=ExplicitVRBigEndian)
    probe = (
        "import sys; from circus_tasks.cli.launcher import main; code = main(sys.argv[1:]);"
        "print(sorted(m for m in ('pydicom', 'numpy') if m in sys.modules)); sys.exit(code)"
    )

    def loaded(uid: str, out: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, "volume", uid, str(tmp_path / out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    assert loaded(plain, "plain") == "[]"
    assert loaded(compressed, "compressed") == "[]"  # RLE: decoded without either
    assert loaded(big_endian, "big") == "['numpy', 'pydicom']"  # parsed: the probe works


def _touch(path: Path) -> None:
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))


def _rewrite_pixels(path: Path) -> None:
    ds = pydicom.dcmread(path)
    ds.PixelData = (ds.pixel_array + 1).astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("change", [_touch, _rewrite_pixels])
def test_a_file_changed_after_import_is_parsed(
    series_factory: SeriesFactory,
    tmp_path: Path,
    parsed: list[int],
    change: Callable[[Path], None],
) -> None:
    uid = series_factory(slices=4)
    files, stored, _ = series_slices(uid)
    change(files[2])

    assert stored[2] is not None and not stored[2].matches_file(files[2])
    with_facts, by_parsing = _both_ways(uid, tmp_path, parsed)

    assert len(parsed) == 2  # both written by parsing
    assert with_facts == by_parsing


def test_private_attributes_are_parsed(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int]
) -> None:
    uid = series_factory(slices=3)

    with_facts, by_parsing = _both_ways(uid, tmp_path, parsed, include_private=True)

    assert len(parsed) == 2
    assert with_facts == by_parsing
    assert json.loads(with_facts["0.json"])["common"]["0009,1001"] == "synthetic private text"


def test_compressed_series_give_the_parsing_paths_files(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int]
) -> None:
    uid = series_factory(slices=3, transfer_syntax=RLELossless)
    _, stored, _ = series_slices(uid)

    with_facts, by_parsing = _both_ways(uid, tmp_path, parsed)

    assert all(piece is not None and piece.transfer_syntax == RLELossless for piece in stored)
    assert len(parsed) == 1 and with_facts == by_parsing


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_other_transfer_syntaxes_have_no_facts_and_are_parsed(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int], syntax: str
) -> None:
    uid = series_factory(slices=3, transfer_syntax=syntax)
    _, stored, _ = series_slices(uid)

    with_facts, by_parsing = _both_ways(uid, tmp_path, parsed)

    assert stored == [None, None, None]
    assert len(parsed) == 2 and with_facts == by_parsing


def test_unused_high_bits_leave_no_facts(tmp_path: Path) -> None:
    volume = np.arange(2 * 6 * 5, dtype=np.int16).reshape(2, 6, 5)
    write_series(tmp_path / "s", volume, extra={"BitsStored": 12, "HighBit": 11})

    _, stored, _ = series_slices(_import(tmp_path / "s"))

    assert stored == [None, None]


def test_images_imported_before_the_facts_existed_are_parsed(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int]
) -> None:
    uid = series_factory(slices=4)
    with session_scope() as session:
        nulls = ", ".join(f"{name} = NULL" for name in STORED_COLUMNS)
        session.execute(text(f"UPDATE image SET {nulls} WHERE series_uid = :uid"), {"uid": uid})
    _, stored, _ = series_slices(uid)

    with_facts, by_parsing = _both_ways(uid, tmp_path, parsed)

    assert stored == [None] * 4
    assert len(parsed) == 2 and with_facts == by_parsing


def test_importing_a_series_without_facts_again_does_not_read_it_again(
    series_factory: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import circus_tasks.store.importer as importer
    import circus_tasks.store.parsing as parsing

    uid = series_factory(slices=3, transfer_syntax=ExplicitVRBigEndian)
    files, stored, _ = series_slices(uid)
    assert stored == [None, None, None]
    reads: list[Path] = []
    real_read, real_header = parsing.read_file, importer.read_header
    # the import's own read, and a stored copy's
    monkeypatch.setattr(parsing, "read_file", lambda p, *a: reads.append(p) or real_read(p, *a))
    monkeypatch.setattr(importer, "read_header", lambda p: reads.append(p) or real_header(p))

    report = import_dicom(files[0].parent)

    assert (report.already_present, report.facts_added) == (3, 0)
    assert sorted(reads) == sorted(files)  # each file once, as any import reads it


def test_importing_again_gives_older_images_their_facts(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int]
) -> None:
    uid = series_factory(slices=4)
    before, facts, _ = series_slices(uid)
    with session_scope() as session:
        nulls = ", ".join(f"{name} = NULL" for name in STORED_COLUMNS)
        session.execute(text(f"UPDATE image SET {nulls} WHERE series_uid = :uid"), {"uid": uid})

    # the store's own folder of the series, twice: the second sight of each adds nothing
    report = import_dicom(before[0].parent, before[0].parent)

    assert (report.imported, report.already_present, report.facts_added) == (0, 8, 4)
    assert "(4 given pre-processing facts)" in str(report)
    files, filled, _ = series_slices(uid)
    assert filled == facts
    write_volume(files, tmp_path / "out", 0, stored=filled)
    assert parsed == []  # written from the facts again
    again = import_dicom(before[0].parent)
    assert (again.already_present, again.facts_added) == (4, 0)


def test_pre_processing_uses_the_facts(
    series_factory: SeriesFactory, tmp_path: Path, parsed: list[int]
) -> None:
    from circus_tasks.jobs.steps import prepare_inputs

    uid = series_factory(slices=5)
    inputs = prepare_inputs(new_job("record@1.0.0", f"{uid}"))
    assert parsed == []

    files, _, _ = series_slices(uid)
    write_volume(files, tmp_path / "parsed", 0)
    assert _outputs(inputs) == _outputs(tmp_path / "parsed")


def _add_slice(tmp_path: Path, uid: str, volume: np.ndarray, z: float, number: int = 4) -> None:
    folder = tmp_path / f"extra-{number}"
    write_series(folder, volume, instance_numbers=[number], z_positions=[z], series_uid=uid)
    import_dicom(folder)


def _error(call: Callable[[], object]) -> str:
    with pytest.raises(VolumeError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize(
    ("shape", "dtype", "z", "message"),
    [
        ((1, 7, 8), "int16", -3.0, "is 8x8 signed 16-bit but the first slice"),
        ((1, 8, 8), "uint16", -3.0, "is 8x8 unsigned 16-bit; every slice of a volume"),
        ((1, 8, 8), "int16", -2.0, "share the Image Position"),
    ],
)
def test_inconsistent_slices_give_the_parsing_paths_error(
    series_factory: SeriesFactory,
    tmp_path: Path,
    parsed: list[int],
    shape: tuple[int, int, int],
    dtype: str,
    z: float,
    message: str,
) -> None:
    uid = series_factory(slices=3)
    _add_slice(tmp_path, uid, np.zeros(shape, dtype), z)
    spec = f"{uid}:4:1:-1"  # the added slice (image 4) comes first
    files, stored, _ = series_slices(spec)
    assert all(piece is not None for piece in stored)

    with_facts = _error(lambda: write_volume(files, tmp_path / "a", 0, stored=stored))
    by_parsing = _error(lambda: write_volume(files, tmp_path / "b", 0))

    assert with_facts == by_parsing
    assert message in " ".join(with_facts.split())
    assert len(parsed) == 1  # the first error came from the facts
    assert list((tmp_path / "a").iterdir()) == []


def test_a_slice_without_position_has_no_facts(tmp_path: Path) -> None:
    write_series(
        tmp_path / "s",
        np.zeros((3, 4, 4), np.int16),
        extra={"ImagePositionPatient": lambda i: None if i == 1 else [0.0, 0.0, float(-i)]},
    )
    files, stored, _ = series_slices(f"{_import(tmp_path / 's')}:1:3")

    assert stored[0] is not None and stored[1] is None
    with pytest.raises(VolumeError, match="no usable Image Position"):
        write_volume(files, tmp_path / "in", 0, stored=stored)


def test_stored_facts_round_trip_through_their_columns(series_factory: SeriesFactory) -> None:
    _, (piece, _), _ = series_slices(series_factory(slices=2))
    assert piece is not None
    assert StoredSlice.from_columns(piece.columns()) == piece
    as_text = {**piece.columns(), "header": json.dumps(piece.header)}
    assert StoredSlice.from_columns(as_text) == piece
    assert StoredSlice.from_columns({**piece.columns(), "file_size": None}) is None


def _headers() -> Iterator[list[dict[str, Any]]]:
    yield [{"a": 1, "b": [1.0, 2.0], "c": "x"}]
    yield [{"a": 1, "b": 2}, {"a": 1.0, "b": 3}, {"b": 2, "d": None}]
    yield [{"c": 1, "b": 1, "a": 0}, {"c": 2, "b": 2, "a": 0}]  # keys out of order


@pytest.mark.parametrize("headers", list(_headers()))
def test_split_headers_rule(headers: list[dict[str, Any]]) -> None:
    document = split_headers(headers)
    for header, unique in zip(headers, document["unique"], strict=True):
        assert {**document["common"], **unique} == header
        assert list(unique) == sorted(unique)
    assert list(document["common"]) == [k for k in headers[0] if k in document["common"]]
