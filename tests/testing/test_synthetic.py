"""Tests for circus_tasks/testing/synthetic.py: the synthetic DICOM series writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from circus_tasks.testing.synthetic import (
    PRIVATE_CREATOR,
    SUPPORTED_TRANSFER_SYNTAXES,
    write_series,
)


def _volume(dtype: type[np.integer], shape: tuple[int, int, int] = (3, 6, 5)) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def test_files_are_named_by_instance_number_and_form_one_series(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "series", _volume(np.int16))

    assert [p.name for p in paths] == ["00001.dcm", "00002.dcm", "00003.dcm"]
    datasets = [pydicom.dcmread(p) for p in paths]
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    for ds in datasets:
        assert ds.SOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]


def test_default_positions_fall_from_instance_one(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _volume(np.int16), instance_numbers=[3, 1, 2], slice_spacing=2.5)

    zs = {
        int(ds.InstanceNumber): float(ds.ImagePositionPatient[2])
        for ds in map(pydicom.dcmread, paths)
    }
    assert zs == {1: 0.0, 2: -2.5, 3: -5.0}
    assert [p.name for p in paths] == ["00003.dcm", "00001.dcm", "00002.dcm"]


def test_explicit_z_positions_and_spacing(tmp_path: Path) -> None:
    paths = write_series(
        tmp_path, _volume(np.uint16), z_positions=[10.0, 12.0, 14.0], pixel_spacing=(0.8, 0.6)
    )

    datasets = [pydicom.dcmread(p) for p in paths]
    assert [float(ds.ImagePositionPatient[2]) for ds in datasets] == [10.0, 12.0, 14.0]
    assert [float(v) for v in datasets[0].PixelSpacing] == [0.8, 0.6]


@pytest.mark.parametrize(
    ("dtype", "bits", "representation"),
    [(np.uint8, 8, 0), (np.int8, 8, 1), (np.uint16, 16, 0), (np.int16, 16, 1)],
)
def test_pixel_module_follows_dtype(
    tmp_path: Path, dtype: type[np.integer], bits: int, representation: int
) -> None:
    volume = _volume(dtype)
    paths = write_series(tmp_path, volume)

    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (bits, bits, bits - 1)
        assert ds.PixelRepresentation == representation
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (6, 5, 1)
        np.testing.assert_array_equal(ds.pixel_array, volume[index])


@pytest.mark.parametrize("syntax", SUPPORTED_TRANSFER_SYNTAXES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_transfer_syntaxes_round_trip(tmp_path: Path, syntax: str, dtype: type[np.integer]) -> None:
    volume = _volume(dtype)
    if syntax.startswith("1.2.840.10008.1.2.4."):
        pytest.importorskip("imagecodecs")  # JPEG frames (a benchmark extra)
    if syntax == JPEGBaseline8Bit and dtype != np.uint8:
        with pytest.raises(ValueError, match="8-bit unsigned"):
            write_series(tmp_path, volume, transfer_syntax=syntax)
        return
    paths = write_series(tmp_path, volume, transfer_syntax=syntax)

    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == syntax
        if syntax == JPEGBaseline8Bit:  # lossy: near, not equal
            error = np.abs(ds.pixel_array.astype(int) - volume[index].astype(int))
            assert error.mean() < 12
        else:
            np.testing.assert_array_equal(ds.pixel_array, volume[index])


def test_rle_is_really_compressed(tmp_path: Path) -> None:
    flat = np.zeros((2, 64, 64), dtype=np.int16)
    plain = write_series(tmp_path / "plain", flat)
    rle = write_series(tmp_path / "rle", flat, transfer_syntax=RLELossless)

    assert rle[0].stat().st_size < plain[0].stat().st_size / 4
    assert pydicom.dcmread(rle[0]).file_meta.TransferSyntaxUID.is_compressed


def test_identifying_private_and_sequence_attributes_are_filled(tmp_path: Path) -> None:
    ds = pydicom.dcmread(
        write_series(tmp_path, _volume(np.int16), patient_id="X9", patient_name="Roe^Rick")[0]
    )

    assert ds.PatientID == "X9"
    assert str(ds.PatientName) == "Roe^Rick"
    for keyword in (
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "PatientBirthDate",
        "RequestingPhysician",
        "RequestingService",
        "InstitutionalDepartmentName",
        "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy",
    ):
        assert ds.get(keyword), keyword
    assert ds.OtherPatientIDsSequence[0].PatientID == "X9-ALT"
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Thorax"
    block = ds.private_block(0x0009, PRIVATE_CREATOR)
    assert block[0x01].value == "synthetic private text"
    assert block[0x02].value == 42
    assert block[0x03].VR == "OB"


def test_modality_chooses_sop_class_and_rescale(tmp_path: Path) -> None:
    ct = pydicom.dcmread(write_series(tmp_path / "ct", _volume(np.int16))[0])
    mr = pydicom.dcmread(write_series(tmp_path / "mr", _volume(np.uint16), modality="MR")[0])
    ot = pydicom.dcmread(write_series(tmp_path / "ot", _volume(np.uint8), modality="OT")[0])

    assert (ct.SOPClassUID, float(ct.RescaleIntercept)) == (CTImageStorage, -1024.0)
    assert (mr.SOPClassUID, float(mr.RescaleIntercept)) == (MRImageStorage, 0.0)
    assert (ot.SOPClassUID, ot.Modality) == (SecondaryCaptureImageStorage, "OT")


def test_uids_and_descriptions_can_be_chosen(tmp_path: Path) -> None:
    ds = pydicom.dcmread(
        write_series(
            tmp_path,
            _volume(np.int16),
            series_uid="1.2.3.4",
            study_uid="1.2.3",
            series_description="lung",
            series_date="20250102",
            rescale=(2.0, -10.0),
        )[0]
    )

    assert (ds.SeriesInstanceUID, ds.StudyInstanceUID) == ("1.2.3.4", "1.2.3")
    assert (ds.SeriesDescription, ds.SeriesDate) == ("lung", "20250102")
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (2.0, -10.0)


def test_extra_sets_attributes_per_file(tmp_path: Path) -> None:
    paths = write_series(
        tmp_path,
        _volume(np.int16),
        extra={"ImageComments": "phantom", "AcquisitionNumber": lambda index: index + 10},
    )

    datasets = [pydicom.dcmread(p) for p in paths]
    assert {ds.ImageComments for ds in datasets} == {"phantom"}
    assert [int(ds.AcquisitionNumber) for ds in datasets] == [10, 11, 12]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volume": np.zeros((4, 4), np.int16)}, "shaped"),
        ({"volume": np.zeros((1, 4, 4), np.float32)}, "dtype"),
        ({"volume": np.zeros((1, 4, 4), np.int32)}, "dtype"),
        ({"transfer_syntax": JPEG2000Lossless}, "transfer syntax"),
        ({"instance_numbers": [1, 2]}, "instance numbers"),
        ({"z_positions": [0.0]}, "Z positions"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"volume": np.zeros((3, 4, 4), np.int16), **kwargs}
    volume = arguments.pop("volume")

    with pytest.raises(ValueError, match=message):
        write_series(tmp_path, volume, **arguments)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_deflate_and_big_endian_are_encoded_as_declared(tmp_path: Path) -> None:
    volume = np.full((1, 32, 32), 0x0102, dtype=np.uint16)
    native = write_series(tmp_path / "le", volume)[0].read_bytes()
    deflated = write_series(tmp_path / "df", volume, transfer_syntax=DeflatedExplicitVRLittleEndian)
    big = write_series(tmp_path / "be", volume, transfer_syntax=ExplicitVRBigEndian)
    implicit = write_series(tmp_path / "ie", volume, transfer_syntax=ImplicitVRLittleEndian)

    assert deflated[0].stat().st_size < len(native)
    assert b"\x01\x02" * 16 in big[0].read_bytes()
    assert b"\x02\x01" * 16 in implicit[0].read_bytes()
