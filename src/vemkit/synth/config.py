"""Physical parameters of a phantom and the modality presets."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vemkit.errors import ConfigError
from vemkit.geometry import VoxelSize

__all__ = ["PRESETS", "REFERENCE_FIELD_NM", "PhantomConfig"]

#: Field of view (median edge, nm) at which the automatic anatomy takes its nominal
#: sizes: 256 voxels of 10 nm.
REFERENCE_FIELD_NM = 2560.0

# Automatic anatomy at the reference field of view; every length is multiplied by
# ``anatomy_scale`` and every density divided by its cube (see PhantomConfig).
_AUTO_CELL_SIZE_NM = 1800.0
_AUTO_NUCLEUS_DIAMETER = (0.55, 0.75)  # fraction of the cell size
_AUTO_MITO_LENGTH_NM = (600.0, 2000.0)
_AUTO_MITO_WIDTH_NM = (150.0, 260.0)
_AUTO_MITO_PER_UM3 = 2.2
_AUTO_VESICLE_DIAMETER_NM = (30.0, 60.0)
_AUTO_VESICLE_PER_UM3 = 25.0
_MIN_SCALE, _MAX_SCALE = 0.3, 4.0

#: Modality presets: voxel size (nm), default shape and imaging parameters.
PRESETS: dict[str, dict[str, Any]] = {
    "fibsem": {
        "shape": (128, 128, 128),
        "voxel_size": VoxelSize(10.0, 10.0, 10.0),
        "blur_sigma_nm": 7.0,
        "noise_level": 0.06,
        "z_drift": 0.05,
        "section_jitter": 0.01,
    },
    "sstem": {
        "shape": (32, 256, 256),
        "voxel_size": VoxelSize(50.0, 5.0, 5.0),
        "blur_sigma_nm": 5.0,
        "noise_level": 0.06,
        "z_drift": 0.02,
        "section_jitter": 0.05,
    },
    "sbem": {
        "shape": (64, 192, 192),
        "voxel_size": VoxelSize(30.0, 8.0, 8.0),
        "blur_sigma_nm": 9.0,
        "noise_level": 0.10,
        "z_drift": 0.03,
        "section_jitter": 0.025,
    },
}


def _range(name: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (min, max) pair in nm, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi < lo:
        raise ConfigError(f"{name} must satisfy 0 < min <= max, got {value!r}")
    return (lo, hi)


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that defines a phantom; the same config always gives the same volume.

    Anatomy is defined in physical units (nm), so changing ``voxel_size`` changes the
    sampling, not the anatomy. Anatomical fields left at ``None`` are chosen
    automatically relative to the field of view: the phantom is a *miniature tissue*
    whose lengths are the nominal values below times ``anatomy_scale = clip(F / 2560 nm,
    0.3, 4)``, where ``F`` is the median edge of the volume in nm (densities are divided
    by ``anatomy_scale**3``). A default phantom of any size therefore shows a handful
    of cells, at least one nucleus and a few dozen mitochondria. Nominal values (at
    256³ voxels of 10 nm): cell size 1.8 µm, nucleus diameter 0.55–0.75 × cell size,
    mitochondria 600–2000 nm long and 150–260 nm wide at 2.2 per µm³, vesicles 30–60
    nm at 25 per µm³. Give explicit values for real anatomy (e.g. 10 µm cells, 5 µm
    nuclei); the imaging parameters (membrane thickness, blur, noise) are never scaled.

    Parameters
    ----------
    shape : (3,) ints
        Volume shape (z, y, x) in voxels.
    voxel_size : VoxelSize
        Voxel size in nm; anisotropy (e.g. 50, 5, 5 nm for ssTEM) is just a voxel size.
    seed : int
        Random seed; same seed, same phantom.
    cell_size_nm : float, optional
        Typical cell diameter (spacing of the Voronoi seeds) in nm.
    nucleus_fraction : float
        Fraction of cells that have a nucleus (the cell at the centre of the volume
        always has one when this is > 0).
    nucleus_diameter_nm : (min, max), optional
        Range of nucleus diameters in nm (shrunk where a cell is too small).
    nucleolus_probability : float
        Probability that a nucleus has a nucleolus.
    mitochondria_per_um3 : float, optional
        Number of mitochondria per µm³ of volume.
    mitochondrion_length_nm, mitochondrion_width_nm : (min, max), optional
        Range of centre-line lengths and of widths (2 × radius) in nm.
    branch_probability : float
        Probability that a mitochondrion has one side branch (a Y).
    vesicles_per_um3 : float, optional
        Number of unlabelled dark vesicles (distractors) per µm³.
    vesicle_diameter_nm : (min, max), optional
        Range of vesicle diameters in nm.
    membrane_thickness_nm : float
        Thickness of cell membranes in nm.
    blur_sigma_nm : float
        Standard deviation of the Gaussian point spread function in nm.
    noise_level : float
        Standard deviation of the detector noise at mid grey, as a fraction of the
        intensity range (Poisson-like: it grows with the signal).
    z_drift : float
        Peak-to-peak amplitude of the slow brightness drift along z (fraction of range).
    section_jitter : float
        Standard deviation of the brightness offset of each z section (fraction).
    """

    shape: tuple[int, int, int] = (128, 128, 128)
    voxel_size: VoxelSize = field(default_factory=lambda: VoxelSize(10.0, 10.0, 10.0))
    seed: int = 0
    cell_size_nm: float | None = None
    nucleus_fraction: float = 0.8
    nucleus_diameter_nm: tuple[float, float] | None = None
    nucleolus_probability: float = 0.7
    mitochondria_per_um3: float | None = None
    mitochondrion_length_nm: tuple[float, float] | None = None
    mitochondrion_width_nm: tuple[float, float] | None = None
    branch_probability: float = 0.25
    vesicles_per_um3: float | None = None
    vesicle_diameter_nm: tuple[float, float] | None = None
    membrane_thickness_nm: float = 12.0
    blur_sigma_nm: float = 7.0
    noise_level: float = 0.06
    z_drift: float = 0.05
    section_jitter: float = 0.01

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):
            raise ConfigError(
                f"shape must be three voxel counts (z, y, x), got {self.shape!r}"
            ) from None
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"shape must be three positive voxel counts, got {self.shape!r}")
        set_(self, "shape", shape)
        set_(self, "voxel_size", VoxelSize.coerce(self.voxel_size))
        set_(self, "seed", int(self.seed))
        set_(self, "cell_size_nm", _positive("cell_size_nm", self.cell_size_nm))
        for name in (
            "nucleus_diameter_nm",
            "mitochondrion_length_nm",
            "mitochondrion_width_nm",
            "vesicle_diameter_nm",
        ):
            set_(self, name, _range(name, getattr(self, name)))
        for name in ("mitochondria_per_um3", "vesicles_per_um3"):
            set_(self, name, _positive(name, getattr(self, name), allow_zero=True))
        for name in ("nucleus_fraction", "nucleolus_probability", "branch_probability"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
            set_(self, name, value)
        set_(
            self,
            "membrane_thickness_nm",
            _positive("membrane_thickness_nm", self.membrane_thickness_nm),
        )
        for name in ("blur_sigma_nm", "noise_level", "z_drift", "section_jitter"):
            set_(self, name, _positive(name, getattr(self, name), allow_zero=True))

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        shape: Sequence[int] | None = None,
        seed: int = 0,
        **overrides: Any,
    ) -> PhantomConfig:
        """Return a configuration that imitates one modality.

        Parameters
        ----------
        name : {"fibsem", "sstem", "sbem"}
            ``fibsem``: isotropic 10 nm voxels, mild noise, slow drift. ``sstem``:
            50 × 5 × 5 nm voxels, strong section-to-section brightness jitter. ``sbem``:
            30 × 8 × 8 nm voxels, noisier, more blur.
        shape : (3,) ints, optional
            Volume shape (z, y, x); the preset's default when omitted.
        seed : int
            Random seed.
        **overrides
            Any other :class:`PhantomConfig` field.

        Returns
        -------
        PhantomConfig
        """
        key = name.strip().lower().replace("-", "")
        if key not in PRESETS:
            raise ConfigError(
                f"unknown phantom preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
            )
        values = dict(PRESETS[key])
        if shape is not None:
            values["shape"] = tuple(shape)
        values["seed"] = seed
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown phantom option(s) {unknown}; valid: {sorted(names)}")
        values.update(overrides)
        return cls(**values)

    def with_voxel_size(
        self, voxel_size: VoxelSize | str | float | Sequence[float]
    ) -> PhantomConfig:
        """Return the same configuration with another voxel size (nm)."""
        return dataclasses.replace(self, voxel_size=VoxelSize.coerce(voxel_size))

    def replace(self, **changes: Any) -> PhantomConfig:
        """Return the same configuration with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def extent_nm(self) -> tuple[float, float, float]:
        """Physical size of the volume (z, y, x) in nm."""
        return tuple(  # type: ignore[return-value]
            n * v for n, v in zip(self.shape, self.voxel_size.as_tuple(), strict=True)
        )

    @property
    def anatomy_scale(self) -> float:
        """Factor applied to the nominal automatic anatomy (see class docstring)."""
        field = sorted(self.extent_nm)[1]
        return min(max(field / REFERENCE_FIELD_NM, _MIN_SCALE), _MAX_SCALE)

    def resolved(self) -> PhantomConfig:
        """Return the configuration with every automatic (``None``) anatomy value filled in."""
        s = self.anatomy_scale
        cell = self.cell_size_nm if self.cell_size_nm is not None else _AUTO_CELL_SIZE_NM * s

        def scaled(value: tuple[float, float] | None, nominal: tuple[float, float]) -> Any:
            return value if value is not None else (nominal[0] * s, nominal[1] * s)

        return dataclasses.replace(
            self,
            cell_size_nm=cell,
            nucleus_diameter_nm=self.nucleus_diameter_nm
            or (_AUTO_NUCLEUS_DIAMETER[0] * cell, _AUTO_NUCLEUS_DIAMETER[1] * cell),
            mitochondria_per_um3=self.mitochondria_per_um3
            if self.mitochondria_per_um3 is not None
            else _AUTO_MITO_PER_UM3 / s**3,
            mitochondrion_length_nm=scaled(self.mitochondrion_length_nm, _AUTO_MITO_LENGTH_NM),
            mitochondrion_width_nm=scaled(self.mitochondrion_width_nm, _AUTO_MITO_WIDTH_NM),
            vesicles_per_um3=self.vesicles_per_um3
            if self.vesicles_per_um3 is not None
            else _AUTO_VESICLE_PER_UM3 / s**3,
            vesicle_diameter_nm=scaled(self.vesicle_diameter_nm, _AUTO_VESICLE_DIAMETER_NM),
        )
