"""Axis-aligned boxes in voxel coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Box"]


@dataclass(frozen=True)
class Box:
    """A box of voxels given by ``offset`` (inclusive start) and ``shape``.

    Examples
    --------
    >>> a = Box((0, 0, 0), (10, 10, 10))
    >>> a.intersect(Box((5, 5, 5), (10, 10, 10)))
    Box(offset=(5, 5, 5), shape=(5, 5, 5))
    >>> a.grow(2).offset
    (-2, -2, -2)
    """

    offset: tuple[int, ...]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        offset = tuple(int(o) for o in self.offset)
        shape = tuple(max(int(s), 0) for s in self.shape)
        if len(offset) != len(shape):
            raise ValueError(f"offset {offset} and shape {shape} differ in length")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "shape", shape)

    @classmethod
    def from_shape(cls, shape: Sequence[int]) -> Box:
        """Box at the origin with the given shape."""
        return cls((0,) * len(shape), tuple(shape))

    @classmethod
    def from_bounds(cls, start: Sequence[int], stop: Sequence[int]) -> Box:
        """Box from inclusive ``start`` and exclusive ``stop`` corners."""
        return cls(tuple(start), tuple(b - a for a, b in zip(start, stop, strict=True)))

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def stop(self) -> tuple[int, ...]:
        """Exclusive end corner."""
        return tuple(o + s for o, s in zip(self.offset, self.shape, strict=True))

    @property
    def size(self) -> int:
        """Number of voxels."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_empty(self) -> bool:
        """Whether the box holds no voxel."""
        return self.size == 0

    def intersect(self, other: Box) -> Box:
        """Overlap of two boxes (empty when they do not overlap)."""
        start = tuple(max(a, b) for a, b in zip(self.offset, other.offset, strict=True))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop, strict=True))
        return Box.from_bounds(start, tuple(max(a, b) for a, b in zip(start, stop, strict=True)))

    def grow(self, amount: int | Sequence[int]) -> Box:
        """Grow by ``amount`` voxels on both sides of each axis (negative shrinks)."""
        amounts = (amount,) * self.ndim if isinstance(amount, int) else tuple(amount)
        return Box(
            tuple(o - a for o, a in zip(self.offset, amounts, strict=True)),
            tuple(s + 2 * a for s, a in zip(self.shape, amounts, strict=True)),
        )

    def shift(self, delta: Sequence[int]) -> Box:
        """Move by ``delta`` voxels."""
        return Box(tuple(o + d for o, d in zip(self.offset, delta, strict=True)), self.shape)

    def contains(self, other: Box) -> bool:
        """Whether ``other`` lies entirely inside this box."""
        return all(a <= b for a, b in zip(self.offset, other.offset, strict=True)) and all(
            a >= b for a, b in zip(self.stop, other.stop, strict=True)
        )

    def to_slices(self, relative_to: Box | None = None) -> tuple[slice, ...]:
        """Slices that cut this box out of an array covering ``relative_to``."""
        origin = relative_to.offset if relative_to is not None else (0,) * self.ndim
        return tuple(
            slice(o - r, o - r + s) for o, r, s in zip(self.offset, origin, self.shape, strict=True)
        )
