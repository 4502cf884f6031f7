"""Nuclei embedded in real EM context: training scenes for nucleus detectors.

None of the real volumes in ``../shared/data`` contains a nucleus, so a nucleus model
is trained on *synthetic nuclei painted into real EM texture*. A scene is drawn once
from a seed as a list of objects in physical coordinates (nm) — a :class:`NucleiPlan`
— and then rendered over a background volume the caller provides (this module never
opens files; :mod:`vemkit.pipelines.nuclei_data` loads and resamples the real data).

What a scene shows:

- **Nuclei** — 1 to N randomly oriented ellipsoids (major diameter 3–15 µm by default,
  minor axes 0.5–1 × the major) whose surface is modulated by a low-frequency field on
  the sphere (up to ±12 %), never touching each other. Inside: nucleoplasm lighter or
  darker than the tissue (the sign varies), a fine granular texture, heterochromatin
  clumps that are much more frequent near the envelope, an optional dark round
  nucleolus, and the double nuclear envelope (two thin dark membranes around a light
  perinuclear gap, interrupted by pores). Optionally a cell body around it: a shell of
  cytoplasm (the background texture, re-toned) ending in a thin dark cell membrane.
- **Distractors** — unlabelled round objects that are not nuclei: vessel-like lumens
  (uniform, light or dark, with a dark wall) and cell bodies cut outside their nucleus.
- **Context** — the real background everywhere else.
- **Imaging** — Gaussian blur, a smooth multiplicative intensity drift, per-section
  brightness jitter for anisotropic stacks, signal-dependent Gaussian noise, a gamma
  curve, occasionally inverted contrast, 8-bit quantisation.

Every thin structure is drawn with partial-volume coverage (the fraction of a voxel's
extent along the surface normal that the band covers), so the same plan renders
sensibly from 10 nm voxels, where the envelope shows as two lines, to 100 nm voxels,
where it is a faint dark rim. Labels are exact point samples of the deformed ellipsoids
(a voxel belongs to a nucleus when its centre lies inside; the envelope is part of
the nucleus) and can be rendered for any box, also beyond the volume, which is what
exact distance targets near the volume border need.

Examples
--------
>>> from vemkit.geometry import VoxelSize
>>> background = synthetic_background((32, 32, 32), voxel_size=VoxelSize(100, 100, 100), seed=1)
>>> scene = make_nuclei_scene(background, voxel_size=VoxelSize(100, 100, 100), seed=1)
>>> scene.raw.dtype, scene.nuclei.shape, int(scene.nuclei.max()) >= 1
(dtype('uint8'), (32, 32, 32), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import Box, VoxelSize
from vemkit.synth.fields import ValueNoise, derive_key, gaussian_noise

__all__ = [
    "Ellipsoid",
    "Imaging",
    "NucleiPlan",
    "NucleiScene",
    "NucleiSceneConfig",
    "PlannedDistractor",
    "PlannedNucleus",
    "label_nuclei",
    "make_nuclei_scene",
    "plan_nuclei_scene",
    "render_nuclei_scene",
    "synthetic_background",
    "tile_background",
]

F32 = np.float32
Range = tuple[float, float]

# Random streams and field keys (per scene seed).
_STREAM_PLAN, _STREAM_TILES = 101, 102
_KEY_TEXTURE, _KEY_CHROMATIN, _KEY_NUCLEOLUS, _KEY_PORES = 201, 202, 203, 204
_KEY_DRIFT, _KEY_JITTER, _KEY_NOISE, _KEY_BACKGROUND = 211, 212, 213, 214
_N_DEFORM_WAVES = 5
_PLACEMENT_TRIES = 60


# -- configuration ---------------------------------------------------------------------


def _check_range(name: str, value: Sequence[float], *, low: float, high: float) -> Range:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (min, max) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo < low or hi > high:
        raise ConfigError(f"{name} must satisfy {low} <= min <= max <= {high}, got {value!r}")
    return (lo, hi)


@dataclass(frozen=True)
class NucleiSceneConfig:
    """Ranges from which every nucleus scene is drawn; one config, many seeds.

    Grey values are in the units of the final image before quantisation (0 black,
    1 white); the tissue has a random mean in ``tissue_level`` and a random robust
    standard deviation in ``tissue_std``.

    Parameters
    ----------
    n_nuclei : (min, max) ints
        Number of nuclei the scene tries to place (fewer when they do not fit).
    diameter_nm : (min, max)
        Major diameter of a nucleus in nm (before deformation).
    min_axis_ratio : float
        Smallest ratio of a minor to the major axis.
    deform_amplitude : (min, max)
        Relative amplitude of the low-frequency surface modulation.
    gap_nm : float
        Minimum clearance between two nuclei (and between nuclei and distractors).
    cut_probability : float
        Probability that a nucleus may extend beyond the volume (its centre is always
        inside); otherwise it lies entirely inside.
    nucleolus_probability, soma_probability : float
        Probability that a nucleus has a nucleolus / a visible cell body around it.
    soma_thickness_nm : (min, max)
        Thickness of the cytoplasm shell of a cell body in nm.
    n_distractors : (min, max) ints
        Number of unlabelled distractor objects.
    pore_fraction : float
        Approximate fraction of the envelope interrupted by nuclear pores.
    invert_probability : float
        Probability that the final image is inverted (some SEM data is shown that way).
    tissue_level, tissue_std : (min, max)
        Mean grey value and robust standard deviation of the background tissue.
    nucleoplasm_contrast : (min, max)
        Magnitude of the difference between the nucleoplasm and the tissue mean.
    darker_nucleoplasm_probability : float
        Probability that the nucleoplasm is darker than the tissue (else lighter).
    heterochromatin_contrast : (min, max)
        How much darker heterochromatin is than the nucleoplasm.
    nucleolus_contrast : (min, max)
        How much darker the nucleolus is than the nucleoplasm.
    envelope_contrast : (min, max)
        How much darker the envelope membranes are than the darkest material next to
        them (at full voxel coverage).
    blur_sigma_vox : (min, max)
        Gaussian blur in voxels of the finest axis.
    noise_sigma : (min, max)
        Standard deviation of the detector noise at grey value 0.5.
    drift_amplitude : (min, max)
        Relative amplitude of the smooth multiplicative intensity drift.
    section_jitter : (min, max)
        Standard deviation of a per-section brightness offset, applied when z voxels
        are at least 1.5 times the in-plane size (serial sections).
    gamma : (min, max)
        Exponent of the final gamma curve.
    """

    n_nuclei: tuple[int, int] = (1, 4)
    diameter_nm: Range = (3000.0, 15000.0)
    min_axis_ratio: float = 0.5
    deform_amplitude: Range = (0.0, 0.12)
    gap_nm: float = 300.0
    cut_probability: float = 0.5
    nucleolus_probability: float = 0.6
    soma_probability: float = 0.6
    soma_thickness_nm: Range = (300.0, 2500.0)
    n_distractors: tuple[int, int] = (0, 3)
    pore_fraction: float = 0.1
    invert_probability: float = 0.1
    tissue_level: Range = (0.35, 0.65)
    tissue_std: Range = (0.03, 0.12)
    nucleoplasm_contrast: Range = (0.03, 0.25)
    darker_nucleoplasm_probability: float = 0.4
    heterochromatin_contrast: Range = (0.04, 0.3)
    nucleolus_contrast: Range = (0.1, 0.35)
    envelope_contrast: Range = (0.08, 0.3)
    blur_sigma_vox: Range = (0.0, 1.0)
    noise_sigma: Range = (0.0, 0.08)
    drift_amplitude: Range = (0.0, 0.15)
    section_jitter: Range = (0.0, 0.03)
    gamma: Range = (0.7, 1.4)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("n_nuclei", "n_distractors"):
            value = getattr(self, name)
            try:
                lo, hi = (int(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{name} must be a (min, max) pair of ints, got {value!r}"
                ) from None
            if lo < 0 or hi < lo:
                raise ConfigError(f"{name} must satisfy 0 <= min <= max, got {value!r}")
            set_(self, name, (lo, hi))
        bounds = {
            "diameter_nm": (1.0, math.inf),
            "deform_amplitude": (0.0, 0.3),
            "soma_thickness_nm": (0.0, math.inf),
            "tissue_level": (0.0, 1.0),
            "tissue_std": (0.0, 0.5),
            "nucleoplasm_contrast": (0.0, 1.0),
            "heterochromatin_contrast": (0.0, 1.0),
            "nucleolus_contrast": (0.0, 1.0),
            "envelope_contrast": (0.0, 1.0),
            "blur_sigma_vox": (0.0, 10.0),
            "noise_sigma": (0.0, 1.0),
            "drift_amplitude": (0.0, 0.9),
            "section_jitter": (0.0, 0.5),
            "gamma": (0.1, 10.0),
        }
        for name, (low, high) in bounds.items():
            set_(self, name, _check_range(name, getattr(self, name), low=low, high=high))
        for name in (
            "cut_probability",
            "nucleolus_probability",
            "soma_probability",
            "pore_fraction",
            "invert_probability",
            "darker_nucleoplasm_probability",
        ):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
            set_(self, name, value)
        ratio = float(self.min_axis_ratio)
        if not 0.1 <= ratio <= 1.0:
            raise ConfigError(f"min_axis_ratio must lie in [0.1, 1], got {self.min_axis_ratio!r}")
        set_(self, "min_axis_ratio", ratio)
        gap = float(self.gap_nm)
        if not (math.isfinite(gap) and gap >= 0):
            raise ConfigError(f"gap_nm must be a finite number >= 0, got {self.gap_nm!r}")
        set_(self, "gap_nm", gap)

    def replace(self, **changes: object) -> NucleiSceneConfig:
        """Return the same configuration with some fields changed."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown nuclei scene option(s) {unknown}; valid: {sorted(names)}")
        values = {name: getattr(self, name) for name in names}
        values.update(changes)
        return NucleiSceneConfig(**values)


# -- geometry --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ellipsoid:
    """A randomly oriented ellipsoid whose surface is modulated by a smooth field.

    In the ellipsoid frame ``u = R.T @ (p - centre)`` the surface is
    ``rho(u) = 1 + A * f(u / |u|)`` with ``rho(u) = |u / semi_axes|`` and
    ``f(d) = sum_k w_k cos(freq_k * d . v_k + phase_k)``, ``sum |w_k| = 1``, so the
    surface lies between the ellipsoids scaled by ``1 - A`` and ``1 + A``.

    Parameters
    ----------
    center_nm : (3,) ndarray of float64
        Centre (z, y, x) in nm; voxel ``i`` has its centre at ``i * voxel_size``.
    semi_axes_nm : (3,) ndarray of float64
        Semi-axes in nm, along the columns of ``rotation``.
    rotation : (3, 3) ndarray of float64
        Orthonormal matrix whose columns are the ellipsoid axes in (z, y, x).
    deform_amplitude : float
        ``A`` above.
    wave_directions : (K, 3) ndarray of float64
        Unit vectors ``v_k``.
    wave_frequencies, wave_phases, wave_weights : (K,) ndarray of float64
        ``freq_k``, ``phase_k`` and ``w_k``.
    """

    center_nm: NDArray[np.float64]
    semi_axes_nm: NDArray[np.float64]
    rotation: NDArray[np.float64]
    deform_amplitude: float
    wave_directions: NDArray[np.float64]
    wave_frequencies: NDArray[np.float64]
    wave_phases: NDArray[np.float64]
    wave_weights: NDArray[np.float64]

    def half_extent_nm(self, grow_nm: float = 0.0) -> NDArray[np.float64]:
        """Half the edge of the axis-aligned box that holds the deformed surface (+ grow)."""
        scaled = self.rotation * (self.semi_axes_nm * (1.0 + self.deform_amplitude))
        return np.sqrt((scaled**2).sum(axis=1)) + grow_nm

    def bounding_box(self, voxel_size: VoxelSize, *, grow_nm: float = 0.0) -> Box:
        """Voxel box whose centres cover the deformed ellipsoid grown by ``grow_nm``."""
        voxel = np.asarray(voxel_size.as_tuple())
        half = self.half_extent_nm(grow_nm)
        lo = np.floor((self.center_nm - half) / voxel).astype(int) - 1
        hi = np.ceil((self.center_nm + half) / voxel).astype(int) + 2
        return Box.from_bounds(lo.tolist(), hi.tolist())

    def _frame(self, rel: Sequence[NDArray[np.float32]]) -> list[NDArray[np.float32]]:
        r = self.rotation.astype(F32)
        return [rel[0] * r[0, j] + rel[1] * r[1, j] + rel[2] * r[2, j] for j in range(3)]

    def _deform(self, u: list[NDArray[np.float32]], norm: NDArray[np.float32]) -> NDArray[Any]:
        inv = F32(1.0) / np.maximum(norm, F32(1e-6))
        total = np.zeros(norm.shape, dtype=F32)
        for v, freq, phase, w in zip(
            self.wave_directions,
            self.wave_frequencies,
            self.wave_phases,
            self.wave_weights,
            strict=True,
        ):
            dot = (u[0] * F32(v[0]) + u[1] * F32(v[1]) + u[2] * F32(v[2])) * inv
            total += F32(w) * np.cos(dot * F32(freq) + F32(phase))
        return total

    def depth(
        self, rel_nm: Sequence[NDArray[np.float32]], voxel_nm: Sequence[float] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Approximate signed distance to the surface (positive inside), in nm.

        First-order estimate ``(rho_surface - rho) / |grad rho|``: exact on the
        undeformed surface and accurate within a fraction of the radius of it.

        Parameters
        ----------
        rel_nm : three broadcastable ndarrays of float32
            Positions relative to the centre along z, y and x in nm.
        voxel_nm : (3,) floats, optional
            Voxel size; when given, also return half the voxel's extent along the
            surface normal (nm), the width of partial-volume ramps.

        Returns
        -------
        depth : ndarray of float32
            Broadcast shape of ``rel_nm``.
        half_width : ndarray of float32 or None
            Half the voxel extent along the normal, or None without ``voxel_nm``.
        """
        u = self._frame(rel_nm)
        a = self.semi_axes_nm.astype(F32)
        q = [u[j] / a[j] for j in range(3)]
        rho = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
        g = [q[j] / a[j] for j in range(3)]  # gradient of rho times rho, in the frame
        gnorm = np.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2])
        norm_u = np.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
        surface: NDArray[np.float32] | np.float32 = F32(1.0)
        if self.deform_amplitude > 0:
            surface = F32(1.0) + F32(self.deform_amplitude) * self._deform(u, norm_u)
        grad = np.maximum(gnorm / np.maximum(rho, F32(1e-6)), F32(1.0 / float(a.max())))
        depth = ((surface - rho) / grad).astype(F32, copy=False)
        if voxel_nm is None:
            return depth, None
        r = self.rotation.astype(F32)
        inv = F32(1.0) / np.maximum(gnorm, F32(1e-12))
        half = np.zeros(depth.shape, dtype=F32)
        for i in range(3):
            n_i = (g[0] * r[i, 0] + g[1] * r[i, 1] + g[2] * r[i, 2]) * inv
            half += np.abs(n_i) * F32(0.5 * voxel_nm[i])
        return depth, np.maximum(half, F32(0.25 * min(voxel_nm)))

    def depth_at(self, points_nm: ArrayLike) -> NDArray[np.float32]:
        """:meth:`depth` at points ``(N, 3)`` in nm (absolute positions)."""
        p = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3) - self.center_nm
        rel = [p[:, a].astype(F32) for a in range(3)]
        return self.depth(rel)[0]

    def scale_at(self, points_nm: ArrayLike) -> NDArray[np.float64]:
        """Ellipsoid radius coordinate ``rho`` (1 on the undeformed surface) at points."""
        p = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3) - self.center_nm
        u = p @ self.rotation
        return np.sqrt(((u / self.semi_axes_nm) ** 2).sum(axis=1))

    def surface_points(self, *, scale: float = 1.0, grow_nm: float = 0.0) -> NDArray[np.float64]:
        """Points on the ellipsoid scaled by ``scale``, pushed out by ``grow_nm`` (N, 3)."""
        directions = _FIBONACCI
        axes = self.semi_axes_nm * scale
        local = directions * axes
        normals = directions / axes
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        local = local + grow_nm * normals
        return self.center_nm + local @ self.rotation.T


def _fibonacci_sphere(n: int) -> NDArray[np.float64]:
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([z, r * np.cos(phi), r * np.sin(phi)], axis=1)


_FIBONACCI = _fibonacci_sphere(400)


# -- the plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedNucleus:
    """One nucleus: its shape and its look (grey values are offsets or contrasts).

    Attributes
    ----------
    shape : Ellipsoid
        Geometry; the label is ``shape.depth > 0``.
    nucleoplasm : float
        Nucleoplasm grey value minus the tissue mean.
    texture_amplitude, texture_spacing_nm : float
        Granular nucleoplasm texture.
    chromatin_contrast, chromatin_threshold, chromatin_rim_nm, chromatin_rim_weight,
    chromatin_spacing_nm : float
        Heterochromatin: darker by ``chromatin_contrast`` where a smooth random field
        (feature size ``chromatin_spacing_nm``) plus ``chromatin_rim_weight`` times a
        ramp that is 1 at the envelope and 0 at ``chromatin_rim_nm`` depth exceeds
        ``chromatin_threshold``.
    nucleolus_center_nm : (3,) ndarray or None
        Nucleolus centre (None: no nucleolus).
    nucleolus_radius_nm, nucleolus_contrast : float
        Its radius and how much darker than the nucleoplasm it is.
    membrane_nm, lumen_nm : float
        Thickness of each envelope membrane and of the perinuclear gap between them.
    envelope_contrast : float
        How much darker the membranes are than the darkest neighbouring material.
    pore_fraction : float
        Approximate fraction of the envelope opened by pores (drawn at < 40 nm voxels).
    soma_thickness_nm : float
        Cytoplasm shell around the nucleus (0: no visible cell body).
    cytoplasm, cytoplasm_texture : float
        Cytoplasm grey value minus the tissue mean; factor on the background texture.
    key : int
        Field key of this nucleus's textures.
    """

    shape: Ellipsoid
    nucleoplasm: float
    texture_amplitude: float
    texture_spacing_nm: float
    chromatin_contrast: float
    chromatin_threshold: float
    chromatin_rim_nm: float
    chromatin_rim_weight: float
    chromatin_spacing_nm: float
    nucleolus_center_nm: NDArray[np.float64] | None
    nucleolus_radius_nm: float
    nucleolus_contrast: float
    membrane_nm: float
    lumen_nm: float
    envelope_contrast: float
    pore_fraction: float
    soma_thickness_nm: float
    cytoplasm: float
    cytoplasm_texture: float
    key: int


@dataclass(frozen=True)
class PlannedDistractor:
    """An unlabelled object that is not a nucleus.

    Attributes
    ----------
    shape : Ellipsoid
        Geometry.
    kind : {"vessel", "soma"}
        ``"vessel"``: uniform lumen with a dark wall; ``"soma"``: a cell body cut
        outside its nucleus (re-toned background texture, dark cell membrane).
    level : float
        Grey value of the lumen / cytoplasm minus the tissue mean.
    wall_nm : float
        Wall or membrane thickness in nm.
    wall_contrast : float
        How much darker the wall is than the darker side.
    texture : float
        Factor on the background texture inside (cell bodies).
    """

    shape: Ellipsoid
    kind: Literal["vessel", "soma"]
    level: float
    wall_nm: float
    wall_contrast: float
    texture: float


@dataclass(frozen=True)
class Imaging:
    """Tissue tone and acquisition of one scene (see :class:`NucleiSceneConfig`)."""

    tissue_level: float
    tissue_std: float
    blur_sigma_vox: float
    noise_sigma: float
    drift_amplitude: float
    section_jitter: float
    gamma: float
    inverted: bool


@dataclass(frozen=True)
class NucleiPlan:
    """Everything drawn for one scene, before any voxel is rendered.

    Attributes
    ----------
    shape : (3,) ints
        Volume shape (z, y, x) in voxels.
    voxel_size : VoxelSize
        Voxel size in nm.
    seed : int
        The seed it was drawn from.
    nuclei : tuple of PlannedNucleus
        In label order (label = index + 1).
    distractors : tuple of PlannedDistractor
        Unlabelled objects.
    imaging : Imaging
        Tissue tone and acquisition.
    """

    shape: tuple[int, int, int]
    voxel_size: VoxelSize
    seed: int
    nuclei: tuple[PlannedNucleus, ...]
    distractors: tuple[PlannedDistractor, ...]
    imaging: Imaging

    @property
    def extent_nm(self) -> tuple[float, float, float]:
        """Physical size of the volume (z, y, x) in nm."""
        return tuple(  # type: ignore[return-value]
            n * v for n, v in zip(self.shape, self.voxel_size.as_tuple(), strict=True)
        )


class NucleiScene(NamedTuple):
    """A rendered scene: unpack as ``raw, nuclei = make_nuclei_scene(...)``.

    Attributes
    ----------
    raw : (Z, Y, X) ndarray of uint8
        The image.
    nuclei : (Z, Y, X) ndarray of uint32
        Nucleus instances 1..N (envelope included), 0 elsewhere. Labels of nuclei
        that do not reach any voxel centre are absent (ids are not renumbered).
    """

    raw: NDArray[np.uint8]
    nuclei: NDArray[np.uint32]


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _draw_ellipsoid(
    rng: np.random.Generator,
    *,
    diameter_nm: float,
    min_ratio: float,
    amplitude: float,
    min_semi_axis_nm: float = 0.0,
) -> Ellipsoid:
    major = 0.5 * diameter_nm
    r1 = rng.uniform(max(min_ratio, 0.7), 1.0)
    r2 = rng.uniform(min_ratio, r1)
    axes = np.maximum(major * np.array([1.0, r1, r2]), min(min_semi_axis_nm, major))
    directions = rng.normal(size=(_N_DEFORM_WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    weights = rng.uniform(0.2, 1.0, size=_N_DEFORM_WAVES)
    return Ellipsoid(
        center_nm=np.zeros(3),
        semi_axes_nm=axes,
        rotation=_random_rotation(rng),
        deform_amplitude=float(amplitude),
        wave_directions=directions,
        wave_frequencies=rng.uniform(1.0, 3.5, size=_N_DEFORM_WAVES),
        wave_phases=rng.uniform(0.0, 2.0 * math.pi, size=_N_DEFORM_WAVES),
        wave_weights=weights / weights.sum(),
    )


def _with_center(shape: Ellipsoid, center: NDArray[np.float64]) -> Ellipsoid:
    return Ellipsoid(
        center_nm=np.asarray(center, dtype=np.float64),
        semi_axes_nm=shape.semi_axes_nm,
        rotation=shape.rotation,
        deform_amplitude=shape.deform_amplitude,
        wave_directions=shape.wave_directions,
        wave_frequencies=shape.wave_frequencies,
        wave_phases=shape.wave_phases,
        wave_weights=shape.wave_weights,
    )


def _clear_of(candidate: Ellipsoid, others: Sequence[Ellipsoid], gap_nm: float) -> bool:
    """Whether the maximally deformed candidate keeps ``gap_nm`` from every other one."""
    for other in others:
        for a, b in ((candidate, other), (other, candidate)):
            points = a.surface_points(scale=1.0 + a.deform_amplitude, grow_nm=gap_nm)
            points = np.concatenate([points, a.center_nm[None, :]])
            if (b.scale_at(points) <= 1.0 + b.deform_amplitude).any():
                return False
    return True


def _place(
    rng: np.random.Generator,
    template: Ellipsoid,
    extent: NDArray[np.float64],
    *,
    inside: bool,
    grow_nm: float,
    others: Sequence[Ellipsoid],
    gap_nm: float,
) -> Ellipsoid | None:
    half = template.half_extent_nm(grow_nm)
    for _ in range(_PLACEMENT_TRIES):
        if inside:
            lo, hi = half, extent - half
            if (hi < lo).any():
                return None
            center = rng.uniform(lo, hi)
        else:
            center = rng.uniform(np.zeros(3), extent)
        candidate = _with_center(template, center)
        if _clear_of(candidate, others, gap_nm):
            return candidate
    return None


def plan_nuclei_scene(
    shape: Sequence[int],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
    seed: int,
    config: NucleiSceneConfig | None = None,
) -> NucleiPlan:
    """Draw the nuclei, distractors and imaging of one scene.

    Parameters
    ----------
    shape : (3,) ints
        Volume shape (z, y, x) in voxels.
    voxel_size : VoxelSize or (z, y, x) floats or float
        Voxel size in nm.
    seed : int
        Random seed; the same arguments always give the same plan.
    config : NucleiSceneConfig, optional
        Ranges to draw from (defaults: :class:`NucleiSceneConfig`).

    Returns
    -------
    NucleiPlan
        At least one nucleus when ``config.n_nuclei[1] >= 1`` (a nucleus that fits
        nowhere is shrunk until it fits).
    """
    cfg = config or NucleiSceneConfig()
    shape3 = tuple(int(s) for s in shape)
    if len(shape3) != 3 or min(shape3) < 1:
        raise ConfigError(f"shape must be three positive voxel counts (z, y, x), got {shape!r}")
    vs = VoxelSize.coerce(voxel_size)
    voxel = np.asarray(vs.as_tuple())
    extent = np.asarray(shape3, dtype=np.float64) * voxel
    rng = np.random.default_rng([int(seed) % (1 << 63), _STREAM_PLAN])
    min_voxel = float(voxel.min())

    anisotropic = vs.z >= 1.5 * min(vs.y, vs.x)
    imaging = Imaging(
        tissue_level=rng.uniform(*cfg.tissue_level),
        tissue_std=rng.uniform(*cfg.tissue_std),
        blur_sigma_vox=rng.uniform(*cfg.blur_sigma_vox),
        noise_sigma=rng.uniform(*cfg.noise_sigma),
        drift_amplitude=rng.uniform(*cfg.drift_amplitude),
        section_jitter=rng.uniform(*cfg.section_jitter) if anisotropic else 0.0,
        gamma=math.exp(rng.uniform(math.log(cfg.gamma[0]), math.log(cfg.gamma[1]))),
        inverted=bool(rng.random() < cfg.invert_probability),
    )

    placed: list[Ellipsoid] = []
    nuclei: list[PlannedNucleus] = []
    n_target = int(rng.integers(cfg.n_nuclei[0], cfg.n_nuclei[1] + 1))
    d_lo, d_hi = cfg.diameter_nm
    for index in range(n_target):
        inside = bool(rng.random() >= cfg.cut_probability)
        diameter = rng.uniform(d_lo, d_hi)
        amplitude = rng.uniform(*cfg.deform_amplitude)
        template = _draw_ellipsoid(
            rng,
            diameter_nm=diameter,
            min_ratio=cfg.min_axis_ratio,
            amplitude=amplitude,
            min_semi_axis_nm=0.5 * d_lo * cfg.min_axis_ratio,
        )
        shape_: Ellipsoid | None = None
        for _ in range(8):
            shape_ = _place(
                rng, template, extent, inside=inside, grow_nm=0.0, others=placed, gap_nm=cfg.gap_nm
            )
            if shape_ is not None or index > 0:
                break
            # The first nucleus always fits: shrink it (not below 3 voxels).
            smaller = template.semi_axes_nm * 0.85
            if smaller.min() < 3 * min_voxel:
                break
            template = Ellipsoid(
                center_nm=template.center_nm,
                semi_axes_nm=smaller,
                rotation=template.rotation,
                deform_amplitude=template.deform_amplitude,
                wave_directions=template.wave_directions,
                wave_frequencies=template.wave_frequencies,
                wave_phases=template.wave_phases,
                wave_weights=template.wave_weights,
            )
        if shape_ is None:
            continue
        placed.append(shape_)
        nuclei.append(_draw_look(rng, cfg, shape_, key=derive_key(seed, index)))

    distractors: list[PlannedDistractor] = []
    for _ in range(int(rng.integers(cfg.n_distractors[0], cfg.n_distractors[1] + 1))):
        kind: Literal["vessel", "soma"] = "vessel" if rng.random() < 0.5 else "soma"
        diameter = rng.uniform(1500.0, 8000.0) if kind == "vessel" else rng.uniform(3000.0, 12000.0)
        template = _draw_ellipsoid(
            rng, diameter_nm=diameter, min_ratio=0.5, amplitude=rng.uniform(0.0, 0.12)
        )
        shape_ = _place(
            rng, template, extent, inside=False, grow_nm=0.0, others=placed, gap_nm=cfg.gap_nm
        )
        if shape_ is None:
            continue
        placed.append(shape_)
        if kind == "vessel":
            level = rng.uniform(0.15, 0.4) * (1.0 if rng.random() < 0.6 else -1.0)
            distractors.append(
                PlannedDistractor(
                    shape=shape_,
                    kind=kind,
                    level=level,
                    wall_nm=rng.uniform(60.0, 400.0),
                    wall_contrast=rng.uniform(0.05, 0.25),
                    texture=0.0,
                )
            )
        else:
            distractors.append(
                PlannedDistractor(
                    shape=shape_,
                    kind=kind,
                    level=rng.uniform(-0.1, 0.15),
                    wall_nm=rng.uniform(6.0, 12.0),
                    wall_contrast=rng.uniform(0.05, 0.25),
                    texture=rng.uniform(0.3, 1.0),
                )
            )
    return NucleiPlan(
        shape=shape3,
        voxel_size=vs,
        seed=int(seed),
        nuclei=tuple(nuclei),
        distractors=tuple(distractors),
        imaging=imaging,
    )


def _draw_look(
    rng: np.random.Generator, cfg: NucleiSceneConfig, shape: Ellipsoid, *, key: int
) -> PlannedNucleus:
    a_min = float(shape.semi_axes_nm.min()) * (1.0 - shape.deform_amplitude)
    nucleolus_center = None
    nucleolus_radius = 0.0
    if rng.random() < cfg.nucleolus_probability:
        nucleolus_radius = min(rng.uniform(400.0, 1500.0), 0.35 * a_min)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        reach = max(a_min - nucleolus_radius - 200.0, 0.0) * rng.uniform(0.0, 0.8)
        nucleolus_center = shape.center_nm + direction * reach
    soma = 0.0
    if rng.random() < cfg.soma_probability:
        soma = rng.uniform(*cfg.soma_thickness_nm)
    return PlannedNucleus(
        shape=shape,
        nucleoplasm=rng.uniform(*cfg.nucleoplasm_contrast)
        * (-1.0 if rng.random() < cfg.darker_nucleoplasm_probability else 1.0),
        texture_amplitude=rng.uniform(0.005, 0.05),
        texture_spacing_nm=rng.uniform(40.0, 200.0),
        chromatin_contrast=rng.uniform(*cfg.heterochromatin_contrast),
        chromatin_threshold=rng.uniform(0.2, 1.0),
        chromatin_rim_nm=rng.uniform(150.0, 700.0),
        chromatin_rim_weight=rng.uniform(0.5, 1.5),
        chromatin_spacing_nm=rng.uniform(120.0, 500.0),
        nucleolus_center_nm=nucleolus_center,
        nucleolus_radius_nm=float(nucleolus_radius),
        nucleolus_contrast=rng.uniform(*cfg.nucleolus_contrast),
        membrane_nm=rng.uniform(6.0, 10.0),
        lumen_nm=rng.uniform(15.0, 40.0),
        envelope_contrast=rng.uniform(*cfg.envelope_contrast),
        pore_fraction=cfg.pore_fraction,
        soma_thickness_nm=float(soma),
        cytoplasm=rng.uniform(-0.1, 0.15),
        cytoplasm_texture=rng.uniform(0.3, 1.0),
        key=int(key),
    )


# -- rendering -------------------------------------------------------------------------


def _relative(box: Box, voxel: Sequence[float], center: NDArray[np.float64]) -> list[NDArray]:
    """Voxel-centre positions of ``box`` minus ``center`` along z, y, x (broadcastable)."""
    out = []
    for a in range(3):
        c = np.arange(box.offset[a], box.stop[a], dtype=np.float64) * voxel[a] - center[a]
        out.append(c.astype(F32).reshape([-1 if b == a else 1 for b in range(3)]))
    return out


def _coverage(depth: NDArray[np.float32], half: NDArray[np.float32]) -> NDArray[np.float32]:
    """Fraction of a voxel (extent ``2 * half`` along the normal) with ``depth > 0``."""
    return np.clip(depth / (F32(2.0) * half) + F32(0.5), F32(0.0), F32(1.0))


def _band(
    depth: NDArray[np.float32], half: NDArray[np.float32], lo: float, hi: float
) -> NDArray[np.float32]:
    """Fraction of a voxel covered by the band ``lo < depth < hi`` (nm)."""
    overlap = np.minimum(F32(hi), depth + half) - np.maximum(F32(lo), depth - half)
    return np.clip(overlap / (F32(2.0) * half), F32(0.0), F32(1.0))


def _texture(key: int, spacing_nm: float, box: Box, voxel_size: VoxelSize) -> NDArray[np.float32]:
    """Return a smooth random field in about [-1, 1], attenuated where voxels average it."""
    voxel = voxel_size.as_tuple()
    spacing = max(spacing_nm, 1.5 * min(voxel))
    attenuation = 1.0
    for v in voxel:
        attenuation *= min(1.0, spacing_nm / v) ** 0.5
    field = ValueNoise(key, spacing_nm=spacing).on_grid(box, voxel_size)
    return field * F32(attenuation) if attenuation < 1.0 else field


def _blend(
    base: NDArray[Any], value: NDArray[Any] | float | np.floating[Any], alpha: NDArray[Any]
) -> NDArray[np.float32]:
    return (base + (value - base) * alpha).astype(F32, copy=False)


def _clip_box(box: Box, shape: Sequence[int]) -> Box:
    return box.intersect(Box.from_shape(shape))


def label_nuclei(plan: NucleiPlan, box: Box | None = None) -> NDArray[np.uint32]:
    """Nucleus instance labels of any voxel box (it may extend beyond the volume).

    Parameters
    ----------
    plan : NucleiPlan
        The scene.
    box : Box, optional
        Global voxel box; the whole volume when omitted.

    Returns
    -------
    ndarray of uint32
        ``box.shape``; nucleus ``k`` (1-based) where the voxel centre lies inside it.
    """
    box = box or Box.from_shape(plan.shape)
    labels = np.zeros(box.shape, dtype=np.uint32)
    voxel = plan.voxel_size.as_tuple()
    for k, nucleus in enumerate(plan.nuclei):
        part = nucleus.shape.bounding_box(plan.voxel_size).intersect(box)
        if part.is_empty:
            continue
        rel = _relative(part, voxel, nucleus.shape.center_nm)
        depth, _ = nucleus.shape.depth(rel)
        sl = part.to_slices(box)
        target = labels[sl]
        target[(depth > 0) & (target == 0)] = k + 1
    return labels


def _soma_layer(
    image: NDArray[np.float32],
    texture: NDArray[np.float32],
    shape: Ellipsoid,
    *,
    thickness_nm: float,
    level: float,
    texture_gain: float,
    membrane_nm: float,
    membrane_contrast: float,
    imaging: Imaging,
    plan: NucleiPlan,
) -> None:
    """Paint a cell body (cytoplasm shell of ``thickness_nm`` around ``shape``) in place."""
    box = _clip_box(shape.bounding_box(plan.voxel_size, grow_nm=thickness_nm), plan.shape)
    if box.is_empty:
        return
    sl = box.to_slices()
    depth, half = shape.depth(
        _relative(box, plan.voxel_size.as_tuple(), shape.center_nm), plan.voxel_size.as_tuple()
    )
    assert half is not None
    outer = depth + F32(thickness_nm)
    inside = _coverage(outer, half)
    tissue = imaging.tissue_level
    cytoplasm = F32(tissue + level) + F32(imaging.tissue_std * texture_gain) * texture[sl]
    region = _blend(image[sl], cytoplasm, inside)
    dark = min(tissue, tissue + level) - membrane_contrast
    image[sl] = _blend(region, F32(dark), _band(outer, half, 0.0, membrane_nm))


def _vessel_layer(
    image: NDArray[np.float32], distractor: PlannedDistractor, imaging: Imaging, plan: NucleiPlan
) -> None:
    shape = distractor.shape
    box = _clip_box(shape.bounding_box(plan.voxel_size, grow_nm=distractor.wall_nm), plan.shape)
    if box.is_empty:
        return
    sl = box.to_slices()
    voxel = plan.voxel_size.as_tuple()
    depth, half = shape.depth(_relative(box, voxel, shape.center_nm), voxel)
    assert half is not None
    lumen = F32(imaging.tissue_level + distractor.level)
    region = _blend(image[sl], lumen, _coverage(depth, half))
    dark = min(imaging.tissue_level, imaging.tissue_level + distractor.level)
    wall = _band(depth, half, -distractor.wall_nm, 0.0)
    image[sl] = _blend(region, F32(dark - distractor.wall_contrast), wall)


def _nucleus_layer(
    image: NDArray[np.float32],
    labels: NDArray[np.uint32],
    nucleus: PlannedNucleus,
    *,
    label: int,
    imaging: Imaging,
    plan: NucleiPlan,
) -> None:
    shape = nucleus.shape
    vs = plan.voxel_size
    voxel = vs.as_tuple()
    box = _clip_box(shape.bounding_box(vs), plan.shape)
    if box.is_empty:
        return
    sl = box.to_slices()
    depth, half = shape.depth(_relative(box, voxel, shape.center_nm), voxel)
    assert half is not None
    tissue = imaging.tissue_level
    base = tissue + nucleus.nucleoplasm
    key = nucleus.key
    interior = F32(base) + F32(nucleus.texture_amplitude) * _texture(
        derive_key(key, _KEY_TEXTURE), nucleus.texture_spacing_nm, box, vs
    )
    chromatin = _texture(derive_key(key, _KEY_CHROMATIN), nucleus.chromatin_spacing_nm, box, vs)
    rim = np.clip(F32(1.0) - depth * F32(1.0 / nucleus.chromatin_rim_nm), F32(0.0), F32(1.0))
    clumps = np.clip(
        (chromatin + F32(nucleus.chromatin_rim_weight) * rim - F32(nucleus.chromatin_threshold))
        * F32(1.0 / 0.2)
        + F32(0.5),
        F32(0.0),
        F32(1.0),
    )
    interior = _blend(interior, F32(base - nucleus.chromatin_contrast), clumps)
    if nucleus.nucleolus_center_nm is not None:
        rel = _relative(box, voxel, nucleus.nucleolus_center_nm)
        distance = np.sqrt(rel[0] * rel[0] + rel[1] * rel[1] + rel[2] * rel[2])
        soft = F32(0.5 * float(np.mean(voxel)))
        inside = _coverage(F32(nucleus.nucleolus_radius_nm) - distance, np.full((), soft, F32))
        granules = _texture(derive_key(key, _KEY_NUCLEOLUS), 60.0, box, vs)
        value = F32(base - nucleus.nucleolus_contrast) + F32(0.04) * granules
        interior = _blend(interior, value, inside)
    outside = image[sl]
    region = _blend(outside, interior, _coverage(depth, half))
    # Double envelope: outer membrane, perinuclear gap, inner membrane (depth in nm).
    m, gap = nucleus.membrane_nm, nucleus.lumen_nm
    lumen = _band(depth, half, m, m + gap)
    region = _blend(region, F32(max(base, tissue) + 0.03), lumen)
    membranes = _band(depth, half, 0.0, m) + _band(depth, half, m + gap, 2.0 * m + gap)
    if min(voxel) < 40.0 and nucleus.pore_fraction > 0:
        # Value-noise quantiles are about linear: the (1 - f) quantile is ~0.6 - 1.5 f.
        threshold = 0.6 - 1.5 * nucleus.pore_fraction
        pores = _texture(derive_key(key, _KEY_PORES), 120.0, box, vs)
        open_ = np.clip((pores - F32(threshold)) * F32(10.0) + F32(0.5), F32(0.0), F32(1.0))
        membranes *= F32(1.0) - open_
    darkest = min(tissue, base - nucleus.chromatin_contrast, tissue + nucleus.cytoplasm)
    region = _blend(region, F32(darkest - nucleus.envelope_contrast), np.minimum(membranes, 1.0))
    image[sl] = region
    target = labels[sl]
    target[(depth > 0) & (target == 0)] = label


def _acquire(image: NDArray[np.float32], plan: NucleiPlan) -> NDArray[np.uint8]:
    """Blur, drift, section jitter, noise, gamma, inversion and 8-bit quantisation."""
    imaging = plan.imaging
    vs = plan.voxel_size
    voxel = vs.as_tuple()
    box = Box.from_shape(plan.shape)
    if imaging.blur_sigma_vox > 0.05:
        finest = min(voxel)
        sigma = [imaging.blur_sigma_vox * finest / v for v in voxel]
        image = ndimage.gaussian_filter(image, sigma, mode="nearest").astype(F32, copy=False)
    if imaging.drift_amplitude > 0:
        spacing = 0.5 * max(plan.extent_nm)
        drift = ValueNoise(derive_key(plan.seed, _KEY_DRIFT), spacing_nm=spacing).on_grid(box, vs)
        image = image * (F32(1.0) + F32(imaging.drift_amplitude) * drift)
    if imaging.section_jitter > 0:
        rng = np.random.default_rng([plan.seed % (1 << 63), _KEY_JITTER])
        offsets = rng.normal(0.0, imaging.section_jitter, size=plan.shape[0]).astype(F32)
        image = image + offsets[:, None, None]
    if imaging.noise_sigma > 0:
        scale = F32(imaging.noise_sigma) * np.sqrt(np.maximum(image, F32(0.02)) * F32(2.0))
        image = image + scale * gaussian_noise(derive_key(plan.seed, _KEY_NOISE), box, plan.shape)
    image = np.clip(image, F32(0.0), F32(1.0)) ** F32(imaging.gamma)
    if imaging.inverted:
        image = F32(1.0) - image
    return np.rint(image * F32(255.0)).astype(np.uint8)


def _standardise(background: NDArray) -> NDArray[np.float32]:
    """Zero median, unit robust standard deviation, clipped to ±4."""
    values = np.asarray(background, dtype=F32)
    if not np.all(np.isfinite(values)):
        raise InvalidVolumeError("background contains NaN or infinite values; clean it first")
    sample = values.reshape(-1)[:: max(1, values.size // 200_000)]
    p16, p50, p84 = np.percentile(sample, [16, 50, 84])
    spread = 0.5 * float(p84 - p16)
    if spread <= 0:
        spread = float(sample.std()) or 1.0
    return np.clip((values - F32(p50)) / F32(spread), F32(-4.0), F32(4.0))


def render_nuclei_scene(plan: NucleiPlan, background: ArrayLike) -> NucleiScene:
    """Render a planned scene over a background volume.

    Parameters
    ----------
    plan : NucleiPlan
        From :func:`plan_nuclei_scene`.
    background : (Z, Y, X) ndarray of uint8 or float
        Real (or synthetic) EM texture at ``plan.voxel_size`` with ``plan.shape``
        (see :func:`tile_background` to fill a volume from a smaller one). Only its
        texture is used: it is standardised (median, robust spread) and re-toned.

    Returns
    -------
    NucleiScene
        ``raw`` uint8 and ``nuclei`` uint32 of ``plan.shape``.
    """
    array = np.asarray(background)
    if array.shape != tuple(plan.shape):
        raise InvalidVolumeError(
            f"background shape {array.shape} differs from the scene shape {plan.shape}; "
            "fill it with tile_background first"
        )
    if array.size == 0:
        raise InvalidVolumeError("background is empty")
    texture = _standardise(array)
    imaging = plan.imaging
    image = F32(imaging.tissue_level) + F32(imaging.tissue_std) * texture
    labels = np.zeros(plan.shape, dtype=np.uint32)
    for distractor in plan.distractors:
        if distractor.kind == "soma":
            _soma_layer(
                image,
                texture,
                distractor.shape,
                thickness_nm=0.0,
                level=distractor.level,
                texture_gain=distractor.texture,
                membrane_nm=distractor.wall_nm,
                membrane_contrast=distractor.wall_contrast,
                imaging=imaging,
                plan=plan,
            )
    for nucleus in plan.nuclei:
        if nucleus.soma_thickness_nm > 0:
            _soma_layer(
                image,
                texture,
                nucleus.shape,
                thickness_nm=nucleus.soma_thickness_nm,
                level=nucleus.cytoplasm,
                texture_gain=nucleus.cytoplasm_texture,
                membrane_nm=8.0,
                membrane_contrast=nucleus.envelope_contrast,
                imaging=imaging,
                plan=plan,
            )
    for distractor in plan.distractors:
        if distractor.kind == "vessel":
            _vessel_layer(image, distractor, imaging, plan)
    for k, nucleus in enumerate(plan.nuclei):
        _nucleus_layer(image, labels, nucleus, label=k + 1, imaging=imaging, plan=plan)
    return NucleiScene(raw=_acquire(image, plan), nuclei=labels)


def make_nuclei_scene(
    background: ArrayLike,
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
    seed: int,
    shape: Sequence[int] | None = None,
    config: NucleiSceneConfig | None = None,
) -> NucleiScene:
    """Embed random nuclei into an EM background: a training scene with exact labels.

    Parameters
    ----------
    background : (Z, Y, X) ndarray of uint8 or float
        EM texture already at ``voxel_size`` (resample real data first). When it is
        smaller or larger than ``shape`` it is filled by :func:`tile_background`
        (random crops, flips and in-plane rotations, blended seams).
    voxel_size : VoxelSize or (z, y, x) floats or float
        Voxel size in nm (10–100 nm and z up to 5× the in-plane size are typical).
    seed : int
        Random seed; the same inputs always give the same scene.
    shape : (3,) ints, optional
        Scene shape (z, y, x) in voxels; the background's shape by default.
    config : NucleiSceneConfig, optional
        Ranges to draw from.

    Returns
    -------
    NucleiScene
        ``(raw, nuclei)``: uint8 image and uint32 nucleus instances.
    """
    array = np.asarray(background)
    if array.ndim != 3:
        raise InvalidVolumeError(f"background must be a (Z, Y, X) volume, got shape {array.shape}")
    target = tuple(int(s) for s in shape) if shape is not None else array.shape
    if array.shape != target:
        array = tile_background(array, target, seed=seed)
    plan = plan_nuclei_scene(target, voxel_size=voxel_size, seed=seed, config=config)
    return render_nuclei_scene(plan, array)


# -- backgrounds -----------------------------------------------------------------------


def _tent(size: int, ramp: int) -> NDArray[np.float64]:
    if ramp <= 0:
        return np.ones(size)
    i = np.arange(size)
    return np.minimum(np.minimum(i + 1, size - i) / (ramp + 1), 1.0)


def tile_background(
    texture: ArrayLike,
    shape: Sequence[int],
    *,
    seed: int,
    overlap: float = 0.25,
) -> NDArray[np.float32]:
    """Fill a volume with randomly flipped and rotated crops of a smaller texture.

    Tiles overlap by ``overlap`` and are blended with tent weights; the blend is
    rescaled so that the texture keeps its contrast in the seams (independent tiles
    averaged with weights ``w`` have ``sum(w**2) / sum(w)**2`` of the variance).

    Parameters
    ----------
    texture : (Z, Y, X) ndarray
        Background texture at the scene voxel size.
    shape : (3,) ints
        Output shape.
    seed : int
        Random seed (crops, flips, rotations).
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 0.5].

    Returns
    -------
    ndarray of float32
        ``shape``, with the mean of ``texture``.
    """
    source = np.asarray(texture, dtype=F32)
    if source.ndim != 3 or source.size == 0:
        raise InvalidVolumeError(
            f"texture must be a non-empty (Z, Y, X) volume, got {source.shape}"
        )
    out_shape = tuple(int(s) for s in shape)
    if len(out_shape) != 3 or min(out_shape) < 1:
        raise ConfigError(f"shape must be three positive voxel counts, got {shape!r}")
    if not 0.0 <= overlap <= 0.5:
        raise ConfigError(f"overlap must lie in [0, 0.5], got {overlap!r}")
    rng = np.random.default_rng([int(seed) % (1 << 63), _STREAM_TILES])
    tile = [min(t, s) for t, s in zip(source.shape, out_shape, strict=True)]
    mean = F32(source.mean())
    # Tiles lie on a grid over a canvas one tile larger than the output; the output is
    # cut from it at a random phase, so seams do not sit at the same places every time.
    starts = []
    ramps = []
    canvas = []
    phase = []
    for size, t in zip(out_shape, tile, strict=True):
        if t >= size:
            starts.append([0])
            ramps.append(0)
            canvas.append(size)
            phase.append(0)
            continue
        step = max(1, round(t * (1.0 - overlap)))
        axis_starts = list(range(0, size + step, step))
        starts.append(axis_starts)
        ramps.append(max(0, t - step))
        canvas.append(axis_starts[-1] + t)
        phase.append(int(rng.integers(0, step)))
    weights = np.multiply.outer(
        np.multiply.outer(_tent(tile[0], ramps[0]), _tent(tile[1], ramps[1])),
        _tent(tile[2], ramps[2]),
    ).astype(F32)
    accumulated = np.zeros(canvas, dtype=F32)
    weight_sq = np.zeros(canvas, dtype=F32)
    square = tile[1] == tile[2]
    for z0 in starts[0]:
        for y0 in starts[1]:
            for x0 in starts[2]:
                offset = [
                    int(rng.integers(0, n - t + 1)) for n, t in zip(source.shape, tile, strict=True)
                ]
                crop = source[
                    offset[0] : offset[0] + tile[0],
                    offset[1] : offset[1] + tile[1],
                    offset[2] : offset[2] + tile[2],
                ]
                flips = [a for a in range(3) if rng.random() < 0.5]
                if flips:
                    crop = np.flip(crop, axis=tuple(flips))
                if square and rng.random() < 0.5:
                    crop = np.swapaxes(crop, 1, 2)
                sl = (
                    slice(z0, z0 + tile[0]),
                    slice(y0, y0 + tile[1]),
                    slice(x0, x0 + tile[2]),
                )
                accumulated[sl] += weights * (crop - mean)
                weight_sq[sl] += weights * weights
    cut = tuple(slice(p, p + n) for p, n in zip(phase, out_shape, strict=True))
    accumulated, weight_sq = accumulated[cut], weight_sq[cut]
    tiled = mean + accumulated / np.sqrt(np.maximum(weight_sq, F32(1e-12)))
    return tiled.astype(F32, copy=False)


def synthetic_background(
    shape: Sequence[int],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
    seed: int,
) -> NDArray[np.uint8]:
    """Make a neuropil-like random texture (no real data): mottled grey with dark specks.

    Smooth random fields of 1.5 µm, 400 nm and 150 nm feature size plus dark blobs
    (mitochondria-like) and light blobs (large processes), softened by a blur of 0.6
    voxels; the fields are physical, so the texture looks alike at every voxel size.

    Parameters
    ----------
    shape : (3,) ints
        Volume shape (z, y, x) in voxels.
    voxel_size : VoxelSize or (z, y, x) floats or float
        Voxel size in nm.
    seed : int
        Random seed.

    Returns
    -------
    ndarray of uint8
        ``shape``; mean about 128.
    """
    vs = VoxelSize.coerce(voxel_size)
    box = Box.from_shape(tuple(int(s) for s in shape))
    key = derive_key(seed, _KEY_BACKGROUND)
    image = np.full(box.shape, 0.5, dtype=F32)
    image += F32(0.06) * _texture(derive_key(key, 1), 1500.0, box, vs)
    image += F32(0.08) * _texture(derive_key(key, 2), 400.0, box, vs)
    image += F32(0.06) * _texture(derive_key(key, 3), 150.0, box, vs)
    dark = np.clip((_texture(derive_key(key, 4), 300.0, box, vs) - F32(0.45)) * F32(5.0), 0, 1)
    light = np.clip((_texture(derive_key(key, 5), 700.0, box, vs) - F32(0.5)) * F32(4.0), 0, 1)
    image = _blend(image, F32(0.25), dark * F32(0.8))
    image = _blend(image, F32(0.7), light * F32(0.6))
    # Soften the value-noise lattice (axis-aligned blockiness) by about half a voxel.
    image = ndimage.gaussian_filter(image, 0.6, mode="nearest")
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
