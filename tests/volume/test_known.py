"""What import remembers of elements by their bytes gives what decoding each file gives: the
checks' outcome, the stored facts' ``N.json`` object and the series fields, for pydicom's own
test files (every oddity it keeps) and varied synthetic series, each file read twice in one
memory (the second time from memory)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest

from circus_tasks.errors import DicomImportError
from circus_tasks.store import files
from circus_tasks.store.files import read_file, read_header
from circus_tasks.store.parsing import Reader, series_fields
from circus_tasks.testing.synthetic import write_series
from circus_tasks.volume.header import HeaderSplit
from circus_tasks.volume.import_facts import slice_facts
from tests.volume.test_stored import VARIED

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
"""pydicom's own test files, as installed (no download)."""


def _decoded_alone(path: Path) -> tuple[str, Any, Any]:
    """As import read a file before it remembered anything: the refusal, or the facts'
    object (HeaderSplit's) and the series fields, each file decoded on its own."""
    try:
        ds = read_header(path)
    except DicomImportError as exc:
        return ("refused", str(exc), None)
    except Exception as exc:  # noqa: BLE001 - as import refuses it
        return ("refused", f"unreadable DICOM ({type(exc).__name__}: {exc})", None)
    try:
        facts = slice_facts(ds, path)
        header = None
        if facts is not None:
            split = HeaderSplit(include_private=False)
            split.add(pydicom.dcmread(path))
            header = split.document()["common"]
            assert json.loads(facts.header_json) == header
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        header = "no facts"
    try:
        fields: Any = series_fields(read_header(path))
    except Exception as exc:  # noqa: BLE001 - compared, whatever it is
        fields = f"{type(exc).__name__}: {exc}"
    return ("read", header, fields)


def _remembered(path: Path, reader: Reader) -> tuple[str, Any, Any]:
    try:
        _, _, values = read_file(path, reader.values)
    except DicomImportError as exc:
        return ("refused", str(exc), None)
    except Exception as exc:  # noqa: BLE001 - as import refuses it
        return ("refused", f"unreadable DICOM ({type(exc).__name__}: {exc})", None)
    try:
        facts = slice_facts(values, path, reader.objects)
        header = None if facts is None else json.loads(facts.header_json)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        header = "no facts"
    try:
        fields: Any = series_fields(values, reader.elements)
    except Exception as exc:  # noqa: BLE001 - compared, whatever it is
        fields = f"{type(exc).__name__}: {exc}"
    return ("read", header, fields)


def _cut_short(paths: list[Path], folder: Path) -> list[Path]:
    """Copies of the files cut 100 bytes short (their pixel data, mostly)."""
    cut = []
    for number, path in enumerate(paths):
        data = path.read_bytes()
        if len(data) > 200:
            cut.append(folder / f"cut-{number}.dcm")
            cut[-1].write_bytes(data[:-100])
    return cut


def _varied_files(folder: Path) -> list[Path]:
    import numpy as np

    files = []
    for dtype in ("int16", "uint8"):
        volume = (np.arange(6 * 6 * 5) % 200).reshape(6, 6, 5).astype(dtype)
        files += write_series(folder / dtype, volume, extra=VARIED)
    return files


@pytest.mark.parametrize(
    "whole_below", [files.READ_WHOLE_BELOW, 0], ids=["read whole", "pixels left"]
)
def test_remembered_values_give_what_decoding_each_file_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_below: int
) -> None:
    monkeypatch.setattr(files, "READ_WHOLE_BELOW", whole_below)  # 0: every file parsed in place
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = sorted(PYDICOM_FILES.rglob("*.dcm")) + _varied_files(tmp_path)
        paths += _cut_short(paths, tmp_path)
        expected = {path: _decoded_alone(path) for path in paths}
        reader = Reader()
        for _ in range(2):  # the second time, every shared element comes from memory
            for path in paths:
                assert _remembered(path, reader) == expected[path], path
    outcomes = [kind for kind, *_ in expected.values()]
    assert outcomes.count("read") > 50 and outcomes.count("refused") > 10
    assert sum(1 for _, header, _ in expected.values() if isinstance(header, dict)) > 12


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm"])
def test_an_implicit_or_explicit_file_is_mostly_remembered(name: str) -> None:
    from pydicom.data import get_testdata_file

    path = Path(str(get_testdata_file(name)))
    reader = Reader()
    _remembered(path, reader)
    assert len(reader.values) > 10 and len(reader.elements) > 30
