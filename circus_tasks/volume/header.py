"""DICOM headers as the plain JSON of ``N.json``, split into ``common`` and ``unique``.

Keys are ``gggg,eeee`` in lower-case hex; numbers stay numbers, names and text become strings,
sequences become lists of objects. Binary values, the file meta group, group lengths, Pixel
Data, identifying attributes (at any depth) and, unless asked for, private attributes are left
out (``docs/plugin-contract.md``).

:class:`HeaderSplit` takes one slice header at a time and keeps only what the output needs: the
first slice's values, and for every other slice the values that are not (or no longer) shared.
An element whose raw bytes equal the first slice's is known to give the same value without being
decoded again, so a typical CT series decodes only the handful of attributes that change from
slice to slice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from decimal import Decimal
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PersonName

from circus_tasks.volume.profile import in_profile

__all__ = [
    "IDENTIFYING_KEYWORDS",
    "IDENTIFYING_TAGS",
    "PIXEL_DATA_TAGS",
    "HeaderSplit",
    "dataset_to_json",
    "element_text",
    "fingerprint",
    "is_binary",
    "left_out_by_tag",
]

IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionalDepartmentName",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "RequestingPhysicianIdentificationSequence",
    "RequestingPhysician",
    "RequestingService",
)
"""Attributes never written to ``N.json``, at any depth.

CIRCUS's list (institution name, address and code sequence, department, physicians of record,
performing and reading physicians, operators' name, patient's name, ID and birth date,
requesting physician and service), plus the identification sequences that name the same
people, as CIRCUS itself drops them.
"""


def _tag_of(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - guards the table above against typos
        raise ValueError(f"{keyword} is not a DICOM keyword")
    return tag


IDENTIFYING_TAGS: frozenset[int] = frozenset(_tag_of(k) for k in IDENTIFYING_KEYWORDS)
"""The tags of :data:`IDENTIFYING_KEYWORDS`, as ``0xggggeeee`` integers."""

PIXEL_DATA_TAGS: frozenset[int] = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float, Double Float and (integer) Pixel Data."""

_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_CHARSET = 0x00080005


def _key(tag: int) -> str:
    tag = Tag(tag)
    return f"{tag.group:04x},{tag.element:04x}"


def _is_binary(vr: str) -> bool:
    # Ambiguous VRs such as "OB or OW" count as binary when any choice is binary.
    binary = _BINARY.get(vr)
    if binary is None:
        binary = _BINARY[vr] = any(choice in _BINARY_VRS for choice in str(vr).split(" or "))
    return binary


_BINARY: dict[str, bool] = {}
"""VR -> whether :func:`_is_binary` (a VR is a str, or a str subclass)."""


def _left_out_by_tag(tag: int, include_private: bool) -> bool:
    """Whether a tag is left out whatever its value (binary VRs are checked separately)."""
    return (
        tag >> 16 == 0x0002
        or tag & 0xFFFF == 0
        or tag in PIXEL_DATA_TAGS
        or tag in IDENTIFYING_TAGS
        or in_profile(tag)
        or (bool(tag >> 16 & 1) and not include_private)
    )


def dataset_to_json(ds: Dataset, include_private: bool) -> dict[str, Any]:
    """Turn a dataset (or a sequence item) into a plain, de-identified JSON object."""
    result: dict[str, Any] = {}
    for elem in ds:
        if _left_out_by_tag(elem.tag, include_private) or _is_binary(elem.VR):
            continue
        result[_key(elem.tag)] = _element_value(elem, include_private)
    return result


def _element_value(elem: DataElement, include_private: bool) -> Any:
    if elem.VR == "SQ":
        return [dataset_to_json(item, include_private) for item in elem.value]
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        return [_scalar(item, elem.VR) for item in value]
    return _scalar(value, elem.VR)


def _scalar(value: Any, vr: str) -> Any:
    """One value as plain JSON: numbers as numbers, names and text as strings."""
    if value is None:
        return None
    if vr == "AT":
        return _key(BaseTag(value))
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, int):  # includes IS
        return int(value)
    if isinstance(value, float | Decimal):  # includes DS
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def fingerprint(raw: object) -> Hashable | None:
    """What makes an undecoded element decode to the same value, or ``None`` if unknown.

    Equal bytes with the same VR and encoding decode to equal values (the character set is
    compared separately). Decoded elements, deferred values and implicit-VR private elements
    (whose VR hangs on their private creator) have no fingerprint and are always decoded.
    """
    if not isinstance(raw, RawDataElement) or raw.value is None:
        return None
    if raw.VR is None and raw.tag >> 16 & 1:
        return None
    return (raw.VR, raw.is_implicit_VR, raw.is_little_endian, raw.value)


class HeaderSplit:
    """Builds ``{"common": {...}, "unique": [{...}, ...]}`` one slice header at a time.

    An attribute is common when every slice has it with a value equal to the first slice's;
    all other attributes go to the slices that have them. Memory holds the first slice's values
    and each slice's values that are not common, which is what the output holds anyway.
    """

    def __init__(self, include_private: bool) -> None:
        self._include_private = include_private
        self._first: dict[int, tuple[str, Any]] = {}  # tag -> (key, value) of the first slice
        self._first_prints: dict[int, Hashable] = {}  # tag -> fingerprint of the first slice
        self._common: dict[int, str] = {}  # tags still shared by every slice so far -> key
        self._unique: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._unique)

    def add(self, ds: Dataset) -> None:
        """Take the next slice's header, in range order."""
        first_slice = not self._unique
        same_charset = first_slice or (
            fingerprint(ds.get_item(_CHARSET, keep_deferred=True))
            == self._first_prints.get(_CHARSET)
        )
        values: dict[str, Any] = {}
        still_common: set[int] = set()
        # Tag order matters for the first slice only (it orders "common"); the values of the
        # others are sorted by document(). items() gives the elements as read (undecoded).
        elements = sorted(ds.items()) if first_slice else list(ds.items())
        for tag, raw in elements:
            if _left_out_by_tag(tag, self._include_private):
                continue
            print_ = fingerprint(raw)
            if first_slice:
                if print_ is not None:
                    self._first_prints[tag] = print_
            elif same_charset and print_ is not None and self._first_prints.get(tag) == print_:
                # Same bytes as the first slice: same decision, same value.
                if tag in self._common:
                    still_common.add(tag)
                elif tag in self._first:
                    key, value = self._first[tag]
                    values[key] = value
                continue
            vr = getattr(raw, "VR", None)
            if vr is not None and _is_binary(vr):
                continue
            elem = ds[tag]
            if _is_binary(elem.VR):
                continue
            key, value = _key(tag), _element_value(elem, self._include_private)
            if first_slice:
                self._first[tag] = (key, value)
                self._common[tag] = key
            elif tag in self._common and self._first[tag][1] == value:
                still_common.add(tag)
            else:
                values[key] = value
        if not first_slice:
            for dropped in [t for t in self._common if t not in still_common]:
                # No longer shared: every earlier slice had the first slice's value.
                key, value = self._first[dropped]
                for earlier in self._unique:
                    earlier[key] = value
                del self._common[dropped]
        self._unique.append(values)

    def merge(self, later: HeaderSplit) -> None:
        """Append the slices of a split that continued from a copy of this one.

        ``later`` must have been copied from this split (e.g. by forking a process) right
        after the first slice was added, then fed slices that come after all of this split's
        slices: the result is what adding all of them here, in order, would have given.
        """
        if not self._unique or not later._unique or later._first.keys() != self._first.keys():
            raise ValueError("merge() needs a split continued from this one's first slice")
        for dropped in [t for t in self._common if t not in later._common]:
            key, value = self._first[dropped]
            for earlier in self._unique:
                earlier[key] = value
            del self._common[dropped]
        # The later slices (after its copy of the first one) lack what was still common there.
        added = later._unique[1:]
        for tag in later._common.keys() - self._common.keys():
            key, value = self._first[tag]
            for values in added:
                values[key] = value
        self._unique.extend(added)

    def document(self) -> dict[str, Any]:
        """The ``N.json`` object; keys in tag order, slices in the order they were added."""
        common = {key: self._first[tag][1] for tag, key in self._common.items()}
        unique = [dict(sorted(values.items())) for values in self._unique]
        return {"common": common, "unique": unique}


def is_binary(vr: str) -> bool:
    """Whether an element of this VR is left out of ``N.json`` (binary, or possibly binary)."""
    return _is_binary(vr)


def left_out_by_tag(tag: int) -> bool:
    """Whether ``N.json`` leaves an element out by its tag alone (private attributes too)."""
    return _left_out_by_tag(tag, False)


def element_text(ds: Dataset, tag: int) -> str | None:
    """``ds[tag]`` as ``json.dumps`` writes a dict entry of ``N.json`` (``"gggg,eeee":
    value``, private attributes left out), or ``None`` when the element is binary once decoded
    (left out, as :class:`HeaderSplit` does)."""
    elem = ds[tag]
    if _is_binary(elem.VR):
        return None
    return f"{json.dumps(_key(tag))}: {json.dumps(_element_value(elem, False))}"
