"""Writing a synthetic slice in another transfer syntax than native little-endian."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

SUPPORTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLosslessSV1,
    JPEGBaseline8Bit,
)
"""Transfer syntaxes :func:`~circus_tasks.testing.synthetic.write_series` can write. pydicom
encodes RLE and deflates; it has no JPEG encoder, so JPEG Lossless (process 14, first-order
prediction) and JPEG Baseline (8-bit volumes only, lossy) frames are made by ``imagecodecs`` (a
benchmark extra) and encapsulated by pydicom."""


def encode(ds: Dataset, pixels: np.ndarray, transfer_syntax: str) -> None:
    """Switch the dataset from native little-endian pixel data to ``transfer_syntax``."""
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, pixels, generate_instance_uid=False)
        return
    if transfer_syntax in (JPEGLosslessSV1, JPEGBaseline8Bit):
        ds.PixelData = encapsulate([_jpeg_frame(pixels, transfer_syntax)])
        ds["PixelData"].VR = "OB"
    if transfer_syntax == ExplicitVRBigEndian:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)


def _jpeg_frame(pixels: np.ndarray, transfer_syntax: str) -> bytes:
    """One slice as a JPEG Lossless (process 14, SV1) or JPEG Baseline frame."""
    try:
        import imagecodecs
    except ImportError:
        raise ValueError(
            f"transfer syntax {transfer_syntax} needs imagecodecs to encode the frames: "
            "pip install imagecodecs (in the bench extras)"
        ) from None
    if transfer_syntax == JPEGBaseline8Bit:
        if pixels.dtype != np.uint8:
            raise ValueError(f"JPEG Baseline holds 8-bit unsigned pixels, not {pixels.dtype}")
        return bytes(imagecodecs.jpeg8_encode(pixels, level=90))
    # the stored bits as they are (two's complement for signed pixels), as DICOM stores them
    bits = 8 * pixels.itemsize
    return bytes(imagecodecs.ljpeg_encode(pixels.view(f"u{pixels.itemsize}"), bitspersample=bits))
