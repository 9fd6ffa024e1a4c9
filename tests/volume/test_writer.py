"""Tests for circus_tasks/volume/writer.py: the plug-in input files N.raw, N.mhd and N.json."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from circus_tasks.errors import CircusError, VolumeError
from circus_tasks.testing.synthetic import write_series
from circus_tasks.volume.writer import IDENTIFYING_KEYWORDS, IDENTIFYING_TAGS, write_volume

KEY = re.compile(r"^[0-9a-f]{4},[0-9a-f]{4}$")
IDENTIFYING_KEYS = {f"{tag >> 16:04x},{tag & 0xFFFF:04x}" for tag in IDENTIFYING_TAGS}


def _volume(dtype: type[np.integer], shape: tuple[int, int, int] = (4, 6, 5)) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(11)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _stored(files: Sequence[Path]) -> np.ndarray:
    return np.stack([pydicom.dcmread(f).pixel_array for f in files])


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _all_keys(value: Any) -> Iterator[str]:
    """Every attribute key in a JSON object, including those inside sequence items."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _all_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_keys(item)


def _header_keys(document: dict[str, Any]) -> list[str]:
    return list(_all_keys(document["common"])) + list(_all_keys(document["unique"]))


def _resave(path: Path, change: Any) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("dtype", "syntax", "element_type"),
    [
        (np.int16, ExplicitVRLittleEndian, "MET_SHORT"),
        (np.uint16, ExplicitVRLittleEndian, "MET_USHORT"),
        (np.uint8, ExplicitVRLittleEndian, "MET_UCHAR"),
        (np.int8, ExplicitVRLittleEndian, "MET_CHAR"),
        (np.int16, RLELossless, "MET_SHORT"),
        (np.uint8, RLELossless, "MET_UCHAR"),
        (np.uint16, ExplicitVRBigEndian, "MET_USHORT"),
        (np.int16, ImplicitVRLittleEndian, "MET_SHORT"),
        (np.int16, DeflatedExplicitVRLittleEndian, "MET_SHORT"),
    ],
)
def test_simpleitk_reads_the_same_voxels_and_spacing(
    tmp_path: Path, dtype: type[np.integer], syntax: str, element_type: str
) -> None:
    files = write_series(
        tmp_path / "dicom",
        _volume(dtype),
        pixel_spacing=(0.8, 0.6),
        slice_spacing=2.5,
        transfer_syntax=syntax,
    )

    info = write_volume(files, tmp_path / "in", 0)

    image = sitk.ReadImage(str(info.mhd))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), _stored(files))
    assert image.GetSpacing() == pytest.approx((0.6, 0.8, 2.5))
    assert info.spacing == pytest.approx((0.6, 0.8, 2.5))
    assert info.shape == (4, 6, 5)
    assert info.element_type == element_type
    assert info.raw.stat().st_size == 4 * 6 * 5 * np.dtype(dtype).itemsize


def test_files_and_header_are_exactly_as_the_spec_says(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16), pixel_spacing=(0.5, 0.7))

    info = write_volume(files, tmp_path / "in", 3)

    assert (info.mhd, info.raw, info.json) == tuple(
        tmp_path / "in" / f"3.{e}" for e in ("mhd", "raw", "json")
    )
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["3.json", "3.mhd", "3.raw"]
    assert info.mhd.read_bytes() == (
        b"ObjectType = Image\n"
        b"NDims = 3\n"
        b"DimSize = 5 6 4\n"
        b"ElementType = MET_SHORT\n"
        b"ElementSpacing = 0.7 0.5 1\n"
        b"ElementByteOrderMSB = False\n"
        b"ElementDataFile = 3.raw\n"
    )
    raw = np.fromfile(info.raw, dtype="<i2").reshape(4, 6, 5)
    np.testing.assert_array_equal(raw, _stored(files))


def test_stored_values_are_written_without_rescale(tmp_path: Path) -> None:
    volume = np.full((2, 4, 4), 1000, dtype=np.uint16)
    files = write_series(tmp_path / "dicom", volume, rescale=(2.0, -1024.0))

    info = write_volume(files, tmp_path / "in", 0)

    assert set(np.fromfile(info.raw, dtype="<u2").tolist()) == {1000}


def test_reversed_range_order_reverses_the_slices(tmp_path: Path) -> None:
    volume = _volume(np.int16)
    files = write_series(tmp_path / "dicom", volume)

    info = write_volume(list(reversed(files)), tmp_path / "in", 0)

    array = sitk.GetArrayFromImage(sitk.ReadImage(str(info.mhd)))
    np.testing.assert_array_equal(array, volume[::-1])
    unique = _read_json(info.json)["unique"]
    assert [item["0020,0013"] for item in unique] == [4, 3, 2, 1]


def test_slice_spacing_is_the_distance_between_the_first_two_slices(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16), z_positions=[0.0, 3.0, 4.0, 9.0])

    info = write_volume(files, tmp_path / "in", 0)

    assert info.spacing[2] == pytest.approx(3.0)


def test_single_slice_has_slice_spacing_one(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16, (1, 6, 5)), slice_spacing=5.0)

    info = write_volume(files, tmp_path / "in", 0)

    assert sitk.ReadImage(str(info.mhd)).GetSpacing() == pytest.approx((0.7, 0.7, 1.0))
    document = _read_json(info.json)
    assert document["unique"] == [{}]
    assert document["common"]["0020,0013"] == 1


def test_missing_pixel_spacing_falls_back_to_one(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16, (2, 6, 5)))
    for path in files:
        _resave(path, lambda ds: delattr(ds, "PixelSpacing"))

    info = write_volume(files, tmp_path / "in", 0)

    assert info.spacing == pytest.approx((1.0, 1.0, 1.0))


def test_common_and_unique_are_split_right(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16, (3, 6, 5)))

    document = _read_json(write_volume(files, tmp_path / "in", 0).json)

    common, unique = document["common"], document["unique"]
    assert common["0008,0060"] == "CT"
    assert common["0018,0050"] == 1.0  # slice thickness: the same in every slice
    assert "0020,000e" not in common  # UIDs are in the confidentiality profile: left out
    assert len(unique) == 3
    for item in unique:
        assert {"0020,0013", "0020,0032"} <= item.keys() and "0008,0018" not in item
        assert not item.keys() & common.keys()
    assert [item["0020,0013"] for item in unique] == [1, 2, 3]
    assert [item["0020,0032"][2] for item in unique] == [0.0, -1.0, -2.0]
    assert "0020,0013" not in common and "0020,0032" not in common


def test_values_are_plain_json(tmp_path: Path) -> None:
    files = write_series(
        tmp_path / "dicom",
        _volume(np.int16, (1, 6, 5)),
        extra={"ContentCreatorName": "Creator^Carl", "FrameIncrementPointer": 0x00181063},
    )

    common = _read_json(write_volume(files, tmp_path / "in", 0).json)["common"]

    assert common["0020,0013"] == 1  # IS -> number
    assert common["0018,0050"] == 1.0  # DS -> number
    assert common["0028,0030"] == [0.7, 0.7]  # multi-valued DS -> list of numbers
    assert common["0008,0008"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert common["0028,0010"] == 6  # US -> number
    assert "0070,0084" not in common  # a person's name (PN): in the confidentiality profile
    assert common["0028,0009"] == "0018,1063"  # AT -> tag in key style
    assert common["0008,2218"] == [
        {"0008,0100": "51185008", "0008,0102": "SCT", "0008,0104": "Thorax"}
    ]
    assert all(KEY.match(key) for key in _all_keys(common))


def test_identifying_binary_private_and_meta_attributes_are_left_out(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16), extra={"ICCProfile": b"\x00\x01"})
    assert "ICCProfile" in pydicom.dcmread(files[0])

    document = _read_json(write_volume(files, tmp_path / "in", 0).json)

    keys = _header_keys(document)
    assert keys and all(KEY.match(key) for key in keys)
    assert not IDENTIFYING_KEYS & set(keys)
    assert not [key for key in keys if int(key[:4], 16) % 2 == 1]  # private groups
    assert not [key for key in keys if key.startswith("0002,")]  # file meta
    assert "7fe0,0010" not in keys  # Pixel Data
    assert "0028,2000" not in keys  # ICC Profile, OB
    # the other patient IDs, sex and dates are in the confidentiality profile: all left out
    assert "0010,1002" not in document["common"] and "0010,0040" not in document["common"]
    assert "0008,0020" not in document["common"]  # Study Date
    assert document["common"]["0008,0060"] == "CT"  # what plug-ins need stays


def test_include_private_keeps_private_values_but_not_binary_ones(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16))

    common = _read_json(write_volume(files, tmp_path / "in", 0, include_private=True).json)[
        "common"
    ]

    assert common["0009,0010"] == "CIRCUS SYNTHETIC"
    assert common["0009,1001"] == "synthetic private text"
    assert common["0009,1002"] == 42
    assert "0009,1003" not in common


def test_identifying_keywords_cover_the_spec_list() -> None:
    spec = {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "InstitutionalDepartmentName",
        "PhysiciansOfRecord",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "RequestingPhysician",
        "RequestingService",
    }
    assert spec <= set(IDENTIFYING_KEYWORDS)
    assert IDENTIFYING_TAGS == {tag_for_keyword(k) for k in IDENTIFYING_KEYWORDS}


def test_pydicom_ct_small(tmp_path: Path) -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    original = pydicom.dcmread(path)

    info = write_volume([path], tmp_path / "in", 0)

    image = sitk.ReadImage(str(info.mhd))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[0], original.pixel_array)
    assert image.GetSpacing() == pytest.approx((0.661468, 0.661468, 1.0))
    assert info.element_type == "MET_SHORT"
    common = _read_json(info.json)["common"]
    keys = set(_all_keys(common))
    assert original.InstitutionName and "0008,0080" not in keys
    assert not IDENTIFYING_KEYS & keys
    assert "0010,1002" not in keys  # other patient IDs: in the confidentiality profile
    assert not [key for key in keys if int(key[:4], 16) % 2 == 1]
    assert "fffc,fffc" not in keys  # trailing padding, OB
    assert common["0028,1052"] == -1024.0

    with_private = _read_json(write_volume([path], tmp_path / "p", 0, include_private=True).json)
    assert with_private["common"]["0019,1002"] == 912  # SL
    assert with_private["common"]["0043,1013"] == [107, 21, 4, 2, 20]  # SS, VM 5
    assert "0043,1028" not in with_private["common"]  # OB


# --- errors: each leaves nothing behind -------------------------------------------------


def _series(tmp_path: Path, n: int = 3, **kwargs: Any) -> list[Path]:
    return write_series(
        tmp_path / "dicom", _volume(kwargs.pop("dtype", np.int16), (n, 6, 5)), **kwargs
    )


def _custom_file(path: Path, pixels: np.ndarray, photometric: str) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImagePositionPatient = [0, 0, -9]
    ds.PixelSpacing = [0.7, 0.7]
    ds.set_pixel_data(pixels, photometric, 8, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def _truncated(tmp_path: Path) -> list[Path]:
    # large enough slices that cutting the file in half cuts the pixel data
    files = write_series(tmp_path / "dicom", _volume(np.int16, (3, 64, 64)))
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) // 2])
    return files


def _header_only(tmp_path: Path) -> list[Path]:
    files = _series(tmp_path)
    files[-1].write_bytes(files[-1].read_bytes()[:200])
    return files


def _text_file(tmp_path: Path) -> list[Path]:
    text = tmp_path / "notes.txt"
    text.write_text("not a DICOM file\n")
    return [*_series(tmp_path), text]


def _no_pixel_data(tmp_path: Path) -> list[Path]:
    files = _series(tmp_path)
    _resave(files[-1], lambda ds: delattr(ds, "PixelData"))
    return files


def _other_size(tmp_path: Path) -> list[Path]:
    other = write_series(tmp_path / "other", np.zeros((1, 7, 5), np.int16), z_positions=[-3.0])
    return [*_series(tmp_path), *other]


def _other_pixel_type(tmp_path: Path) -> list[Path]:
    other = write_series(tmp_path / "other", np.zeros((1, 6, 5), np.uint16), z_positions=[-3.0])
    return [*_series(tmp_path), *other]


def _multi_frame(tmp_path: Path) -> list[Path]:
    frames = _custom_file(tmp_path / "multi.dcm", np.zeros((2, 6, 5), np.uint8), "MONOCHROME2")
    return [*_series(tmp_path, dtype=np.uint8), frames]


def _colour(tmp_path: Path) -> list[Path]:
    rgb = _custom_file(tmp_path / "rgb.dcm", np.zeros((6, 5, 3), np.uint8), "RGB")
    return [*_series(tmp_path, dtype=np.uint8), rgb]


def _bits_32(tmp_path: Path) -> list[Path]:
    files = _series(tmp_path)

    def widen(ds: Dataset) -> None:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
        ds.PixelData = np.zeros((6, 5), "<i4").tobytes()

    _resave(files[-1], widen)
    return files


def _no_position(tmp_path: Path) -> list[Path]:
    files = _series(tmp_path)
    _resave(files[-1], lambda ds: delattr(ds, "ImagePositionPatient"))
    return files


def _same_position(tmp_path: Path) -> list[Path]:
    return _series(tmp_path, z_positions=[0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp_path: [], "no images"),
        (_text_file, r"notes\.txt cannot be read as DICOM"),
        (_truncated, r"00003\.dcm cannot be decoded"),
        (_header_only, r"00003\.dcm has no Pixel Data: .* cut short"),
        (_no_pixel_data, r"00003\.dcm has no Pixel Data"),
        (_other_size, r"00001\.dcm is 7x5 signed 16-bit .* first slice .* is 6x5"),
        (_other_pixel_type, r"unsigned 16-bit .* every slice of a volume must match"),
        (_multi_frame, r"multi\.dcm is a multi-frame image"),
        (_colour, r"rgb\.dcm is a colour image"),
        (_bits_32, r"00003\.dcm has Bits Allocated 32"),
        (_no_position, r"00003\.dcm has no usable Image Position"),
        (_same_position, r"share the Image Position"),
    ],
)
def test_volume_errors_leave_no_output(tmp_path: Path, make: Any, message: str) -> None:
    files = make(tmp_path)
    out_dir = tmp_path / "in"

    with pytest.raises(VolumeError, match=message) as caught:
        write_volume(files, out_dir, 0)

    assert isinstance(caught.value, CircusError) and isinstance(caught.value, ValueError)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_a_failure_keeps_earlier_volumes_and_adds_nothing(tmp_path: Path) -> None:
    good = write_series(tmp_path / "good", _volume(np.int16))
    out_dir = tmp_path / "in"
    write_volume(good, out_dir, 0)
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    with pytest.raises(VolumeError):
        write_volume(_truncated(tmp_path), out_dir, 1)

    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before


def test_output_files_get_ordinary_permissions(tmp_path: Path) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16, (1, 6, 5)))
    old = os.umask(0o022)
    try:
        info = write_volume(files, tmp_path / "in", 0)
    finally:
        os.umask(old)

    for path in (info.raw, info.mhd, info.json):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_interruption_removes_the_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_series(tmp_path / "dicom", _volume(np.int16, (2, 6, 5)))

    def interrupt(*args: Any) -> None:
        raise KeyboardInterrupt

    from circus_tasks.volume.header import HeaderSplit

    monkeypatch.setattr(HeaderSplit, "document", interrupt)  # after the raw file is written
    with pytest.raises(KeyboardInterrupt):
        write_volume(files, tmp_path / "in", 0)

    assert list((tmp_path / "in").iterdir()) == []


# --- several processes: the same files, the same errors ----------------------------------


def _varied_series(tmp_path: Path, n: int = 12, **kwargs: Any) -> list[Path]:
    """A series whose attributes change at chosen places, on either side of a split."""
    extra = {
        "ConvolutionKernel": lambda i: "late" if i >= n - 3 else "early",  # only in the last share
        "AcquisitionNumber": lambda i: 2 if i == 2 else 1,  # only in the first share
        "ContentTime": lambda i: f"1200{i:02d}",  # every slice
        "SeriesNumber": 7,  # everywhere
    }
    return write_series(tmp_path / "dicom", _volume(np.int16, (n, 6, 5)), extra=extra, **kwargs)


def _written(info: Any) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (info.raw, info.mhd, info.json)}


def test_with_other_threads_the_shares_run_here_and_write_the_same_files(
    tmp_path: Path, forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from circus_tasks.volume import forked

    files = _varied_series(tmp_path)
    one = _written(write_volume(files, tmp_path / "one", 0))
    monkeypatch.setattr(forked.threading, "active_count", lambda: 2)  # e.g. a flow run's
    several = _written(write_volume(files, tmp_path / "several", 0, processes=3))
    assert forks == []
    assert several == one


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless])
@pytest.mark.parametrize("include_private", [False, True])
def test_processes_write_the_same_files(
    tmp_path: Path, forks: list[int], syntax: str, include_private: bool
) -> None:
    files = _varied_series(tmp_path, transfer_syntax=syntax)
    options: dict[str, Any] = {"include_private": include_private}

    one = _written(write_volume(files, tmp_path / "one", 0, **options))
    assert forks == []
    for processes in (2, 3, 4):
        several = write_volume(files, tmp_path / f"p{processes}", 0, processes=processes, **options)
        assert _written(several) == one, processes
    assert len(forks) == 1 + 2 + 3

    document = json.loads(one["0.json"])
    assert document["common"]["0020,0011"] == 7
    assert [u["0018,1210"] for u in document["unique"]] == ["early"] * 9 + ["late"] * 3
    assert [u["0020,0012"] for u in document["unique"]] == [1, 1, 2] + [1] * 9
    assert "0018,1210" not in document["common"] and "0020,0012" not in document["common"]


def test_a_single_or_short_series_is_not_split(tmp_path: Path, forks: list[int]) -> None:
    files = _varied_series(tmp_path, n=5)

    write_volume(files[:1], tmp_path / "one", 0, processes=2)
    write_volume(files, tmp_path / "five", 0, processes=2)

    assert forks == []


def _broken(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    ("broken", "reported"),
    [
        ([10], 10),  # in the last share, in a child
        ([5, 10], 5),  # the earlier file wins, as one process would report it
        ([10, 11], 10),
        ([1, 10], 1),  # in this process's share
    ],
)
def test_processes_report_the_error_one_process_reports(
    tmp_path: Path, forks: list[int], broken: list[int], reported: int
) -> None:
    files = _varied_series(tmp_path)
    for index in broken:
        _broken(files[index])
    out_dir = tmp_path / "in"

    with pytest.raises(VolumeError) as alone:
        write_volume(files, out_dir, 0)
    with pytest.raises(VolumeError) as shared:
        write_volume(files, out_dir, 0, processes=3)

    assert str(shared.value) == str(alone.value)
    assert files[reported].name in str(shared.value)
    assert forks and list(out_dir.iterdir()) == []


def test_processes_report_a_slice_unlike_the_first(tmp_path: Path, forks: list[int]) -> None:
    files = _varied_series(tmp_path)
    other = write_series(tmp_path / "other", np.zeros((1, 7, 5), np.int16), z_positions=[-30.0])
    files[10] = other[0]

    with pytest.raises(VolumeError, match=r"is 7x5 signed 16-bit but the first slice .*00001"):
        write_volume(files, tmp_path / "in", 0, processes=2)


# --- the output folder --------------------------------------------------------------------


def test_an_unusable_output_folder_is_a_volume_error(tmp_path: Path) -> None:
    files = _series(tmp_path)
    (tmp_path / "taken").write_text("a file")

    with pytest.raises(VolumeError, match="Cannot write the volume to .*taken"):
        write_volume(files, tmp_path / "taken", 0)
    with pytest.raises(VolumeError, match="choose a folder you can create and write to"):
        write_volume(files, tmp_path / "taken" / "below", 0)


@pytest.mark.parametrize(
    ("dtype", "syntax"),
    [
        (np.int16, "1.2.840.10008.1.2.4.70"),  # JPEG Lossless, first-order prediction
        (np.uint16, "1.2.840.10008.1.2.4.70"),
        (np.uint8, "1.2.840.10008.1.2.4.50"),  # JPEG Baseline (lossy)
    ],
)
def test_jpeg_series_give_pydicoms_own_voxels(
    tmp_path: Path, dtype: type[np.integer], syntax: str
) -> None:
    # pydicom cannot encode JPEG: imagecodecs (a benchmark extra, installed by `make test`)
    # makes the frames, pydicom's GDCM plug-in (a dependency) decodes them
    pytest.importorskip("imagecodecs")
    files = write_series(tmp_path / "dicom", _volume(dtype, (3, 16, 12)), transfer_syntax=syntax)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == syntax

    info = write_volume(files, tmp_path / "in", 0)

    decoded = np.stack([pydicom.dcmread(p).pixel_array for p in files])
    raw = np.fromfile(info.raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(decoded.shape)
    np.testing.assert_array_equal(raw, decoded)
    if syntax.endswith(".70"):  # lossless: the voxels written by write_series
        np.testing.assert_array_equal(raw, _volume(dtype, (3, 16, 12)))


def test_a_person_name_kept_as_private_becomes_a_string() -> None:
    from pydicom.dataset import Dataset

    from circus_tasks.volume.header import dataset_to_json

    ds = Dataset()
    ds.private_block(0x0011, "CIRCUS TEST", create=True).add_new(0x01, "PN", "Creator^Carl")
    assert dataset_to_json(ds, include_private=True) == {
        "0011,0010": "CIRCUS TEST",
        "0011,1001": "Creator^Carl",
    }
    assert dataset_to_json(ds, include_private=False) == {}
