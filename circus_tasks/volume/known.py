"""What a slice's elements decode to, remembered by their bytes: import decodes an element once
per distinct value, not once per file.

An element's decoded value hangs on its VR, byte order and bytes as read, and on the dataset's
character set and Pixel Representation (:func:`read_context`); equal bytes under an equal
context decode to equal values (:func:`~circus_tasks.volume.header.fingerprint`'s rule, which
:class:`~circus_tasks.volume.header.HeaderSplit` relies on across the slices of a series).
Across the files of a series, and the series of an import, most elements repeat byte for byte;
only a slice's own UIDs, numbers, positions and times are new. A key is only given where the
element alone tells its VR (:func:`as_read`); any other element is decoded as pydicom decodes
it, in the dataset as it is then, as before.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from circus_tasks.volume.header import element_text, fingerprint, is_binary, left_out_by_tag

__all__ = ["Elements", "KnownValues", "SliceObjects", "as_read", "read_elements"]

Elements = list[tuple[int, Hashable | None]]
"""A dataset's top-level elements as read, in tag order: (tag as a plain number, its
:func:`as_read` key or ``None``)."""

LIMIT = 50_000
"""Remembered entries before a memory starts again (most are shared by many files; the rest are
one slice's own)."""

_MISSING = object()
_CHARSET = 0x00080005
_REPRESENTATION = 0x00280103
_PIXEL_DATA = 0x7FE00010

_DICTIONARY_VRS: dict[int, str | None] = {}
"""Tag -> the VR an implicit-VR element of it decodes with, or ``None`` when another attribute
or a private creator decides it (ambiguous, private, unknown)."""


def _dictionary_vr(tag: int) -> str | None:
    vr = _DICTIONARY_VRS.get(tag, _MISSING)
    if vr is _MISSING:
        try:
            found = dictionary_VR(tag) if not tag >> 16 & 1 else None
        except KeyError:
            found = None
        vr = _DICTIONARY_VRS[tag] = None if found is None or " or " in found else found
    return vr  # type: ignore[return-value]


def as_read(tag: int, raw: object) -> Hashable | None:
    """What decides an element's decoded value besides the dataset's :func:`read_context`:
    its VR, byte order and bytes as read; ``None`` when the element alone does not tell
    (decoded already, deferred, VR UN, or an implicit VR that is ambiguous or private)."""
    if type(raw) is not RawDataElement or raw.value is None:
        return None
    vr = raw.VR
    if vr is None:
        vr = _dictionary_vr(tag)
        if vr is None:
            return None
    elif vr == "UN":
        return None
    return (vr, raw.is_little_endian, raw.value)


def read_elements(ds: Dataset) -> Elements:
    """``ds``'s top-level elements as they are now (right after reading: as read), in tag
    order, each with its :func:`as_read` key."""
    return sorted((int(tag), as_read(tag, raw)) for tag, raw in ds.items())


def read_context(ds: Dataset, keys: dict[int, Hashable | None]) -> Hashable:
    """The part of a dataset every element's decoding may hang on: its character set and its
    Pixel Representation, by their bytes as read (``keys``: :func:`read_elements` as a dict)."""
    context: list[Hashable] = []
    for tag in (_CHARSET, _REPRESENTATION):
        key = keys.get(tag, _MISSING)
        if key is None:  # present, its bytes not known alone: its value as it is now
            element = ds.get_item(tag, keep_deferred=True)
            print_ = fingerprint(element)
            key = print_ if print_ is not None else ("value", repr(element.value))
        context.append(None if key is _MISSING else key)
    return tuple(context)


class KnownValues:
    """A parsed dataset read through a memory of decoded values: ``values.get(keyword)`` and
    ``values.Keyword`` give what the dataset gives, decoding an element only when its key has
    not been decoded before in this memory; anything else is the dataset's own answer. A value
    given from memory is shared with the datasets it was decoded for: read it, never change it.
    """

    __slots__ = ("_keys", "_memo", "context", "dataset", "elements")

    def __init__(self, ds: Dataset, elements: Elements, memo: dict[Hashable, Any]) -> None:
        self.dataset = ds
        self.elements = elements
        self._keys = dict(elements)
        self.context = read_context(ds, self._keys)
        """The dataset's :func:`read_context`."""
        if len(memo) > LIMIT:
            memo.clear()
        self._memo = memo

    def _value(self, tag: int) -> Any:
        key = self._keys[tag]
        if key is None:
            return self.dataset[tag].value
        memo_key = (tag, key, self.context)
        value = self._memo.get(memo_key, _MISSING)
        if value is _MISSING:
            value = self._memo[memo_key] = self.dataset[tag].value
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        """As :meth:`pydicom.dataset.Dataset.get`."""
        tag = _keyword_tag(key) if isinstance(key, str) else None
        if tag is None:
            return self.dataset.get(key, default)
        if tag not in self._keys:
            return default  # a keyword the dataset lacks (it gains no element as it is read)
        try:
            return self._value(tag)
        except AttributeError:  # as Dataset.get: the default
            return self.dataset.get(key, default)

    def __getattr__(self, name: str) -> Any:
        tag = _keyword_tag(name)
        if tag is None or tag not in self._keys:
            return getattr(self.dataset, name)
        return self._value(tag)

    def __contains__(self, key: object) -> bool:
        return key in self.dataset  # type: ignore[operator]  # any key a Dataset takes

    def attributes(self, memo: dict[Hashable, tuple[str, bool]]) -> list[str]:
        """The keywords of the top-level attributes that have a value, but the pixel data,
        sorted: what iterating the dataset gives (every element decoded, in tag order), each
        element's keyword and emptiness taken from ``memo`` where its key was seen before."""
        if len(memo) > LIMIT:
            memo.clear()
        ds, context, keywords = self.dataset, self.context, []
        for tag, key in self.elements:
            if tag == _PIXEL_DATA:
                continue  # left out by its keyword; bytes or left in the file: decoding cannot fail
            if key is None:
                element = ds[tag]
                keyword, empty = element.keyword, element.is_empty
            else:
                memo_key = (tag, key, context)
                known = memo.get(memo_key)
                if known is None:
                    element = ds[tag]
                    known = memo[memo_key] = (element.keyword, element.is_empty)
                keyword, empty = known
            if keyword and keyword != "PixelData" and not empty:
                keywords.append(keyword)
        return sorted(keywords)


_KEYWORD_TAGS: dict[str, int | None] = {}


def _keyword_tag(keyword: str) -> int | None:
    tag = _KEYWORD_TAGS.get(keyword, _MISSING)
    if tag is _MISSING:
        tag = _KEYWORD_TAGS[keyword] = tag_for_keyword(keyword)
    return tag  # type: ignore[return-value]


class SliceObjects:
    """One slice's ``N.json`` object without private attributes, as JSON text: what
    :class:`~circus_tasks.volume.header.HeaderSplit` gives as ``common`` for a series of that
    slice alone, each element's text remembered by its key under the dataset's context."""

    def __init__(self) -> None:
        self._texts: dict[Hashable, str | None] = {}  # None: left out (binary once decoded)
        self._left_out: dict[int, bool] = {}

    def json(self, values: KnownValues | Dataset) -> str:
        """The slice's object as the text ``json.dumps`` gives for it (keys in tag order).

        ``values``: the slice read through :class:`KnownValues` (its elements as read); a bare
        dataset is taken as it is now (a key is then known only for elements not decoded yet).
        """
        if not isinstance(values, KnownValues):
            values = KnownValues(values, read_elements(values), {})
        ds, context = values.dataset, values.context
        texts, left_out = self._texts, self._left_out
        if len(texts) > LIMIT:
            texts.clear()
        parts: list[str] = []
        for tag, key in values.elements:
            dropped = left_out.get(tag)
            if dropped is None:
                dropped = left_out[tag] = left_out_by_tag(tag)
            if dropped:
                continue
            if key is None:
                # as HeaderSplit: the VR of the element as it is now decides before decoding
                vr = getattr(ds.get_item(tag, keep_deferred=True), "VR", None)
                if vr is not None and is_binary(vr):
                    continue
                text = element_text(ds, tag)
            else:
                if is_binary(key[0]):  # type: ignore[index]  # (VR, byte order, bytes)
                    continue  # the VR as read is the VR decoded
                memo_key = (tag, key, context)
                if memo_key in texts:
                    text = texts[memo_key]
                else:
                    text = texts[memo_key] = element_text(ds, tag)
            if text is not None:
                parts.append(text)
        return "{" + ", ".join(parts) + "}"
