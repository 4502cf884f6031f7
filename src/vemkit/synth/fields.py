"""Deterministic random fields defined in global coordinates.

Everything random that a phantom shows per voxel (texture, deformations, detector
noise) is a pure function of the global position and an integer key, built from
integer hashing and plain IEEE arithmetic (``+ - * /``, ``sqrt``, ``floor``), which
NumPy evaluates bit-identically whatever the shape, offset or memory layout of the
array. This is what makes a phantom assembled from blocks identical to one made in a
single piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from vemkit.geometry import Box, VoxelSize

__all__ = ["ValueNoise", "derive_key", "gaussian_noise", "hash_ints", "uniform_from_hash"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_U64 = 1 << 64


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 finaliser, in place on a fresh array (wrapping uint64 arithmetic)."""
    x += _GOLDEN
    x ^= x >> _S30
    x *= _MIX1
    x ^= x >> _S27
    x *= _MIX2
    x ^= x >> _S31
    return x


def derive_key(*parts: int) -> int:
    """Combine integers into one 64-bit key (used to give each field its own stream)."""
    h = np.zeros(1, dtype=np.uint64)
    for part in parts:
        h ^= np.array([part % _U64], dtype=np.uint64)
        h = _mix(h)
    return int(h[0])


def hash_ints(key: int, *coords: NDArray[np.integer]) -> NDArray[np.uint64]:
    """Hash broadcastable integer coordinate arrays with ``key`` into uint64 values.

    Parameters
    ----------
    key : int
        Stream key (see :func:`derive_key`).
    *coords : ndarray of int
        Integer coordinates (may be negative), broadcast against each other.

    Returns
    -------
    ndarray of uint64
        One well-mixed 64-bit value per broadcast position.
    """
    h = np.full(1, key % _U64, dtype=np.uint64)
    for c in coords:
        h = _mix(h ^ np.asarray(c).astype(np.int64).astype(np.uint64))
    return h


def uniform_from_hash(h: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Map uint64 hashes to floats uniform in [-1, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (2.0 / float(1 << 53)) - 1.0


def gaussian_noise(key: int, box: Box, shape: Sequence[int]) -> NDArray[np.float32]:
    """Approximately standard normal white noise, one value per global voxel.

    The value of voxel ``(z, y, x)`` depends only on ``key``, the voxel index and the
    volume ``shape``; it is the Irwin–Hall sum of four 16-bit uniforms drawn from one
    64-bit hash of the linear voxel index (variance normalised to 1).

    Parameters
    ----------
    key : int
        Stream key.
    box : Box
        Voxels to produce (global voxel coordinates).
    shape : (3,) ints
        Shape of the whole volume (fixes the linear index of a voxel).

    Returns
    -------
    (Z, Y, X) ndarray of float32
        Noise for ``box``, mean 0 and standard deviation 1.
    """
    z = np.arange(box.offset[0], box.stop[0], dtype=np.int64)
    y = np.arange(box.offset[1], box.stop[1], dtype=np.int64)
    x = np.arange(box.offset[2], box.stop[2], dtype=np.int64)
    # Voxels outside the volume (halos) are hashed too; keep their indices distinct.
    sy, sx = int(shape[1]) + 4096, int(shape[2]) + 4096
    linear = (z[:, None, None] * sy + y[None, :, None]) * sx + x[None, None, :]
    h = linear.astype(np.uint64)
    h ^= np.uint64(key % _U64)
    h = _mix(h)
    mask = np.uint64(0xFFFF)
    total = h & mask
    total += (h >> np.uint64(16)) & mask
    total += (h >> np.uint64(32)) & mask
    total += h >> np.uint64(48)
    # A sum of four uniform 16-bit integers has mean 131070 and variance ~ 4 * 65536**2 / 12.
    out = total.astype(np.float32)
    out -= np.float32(4 * 65535 / 2)
    out *= np.float32(1.0 / (65536.0 * (4.0 / 12.0) ** 0.5))
    return out


def _smoothstep(t: NDArray[np.float64]) -> NDArray[np.float64]:
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class ValueNoise:
    """Smooth random field in [-1, 1]: hashed lattice values, smoothstep interpolation.

    The lattice has spacing ``spacing_nm`` in physical space, so the field looks the
    same at every voxel size (sampling changes, the pattern does not).

    Parameters
    ----------
    key : int
        Stream key; different keys give independent fields.
    spacing_nm : float
        Lattice spacing in nm (the feature size of the field).
    """

    key: int
    spacing_nm: float

    @cached_property
    def _offsets(self) -> tuple[float, float, float]:
        h = hash_ints(self.key, np.arange(3))
        u = (uniform_from_hash(h) + 1.0) * 0.5
        return (float(u[0]), float(u[1]), float(u[2]))

    def _axis(
        self, start: int, stop: int, voxel_nm: float, offset: float
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], int, int]:
        index = np.arange(start, stop, dtype=np.int64)
        u = (index * voxel_nm) / self.spacing_nm + offset
        lower = np.floor(u)
        weight = _smoothstep(u - lower).astype(np.float32)
        cell = lower.astype(np.int64)
        base = int(cell[0]) if cell.size else 0
        count = int(cell[-1]) - base + 2 if cell.size else 1
        return cell - base, weight, base, count

    def on_grid(self, box: Box, voxel_size: VoxelSize) -> NDArray[np.float32]:
        """Evaluate the field at the voxel centres of ``box``.

        Parameters
        ----------
        box : Box
            Global voxel box (voxel ``i`` has its centre at ``i * voxel_size`` nm).
        voxel_size : VoxelSize
            Voxel size in nm.

        Returns
        -------
        (Z, Y, X) ndarray of float32
            Field values in [-1, 1].
        """
        offsets = self._offsets
        vs = voxel_size.as_tuple()
        (iz, wz, bz, nz), (iy, wy, by, ny), (ix, wx, bx, nx) = (
            self._axis(box.offset[a], box.stop[a], vs[a], offsets[a]) for a in range(3)
        )
        lattice = uniform_from_hash(
            hash_ints(
                self.key,
                np.arange(bz, bz + nz)[:, None, None],
                np.arange(by, by + ny)[None, :, None],
                np.arange(bx, bx + nx)[None, None, :],
            )
        ).astype(np.float32)
        lo = lattice[iz]
        a = lo + (lattice[iz + 1] - lo) * wz[:, None, None]
        lo = a[:, iy]
        b = lo + (a[:, iy + 1] - lo) * wy[None, :, None]
        lo = b[:, :, ix]
        return lo + (b[:, :, ix + 1] - lo) * wx[None, None, :]

    def at_points(self, points_nm: NDArray[np.floating]) -> NDArray[np.float64]:
        """Evaluate the field at arbitrary points.

        Parameters
        ----------
        points_nm : (N, 3) ndarray of float
            Positions (z, y, x) in nm.

        Returns
        -------
        (N,) ndarray of float64
            Field values in [-1, 1] (equal to :meth:`on_grid` up to rounding).
        """
        points = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3)
        u = points / self.spacing_nm + np.asarray(self._offsets)
        lower = np.floor(u)
        w = _smoothstep(u - lower)
        cell = lower.astype(np.int64)
        corner = np.array([[dz, dy, dx] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])
        ids = cell[:, None, :] + corner[None, :, :]
        values = uniform_from_hash(hash_ints(self.key, ids[..., 0], ids[..., 1], ids[..., 2]))
        weights = np.where(corner[None, :, :] == 1, w[:, None, :], 1.0 - w[:, None, :]).prod(axis=2)
        return (weights * values).sum(axis=1)
