"""Voxel size in nanometres, z, y, x: the one place where nm become voxels."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vemkit.errors import VoxelSizeError

__all__ = ["VoxelSize"]

_UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1000.0,
    "µm": 1000.0,
    "μm": 1000.0,
    "micron": 1000.0,
    "micrometer": 1000.0,
    "micrometre": 1000.0,
    "mm": 1.0e6,
    "millimeter": 1.0e6,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1.0e-3,
    "m": 1.0e9,
    "meter": 1.0e9,
    "cm": 1.0e7,
}


@dataclass(frozen=True)
class VoxelSize:
    """Physical size of one voxel in nm along z, y and x.

    Examples
    --------
    >>> vs = VoxelSize.parse("50,4.6,4.6")
    >>> vs.z, vs.y, vs.x
    (50.0, 4.6, 4.6)
    >>> VoxelSize(10, 10, 10).to_voxels(1000.0)
    (100.0, 100.0, 100.0)
    """

    z: float
    y: float
    x: float

    def __post_init__(self) -> None:
        for axis in ("z", "y", "x"):
            value = getattr(self, axis)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise VoxelSizeError(
                    f"voxel size along {axis} must be a number in nm, got {value!r}"
                ) from None
            if not math.isfinite(number) or number <= 0:
                raise VoxelSizeError(
                    f"voxel size along {axis} must be a positive finite number of nm, got {value!r}"
                )
            object.__setattr__(self, axis, number)

    @classmethod
    def parse(cls, text: str) -> VoxelSize:
        """Parse ``"Z,Y,X"`` (nm) or one number for isotropic voxels.

        A unit may follow the numbers (``"0.05,0.0046,0.0046um"``); separators may be
        commas, ``x`` or whitespace.
        """
        raw = text.strip().lower()
        unit = 1.0
        match = re.fullmatch(r"(.*?)\s*(nm|um|µm|μm|mm)", raw)
        if match:
            raw, unit = match.group(1), _UNIT_TO_NM[match.group(2)]
        parts = [p for p in re.split(r"[,\sx×]+", raw) if p]
        try:
            values = [float(p) * unit for p in parts]
        except ValueError:
            raise VoxelSizeError(
                f"cannot read voxel size {text!r}: give three numbers in nm as Z,Y,X "
                "(e.g. 50,4.6,4.6) or one number for isotropic voxels"
            ) from None
        if len(values) == 1:
            values = values * 3
        if len(values) != 3:
            raise VoxelSizeError(
                f"voxel size {text!r} has {len(values)} values; give Z,Y,X in nm "
                "(e.g. 50,4.6,4.6) or one number for isotropic voxels"
            )
        return cls(*values)

    @classmethod
    def coerce(cls, value: VoxelSize | str | float | Sequence[float]) -> VoxelSize:
        """Accept a VoxelSize, a string (see :meth:`parse`), a number or a (z, y, x) sequence."""
        if isinstance(value, VoxelSize):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, int | float):
            return cls(value, value, value)
        values = list(value)
        if len(values) != 3:
            raise VoxelSizeError(
                f"voxel size needs three values (z, y, x) in nm, got {len(values)}: {values!r}"
            )
        return cls(*values)

    @staticmethod
    def unit_to_nm(unit: str) -> float:
        """Return the factor that converts ``unit`` (nm, µm, Å, micron, ...) to nm."""
        key = unit.strip().lower()
        if key.endswith("s") and key[:-1] in _UNIT_TO_NM:
            key = key[:-1]
        if key not in _UNIT_TO_NM:
            raise VoxelSizeError(f"unknown length unit {unit!r}; use nm or µm")
        return _UNIT_TO_NM[key]

    def as_tuple(self) -> tuple[float, float, float]:
        """Return ``(z, y, x)`` in nm."""
        return (self.z, self.y, self.x)

    def to_voxels(self, length_nm: float) -> tuple[float, float, float]:
        """Convert an isotropic physical length in nm to a length in voxels per axis."""
        return tuple(length_nm / s for s in self.as_tuple())  # type: ignore[return-value]

    def to_nm(self, index: Sequence[float]) -> tuple[float, float, float]:
        """Convert a voxel position ``(z, y, x)`` to nm."""
        return tuple(float(i) * s for i, s in zip(index, self.as_tuple(), strict=True))  # type: ignore[return-value]

    def scaled(self, factors: Sequence[float]) -> VoxelSize:
        """Return the voxel size after downsampling by ``factors`` (z, y, x)."""
        return VoxelSize(*(s * f for s, f in zip(self.as_tuple(), factors, strict=True)))

    @property
    def volume_nm3(self) -> float:
        """Volume of one voxel in nm³."""
        return self.z * self.y * self.x

    @property
    def anisotropy(self) -> float:
        """Ratio of the largest to the smallest voxel edge (1.0 for isotropic voxels)."""
        sizes = self.as_tuple()
        return max(sizes) / min(sizes)

    def __str__(self) -> str:
        return f"{self.z:g} × {self.y:g} × {self.x:g} nm (z, y, x)"
