"""A regular grid of blocks that tiles a box exactly."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vemkit.geometry.box import Box

__all__ = ["BlockGrid"]


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block_shape`` covering ``box``; blocks on the far edges are clipped.

    Examples
    --------
    >>> grid = BlockGrid(Box.from_shape((10, 10)), (4, 4))
    >>> grid.grid_shape, len(grid)
    ((3, 3), 9)
    >>> grid.block((2, 2))
    Box(offset=(8, 8), shape=(2, 2))
    """

    box: Box
    block_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        block_shape = tuple(int(b) for b in self.block_shape)
        if len(block_shape) != self.box.ndim:
            raise ValueError(f"block shape {block_shape} does not match a {self.box.ndim}-D box")
        if any(b <= 0 for b in block_shape):
            raise ValueError(f"block shape must be positive, got {block_shape}")
        object.__setattr__(self, "block_shape", block_shape)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Number of blocks along each axis."""
        return tuple(
            math.ceil(s / b) for s, b in zip(self.box.shape, self.block_shape, strict=True)
        )

    def __len__(self) -> int:
        return math.prod(self.grid_shape)

    def block(self, index: Sequence[int]) -> Box:
        """Return the box of the block at grid position ``index``."""
        start = tuple(
            o + i * b for o, i, b in zip(self.box.offset, index, self.block_shape, strict=True)
        )
        return Box(start, self.block_shape).intersect(self.box)

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Grid positions in C order."""
        return itertools.product(*(range(n) for n in self.grid_shape))

    def __iter__(self) -> Iterator[Box]:
        return (self.block(i) for i in self.indices())
