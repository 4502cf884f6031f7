"""The object list of a phantom: cell seeds, nuclei, mitochondria and vesicles.

Objects are drawn once from the seed, in physical coordinates (nm), before any voxel
is rasterised. Placement rules (mitochondria inside one cell, away from the nucleus
and from each other) are checked here with point queries; the rasteriser then only
has to draw them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from vemkit.errors import ConfigError
from vemkit.geometry import Box, VoxelSize
from vemkit.synth.config import PhantomConfig
from vemkit.synth.fields import ValueNoise, derive_key

__all__ = [
    "CellModel",
    "Mitochondrion",
    "Nucleus",
    "Vesicles",
    "sample_cell_seeds",
    "sample_mitochondria",
    "sample_nuclei",
    "sample_vesicles",
]

_MAX_CELLS = 50_000
_QUERY_BATCH = 2048

# Stream numbers: one random stream / field key per purpose.
STREAM_CELLS, STREAM_NUCLEI, STREAM_MITO, STREAM_VESICLES = 1, 2, 3, 4
KEY_WARP, KEY_NUCLEUS, KEY_CHROMATIN = 10, 20, 30


def rng_for(config: PhantomConfig, stream: int, *keys: int) -> np.random.Generator:
    """Independent random generator for one purpose (and optionally one object)."""
    return np.random.default_rng([config.seed % (1 << 64), stream, *keys])


@dataclass(frozen=True)
class CellModel:
    """Cells as a warped Voronoi tessellation.

    A point ``p`` belongs to the seed nearest to its warped position
    ``w(p) = p + sum_o amplitude_o * n_o(p)``, where each ``n_o`` is a smooth random
    vector field (one octave) with components in [-1, 1]. The membrane is the set of
    points whose warped position lies close to a bisector between the nearest seed and
    another seed.

    Parameters
    ----------
    seeds_nm : (N, 3) ndarray of float64
        Seed positions (z, y, x) in nm.
    warp : tuple of ValueNoise
        Displacement fields, three (z, y, x) per octave.
    warp_amplitudes_nm : tuple of float
        Amplitude of each octave in nm.
    membrane_half_nm : float
        Half the membrane thickness in nm.
    seed_ids : (N,) ndarray of int
        Identity of each seed in the originally drawn list, which keys everything
        drawn per cell (its nucleus, its tone) so a cell looks the same whatever
        other seeds were dropped.
    """

    seeds_nm: NDArray[np.float64]
    warp: tuple[ValueNoise, ...]
    warp_amplitudes_nm: tuple[float, ...]
    membrane_half_nm: float
    seed_ids: NDArray[np.int64]

    @property
    def warp_nm(self) -> float:
        """Largest possible displacement along one axis in nm."""
        return float(sum(self.warp_amplitudes_nm))

    def displacement(self, axis: int, box: Box, voxel_size: VoxelSize) -> NDArray[np.float32]:
        """Displacement along ``axis`` (nm) at the voxel centres of ``box``."""
        total = None
        for octave, amplitude in enumerate(self.warp_amplitudes_nm):
            d = np.float32(amplitude) * self.warp[3 * octave + axis].on_grid(box, voxel_size)
            total = d if total is None else total + d
        return total  # type: ignore[return-value]

    def warped(self, points_nm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Warped positions of ``points_nm`` (N, 3)."""
        out = np.array(points_nm, dtype=np.float64).reshape(-1, 3)
        base = out.copy()
        for octave, amplitude in enumerate(self.warp_amplitudes_nm):
            for axis in range(3):
                out[:, axis] += amplitude * self.warp[3 * octave + axis].at_points(base)
        return out

    def query(
        self, points_nm: NDArray[np.float64], seeds: NDArray[np.intp] | None = None
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Owner seed and distance to the cell boundary (warped space) of points.

        Parameters
        ----------
        points_nm : (N, 3) ndarray of float
            Positions in nm.
        seeds : (K,) ints, optional
            Restrict the tessellation to these seeds (default: all).

        Returns
        -------
        owner : (N,) ndarray of int
            Index of the owning seed.
        boundary_nm : (N,) ndarray of float64
            Distance from the warped position to the nearest bisector, in nm.
        """
        points = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3)
        index = np.arange(len(self.seeds_nm)) if seeds is None else np.asarray(seeds)
        sites = self.seeds_nm[index]
        owner = np.empty(len(points), dtype=np.intp)
        boundary = np.empty(len(points))
        for start in range(0, len(points), _QUERY_BATCH):
            w = self.warped(points[start : start + _QUERY_BATCH])
            d2 = ((w[:, None, :] - sites[None, :, :]) ** 2).sum(axis=2)
            o = np.argmin(d2, axis=1)
            d1 = d2[np.arange(len(w)), o]
            pair = np.linalg.norm(sites[o][:, None, :] - sites[None, :, :], axis=2)
            with np.errstate(divide="ignore", invalid="ignore"):
                b = (d2 - d1[:, None]) / (2.0 * pair)
            b[np.arange(len(w)), o] = np.inf
            owner[start : start + len(w)] = index[o]
            boundary[start : start + len(w)] = b.min(axis=1) if len(sites) > 1 else np.inf
        return owner, boundary


def sample_cell_seeds(config: PhantomConfig) -> NDArray[np.float64]:
    """Seed positions (nm) for the cells: dart throwing in the volume plus a margin.

    Seeds keep at least 0.7 × the cell size apart, so cells have similar sizes but
    irregular shapes.
    """
    rng = rng_for(config, STREAM_CELLS)
    cell = float(config.cell_size_nm)  # type: ignore[arg-type]
    extent = np.asarray(config.extent_nm)
    margin = 1.2 * cell
    lo, hi = -margin, extent + margin
    count = int(np.prod(hi - lo) / cell**3) + 1
    if count > _MAX_CELLS:
        raise ConfigError(
            f"cell_size_nm={cell:g} gives about {count} cells for a volume of "
            f"{tuple(round(e) for e in extent)} nm; choose a larger cell size"
        )
    min_dist2 = (0.7 * cell) ** 2
    seeds = np.empty((count, 3))
    n = 0
    for _ in range(40):
        candidates = rng.uniform(lo, hi, size=(4 * count, 3))
        for p in candidates:
            if n and (((seeds[:n] - p) ** 2).sum(axis=1) < min_dist2).any():
                continue
            seeds[n] = p
            n += 1
            if n == count:
                return seeds
    return seeds[:n]


def make_cell_model(
    config: PhantomConfig,
    seeds_nm: NDArray[np.float64],
    seed_ids: NDArray[np.int64] | None = None,
) -> CellModel:
    """Build the warped Voronoi model for ``seeds_nm`` (ids default to 0..N-1)."""
    cell = float(config.cell_size_nm)  # type: ignore[arg-type]
    octaves = ((0.85 * cell, 0.10 * cell), (0.3 * cell, 0.03 * cell))
    warp = tuple(
        ValueNoise(derive_key(config.seed, KEY_WARP, o, a), spacing)
        for o, (spacing, _) in enumerate(octaves)
        for a in range(3)
    )
    return CellModel(
        seeds_nm=np.asarray(seeds_nm, dtype=np.float64),
        warp=warp,
        warp_amplitudes_nm=tuple(amplitude for _, amplitude in octaves),
        membrane_half_nm=0.5 * config.membrane_thickness_nm,
        seed_ids=np.arange(len(seeds_nm)) if seed_ids is None else np.asarray(seed_ids),
    )


@dataclass(frozen=True)
class Nucleus:
    """A deformed ellipsoid with an envelope, chromatin and an optional nucleolus.

    Parameters
    ----------
    cell : int
        Index of the cell seed the nucleus belongs to.
    center_nm : (3,) ndarray of float64
        Centre (z, y, x) in nm.
    semi_axes_nm : (3,) ndarray of float64
        Semi-axes in nm, along the columns of ``rotation``.
    rotation : (3, 3) ndarray of float64
        Orthonormal matrix whose columns are the principal axes in (z, y, x).
    deform : ValueNoise
        Field that modulates the radius.
    deform_amplitude : float
        Relative radius modulation (e.g. 0.06 for ±6 %).
    chromatin : ValueNoise
        Field whose high values become heterochromatin clumps.
    nucleolus_center_nm : (3,) ndarray of float64 or None
        Centre of the nucleolus (None: no nucleolus).
    nucleolus_radius_nm : float
        Radius of the nucleolus in nm.
    """

    cell: int
    center_nm: NDArray[np.float64]
    semi_axes_nm: NDArray[np.float64]
    rotation: NDArray[np.float64]
    deform: ValueNoise
    deform_amplitude: float
    chromatin: ValueNoise
    nucleolus_center_nm: NDArray[np.float64] | None = None
    nucleolus_radius_nm: float = 0.0

    @property
    def reach_nm(self) -> float:
        """Radius of a sphere around the centre that contains the nucleus."""
        return float(self.semi_axes_nm.max()) * (1.0 + self.deform_amplitude) + 1.0

    def depth(self, dz: NDArray, dy: NDArray, dx: NDArray, deform: NDArray) -> NDArray:
        """Approximate signed distance (nm) to the surface, positive inside.

        Parameters
        ----------
        dz, dy, dx : ndarray of float
            Offsets from the centre in nm (broadcastable).
        deform : ndarray of float
            Deformation field values at the same positions.

        Returns
        -------
        ndarray
            First-order distance estimate ``f / |grad f|`` of the ellipsoid function.
        """
        # Plain Python floats keep float32 inputs in float32.
        r = self.rotation.tolist()
        inv = [1.0 / float(a) ** 2 for a in self.semi_axes_nm]
        u2 = []
        for axis in range(3):
            u = r[0][axis] * dz + r[1][axis] * dy + r[2][axis] * dx
            u2.append(u * u)
        q = u2[0] * inv[0] + u2[1] * inv[1] + u2[2] * inv[2]
        g = u2[0] * (inv[0] * inv[0]) + u2[1] * (inv[1] * inv[1]) + u2[2] * (inv[2] * inv[2])
        rho = np.sqrt(q)
        ratio = np.maximum(
            np.sqrt(g) / np.maximum(rho, 1e-12), 1.0 / float(self.semi_axes_nm.max())
        )
        return (1.0 + self.deform_amplitude * deform - rho) / ratio

    def depth_at(self, points_nm: NDArray[np.float64]) -> NDArray[np.float64]:
        """:meth:`depth` at points (N, 3) in nm."""
        d = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3) - self.center_nm
        return self.depth(d[:, 0], d[:, 1], d[:, 2], self.deform.at_points(points_nm))


def _fibonacci_sphere(n: int) -> NDArray[np.float64]:
    """``n`` nearly evenly spread unit vectors."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([z, r * np.cos(phi), r * np.sin(phi)], axis=1)


_FIBONACCI = _fibonacci_sphere(160)


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def sample_nuclei(config: PhantomConfig, cells: CellModel) -> list[Nucleus]:
    """One nucleus in a fraction of the cells, centred on the cell and sized to fit it.

    The cell that owns the centre of the volume always gets a nucleus when
    ``nucleus_fraction > 0``, so every default phantom shows one.
    """
    seeds = cells.seeds_nm
    if config.nucleus_fraction == 0 or len(seeds) == 0:
        return []
    centre = np.asarray(config.extent_nm) / 2.0
    central = int(cells.query(centre[None, :])[0][0])
    d_lo, d_hi = config.nucleus_diameter_nm  # type: ignore[misc]
    min_voxel = min(config.voxel_size.as_tuple())
    nuclei: list[Nucleus] = []
    for i, seed in enumerate(seeds):
        rng = rng_for(config, STREAM_NUCLEI, int(cells.seed_ids[i]))
        draws = rng.uniform(size=8)
        if i != central and draws[0] >= config.nucleus_fraction:
            continue
        amplitude = 0.06
        radius = 0.5 * (d_lo + (d_hi - d_lo) * draws[1])
        axes = radius * np.array([1.0, 0.8 + 0.2 * draws[2], 0.68 + 0.22 * draws[3]])
        rotation = _random_rotation(rng)
        # The physical point that warps onto the seed, so the nucleus sits mid-cell.
        center = seed.copy()
        for _ in range(3):
            center = seed - (cells.warped(center[None, :])[0] - center)
        # Shrink until the (maximally deformed) surface lies inside the cell, clear of
        # the membrane.
        clearance = config.membrane_thickness_nm + 30.0
        for _ in range(16):
            surface = center + (1.0 + amplitude) * (_FIBONACCI * axes) @ rotation.T
            owner, boundary = cells.query(surface)
            if (owner == i).all() and (boundary >= clearance).all():
                break
            axes = 0.9 * axes
        else:
            continue
        radius = float(axes[0])
        if radius < 0.3 * d_lo and i != central:
            continue
        if float(axes.min()) < 3.0 * min_voxel:
            continue
        nucleolus_center = None
        nucleolus_radius = 0.0
        if draws[4] < config.nucleolus_probability:
            nucleolus_radius = float(axes.min()) * (0.2 + 0.1 * draws[5])
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            offset = (float(axes.min()) - nucleolus_radius) * 0.5 * draws[6]
            nucleolus_center = center + direction * offset
        nuclei.append(
            Nucleus(
                cell=i,
                center_nm=center,
                semi_axes_nm=axes,
                rotation=rotation,
                deform=ValueNoise(
                    derive_key(config.seed, KEY_NUCLEUS, int(cells.seed_ids[i])),
                    spacing_nm=0.7 * radius,
                ),
                deform_amplitude=amplitude,
                chromatin=ValueNoise(
                    derive_key(config.seed, KEY_CHROMATIN, int(cells.seed_ids[i])),
                    spacing_nm=max(0.2 * radius, 4.0 * min_voxel),
                ),
                nucleolus_center_nm=nucleolus_center,
                nucleolus_radius_nm=nucleolus_radius,
            )
        )
    return nuclei


@dataclass(frozen=True)
class Mitochondrion:
    """Capsules along a smooth centre line, optionally with one side branch (a Y).

    Parameters
    ----------
    cell : int
        Index of the cell seed it lies in.
    points_nm : (M, 3) ndarray of float64
        Centre-line samples in nm.
    radii_nm : (M,) ndarray of float64
        Radius at each sample in nm.
    arcs_nm : (M,) ndarray of float64
        Arc length of each sample from the start of the main path (branch samples
        continue from the branch point), used for the cristae.
    segments : (S, 2) ndarray of int
        Pairs of sample indices joined by a capsule.
    cristae_spacing_nm : float
        Distance between cristae along the centre line.
    membrane_nm : float
        Thickness of the dark outer membrane band.
    """

    cell: int
    points_nm: NDArray[np.float64]
    radii_nm: NDArray[np.float64]
    arcs_nm: NDArray[np.float64]
    segments: NDArray[np.intp]
    cristae_spacing_nm: float
    membrane_nm: float
    is_branched: bool = field(default=False)


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return v / np.linalg.norm(v)


def _perpendicular(v: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    w = rng.normal(size=3)
    w -= w.dot(v) * v
    return _unit(w)


def _walk(
    start: NDArray[np.float64],
    direction: NDArray[np.float64],
    *,
    steps: int,
    step_nm: float,
    curvature_nm: float,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Return a smooth random path of ``steps`` points after ``start``.

    Its curvature is about ``1 / curvature_nm``.
    """
    points = np.empty((steps, 3))
    d = _unit(direction)
    bend = np.zeros(3)
    sigma = math.sqrt(1.0 - 0.9**2) / curvature_nm
    p = start
    for k in range(steps):
        kick = rng.normal(size=3) * sigma
        bend = 0.9 * bend + kick
        bend -= bend.dot(d) * d
        d = _unit(d + step_nm * bend)
        p = p + step_nm * d
        points[k] = p
    return points


class _Placement:
    """Point queries that decide where a mitochondrion may go."""

    def __init__(
        self,
        config: PhantomConfig,
        cells: CellModel,
        nuclei: list[Nucleus],
    ) -> None:
        self.cells = cells
        self.nucleus_of = {n.cell: n for n in nuclei}
        self.membrane_nm = config.membrane_thickness_nm
        self.gap_nm = max(15.0, 1.5 * min(config.voxel_size.as_tuple()))
        self.points = np.empty((0, 3))
        self.radii = np.empty(0)

    def valid(
        self,
        points: NDArray[np.float64],
        radius: float | NDArray[np.float64],
        cell: int | None,
        *,
        check_others: bool = True,
    ) -> NDArray[np.bool_]:
        """Which points can hold a centre-line sample of ``radius`` in ``cell``."""
        radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(points),))
        owner, boundary = self.cells.query(points)
        ok = boundary >= 1.3 * radius + self.membrane_nm + 10.0
        if cell is not None:
            ok &= owner == cell
        for c in np.unique(owner[ok]):
            nucleus = self.nucleus_of.get(int(c))
            if nucleus is None:
                continue
            sel = ok & (owner == c)
            ok[sel] = nucleus.depth_at(points[sel]) < -(1.2 * radius[sel] + 20.0)
        if check_others and len(self.points) and ok.any():
            for start in range(0, len(points), 256):
                chunk = points[start : start + 256]
                d = np.sqrt(((chunk[:, None, :] - self.points[None, :, :]) ** 2).sum(axis=2))
                clear = (d - self.radii[None, :]).min(axis=1) >= radius[
                    start : start + 256
                ] + self.gap_nm
                ok[start : start + 256] &= clear
        return ok

    def add(self, points: NDArray[np.float64], radii: NDArray[np.float64]) -> None:
        self.points = np.concatenate([self.points, points])
        self.radii = np.concatenate([self.radii, radii])


def _prefix(ok: NDArray[np.bool_]) -> int:
    """Length of the leading run of True."""
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else len(ok)


def sample_mitochondria(
    config: PhantomConfig, cells: CellModel, nuclei: list[Nucleus]
) -> list[Mitochondrion]:
    """Mitochondria at the configured density, inside cells, clear of nuclei and each other.

    Each is grown from a random start point in both directions along a smooth random
    walk until it reaches its drawn length or meets a membrane, a nucleus or another
    mitochondrion; too-short ones are discarded. With ``branch_probability`` a side
    branch leaves the middle third at 40–75°.
    """
    rng = rng_for(config, STREAM_MITO)
    density = float(config.mitochondria_per_um3)  # type: ignore[arg-type]
    len_lo, len_hi = config.mitochondrion_length_nm  # type: ignore[misc]
    w_lo, w_hi = config.mitochondrion_width_nm  # type: ignore[misc]
    extent = np.asarray(config.extent_nm)
    margin = 0.3 * len_hi
    lo, hi = -margin * np.ones(3), extent + margin
    target = round(density * float(np.prod(hi - lo)) * 1e-9)
    if target == 0:
        return []
    min_voxel = min(config.voxel_size.as_tuple())
    place = _Placement(config, cells, nuclei)
    result: list[Mitochondrion] = []
    starts = rng.uniform(lo, hi, size=(20 * target, 3))
    start_radii = 0.5 * rng.uniform(w_lo, w_hi, size=len(starts))
    owners, _ = cells.query(starts)
    usable = place.valid(starts, start_radii, None, check_others=False)
    for k in np.flatnonzero(usable):
        if len(result) >= target:
            break
        start, radius, cell = starts[k], float(start_radii[k]), int(owners[k])
        if not place.valid(start[None, :], radius, cell)[0]:
            continue
        length = rng.uniform(len_lo, len_hi)
        step = float(np.clip(0.7 * radius, 0.5 * min_voxel, 40.0))
        half = max(1, math.ceil(0.5 * length / step))
        direction = _unit(rng.normal(size=3))
        curvature = 1.2 * length
        forward = _walk(start, direction, steps=half, step_nm=step, curvature_nm=curvature, rng=rng)
        backward = _walk(
            start, -direction, steps=half, step_nm=step, curvature_nm=curvature, rng=rng
        )
        nf = _prefix(place.valid(forward, radius, cell))
        nb = _prefix(place.valid(backward, radius, cell))
        path = np.concatenate([backward[:nb][::-1], start[None, :], forward[:nf]])
        if (len(path) - 1) * step < max(0.5 * len_lo, 2.5 * radius):
            continue
        arcs = np.arange(len(path), dtype=np.float64) * step
        phase = rng.uniform(0, 2 * math.pi)
        wavelength = rng.uniform(3.0, 6.0) * radius
        radii = radius * (1.0 + 0.1 * np.sin(2 * math.pi * arcs / wavelength + phase))
        segments = np.stack([np.arange(len(path) - 1), np.arange(1, len(path))], axis=1)
        points, branched = path, False
        draws = rng.uniform(size=4)
        if draws[0] < config.branch_probability and len(path) >= 9:
            joint = int(len(path) * (0.33 + 0.34 * draws[1]))
            tangent = _unit(path[joint + 1] - path[joint - 1])
            angle = math.radians(40.0 + 35.0 * draws[2])
            b_dir = math.cos(angle) * tangent + math.sin(angle) * _perpendicular(tangent, rng)
            b_radius = 0.85 * radius
            b_steps = max(2, round((0.3 + 0.3 * draws[3]) * (len(path) - 1)))
            branch = _walk(
                path[joint], b_dir, steps=b_steps, step_nm=step, curvature_nm=curvature, rng=rng
            )
            # The parent is not registered yet, so the branch may touch it (same label).
            nb_ok = _prefix(place.valid(branch, b_radius, cell))
            if nb_ok >= 3:
                branch = branch[:nb_ok]
                first = len(points)
                points = np.concatenate([points, branch])
                radii = np.concatenate([radii, np.full(len(branch), b_radius)])
                arcs = np.concatenate([arcs, arcs[joint] + step * np.arange(1, len(branch) + 1)])
                idx = np.arange(first, first + len(branch))
                extra = np.stack([np.concatenate([[joint], idx[:-1]]), idx], axis=1)
                segments = np.concatenate([segments, extra])
                branched = True
        place.add(points, radii)
        result.append(
            Mitochondrion(
                cell=cell,
                points_nm=points,
                radii_nm=radii,
                arcs_nm=arcs,
                segments=segments.astype(np.intp),
                cristae_spacing_nm=max(0.6 * radius, 4.0 * min_voxel),
                membrane_nm=float(np.clip(0.22 * radius, 0.8 * min_voxel, 14.0)),
                is_branched=branched,
            )
        )
    return result


@dataclass(frozen=True)
class Vesicles:
    """Small dark spheres in the cytoplasm (unlabelled distractors).

    Parameters
    ----------
    centers_nm : (V, 3) ndarray of float64
        Centres in nm.
    radii_nm : (V,) ndarray of float64
        Radii in nm.
    """

    centers_nm: NDArray[np.float64]
    radii_nm: NDArray[np.float64]


def sample_vesicles(
    config: PhantomConfig,
    cells: CellModel,
    nuclei: list[Nucleus],
    mitochondria: list[Mitochondrion],
) -> Vesicles:
    """Vesicles at the configured density in cytoplasm (not in nuclei, mitochondria, membranes)."""
    rng = rng_for(config, STREAM_VESICLES)
    density = float(config.vesicles_per_um3)  # type: ignore[arg-type]
    d_lo, d_hi = config.vesicle_diameter_nm  # type: ignore[misc]
    extent = np.asarray(config.extent_nm)
    margin = d_hi
    lo, hi = -margin * np.ones(3), extent + margin
    count = round(density * float(np.prod(hi - lo)) * 1e-9)
    if count == 0:
        return Vesicles(np.empty((0, 3)), np.empty(0))
    centers = rng.uniform(lo, hi, size=(count, 3))
    radii = 0.5 * rng.uniform(d_lo, d_hi, size=count)
    owner, boundary = cells.query(centers)
    ok = boundary > radii + config.membrane_thickness_nm
    nucleus_of = {n.cell: n for n in nuclei}
    for c in np.unique(owner[ok]):
        nucleus = nucleus_of.get(int(c))
        if nucleus is not None:
            sel = ok & (owner == c)
            ok[sel] = nucleus.depth_at(centers[sel]) < -(radii[sel] + 10.0)
    if mitochondria and ok.any():
        pts = np.concatenate([m.points_nm for m in mitochondria])
        rad = np.concatenate([m.radii_nm for m in mitochondria])
        for start in range(0, count, 256):
            sl = slice(start, start + 256)
            d = np.sqrt(((centers[sl, None, :] - pts[None, :, :]) ** 2).sum(axis=2))
            ok[sl] &= (d - rad[None, :]).min(axis=1) > radii[sl] + 10.0
    return Vesicles(centers[ok], radii[ok])
