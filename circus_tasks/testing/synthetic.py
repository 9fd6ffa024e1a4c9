"""Synthetic DICOM series: real files written with pydicom from a numpy volume.

The tests use these series to exercise the importer and the plug-in input writer, and the demo
uses them as phantom data. Every file is a complete CT, MR (or, for other modalities, Secondary
Capture) Image Storage instance with file meta information, and it carries every identifying
attribute the plug-in input must strip, a private block and a harmless code sequence, so that
tests can prove what is kept and what is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from circus_tasks.testing.encoding import SUPPORTED_TRANSFER_SYNTAXES, encode

__all__ = ["PRIVATE_CREATOR", "SUPPORTED_TRANSFER_SYNTAXES", "write_series"]

PRIVATE_CREATOR = "CIRCUS SYNTHETIC"
"""Private creator of the one private block (group 0009) every synthetic file carries."""

_SOP_CLASSES: dict[str, UID] = {"CT": CTImageStorage, "MR": MRImageStorage}
_DTYPES = (np.uint8, np.int8, np.uint16, np.int16)

_IDENTIFYING: dict[str, str] = {
    "InstitutionName": "Synthetic General Hospital",
    "InstitutionAddress": "1 Phantom Road, Voxelton",
    "ReferringPhysicianName": "Referrer^Rita",
    "InstitutionalDepartmentName": "Radiology",
    "PhysiciansOfRecord": "Record^Rob",
    "PerformingPhysicianName": "Performer^Pat",
    "NameOfPhysiciansReadingStudy": "Reader^Ray",
    "OperatorsName": "Operator^Olga",
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
    "RequestingPhysician": "Requester^Ruth",
    "RequestingService": "Oncology",
}
"""Identifying attributes every synthetic slice carries, besides the patient's name and ID."""

_ACQUISITION: dict[str, dict[str, str]] = {
    "CT": {"KVP": "120"},
    "MR": {"ScanningSequence": "SE", "SequenceVariant": "NONE", "ScanOptions": ""}
    | {"MRAcquisitionType": "3D", "MagneticFieldStrength": "3"},
}


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    instance_numbers: Sequence[int] | None = None,
    z_positions: Sequence[float] | None = None,
    pixel_spacing: tuple[float, float] = (0.7, 0.7),
    slice_spacing: float = 1.0,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = "P0001",
    patient_name: str = "Doe^Jane",
    series_description: str = "synthetic",
    series_date: str = "20260101",
    transfer_syntax: str = ExplicitVRLittleEndian,
    rescale: tuple[float, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a volume as one DICOM file per slice, ``folder / f"{instance_number:05d}.dcm"``.

    By default instance numbers run 1..n and slice ``i`` sits at ``Z = (1 - number) *
    slice_spacing`` (instance 1 highest), axial, centred on the patient axis. CT and MR give CT
    and MR Image Storage, other modalities Secondary Capture; ``rescale`` (slope, intercept)
    defaults to (1, -1024) for CT and (1, 0) otherwise.

    Args:
        volume: Stored pixel values shaped (slices, rows, columns): uint8, int8, uint16 or
            int16 (the bit and pixel representation attributes follow the dtype).
        z_positions: One Z per slice, instead of the default positions.
        pixel_spacing: (row spacing, column spacing) in mm, as DICOM orders it.
        transfer_syntax: One of :data:`SUPPORTED_TRANSFER_SYNTAXES` (the JPEG ones need
            ``imagecodecs``).
        extra: More attributes by keyword, set after the defaults; a callable value is called
            with the slice index.

    Returns:
        The written paths, in the order of the slices of ``volume``.

    Raises:
        ValueError: The volume's shape or dtype, the number of instance numbers or Z
            positions, or the transfer syntax is not supported.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(
            f"volume must be shaped (slices, rows, columns), got shape {volume.shape}; "
            "add a leading axis for a single slice"
        )
    if volume.dtype not in [np.dtype(t) for t in _DTYPES]:
        raise ValueError(
            f"volume dtype {volume.dtype} is not supported; use uint8, int8, uint16 or int16"
        )
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise ValueError(
            f"transfer syntax {transfer_syntax} cannot be written here; use one of "
            + ", ".join(SUPPORTED_TRANSFER_SYNTAXES)
        )
    n_slices = volume.shape[0]
    numbers = (
        list(instance_numbers) if instance_numbers is not None else list(range(1, n_slices + 1))
    )
    if len(numbers) != n_slices:
        raise ValueError(f"{len(numbers)} instance numbers given for {n_slices} slices")
    if z_positions is None:
        zs = [(1 - number) * slice_spacing for number in numbers]
    else:
        zs = [float(z) for z in z_positions]
    if len(zs) != n_slices:
        raise ValueError(f"{len(zs)} Z positions given for {n_slices} slices")

    if rescale is None:
        rescale = (1.0, -1024.0) if modality == "CT" else (1.0, 0.0)
    uids = (series_uid or generate_uid(), study_uid or generate_uid(), generate_uid())
    text = (modality, patient_id, patient_name, series_description, series_date)
    shared = _SeriesAttributes(*uids, *text, pixel_spacing, slice_spacing, rescale)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, (number, z) in enumerate(zip(numbers, zs, strict=True)):
        ds = _slice_dataset(shared, volume[index], number, z)
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value(index) if callable(value) else value)
        encode(ds, volume[index], transfer_syntax)
        path = folder / f"{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class _SeriesAttributes:
    """The values every slice of one synthetic series shares."""

    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    modality: str
    patient_id: str
    patient_name: str
    series_description: str
    series_date: str
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    rescale: tuple[float, float]


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _slice_dataset(shared: _SeriesAttributes, pixels: np.ndarray, number: int, z: float) -> Dataset:
    """Build one slice's dataset with native (Explicit VR Little Endian) pixel data."""
    sop_class = _SOP_CLASSES.get(shared.modality, SecondaryCaptureImageStorage)
    sop_instance = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = shared.series_date
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.ContentTime = f"12{number // 60 % 60:02d}{number % 60:02d}"
    ds.AccessionNumber = ""
    ds.Modality = shared.modality
    ds.Manufacturer = "CIRCUS synthetic phantom"
    # Identifying attributes: all filled, so tests can prove the plug-in input drops them.
    for keyword, text in _IDENTIFYING.items():
        setattr(ds, keyword, text)
    ds.InstitutionCodeSequence = [_code_item("SGH", "99CIRCUS", "Synthetic General Hospital")]
    ds.PatientName = shared.patient_name
    ds.PatientID = shared.patient_id
    # A sequence whose item holds an identifying attribute, and one that holds none.
    other_id = Dataset()
    other_id.PatientID = f"{shared.patient_id}-ALT"
    other_id.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [other_id]
    ds.AnatomicRegionSequence = [_code_item("51185008", "SCT", "Thorax")]
    ds.StudyDescription = "synthetic study"
    ds.SeriesDescription = shared.series_description
    for keyword, text in _ACQUISITION.get(shared.modality, {}).items():
        setattr(ds, keyword, text)
    ds.SliceThickness = shared.slice_spacing
    ds.StudyInstanceUID = shared.study_uid
    ds.SeriesInstanceUID = shared.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    rows, columns = pixels.shape
    row_spacing, column_spacing = shared.pixel_spacing
    ds.ImagePositionPatient = [-columns * column_spacing / 2, -rows * row_spacing / 2, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = shared.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    ds.PixelSpacing = [row_spacing, column_spacing]
    slope, intercept = shared.rescale
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    if shared.modality == "CT":
        ds.RescaleType = "HU"

    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", "synthetic private text")
    block.add_new(0x02, "US", 42)
    block.add_new(0x03, "OB", b"\x00\x01\x02\x03")

    ds.set_pixel_data(pixels, "MONOCHROME2", pixels.dtype.itemsize * 8, generate_instance_uid=False)
    return ds
