"""Tests for circus_tasks/volume/compressed.py: compressed slices decoded from their fragments.

Every series is real DICOM files, written by ``write_series`` or re-encoded by pydicom's and
imagecodecs' encoders (benchmark extras, installed by ``make test``). The volume is written
both ways (parsing every header, and from the facts import stored), and compared voxel for
voxel with ``pydicom.dcmread(path).pixel_array``; the fast decoder must have done the work
(pydicom's decoding is the fallback, counted here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from circus_tasks.cli.volume import series_slices
from circus_tasks.errors import VolumeError
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from circus_tasks.volume import compressed, from_facts
from circus_tasks.volume.slice_format import SliceFormat
from circus_tasks.volume.writer import write_volume

pytest.importorskip("imagecodecs")  # the JPEG frames are encoded (and decoded) by imagecodecs


def _reencoded(files: list[Path], syntax: str, **options: Any) -> None:
    """Re-encode native slices in place: JPEG-LS by pydicom (pyjpegls), JPEG Lossless with a
    predictor other than 1 (process 14, not SV1) by imagecodecs (libjpeg-turbo)."""
    import imagecodecs

    for path in files:
        ds = pydicom.dcmread(path)
        if syntax == JPEGLossless:
            pixels = ds.pixel_array
            # the stored bits as they are: two's complement in Bits Stored bits when signed
            unsigned = pixels.view(f"u{pixels.itemsize}") & ((1 << ds.BitsStored) - 1)
            frame = imagecodecs.jpeg8_encode(
                unsigned, lossless=True, predictor=7, bitspersample=ds.BitsStored
            )
            ds.PixelData = encapsulate([bytes(frame)])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = syntax
        else:
            pytest.importorskip("jpeg_ls")  # pyjpegls, pydicom's JPEG-LS encoder
            ds.compress(syntax, generate_instance_uid=False, **options)
        ds.save_as(path, enforce_file_format=True)


def _volume(
    dtype: str, bits_stored: int, slices: int = 3, shape: tuple[int, int] = (16, 12)
) -> np.ndarray:
    """Random stored values that fit ``bits_stored`` (two's complement when signed)."""
    rng = np.random.default_rng(bits_stored + len(dtype))
    if np.dtype(dtype).kind == "i":
        low, high = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        low, high = 0, (1 << bits_stored) - 1
    return rng.integers(low, high, size=(slices, *shape), endpoint=True).astype(dtype)


def _series(
    folder: Path, syntax: str, dtype: str, bits_stored: int, slices: int = 3, **options: Any
) -> list[Path]:
    volume = _volume(dtype, bits_stored, slices)
    extra = {"BitsStored": bits_stored, "HighBit": bits_stored - 1}
    if syntax in (RLELossless, JPEGLosslessSV1, JPEGBaseline8Bit):
        return write_series(folder, volume, transfer_syntax=syntax, extra=extra)
    files = write_series(folder, volume, extra=extra)
    _reencoded(files, syntax, **options)
    return files


@pytest.fixture
def by_pydicom(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The slices that pydicom decoded for the volume writer (the fast decoders declined)."""
    from circus_tasks.volume import parsed, slice_reading

    decoded: list[Path] = []
    real = slice_reading.decoded_pixels

    def counting(ds: Any, path: Path, slice_format: SliceFormat) -> Any:
        decoded.append(path)
        return real(ds, path, slice_format)

    monkeypatch.setattr(parsed, "decoded_pixels", counting)
    monkeypatch.setattr(slice_reading, "decoded_pixels", counting)
    return decoded


def _pydicoms(files: list[Path], plugin: str = "") -> np.ndarray:
    arrays = []
    for path in files:
        ds = pydicom.dcmread(path)
        if plugin:
            ds.pixel_array_options(decoding_plugin=plugin)
        arrays.append(ds.pixel_array)
    return np.stack(arrays)


def _raw(folder: Path, like: np.ndarray) -> np.ndarray:
    dtype = like.dtype.newbyteorder("<")
    return np.fromfile(folder / "0.raw", dtype=dtype).reshape(like.shape)


def _import(folder: Path) -> str:
    report = import_dicom(folder)
    assert not report.problems, report.problems
    (uid,) = report.series_uids
    return uid


CASES = [
    # (transfer syntax, dtype, Bits Stored, encoder options)
    (RLELossless, "int16", 16, {}),
    (RLELossless, "uint16", 12, {}),
    (RLELossless, "int16", 12, {}),
    (RLELossless, "uint8", 8, {}),
    (RLELossless, "int8", 8, {}),
    (JPEGLosslessSV1, "int16", 16, {}),
    (JPEGLosslessSV1, "uint16", 16, {}),
    (JPEGLosslessSV1, "uint8", 8, {}),
    (JPEGLossless, "uint16", 12, {}),  # predictor 7, 12-bit precision
    (JPEGLossless, "int16", 12, {}),
    (JPEGLSLossless, "int16", 16, {}),
    (JPEGLSLossless, "int16", 12, {}),  # signed: sign-extended from the codestream's precision
    (JPEGLSLossless, "uint16", 12, {}),
    (JPEGLSLossless, "uint8", 8, {}),
    (JPEGLSNearLossless, "int16", 12, {"jls_error": 2}),
    (JPEGBaseline8Bit, "uint8", 8, {}),
]


@pytest.mark.parametrize(("syntax", "dtype", "bits_stored", "options"), CASES)
def test_each_syntax_gives_pydicoms_voxels_both_ways(
    home: Path,
    tmp_path: Path,
    by_pydicom: list[Path],
    syntax: str,
    dtype: str,
    bits_stored: int,
    options: dict[str, Any],
) -> None:
    folder = tmp_path / "dicom"
    files = _series(folder, syntax, dtype, bits_stored, **options)
    expected = _pydicoms(files)
    uid = _import(folder)
    stored_files, facts, _ = series_slices(uid)
    assert all(piece is not None and piece.transfer_syntax == syntax for piece in facts)

    write_volume(stored_files, tmp_path / "stored", 0, stored=facts)
    write_volume(stored_files, tmp_path / "parsed", 0)

    np.testing.assert_array_equal(_raw(tmp_path / "stored", expected), expected)
    for name in ("0.raw", "0.mhd", "0.json"):
        assert (tmp_path / "stored" / name).read_bytes() == (
            tmp_path / "parsed" / name
        ).read_bytes()
    assert by_pydicom == []  # the fast decoders did it all
    if syntax != JPEGBaseline8Bit and syntax != JPEGLSNearLossless:  # lossless: the voxels made
        written = _volume(dtype, bits_stored)
        np.testing.assert_array_equal(expected, written)


def test_jpeg_baseline_is_decoded_as_pydicoms_pillow_and_gdcm_plugins_decode_it(
    tmp_path: Path, by_pydicom: list[Path]
) -> None:
    # Lossy: decoders may round differently. Ours is libjpeg-turbo through Pillow, the library
    # of pydicom's Pillow plug-in; pydicom tries its GDCM plug-in first, which agrees here.
    volume = (np.arange(4 * 64 * 48) * 7919 % 251).astype(np.uint8).reshape(4, 64, 48)
    files = write_series(tmp_path / "dicom", volume, transfer_syntax=JPEGBaseline8Bit)

    write_volume(files, tmp_path / "in", 0)

    raw = _raw(tmp_path / "in", volume)
    np.testing.assert_array_equal(raw, _pydicoms(files, "pillow"))
    np.testing.assert_array_equal(raw, _pydicoms(files, "gdcm"))
    assert by_pydicom == []


def test_a_series_of_compressed_and_native_slices_is_written_both_ways(
    tmp_path: Path, forks: list[int], by_pydicom: list[Path]
) -> None:
    folder = tmp_path / "dicom"
    files = _series(folder, RLELossless, "int16", 16, slices=8)
    for path in files[::2]:  # every other slice back to native little-endian
        ds = pydicom.dcmread(path)
        ds.decompress(generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
    stored_files, facts, _ = series_slices(_import(folder))
    assert [piece.transfer_syntax if piece else "none" for piece in facts] == [
        None,
        RLELossless,
    ] * 4

    write_volume(stored_files, tmp_path / "stored", 0, stored=facts, processes=2)
    write_volume(stored_files, tmp_path / "parsed", 0, processes=2)

    expected = _pydicoms(stored_files)
    np.testing.assert_array_equal(_raw(tmp_path / "stored", expected), expected)
    assert (tmp_path / "stored" / "0.raw").read_bytes() == (
        tmp_path / "parsed" / "0.raw"
    ).read_bytes()
    assert (tmp_path / "stored" / "0.json").read_bytes() == (
        tmp_path / "parsed" / "0.json"
    ).read_bytes()
    assert len(forks) == 2 and by_pydicom == []


def test_multi_fragment_frames_are_joined(tmp_path: Path, by_pydicom: list[Path]) -> None:
    files = _series(tmp_path / "dicom", RLELossless, "int16", 16)
    for path in files:  # the same frame, cut into three fragments
        ds = pydicom.dcmread(path)
        frame = bytes(compressed.single_frame(ds.PixelData))
        ds.PixelData = encapsulate([frame], fragments_per_frame=3)
        ds.save_as(path, enforce_file_format=True)

    write_volume(files, tmp_path / "in", 0)

    np.testing.assert_array_equal(_raw(tmp_path / "in", _volume("int16", 16)), _pydicoms(files))
    assert by_pydicom == []


# --- sharing the slices between processes ------------------------------------------------------


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLosslessSV1, JPEGLSLossless])
def test_several_processes_write_what_one_writes(
    home: Path, tmp_path: Path, forks: list[int], syntax: str
) -> None:
    folder = tmp_path / "dicom"
    _series(folder, syntax, "int16", 16, slices=9)
    files, facts, _ = series_slices(_import(folder))
    outputs: dict[str, dict[str, bytes]] = {}

    for name, processes, facts_given in [
        ("stored-1", 1, facts),
        ("stored-3", 3, facts),
        ("parsed-1", 1, None),
        ("parsed-3", 3, None),
    ]:
        before = len(forks)
        write_volume(files, tmp_path / name, 0, processes=processes, stored=facts_given)
        assert len(forks) - before == (2 if processes == 3 else 0)
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}

    assert outputs["stored-3"] == outputs["stored-1"] == outputs["parsed-1"] == outputs["parsed-3"]
    np.testing.assert_array_equal(_raw(tmp_path / "stored-3", _pydicoms(files)), _pydicoms(files))


def test_stored_compressed_slices_are_shared_only_when_each_process_gets_enough(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circus_tasks.volume import forked

    made: list[int] = []
    real_fork = os.fork
    monkeypatch.setattr(forked.os, "fork", lambda: made.append(1) or real_fork())
    folder = tmp_path / "dicom"
    _series(
        folder, RLELossless, "int16", 16, slices=from_facts.COMPRESSED_SLICES_PER_PROCESS * 2 - 1
    )
    files, facts, _ = series_slices(_import(folder))

    write_volume(files, tmp_path / "a", 0, processes=2, stored=facts)
    assert made == []  # 15 slices: one process
    write_volume([*files, files[-1]], tmp_path / "b", 0, processes=2, stored=[*facts, facts[-1]])
    assert len(made) == 1


# --- damaged slices ----------------------------------------------------------------------------


def _damage_keeping_size_and_time(path: Path, change: Callable[[bytearray, int], None]) -> None:
    """Change bytes of the first fragment in place; the facts import stored still apply."""
    status = path.stat()
    data = bytearray(path.read_bytes())
    ds = pydicom.dcmread(path, defer_size=64)
    table = ds.get_item(0x7FE00010, keep_deferred=True).value_tell  # the offset table's item
    table_length = int.from_bytes(data[table + 4 : table + 8], "little")
    change(data, table + 8 + table_length + 8)  # the first fragment's first byte
    path.write_bytes(bytes(data))
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


def _segment_count_of_7(data: bytearray, start: int) -> None:
    data[start : start + 4] = (7).to_bytes(4, "little")


def _scrambled(data: bytearray, start: int) -> None:
    data[start + 2 : start + 40] = b"\xff" * 38  # the codestream's first marker segments


@pytest.mark.parametrize(
    ("syntax", "damage", "message"),
    [
        (RLELossless, _segment_count_of_7, "number of RLE segments"),
        (JPEGLosslessSV1, _scrambled, ""),
        (JPEGLSLossless, _scrambled, ""),
    ],
)
@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("use_facts", [True, False])
def test_a_damaged_slice_is_a_volume_error_and_leaves_no_output(
    home: Path,
    tmp_path: Path,
    forks: list[int],
    syntax: str,
    damage: Callable[[bytearray, int], None],
    message: str,
    processes: int,
    use_facts: bool,
) -> None:
    folder = tmp_path / "dicom"
    _series(folder, syntax, "int16", 16, slices=6)
    files, facts, _ = series_slices(_import(folder))
    _damage_keeping_size_and_time(files[4], damage)  # in the second process's share
    assert all(
        piece is not None and piece.matches_file(f) for f, piece in zip(files, facts, strict=True)
    )
    out = tmp_path / "in"

    with pytest.raises(VolumeError) as caught:
        write_volume(files, out, 0, processes=processes, stored=facts if use_facts else None)

    text = " ".join(str(caught.value).split())
    assert f"The pixel data of {files[4]} cannot be decoded ({syntax})" in text
    assert message in text
    assert "re-import the series from its source or remove the slice from the range" in text
    assert list(out.iterdir()) == []  # neither the three files nor their temporaries
    assert (len(forks) > 0) is (processes == 2)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLosslessSV1, JPEGLSLossless, JPEGBaseline8Bit])
def test_a_truncated_slice_is_a_volume_error_and_leaves_no_output(
    home: Path, tmp_path: Path, syntax: str
) -> None:
    folder = tmp_path / "dicom"
    if syntax == JPEGBaseline8Bit:
        _series(folder, syntax, "uint8", 8, slices=4)
    else:
        _series(folder, syntax, "int16", 16, slices=4)
    files, facts, _ = series_slices(_import(folder))
    out = tmp_path / "in"
    write_volume(files, out, 0, stored=facts)  # a valid volume from an earlier run
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 200])  # cut inside the last fragment

    assert facts[2] is not None and not facts[2].matches_file(files[2])
    with pytest.raises(VolumeError) as caught:
        write_volume(files, out, 0, stored=facts)

    text = " ".join(str(caught.value).split())
    assert str(files[2]) in text
    assert "re-import the series" in text.lower()
    # the earlier run's complete set stays; nothing half-written is added to it
    assert sorted(p.name for p in out.iterdir()) == ["0.json", "0.mhd", "0.raw"]


def test_a_failed_rename_leaves_no_mixed_set(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dicom"
    files = _series(folder, RLELossless, "int16", 16)
    out = tmp_path / "in"
    real_replace = Path.replace

    def failing_for_json(self: Path, target: Any) -> Any:
        if str(target).endswith("0.json"):
            raise OSError(28, "No space left on device")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_for_json)
    with pytest.raises(OSError):
        write_volume(files, out, 0)

    assert list(out.iterdir()) == []  # the renamed 0.raw is gone too


# --- declining: pydicom decodes --------------------------------------------------------------


def test_what_the_fast_decoders_decline_pydicom_decodes(
    tmp_path: Path, by_pydicom: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _series(tmp_path / "dicom", JPEGLSLossless, "int16", 12)
    expected = _pydicoms(files)

    def declining(syntax: str) -> Any:
        raise compressed.NotDecodedHere("not here")

    monkeypatch.setattr(compressed, "load_decoder", declining)
    write_volume(files, tmp_path / "in", 0)

    np.testing.assert_array_equal(_raw(tmp_path / "in", expected), expected)
    assert by_pydicom == files


@pytest.mark.filterwarnings("ignore:The decoded RLE segment contains non-conformant padding")
def test_an_rle_segment_longer_than_the_image_is_left_to_pydicom(
    tmp_path: Path, by_pydicom: list[Path]
) -> None:
    # pydicom accepts (and cuts) a segment that decodes past the image; pylibjpeg-rle's frame
    # decoder aborts on this one with a Rust panic, which no `except Exception` catches. The
    # segment decoder is used instead: it returns the long segment, and the slice goes to
    # pydicom's own RLE decoder.
    files = _series(tmp_path / "dicom", RLELossless, "int16", 16, slices=2)
    ds = pydicom.dcmread(files[1])
    frame = bytearray(compressed.single_frame(ds.PixelData))
    second = int.from_bytes(frame[8:12], "little")  # where the low-byte segment starts
    extra = b"\xfe\x07"  # a run of three bytes more at the end of the high-byte segment
    frame[second:second] = extra
    frame[8:12] = (second + len(extra)).to_bytes(4, "little")
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(files[1], enforce_file_format=True)
    expected = _pydicoms(files, "pydicom")

    write_volume(files, tmp_path / "in", 0)

    np.testing.assert_array_equal(_raw(tmp_path / "in", expected), expected)
    np.testing.assert_array_equal(expected, _volume("int16", 16, slices=2))
    assert by_pydicom == [files[1]]


def test_single_frame_reads_the_items_and_refuses_damaged_ones() -> None:
    def item(value: bytes) -> bytes:
        return b"\xfe\xff\x00\xe0" + len(value).to_bytes(4, "little") + value

    delimiter = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    assert compressed.single_frame(item(b"") + item(b"ab") + item(b"cd") + delimiter) == b"abcd"
    assert compressed.single_frame(item(b"") + item(b"ab") + delimiter + b"trailing") == b"ab"
    assert compressed.single_frame(item(b"\0\0\0\0") + item(b"ab")) == b"ab"  # no delimiter
    for damaged in (item(b"") + delimiter, item(b"") + item(b"abcd")[:-2], b"\x00" * 16):
        with pytest.raises(compressed.NotDecodedHere):
            compressed.single_frame(damaged)


# --- imports -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("syntax", "dtype", "bits_stored", "loaded"),
    [
        (RLELossless, "int16", 16, "[]"),
        (JPEGBaseline8Bit, "uint8", 8, "[]"),
        (JPEGLosslessSV1, "int16", 16, "['numpy']"),
        (RLELossless, "int16", 12, "['numpy']"),  # the unused bits are cleared with numpy
    ],
)
def test_circus_volume_loads_no_pydicom_and_numpy_only_where_needed(
    home: Path, tmp_path: Path, syntax: str, dtype: str, bits_stored: int, loaded: str
) -> None:
    folder = tmp_path / "dicom"
    files = _series(folder, syntax, dtype, bits_stored, slices=3)
    expected = _pydicoms(files)
    uid = _import(folder)
    probe = (
        "import sys; from circus_tasks.cli.launcher import main; code = main(sys.argv[1:]);"
        "print(sorted(m for m in ('pydicom', 'numpy') if m in sys.modules)); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "volume", uid, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == loaded
    assert done.stderr == ""
    np.testing.assert_array_equal(_raw(tmp_path / "out", expected), expected)


def _frame_of_4096_lines(data: bytearray, start: int) -> None:
    """Make the codestream's frame header (SOFn) claim 4096 x 4096 samples."""
    position = start + 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC3, 0xF7):
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    data[position + 5 : position + 9] = (4096).to_bytes(2, "big") * 2


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEGBaseline8Bit])
@pytest.mark.parametrize("use_facts", [True, False])
def test_a_jpeg_frame_larger_than_its_slice_is_refused_before_it_is_decoded(
    home: Path, tmp_path: Path, syntax: str, use_facts: bool
) -> None:
    """Decoding a frame allocates what its header asks for (here 4096 x 4096, for a 16 x 16
    slice); a hostile file could ask for gigabytes. It is refused, naming the file."""
    folder = tmp_path / "dicom"
    baseline = syntax == JPEGBaseline8Bit
    _series(folder, syntax, "uint8" if baseline else "int16", 8 if baseline else 16, slices=3)
    files, facts, _ = series_slices(_import(folder))
    _damage_keeping_size_and_time(files[1], _frame_of_4096_lines)
    out = tmp_path / "in"

    with pytest.raises(VolumeError) as caught:
        write_volume(files, out, 0, processes=1, stored=facts if use_facts else None)

    text = " ".join(str(caught.value).split())
    rows, columns = facts[1].format.size if facts[1] else (0, 0)
    assert f"{files[1]}: its JPEG frame is 4096x4096 but its header says {rows}x{columns}" in text
    assert "Export the series again" in text
    assert list(out.iterdir()) == []


def test_a_decoder_that_panics_leaves_the_slice_to_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """pylibjpeg-rle is Rust: a panic reaches Python as pyo3's PanicException, which is not an
    Exception; it must not end the process that writes the volume."""
    from circus_tasks.volume import compressed

    class PanicException(BaseException):  # as pyo3 names it
        pass

    def panics(_frame: Any, _slice_format: Any) -> bytes:
        raise PanicException("index out of bounds")

    monkeypatch.setitem(compressed._LOADED, RLELossless, panics)
    encapsulated = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\xfe\xff\x00\xe0\x04\x00\x00\x00abcd"
    with pytest.raises(compressed.NotDecodedHere, match="the decoder panicked"):
        compressed.decode_slice(
            RLELossless, encapsulated, SliceFormat((2, 2), (16, 1), (1.0, 1.0)), 16
        )
    monkeypatch.setitem(
        compressed._LOADED, RLELossless, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        compressed.decode_slice(
            RLELossless, encapsulated, SliceFormat((2, 2), (16, 1), (1.0, 1.0)), 16
        )
