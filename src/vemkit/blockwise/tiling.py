"""Tiling of a volume into blocks with a halo: which voxels a block reads, pads and writes.

Edge policy
-----------
A block's *core* is the part of the volume it writes; it *reads* its core grown by the halo.

- ``pad_mode=None`` (default, "clip"): at the volume border the halo is clipped, so the
  function receives a smaller array there and no invented voxels. A function whose output
  at a voxel depends only on the input within ``halo`` voxels *including its own border
  handling* (e.g. ``scipy.ndimage.uniform_filter(mode="reflect")``) then reproduces a
  whole-volume run exactly, at the border too, because it sees the true volume edge.
- ``pad_mode="reflect" | "symmetric" | "edge" | "constant"``: the clipped halo is padded
  back with :func:`numpy.pad` in that mode (``"constant"`` pads with 0), so the function
  always receives ``core + 2 * halo`` voxels along each axis. NumPy's ``"symmetric"`` is
  SciPy's ``"reflect"`` and NumPy's ``"reflect"`` is SciPy's ``"mirror"``.

Interior block faces are never padded: there the halo is real data from the neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vemkit.errors import ConfigError
from vemkit.geometry import BlockGrid, Box, VoxelSize

__all__ = ["Block", "PadMode", "Tiling"]

PadMode = Literal["reflect", "symmetric", "edge", "constant"]
_PAD_MODES = ("reflect", "symmetric", "edge", "constant")
# halo_nm / voxel size within this relative slack of an integer is taken as that integer
_REL_TOL = 1e-9


@dataclass(frozen=True)
class Block:
    """One block of a tiling, in the volume's voxel coordinates.

    Attributes
    ----------
    index : tuple of int
        Position in the block grid.
    core : Box
        The voxels this block writes.
    read : Box
        ``core`` grown by the halo and clipped to the volume: the voxels read.
    padded : Box
        The box of the array the function receives: ``read`` when the halo is clipped, the
        unclipped grown box when a ``pad_mode`` pads it back (may extend outside the volume).
    """

    index: tuple[int, ...]
    core: Box
    read: Box
    padded: Box

    @property
    def key(self) -> str:
        """Stable name of the block, e.g. ``"0.3.1"`` (used for resume markers)."""
        return ".".join(str(i) for i in self.index)

    def crop(self) -> tuple[slice, ...]:
        """Slices that cut the core out of an array covering :attr:`padded`."""
        return self.core.to_slices(relative_to=self.padded)

    def pad_width(self) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` voxels added by padding along each spatial axis."""
        return tuple(
            (r0 - p0, p1 - r1)
            for r0, p0, r1, p1 in zip(
                self.read.offset, self.padded.offset, self.read.stop, self.padded.stop, strict=True
            )
        )


@dataclass(frozen=True)
class Tiling:
    """How a volume is cut into blocks: block shape, halo and edge policy.

    Parameters
    ----------
    block_shape : tuple of int
        Core shape of a block in voxels (spatial axes, e.g. z, y, x). Blocks on the far
        edges are clipped to the volume.
    halo_vox : tuple of int
        Extra voxels read on each side of a block along each axis (0 = none).
    pad_mode : {None, "reflect", "symmetric", "edge", "constant"}
        Edge policy at the volume border, see the module docstring (None clips the halo).

    Examples
    --------
    >>> tiling = Tiling.create((32, 64, 64), halo_vox=4)
    >>> tiling.halo_vox
    (4, 4, 4)
    >>> block = tiling.block(Box.from_shape((40, 64, 64)), (1, 0, 0))
    >>> block.core, block.read
    (Box(offset=(32, 0, 0), shape=(8, 64, 64)), Box(offset=(28, 0, 0), shape=(12, 64, 64)))
    """

    block_shape: tuple[int, ...]
    halo_vox: tuple[int, ...]
    pad_mode: PadMode | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(b) for b in self.block_shape)
        halo = tuple(int(h) for h in self.halo_vox)
        if not shape or any(b <= 0 for b in shape):
            raise ConfigError(f"block_shape must be positive voxel counts, got {shape}")
        if len(halo) != len(shape):
            raise ConfigError(f"halo_vox {halo} needs one value per axis of block {shape}")
        if any(h < 0 for h in halo):
            raise ConfigError(f"halo_vox must be 0 or more voxels, got {halo}")
        if self.pad_mode is not None and self.pad_mode not in _PAD_MODES:
            raise ConfigError(
                f"pad_mode must be None (clip the halo at the volume border) or one of "
                f"{', '.join(_PAD_MODES)}; got {self.pad_mode!r}"
            )
        object.__setattr__(self, "block_shape", shape)
        object.__setattr__(self, "halo_vox", halo)

    @classmethod
    def create(
        cls,
        block_shape: Sequence[int] | int,
        *,
        halo_vox: Sequence[int] | int = 0,
        halo_nm: Sequence[float] | float | None = None,
        voxel_size: VoxelSize | None = None,
        ndim: int = 3,
        pad_mode: PadMode | None = None,
    ) -> Tiling:
        """Build a tiling from per-axis or scalar values, converting ``halo_nm`` to voxels.

        Parameters
        ----------
        block_shape : int or sequence of int
            Core block shape in voxels (a scalar is used along every axis).
        halo_vox : int or sequence of int
            Halo in voxels; give this *or* ``halo_nm``.
        halo_nm : float or sequence of float, optional
            Halo in nm, rounded up to whole voxels per axis with ``voxel_size``.
        voxel_size : VoxelSize, optional
            Needed with ``halo_nm``.
        ndim : int
            Number of spatial axes (3 for z, y, x; 2 for y, x).
        pad_mode : {None, "reflect", "symmetric", "edge", "constant"}
            Edge policy (see the module docstring).
        """
        shape = _per_axis(block_shape, ndim, "block_shape")
        if halo_nm is not None:
            if any(_per_axis(halo_vox, ndim, "halo_vox")):
                raise ConfigError("give the halo either in voxels (halo_vox) or nm (halo_nm)")
            if voxel_size is None:
                raise ConfigError("halo_nm needs the voxel size of the source to become voxels")
            sizes = voxel_size.as_tuple()[-ndim:]
            lengths = _per_axis_float(halo_nm, ndim, "halo_nm")
            halo = tuple(
                max(0, math.ceil(length / size - _REL_TOL))
                for length, size in zip(lengths, sizes, strict=True)
            )
        else:
            halo = _per_axis(halo_vox, ndim, "halo_vox")
        return cls(shape, halo, pad_mode)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.block_shape)

    def grid(self, box: Box) -> BlockGrid:
        """Return the block grid over ``box``."""
        if box.ndim != self.ndim:
            raise ConfigError(
                f"block_shape {self.block_shape} has {self.ndim} axes, the volume {box.ndim}"
            )
        return BlockGrid(box, self.block_shape)

    def block(self, box: Box, index: Sequence[int]) -> Block:
        """Return the block at grid position ``index`` of the tiling of ``box``."""
        core = self.grid(box).block(index)
        grown = core.grow(self.halo_vox)
        read = grown.intersect(box)
        return Block(
            index=tuple(int(i) for i in index),
            core=core,
            read=read,
            padded=read if self.pad_mode is None else grown,
        )

    def blocks(self, box: Box) -> Iterator[Block]:
        """Every block of the tiling of ``box``, in C order."""
        for index in self.grid(box).indices():
            yield self.block(box, index)

    def pad(self, array: NDArray[Any], block: Block) -> NDArray[Any]:
        """Pad an array read over ``block.read`` (trailing spatial axes) to ``block.padded``."""
        if self.pad_mode is None:
            return array
        widths = block.pad_width()
        if not any(a or b for a, b in widths):
            return array
        full = ((0, 0),) * (array.ndim - len(widths)) + widths
        if self.pad_mode == "constant":
            return np.pad(array, full, mode="constant")
        return np.pad(array, full, mode=self.pad_mode)


def _per_axis(value: Sequence[int] | int, ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int | np.integer):
        return (int(value),) * ndim
    values = tuple(value)
    if len(values) != ndim or any(not isinstance(v, int | np.integer) for v in values):
        raise ConfigError(f"{name} needs one whole number per spatial axis ({ndim}), got {value!r}")
    return tuple(int(v) for v in values)


def _per_axis_float(value: Sequence[float] | float, ndim: int, name: str) -> tuple[float, ...]:
    if isinstance(value, int | float | np.number):
        values: tuple[float, ...] = (float(value),) * ndim
    else:
        values = tuple(float(v) for v in value)
    if len(values) != ndim or any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(
            f"{name} needs one non-negative length per spatial axis ({ndim}), got {value!r}"
        )
    return values
