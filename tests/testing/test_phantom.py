"""Tests of circus_tasks/testing/phantom.py: synthetic CT volumes with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from circus_tasks.testing.phantom import (
    DEFAULT_BLOBS,
    DEFAULT_SHAPE,
    DEFAULT_SPACING_XYZ,
    RESCALE_INTERCEPT,
    Blob,
    blob_mask,
    blob_volume_mm3,
    body_mask,
    phantom_volume,
)


def test_shape_and_dtype() -> None:
    volume = phantom_volume()
    assert volume.shape == DEFAULT_SHAPE == (48, 96, 96)
    assert volume.dtype == np.int16
    small = phantom_volume(shape=(5, 20, 30), blobs=())
    assert small.shape == (5, 20, 30)


def test_tissue_values_in_hu() -> None:
    hu = phantom_volume().astype(np.float64) + RESCALE_INTERCEPT
    body = body_mask(DEFAULT_SHAPE)
    any_blob = np.zeros(DEFAULT_SHAPE, dtype=bool)
    for blob in DEFAULT_BLOBS:
        any_blob |= blob_mask(blob)
    assert hu[0, 0, 0] < -990  # air in the corner
    assert abs(np.median(hu[~body]) - (-1024)) < 2
    assert abs(np.median(hu[body & ~any_blob]) - 16) < 2
    assert hu[body & ~any_blob].max() < 200  # noise never reaches a blob's brightness


@pytest.mark.parametrize("blob", DEFAULT_BLOBS)
def test_blob_voxels_are_bright(blob: Blob) -> None:
    volume = phantom_volume()
    mask = blob_mask(blob)
    assert mask.sum() > 50
    assert abs(volume[mask].mean() - blob.value) < 2
    assert volume[mask].min() > blob.value - 8 * 8  # 8 noise sd
    z, y, x = (round(c) for c in blob.center_zyx)
    assert mask[z, y, x]
    assert body_mask()[mask].all(), "default blobs lie inside the body"


def test_without_noise_values_are_exact() -> None:
    volume = phantom_volume(noise_sd=0)
    assert set(np.unique(volume)) == {0, 1040, *(b.value for b in DEFAULT_BLOBS)}


def test_same_seed_same_volume_other_seed_other_noise() -> None:
    assert np.array_equal(phantom_volume(seed=3), phantom_volume(seed=3))
    assert not np.array_equal(phantom_volume(seed=3), phantom_volume(seed=4))


def test_no_blobs() -> None:
    volume = phantom_volume(blobs=[])
    assert volume.max() < 1024 + 200


def test_blob_is_round_in_space_not_in_voxels() -> None:
    blob = Blob(center_zyx=(20.0, 40.0, 40.0), radius_mm=6.0, value=2000)
    mask = blob_mask(blob, (40, 80, 80), (0.5, 0.5, 2.0))
    z, y, x = np.nonzero(mask)
    assert x.max() - x.min() == 24  # 12 mm / 0.5 mm
    assert z.max() - z.min() == 6  # 12 mm / 2 mm


def test_blob_volume_analytic_and_voxelized() -> None:
    blob = DEFAULT_BLOBS[0]
    analytic = blob_volume_mm3(blob, DEFAULT_SPACING_XYZ)
    assert analytic == pytest.approx(4 / 3 * math.pi * blob.radius_mm**3)
    voxelized = blob_volume_mm3(blob, DEFAULT_SPACING_XYZ, voxelized=True)
    assert voxelized == pytest.approx(analytic, rel=0.05)
    assert voxelized == blob_mask(blob).sum() * np.prod(DEFAULT_SPACING_XYZ)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 10, 10)}, "shape"),
        ({"spacing_xyz": (1.0, 0.0, 1.0)}, "spacing"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        phantom_volume(**kwargs)  # type: ignore[arg-type]
