"""The frame decoders that :mod:`circus_tasks.volume.compressed` chooses from, one per
transfer syntax family, each library imported on first use.

Each decoder takes one frame (the joined fragments) and the slice's format and returns the
slice's values as bytes, little-endian, before pydicom's bit corrections (applied by
:func:`~circus_tasks.volume.compressed.decode_slice`). Whatever a decoder does not expect, it
leaves to pydicom by raising :class:`NotDecodedHere`. Only the standard library is imported
here.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import struct
import sys
from collections.abc import Callable

from circus_tasks.volume.slice_format import SliceFormat

RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"


class NotDecodedHere(Exception):
    """This module does not decode the slice: pydicom must (and reports any problem)."""


FrameDecoder = Callable[[bytes | memoryview, SliceFormat], bytes | bytearray | memoryview]
"""Decodes a frame to the slice's ``nbytes`` bytes of values, before the bit correction."""

# --- RLE Lossless ------------------------------------------------------------------------------


def _load_rle() -> FrameDecoder:
    decode_segment = _rle_segment_decoder()

    def decode(frame: bytes | memoryview, slice_format: SliceFormat) -> bytearray:
        rows, columns = slice_format.size
        bits, _ = slice_format.pixel
        planes = bits // 8
        pixels = rows * columns
        if len(frame) < 64:
            raise NotDecodedHere("the RLE header is cut short")
        count, *offsets = struct.unpack_from("<16I", frame)
        if count != planes:
            raise NotDecodedHere(f"{count} RLE segments, {planes} expected")
        bounds = [*offsets[:count], len(frame)]
        if bounds[0] < 64 or any(a >= b for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
            raise NotDecodedHere("the RLE segment offsets are out of order or out of bounds")
        if planes == 1:
            plane = decode_segment(bytes(frame[bounds[0] : bounds[1]]))
            _check_plane(plane, pixels)
            return plane
        out = bytearray(pixels * planes)
        # Segments hold the most significant byte plane first; the output is little-endian.
        for index in range(planes):
            plane = decode_segment(bytes(frame[bounds[index] : bounds[index + 1]]))
            _check_plane(plane, pixels)
            out[planes - 1 - index :: planes] = plane
        return out

    return decode


def _check_plane(plane: bytes | bytearray, pixels: int) -> None:
    # pydicom refuses a short segment and warns about (then cuts) a long one: it decides both.
    if len(plane) != pixels:
        raise NotDecodedHere(f"an RLE segment decodes to {len(plane)} bytes, {pixels} expected")


def _rle_segment_decoder() -> Callable[[bytes], bytearray]:
    """pylibjpeg-rle's ``decode_segment``, imported without its package's ``__init__``.

    That ``__init__`` imports numpy for helpers not used here; the extension module itself
    needs nothing but Python. Once the package is imported (pydicom imports it for its
    pylibjpeg plug-in), it is used as is. Its frame decoder is not used: it aborts with a Rust
    panic, not a Python error, on a segment that decodes longer than the image, which pydicom
    accepts; the segment decoder returns what it decoded and the lengths are checked here.
    """
    name = "rle.rle"
    module = sys.modules.get(name)
    if module is None and "rle" in sys.modules:
        import rle.rle

        module = rle.rle
    if module is None:
        package = importlib.util.find_spec("rle")
        if package is None or not package.submodule_search_locations:
            raise ImportError("pylibjpeg-rle is not installed")
        spec = importlib.machinery.PathFinder.find_spec(
            name, list(package.submodule_search_locations)
        )
        if spec is None or spec.loader is None:
            raise ImportError("pylibjpeg-rle has no rle.rle extension module")
        module = importlib.util.module_from_spec(spec)
        # Registered under its own name, so that importing the package later reuses it.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    decode_segment: Callable[[bytes], bytearray] = module.decode_segment
    return decode_segment


# --- JPEG Baseline -----------------------------------------------------------------------------


def _load_pillow_jpeg() -> FrameDecoder:
    from PIL import JpegImagePlugin

    def decode(frame: bytes | memoryview, slice_format: SliceFormat) -> bytes:
        rows, columns = slice_format.size
        if slice_format.pixel[0] != 8:
            raise NotDecodedHere("JPEG Baseline samples are 8 bits; Bits Allocated is not 8")
        with JpegImagePlugin.JpegImageFile(io.BytesIO(frame)) as image:
            if image.mode != "L" or image.size != (columns, rows):
                raise NotDecodedHere(f"a {image.mode} JPEG of {image.size}, not one grey plane")
            data: bytes = image.tobytes()
        return data

    return decode


# --- JPEG Lossless and JPEG-LS -----------------------------------------------------------------


def _load_imagecodecs(name: str) -> FrameDecoder:
    import imagecodecs
    import numpy as np

    codec = getattr(imagecodecs, name.upper())
    if not codec.available:
        raise ImportError(f"imagecodecs was built without {name}")
    decode_function = getattr(imagecodecs, f"{name}_decode")

    def decode(frame: bytes | memoryview, slice_format: SliceFormat) -> memoryview:
        bits, _ = slice_format.pixel
        array = decode_function(frame)
        if array.shape != slice_format.size or array.dtype.itemsize * 8 != bits:
            # e.g. 8-bit samples in 16 bits allocated, which pydicom widens: it decides.
            raise NotDecodedHere(f"decoded to {array.dtype} {array.shape}")
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        return little.data.cast("B")

    return decode


LOADERS: dict[str, Callable[[], FrameDecoder]] = {
    RLE_LOSSLESS: _load_rle,
    JPEG_BASELINE: _load_pillow_jpeg,
    JPEG_LOSSLESS: lambda: _load_imagecodecs("jpeg8"),
    JPEG_LOSSLESS_SV1: lambda: _load_imagecodecs("jpeg8"),
    JPEG_LS_LOSSLESS: lambda: _load_imagecodecs("jpegls"),
    JPEG_LS_NEAR_LOSSLESS: lambda: _load_imagecodecs("jpegls"),
}
"""Transfer syntax -> the function that imports and returns its frame decoder."""
