"""Compressed slices decoded straight from their fragments, by the fastest decoder at hand.

A single-frame slice's encapsulated Pixel Data is an item list: the Basic Offset Table, then
the fragments that together hold the one frame. :func:`decode_slice` joins the fragments and
hands the frame to a decoder chosen per transfer syntax, without pydicom's per-slice machinery:

============================================  =================================================
Transfer syntax                               Decoder
============================================  =================================================
RLE Lossless                                  pylibjpeg-rle's segment decoder (Rust); the
                                              byte planes interleaved here
JPEG Baseline (process 1, 8 bits)             Pillow (libjpeg-turbo)
JPEG Lossless (process 14, SV1 or not)        imagecodecs' jpeg8 (libjpeg-turbo 3)
JPEG-LS lossless and near-lossless            imagecodecs' jpegls (CharLS)
============================================  =================================================

Then it applies what pydicom applies after decoding (``Dataset.pixel_array``, pydicom 3): the
unused high bits cleared (sign-extended for signed pixels) when Bits Stored < Bits Allocated,
or for JPEG-LS, whose codestream cannot say that its samples are signed, signed pixels
sign-extended from the codestream's precision. So the voxels are pydicom's: any conforming
decoder gives the same values for the lossless syntaxes, and for JPEG Baseline pydicom's Pillow
plug-in runs the same library (its GDCM plug-in, tried first, gave the same voxels on every
series tested, as both use the same integer IDCT).

Anything this module does not expect (a decoder that is missing or fails, a frame that is not
what the header describes, a multi-fragment oddity) raises :class:`NotDecodedHere`. The caller
then decodes the slice with pydicom, which gives its voxels or its error: this module only makes
the common case fast, never the answer different.

Only the standard library is imported here. RLE and JPEG Baseline slices need neither numpy
nor pydicom, so that ``circus volume`` on such a series, written from what import stored, never
loads them (importing numpy alone takes as long as dcm2niix converts a 100-slice RLE series);
JPEG Lossless and JPEG-LS load numpy with imagecodecs, and so does the bit correction.
"""

from __future__ import annotations

import os
import struct

from circus_tasks.errors import VolumeError
from circus_tasks.volume.decoders import (
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    LOADERS,
    RLE_LOSSLESS,
    FrameDecoder,
    NotDecodedHere,
)
from circus_tasks.volume.slice_format import SliceFormat

__all__ = [
    "FAST_SYNTAXES",
    "NotDecodedHere",
    "decode_slice",
    "load_decoder",
    "read_encapsulated",
    "single_frame",
]

FAST_SYNTAXES: frozenset[str] = frozenset(LOADERS)
"""The transfer syntaxes :func:`decode_slice` decodes."""

_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_END = (0xFFFE, 0xE0DD)


def single_frame(encapsulated: bytes | bytearray | memoryview) -> bytes | memoryview:
    """The frame of a single-frame slice: its fragments after the Basic Offset Table, joined
    (one fragment is returned as a view of ``encapsulated``, not copied).

    Args:
        encapsulated: The Pixel Data value from its first item on; it may run past the sequence
            delimiter (to the end of the file), where reading stops.

    Raises:
        NotDecodedHere: the items are not well formed, or there is no fragment.
    """
    view = memoryview(encapsulated).cast("B")
    size = len(view)
    position = 0
    fragments: list[memoryview] = []
    table_seen = False
    while position + 8 <= size:
        group, element, length = struct.unpack_from("<HHI", view, position)
        position += 8
        if (group, element) == _SEQUENCE_END:
            break
        if (group, element) != _ITEM or position + length > size:
            raise NotDecodedHere("the encapsulated pixel data's items are damaged or cut short")
        if table_seen:
            fragments.append(view[position : position + length])
        table_seen = True
        position += length
    if not fragments:
        raise NotDecodedHere("the encapsulated pixel data holds no fragment")
    if len(fragments) == 1:
        return fragments[0]
    return b"".join(fragments)


def read_encapsulated(fd: int, offset: int) -> bytes:
    """An encapsulated Pixel Data value, read from its first item (at ``offset`` in the open
    file ``fd``) to the end of the file: :func:`single_frame` stops at its delimiter."""
    return os.pread(fd, max(0, os.fstat(fd).st_size - offset), offset)


def decode_slice(
    syntax: str,
    encapsulated: bytes | bytearray | memoryview,
    slice_format: SliceFormat,
    bits_stored: int,
) -> bytes | bytearray | memoryview:
    """Decode one slice's encapsulated pixel data to its stored values, as pydicom would.

    Args:
        syntax: The slice's transfer syntax UID, one of :data:`FAST_SYNTAXES`.
        encapsulated: The Pixel Data value (see :func:`single_frame`).
        slice_format: The slice's size and pixel type, from its header.
        bits_stored: The header's Bits Stored, 1 to Bits Allocated.

    Returns:
        ``slice_format.nbytes`` bytes: the values little-endian, row by row.

    Raises:
        NotDecodedHere: this module cannot or will not decode it; pydicom must.
        VolumeError: the JPEG frame is not the slice's size (refused before it is decoded).
    """
    decoder = load_decoder(syntax)
    frame = single_frame(encapsulated)
    if syntax != RLE_LOSSLESS:
        _check_frame_size(frame, slice_format)
    try:
        pixels = decoder(frame, slice_format)
    except NotDecodedHere:
        raise
    except Exception as exc:
        # A damaged frame, or one this decoder reads otherwise than pydicom's plug-ins would:
        # pydicom decides (and names the problem if there is one).
        raise NotDecodedHere(f"{type(exc).__name__}: {exc}") from exc
    except BaseException as exc:
        # a Rust decoder's panic (pyo3's PanicException) is a BaseException: the same
        if type(exc).__name__ != "PanicException":
            raise
        raise NotDecodedHere(f"the decoder panicked: {exc}") from exc
    if len(pixels) != slice_format.nbytes:
        raise NotDecodedHere(f"{len(pixels)} bytes decoded, {slice_format.nbytes} expected")
    bits, signed = slice_format.pixel
    if syntax in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS):
        shift = bits - _jpeg_precision(frame) if signed else 0
    else:
        shift = bits - bits_stored
    if shift > 0:
        pixels = _clear_unused_bits(pixels, slice_format, shift)
    return pixels


_LOADED: dict[str, FrameDecoder] = {}


def load_decoder(syntax: str) -> FrameDecoder:
    """The frame decoder for ``syntax``, its library imported on first use.

    Called before slices are shared between forked processes, so that the import happens once.

    Raises:
        NotDecodedHere: no decoder for this syntax, or its library cannot be imported.
    """
    decoder = _LOADED.get(syntax)
    if decoder is None:
        loader = LOADERS.get(syntax)
        if loader is None:
            raise NotDecodedHere(f"no fast decoder for transfer syntax {syntax}")
        try:
            decoder = loader()
        except Exception as exc:
            raise NotDecodedHere(f"the decoder for {syntax} is missing ({exc})") from exc
        _LOADED[syntax] = decoder
    return decoder


def _jpeg_frame_header(frame: bytes | memoryview) -> tuple[int, int, int]:
    """The sample precision, lines and samples per line in a JPEG or JPEG-LS codestream's
    frame header (SOFn)."""
    position = 2  # after SOI
    while position + 4 <= len(frame):
        if frame[position] != 0xFF:
            break
        marker = frame[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack_from(">H", frame, position + 2)
        if marker == 0xF7 or (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
            if position + 9 <= len(frame):
                precision, lines, samples = struct.unpack_from(">BHH", frame, position + 4)
                return precision, lines, samples
            break
        position += 2 + length
    raise NotDecodedHere("the codestream has no frame header")


def _jpeg_precision(frame: bytes | memoryview) -> int:
    """The sample precision in a JPEG or JPEG-LS codestream's frame header."""
    return _jpeg_frame_header(frame)[0]


def _check_frame_size(frame: bytes | memoryview, slice_format: SliceFormat) -> None:
    """Refuse a JPEG frame larger than the slice before anything decodes it (a decoder, ours
    or pydicom's, would first allocate what the frame header asks for)."""
    _, lines, samples = _jpeg_frame_header(frame)
    rows, columns = slice_format.size
    if lines == 0:  # the lines come later (a DNL marker): pydicom decides
        raise NotDecodedHere("the frame header leaves its number of lines to a DNL marker")
    if (lines, samples) != (rows, columns):
        raise VolumeError(
            f"its JPEG frame is {lines}x{samples} but its header says {rows}x{columns}: the "
            "file is damaged or inconsistent. Export the series again from the modality or "
            "PACS and import it again."
        )


def _clear_unused_bits(
    pixels: bytes | bytearray | memoryview, slice_format: SliceFormat, shift: int
) -> memoryview:
    """Shift the top ``shift`` bits out and back (sign-extending signed pixels), as pydicom
    does; numpy is imported here, only when a series needs it."""
    import numpy as np

    bits, signed = slice_format.pixel
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    array = np.frombuffer(pixels, dtype).copy()
    np.left_shift(array, shift, out=array)
    np.right_shift(array, shift, out=array)
    return array.data.cast("B")
