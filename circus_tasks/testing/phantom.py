"""Synthetic CT-like volumes with a known answer, for demos and tests.

A phantom is an elliptic cylinder of water-like "body" in air, with bright spheres ("blobs")
inside it and a little Gaussian noise. Values are *stored* values, as a CT scanner would write
them with a rescale intercept of -1024: air is about -1024 HU, the body about 16 HU and the
default blobs 300 to 500 HU. Because the blobs are exact spheres, a detector's answer can be
checked against their centres and :func:`blob_volume_mm3`.

Axis order follows the plug-in input (``N.raw``): arrays are ``(slices, rows, columns)`` =
``(z, y, x)``, while spacings are given as ``(x, y, z)`` in millimetres, like ``ElementSpacing``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_SHAPE: tuple[int, int, int] = (48, 96, 96)
"""Default phantom shape ``(slices, rows, columns)``."""

DEFAULT_SPACING_XYZ: tuple[float, float, float] = (0.8, 0.8, 1.5)
"""Default voxel spacing in mm: column spacing, row spacing, slice spacing."""

RESCALE_INTERCEPT = -1024
"""The rescale intercept the stored values are meant with (slope 1)."""


@dataclass(frozen=True)
class Blob:
    """A bright sphere in a phantom.

    Attributes:
        center_zyx: Centre in voxel coordinates ``(slice, row, column)``; may be fractional.
        radius_mm: Radius in millimetres (the sphere is round in space, not in voxels).
        value: Stored value of the voxels inside the sphere (before noise).
    """

    center_zyx: tuple[float, float, float]
    radius_mm: float
    value: int


DEFAULT_BLOBS: tuple[Blob, ...] = (
    Blob(center_zyx=(24.0, 40.0, 35.0), radius_mm=8.0, value=1024 + 400),
    Blob(center_zyx=(16.0, 58.0, 62.0), radius_mm=5.0, value=1024 + 300),
    Blob(center_zyx=(32.0, 50.0, 68.0), radius_mm=3.5, value=1024 + 500),
)
"""Three spheres of different sizes and brightness, well inside the default body."""


def _squared_distance_mm(
    center_zyx: Sequence[float],
    shape: Sequence[int],
    spacing_xyz: Sequence[float],
) -> np.ndarray:
    """Squared distance in mm^2 from every voxel centre of ``shape`` to ``center_zyx``."""
    sx, sy, sz = spacing_xyz
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cz, cy, cx = center_zyx
    return ((z - cz) * sz) ** 2 + ((y - cy) * sy) ** 2 + ((x - cx) * sx) ** 2


def blob_mask(
    blob: Blob,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing_xyz: Sequence[float] = DEFAULT_SPACING_XYZ,
) -> np.ndarray:
    """The voxels whose centres lie inside a blob.

    Args:
        blob: The sphere.
        shape: Volume shape ``(slices, rows, columns)``.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``.

    Returns:
        A boolean array of ``shape``.
    """
    return _squared_distance_mm(blob.center_zyx, shape, spacing_xyz) <= blob.radius_mm**2


def body_mask(shape: Sequence[int] = DEFAULT_SHAPE) -> np.ndarray:
    """The phantom's body: an elliptic cylinder along z, centred in each slice.

    Args:
        shape: Volume shape ``(slices, rows, columns)``.

    Returns:
        A boolean array of ``shape``.
    """
    slices, rows, cols = shape
    y, x = np.ogrid[:rows, :cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    ay, ax = 0.38 * rows, 0.45 * cols
    ellipse = ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1.0
    return np.broadcast_to(ellipse, (slices, rows, cols)).copy()


def phantom_volume(
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing_xyz: tuple[float, float, float] = DEFAULT_SPACING_XYZ,
    blobs: Sequence[Blob] | None = None,
    *,
    background: int = 0,
    body_value: int = 1040,
    noise_sd: float = 8.0,
    seed: int = 0,
) -> np.ndarray:
    """Make a CT-like phantom of stored values.

    Args:
        shape: ``(slices, rows, columns)``.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``; used to make the blobs round in space.
        blobs: The bright spheres; ``None`` means :data:`DEFAULT_BLOBS`, ``()`` means none.
        background: Stored value of the air around the body (0 is -1024 HU).
        body_value: Stored value of the body (1040 is 16 HU, about water).
        noise_sd: Standard deviation of the added Gaussian noise, in stored units (0: none).
        seed: Seed of the noise; the same arguments always give the same volume.

    Returns:
        An ``int16`` array of ``shape``, meant with rescale slope 1 and intercept -1024.
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (slices, rows, cols), got {shape}")
    if len(spacing_xyz) != 3 or min(spacing_xyz) <= 0:
        raise ValueError(f"spacing_xyz must be three positive numbers, got {spacing_xyz}")
    chosen = DEFAULT_BLOBS if blobs is None else tuple(blobs)

    volume = np.full(shape, float(background), dtype=np.float64)
    volume[body_mask(shape)] = body_value
    for blob in chosen:
        volume[blob_mask(blob, shape, spacing_xyz)] = blob.value
    if noise_sd > 0:
        volume += np.random.default_rng(seed).normal(0.0, noise_sd, size=shape)
    info = np.iinfo(np.int16)
    return np.clip(np.rint(volume), info.min, info.max).astype(np.int16)


def blob_volume_mm3(
    blob: Blob,
    spacing_xyz: Sequence[float] = DEFAULT_SPACING_XYZ,
    *,
    voxelized: bool = False,
    shape: Sequence[int] = DEFAULT_SHAPE,
) -> float:
    """Volume of a blob in mm^3.

    Args:
        blob: The sphere.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``; only used when ``voxelized``.
        voxelized: ``False`` (default) gives the analytic ``4/3 pi r^3``; ``True`` counts the
            voxels :func:`phantom_volume` actually painted, times the voxel volume.
        shape: Volume shape, only used when ``voxelized`` (a blob may be cut by the border).

    Returns:
        The volume in mm^3.
    """
    if not voxelized:
        return 4.0 / 3.0 * math.pi * blob.radius_mm**3
    voxel_mm3 = float(np.prod(spacing_xyz))
    return int(blob_mask(blob, shape, spacing_xyz).sum()) * voxel_mm3
