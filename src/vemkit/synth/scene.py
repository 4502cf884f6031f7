"""Rasterise a phantom's object list into any box of voxels.

Every value written for a voxel is a pure function of its global index: labels come
from per-object geometry evaluated at the voxel centre, textures from
:class:`~vemkit.synth.fields.ValueNoise`, noise from hashed voxel indices, and the
blur is computed on the box grown by the kernel radius. Objects are visited in a
fixed global order and only those whose bounding box meets the box, so two boxes
that share a voxel agree on it bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from vemkit.geometry import Box
from vemkit.synth.anatomy import CellModel, Mitochondrion, Nucleus, Vesicles
from vemkit.synth.config import PhantomConfig
from vemkit.synth.fields import ValueNoise, derive_key, gaussian_noise, hash_ints, uniform_from_hash

__all__ = ["Scene"]

F32 = np.float32

# Grey values of the clean image (0 black, 1 white) before blur, drift and noise.
CYTOPLASM = 0.60
MEMBRANE = 0.16
NUCLEOPLASM = 0.72
HETEROCHROMATIN = 0.36
ENVELOPE = 0.18
PERINUCLEAR = 0.58
NUCLEOLUS = 0.40
MATRIX = 0.32
CRISTA = 0.60
MITO_MEMBRANE = 0.12
VESICLE = 0.24
GRANULE = 0.34

# Field keys (per phantom seed).
_KEY_FINE, _KEY_COARSE, _KEY_WOBBLE, _KEY_PARTIAL, _KEY_TONE, _KEY_GRANULE = 40, 41, 42, 43, 44, 45
_KEY_DRIFT, _KEY_JITTER, _KEY_NOISE = 50, 51, 52

# Sub-blocks of about this edge (nm), and at least _SUBBLOCK_MIN_VOX voxels, are tested
# for lying inside one cell. The result does not depend on the size (the candidate test
# is conservative); at coarse voxels tiny sub-blocks made the Python loop the whole cost
# (80 nm: 2-voxel sub-blocks, 168 s for 96x192x192; 8-voxel ones, ~4.6x faster).
_SUBBLOCK_NM = 160.0
_SUBBLOCK_MIN_VOX = 8


def _ramp(x: NDArray[np.float32], soft: float) -> NDArray[np.float32]:
    """0 for x <= -soft/2, 1 for x >= soft/2, linear in between (anti-aliased step)."""
    return np.clip(x * F32(1.0 / soft) + F32(0.5), F32(0.0), F32(1.0))


def _blend(base: NDArray, value: float | np.floating | NDArray, alpha: NDArray) -> NDArray:
    return base + (value - base) * alpha


def _axis_nm(box: Box, voxel: tuple[float, float, float]) -> list[NDArray[np.floating]]:
    return [np.arange(box.offset[a], box.stop[a], dtype=np.int64) * voxel[a] for a in range(3)]


def _voxel_bounds(
    lo_nm: NDArray[np.float64], hi_nm: NDArray[np.float64], voxel: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Inclusive-exclusive voxel ranges whose centres may fall in [lo_nm, hi_nm]."""
    lo = np.floor(lo_nm / voxel).astype(np.int64) - 1
    hi = np.ceil(hi_nm / voxel).astype(np.int64) + 2
    return lo, hi


def _gaussian_kernel(sigma_vox: float) -> NDArray[np.float64]:
    if sigma_vox < 0.25:
        return np.ones(1)
    radius = math.ceil(3.0 * sigma_vox)
    x = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (x / sigma_vox) ** 2)
    return w / w.sum()


class Scene:
    """A phantom's objects plus everything needed to rasterise any box.

    Parameters
    ----------
    config : PhantomConfig
        Resolved configuration (no automatic values left).
    cells : CellModel
        Cell tessellation.
    nuclei, mitochondria : lists
        Objects in label order (label = index + 1).
    vesicles : Vesicles
        Unlabelled dark spheres.
    """

    def __init__(
        self,
        config: PhantomConfig,
        cells: CellModel,
        nuclei: list[Nucleus],
        mitochondria: list[Mitochondrion],
        vesicles: Vesicles,
    ) -> None:
        self.config = config
        self.cells = cells
        self.nuclei = nuclei
        self.mitochondria = mitochondria
        self.vesicles = vesicles
        self.shape = config.shape
        self.voxel = config.voxel_size.as_tuple()
        voxel = np.asarray(self.voxel)
        self.soft_nm = 0.8 * float(voxel.min())
        seed = config.seed
        scale = config.anatomy_scale

        self.kernels = [_gaussian_kernel(config.blur_sigma_nm / v) for v in self.voxel]
        self.halo = tuple(len(k) // 2 for k in self.kernels)

        self.seeds32 = cells.seeds_nm.astype(F32)
        tone = uniform_from_hash(hash_ints(derive_key(seed, _KEY_TONE), cells.seed_ids))
        self.cell_tone = (0.025 * tone).astype(F32)
        # Candidate seeds must cover the widest membrane band plus its soft edge.
        widest = max(cells.membrane_half_nm, 0.575 * float(voxel.max()))
        self.cell_reach_nm = 2.0 * (widest + self.soft_nm) + 2.0
        self.subblock = tuple(max(_SUBBLOCK_MIN_VOX, round(_SUBBLOCK_NM / v)) for v in self.voxel)

        self.fine = ValueNoise(derive_key(seed, _KEY_FINE), spacing_nm=22.0)
        self.coarse = ValueNoise(derive_key(seed, _KEY_COARSE), spacing_nm=90.0 * scale)
        self.granules = ValueNoise(derive_key(seed, _KEY_GRANULE), spacing_nm=26.0)
        width = float(np.mean(config.mitochondrion_width_nm))  # type: ignore[arg-type]
        self.wobble = ValueNoise(derive_key(seed, _KEY_WOBBLE), spacing_nm=0.6 * width)
        self.partial = ValueNoise(derive_key(seed, _KEY_PARTIAL), spacing_nm=0.5 * width)
        extent_z = config.extent_nm[0]
        self.drift = ValueNoise(derive_key(seed, _KEY_DRIFT), spacing_nm=max(extent_z / 3, 500.0))

        # Nuclei: voxel bounding boxes.
        if nuclei:
            centers = np.stack([n.center_nm for n in nuclei])
            reach = np.array([n.reach_nm for n in nuclei])[:, None]
            self.nuc_lo, self.nuc_hi = _voxel_bounds(centers - reach, centers + reach, voxel)
        else:
            self.nuc_lo = self.nuc_hi = np.zeros((0, 3), dtype=np.int64)

        # Mitochondria: one capsule per segment, in global order.
        a_list, b_list, seg_info = [], [], []
        for m_index, mito in enumerate(mitochondria):
            i, j = mito.segments[:, 0], mito.segments[:, 1]
            a_list.append(mito.points_nm[i])
            b_list.append(mito.points_nm[j])
            seg_info.append(
                np.stack(
                    [
                        mito.radii_nm[i],
                        mito.radii_nm[j],
                        mito.arcs_nm[i],
                        mito.arcs_nm[j],
                        np.full(len(i), m_index),
                    ],
                    axis=1,
                )
            )
        if a_list:
            self.seg_a = np.concatenate(a_list)
            self.seg_b = np.concatenate(b_list)
            info = np.concatenate(seg_info)
            self.seg_ra, self.seg_rb, self.seg_arc_a, self.seg_arc_b = info[:, :4].T
            self.seg_mito = info[:, 4].astype(np.intp)
            r = np.maximum(self.seg_ra, self.seg_rb)[:, None] + self.soft_nm
            self.seg_lo, self.seg_hi = _voxel_bounds(
                np.minimum(self.seg_a, self.seg_b) - r,
                np.maximum(self.seg_a, self.seg_b) + r,
                voxel,
            )
        else:
            self.seg_a = self.seg_b = np.zeros((0, 3))
            self.seg_mito = np.zeros(0, dtype=np.intp)
            self.seg_lo = self.seg_hi = np.zeros((0, 3), dtype=np.int64)
        self.mito_cell = np.array([m.cell for m in mitochondria] + [-1], dtype=np.int32)
        self.mito_spacing = np.array(
            [m.cristae_spacing_nm for m in mitochondria] + [1.0], dtype=F32
        )
        self.mito_band = np.array([m.membrane_nm for m in mitochondria] + [1.0], dtype=F32)

        # Vesicles.
        r = vesicles.radii_nm[:, None] + self.soft_nm
        self.ves_lo, self.ves_hi = _voxel_bounds(
            vesicles.centers_nm - r, vesicles.centers_nm + r, voxel
        )

    # -- geometry ---------------------------------------------------------------------

    @staticmethod
    def _hits(lo: NDArray[np.int64], hi: NDArray[np.int64], box: Box) -> NDArray[np.intp]:
        """Return the indices of bounding boxes [lo, hi) that meet ``box``, ascending."""
        if len(lo) == 0:
            return np.zeros(0, dtype=np.intp)
        start, stop = np.asarray(box.offset), np.asarray(box.stop)
        meets = (lo < stop).all(axis=1) & (hi > start).all(axis=1)
        return np.flatnonzero(meets)

    @staticmethod
    def _clip(lo: NDArray[np.int64], hi: NDArray[np.int64], box: Box) -> Box:
        return Box.from_bounds(
            np.maximum(lo, box.offset).tolist(), np.minimum(hi, box.stop).tolist()
        )

    def _candidates(
        self, lo: NDArray[np.float64], hi: NDArray[np.float64], index: NDArray[np.intp]
    ) -> NDArray[np.intp]:
        """Seeds that can own, or bound the membrane of, a warped point in [lo, hi]."""
        seeds = self.cells.seeds_nm[index]
        near = np.sqrt(((seeds - np.clip(seeds, lo, hi)) ** 2).sum(axis=1))
        far = np.sqrt((np.maximum(np.abs(seeds - lo), np.abs(seeds - hi)) ** 2).sum(axis=1))
        bound = far.min()
        return index[near <= bound + self.cell_reach_nm + 1e-6 * bound]

    def cell_fields(
        self, box: Box
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_], NDArray[np.float32]]:
        """Owning seed, membrane mask and membrane darkness at every voxel of ``box``.

        A voxel is membrane when its warped position lies within ``W`` of a bisector,
        where ``W`` is half the membrane thickness or, if larger, half the voxel's
        extent along the bisector normal (so coarse sampling, e.g. 50 nm sections,
        never skips a membrane). The darkness of such a widened band is lowered in
        proportion (partial volume), which makes shallow membranes in thick sections
        the faint smears seen in ssTEM.
        """
        coords = _axis_nm(box, self.voxel)
        owner = np.empty(box.shape, dtype=np.int32)
        membrane = np.zeros(box.shape, dtype=bool)
        darkness = np.zeros(box.shape, dtype=F32)
        warp_nm = self.cells.warp_nm
        slack = 1e-3 * warp_nm + 1.0
        lo = np.array([c[0] for c in coords]) - warp_nm - slack
        hi = np.array([c[-1] for c in coords]) + warp_nm + slack
        candidates = self._candidates(lo, hi, np.arange(len(self.seeds32)))
        warped: list[NDArray[np.float32]] | None = None
        if len(candidates) > 1:
            warped = [
                coords[a].astype(F32).reshape([-1 if b == a else 1 for b in range(3)])
                + self.cells.displacement(a, box, self.config.voxel_size)
                for a in range(3)
            ]
        starts = [range(0, n, s) for n, s in zip(box.shape, self.subblock, strict=True)]
        for z0 in starts[0]:
            for y0 in starts[1]:
                for x0 in starts[2]:
                    sl = (
                        slice(z0, z0 + self.subblock[0]),
                        slice(y0, y0 + self.subblock[1]),
                        slice(x0, x0 + self.subblock[2]),
                    )
                    if warped is None:
                        owner[sl] = candidates[0]
                        continue
                    parts = [w[sl] for w in warped]
                    # Exact extent of the warped positions (plus slack for rounding).
                    lo = np.array([float(w.min()) for w in parts]) - 1.0
                    hi = np.array([float(w.max()) for w in parts]) + 1.0
                    local = self._candidates(lo, hi, candidates)
                    if len(local) == 1:
                        owner[sl] = local[0]
                        continue
                    owner[sl], membrane[sl], darkness[sl] = self._voronoi(parts, local)
        return owner, membrane, darkness

    def _voronoi(
        self, warped: list[NDArray[np.float32]], local: NDArray[np.intp]
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_], NDArray[np.float32]]:
        sites = self.seeds32[local]
        d2 = np.empty((len(local), *warped[0].shape), dtype=F32)
        for k in range(len(local)):
            acc = None
            for a in range(3):
                t = warped[a] - sites[k, a]
                acc = t * t if acc is None else acc + t * t
            d2[k] = acc
        nearest = np.argmin(d2, axis=0)
        d1 = np.take_along_axis(d2, nearest[None], axis=0)[0]
        seeds = self.cells.seeds_nm[local]
        delta = seeds[None, :, :] - seeds[:, None, :]
        pair = np.sqrt((delta**2).sum(axis=2))
        np.fill_diagonal(pair, 1.0)
        half = self.cells.membrane_half_nm
        # Half-width of the band per seed pair: the membrane, or the voxel's extent
        # along the normal (with slack for the warp), whichever is larger.
        extent = 0.575 * (np.abs(delta / pair[:, :, None]) * np.asarray(self.voxel)).max(axis=2)
        width = np.maximum(half, extent)
        inverse = (0.5 / pair).astype(F32)
        width32 = width.astype(F32)
        weight = (half / width).astype(F32)
        membrane = np.zeros(d1.shape, dtype=bool)
        darkness = np.zeros(d1.shape, dtype=F32)
        for j in range(len(local)):
            b = (d2[j] - d1) * inverse[:, j][nearest]
            w = width32[:, j][nearest]
            own = nearest == j
            inside = (b < w) & ~own
            membrane |= inside
            dark = _ramp(w - b, self.soft_nm) * weight[:, j][nearest]
            dark[own] = 0
            np.maximum(darkness, dark, out=darkness)
        return local[nearest].astype(np.int32), membrane, darkness

    # -- rasterisation ----------------------------------------------------------------

    def render(self, box: Box, *, with_raw: bool = True) -> dict[str, NDArray]:
        """Labels (and the image) of ``box``.

        Parameters
        ----------
        box : Box
            Global voxel box.
        with_raw : bool
            Also make the image (needs a halo for the blur); labels only when false.

        Returns
        -------
        dict
            ``cells``, ``nuclei``, ``mitochondria`` (uint32), ``membranes`` (uint8) and,
            when ``with_raw``, ``raw`` (uint8), each of ``box.shape``.
        """
        halo = self.halo if with_raw else (0, 0, 0)
        grown = box.grow(halo)
        outer = grown.grow(1)
        owner_o, membrane_o, darkness_o = self.cell_fields(outer)
        free_o = ~membrane_o
        inner = (slice(1, -1),) * 3
        owner = owner_o[inner]
        darkness = darkness_o[inner]
        membrane = membrane_o[inner].copy()
        # Where two cells still meet without a membrane voxel between them (the warp
        # can thin a band), the voxel of the higher seed index becomes membrane, so
        # cells are always separated in 6-connectivity.
        for axis in range(3):
            for shift in (-1, 1):
                shifted = [slice(1, -1)] * 3
                shifted[axis] = slice(1 + shift, outer.shape[axis] - 1 + shift)
                neighbour = tuple(shifted)
                membrane |= free_o[neighbour] & (owner_o[neighbour] < owner)
        cells = np.where(membrane, 0, owner + 1).astype(np.uint32)

        coords = _axis_nm(grown, self.voxel)
        nuclei = np.zeros(grown.shape, dtype=np.uint32)
        nucleus_parts = []
        for k in self._hits(self.nuc_lo, self.nuc_hi, grown):
            nucleus = self.nuclei[k]
            part = self._clip(self.nuc_lo[k], self.nuc_hi[k], grown)
            if part.is_empty:
                continue
            sl = part.to_slices(grown)
            d = [
                (c[s] - nucleus.center_nm[a])
                .astype(F32)
                .reshape([-1 if b == a else 1 for b in range(3)])
                for a, (c, s) in enumerate(zip(coords, sl, strict=True))
            ]
            deform = nucleus.deform.on_grid(part, self.config.voxel_size)
            depth = nucleus.depth(d[0], d[1], d[2], deform).astype(F32)
            inside = (depth > 0) & (owner[sl] == nucleus.cell) & ~membrane[sl]
            nuclei[sl][inside] = k + 1
            nucleus_parts.append((nucleus, part, sl, d, depth, inside))

        best = self._mito_fields(grown, coords)
        s_best, arc_best, m_best = best
        mitochondria = np.where(
            (s_best < 0) & (owner == self.mito_cell[m_best]) & ~membrane & (nuclei == 0),
            m_best + 1,
            0,
        ).astype(np.uint32)

        crop = box.to_slices(grown)
        result: dict[str, NDArray] = {
            "cells": cells[crop],
            "nuclei": nuclei[crop],
            "mitochondria": mitochondria[crop],
            "membranes": membrane[crop].astype(np.uint8),
        }
        if not with_raw:
            return result

        vs = self.config.voxel_size
        fine = self.fine.on_grid(grown, vs)
        image = CYTOPLASM + self.cell_tone[owner] + F32(0.06) * fine
        image += F32(0.04) * self.coarse.on_grid(grown, vs)
        granules = _ramp(self.granules.on_grid(grown, vs) - F32(0.66), 0.12)
        image = _blend(image, F32(GRANULE), granules)
        for nucleus, part, sl, d, depth, inside in nucleus_parts:
            image[sl] = np.where(
                inside, self._nucleus_image(nucleus, part, d, depth, fine[sl]), image[sl]
            )
        if self.mitochondria:
            self._mito_image(
                image,
                grown,
                labels=mitochondria,
                s_best=s_best,
                arc_best=arc_best,
                m_best=m_best,
                fine=fine,
            )
        self._vesicle_image(image, grown, coords, (cells > 0) & (nuclei == 0) & (mitochondria == 0))
        image = _blend(image, F32(MEMBRANE), darkness)

        for axis, kernel in enumerate(self.kernels):
            if len(kernel) > 1:
                image = ndimage.correlate1d(image, kernel, axis=axis, output=F32, mode="nearest")
            trim = [slice(None)] * 3
            trim[axis] = crop[axis]
            image = image[tuple(trim)]
        result["raw"] = self._acquire(image, box)
        return result

    def _nucleus_image(
        self,
        nucleus: Nucleus,
        part: Box,
        d: list[NDArray[np.float32]],
        depth: NDArray[np.float32],
        fine: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        soft = self.soft_nm
        vs = self.config.voxel_size
        radius = float(nucleus.semi_axes_nm.min())
        chromatin = nucleus.chromatin.on_grid(part, vs)
        rim = np.clip(F32(1.0) - depth * F32(1.0 / (0.3 * radius)), F32(0.0), F32(1.0))
        clumps = _ramp(chromatin + F32(1.2) * rim - F32(0.45), 0.2)
        value = _blend(NUCLEOPLASM + F32(0.05) * fine, F32(HETEROCHROMATIN), clumps)
        if nucleus.nucleolus_center_nm is not None:
            c = nucleus.nucleolus_center_nm - nucleus.center_nm
            r2 = (d[0] - F32(c[0])) ** 2 + (d[1] - F32(c[1])) ** 2 + (d[2] - F32(c[2])) ** 2
            inside = _ramp(F32(nucleus.nucleolus_radius_nm) - np.sqrt(r2), soft)
            value = _blend(value, F32(NUCLEOLUS) + F32(0.08) * fine, inside)
        # Double envelope: outer membrane, perinuclear space, inner membrane (nm).
        lumen = _ramp(depth - F32(9.0), soft) * _ramp(F32(24.0) - depth, soft)
        value = _blend(value, F32(PERINUCLEAR), lumen)
        envelope = np.maximum(
            _ramp(F32(9.0) - depth, soft),
            _ramp(depth - F32(24.0), soft) * _ramp(F32(33.0) - depth, soft),
        )
        return _blend(value, F32(ENVELOPE), envelope)

    def _mito_fields(
        self, grown: Box, coords: list[NDArray[np.floating]]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.intp]]:
        """Signed distance (nm), arc length and index of the nearest mitochondrion."""
        s_best = np.full(grown.shape, np.inf, dtype=F32)
        arc_best = np.zeros(grown.shape, dtype=F32)
        m_best = np.full(grown.shape, -1, dtype=np.intp)
        for i in self._hits(self.seg_lo, self.seg_hi, grown):
            part = self._clip(self.seg_lo[i], self.seg_hi[i], grown)
            if part.is_empty:
                continue
            sl = part.to_slices(grown)
            a, ab = self.seg_a[i], self.seg_b[i] - self.seg_a[i]
            length2 = float(ab.dot(ab))
            p = [
                (c[s] - a[k]).astype(F32).reshape([-1 if b == k else 1 for b in range(3)])
                for k, (c, s) in enumerate(zip(coords, sl, strict=True))
            ]
            abf = ab.astype(F32)
            if length2 > 0:
                t = (p[0] * abf[0] + p[1] * abf[1] + p[2] * abf[2]) * F32(1.0 / length2)
                t = np.clip(t, F32(0.0), F32(1.0))
            else:
                t = np.zeros(part.shape, dtype=F32)
            e0, e1, e2 = p[0] - t * abf[0], p[1] - t * abf[1], p[2] - t * abf[2]
            dist = np.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
            ra, rb = self.seg_ra[i], self.seg_rb[i]
            s = dist - (F32(ra) + t * F32(rb - ra))
            arc = F32(self.seg_arc_a[i]) + t * F32(self.seg_arc_b[i] - self.seg_arc_a[i])
            better = s < s_best[sl]
            s_best[sl] = np.where(better, s, s_best[sl])
            arc_best[sl] = np.where(better, arc, arc_best[sl])
            m_best[sl] = np.where(better, self.seg_mito[i], m_best[sl])
        return s_best, arc_best, m_best

    def _mito_image(
        self,
        image: NDArray[np.float32],
        grown: Box,
        *,
        labels: NDArray[np.uint32],
        s_best: NDArray[np.float32],
        arc_best: NDArray[np.float32],
        m_best: NDArray[np.intp],
        fine: NDArray[np.float32],
    ) -> None:
        mask = labels > 0
        if not mask.any():
            return
        bounds = []
        for axis in range(3):
            hit = np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != axis)))
            bounds.append((int(hit[0]), int(hit[-1]) + 1))
        sl = tuple(slice(lo, hi) for lo, hi in bounds)
        part = Box.from_bounds(
            [grown.offset[a] + bounds[a][0] for a in range(3)],
            [grown.offset[a] + bounds[a][1] for a in range(3)],
        )
        vs = self.config.voxel_size
        soft = self.soft_nm
        m = m_best[sl]
        depth = -s_best[sl]
        spacing = self.mito_spacing[m]
        band = self.mito_band[m]
        q = arc_best[sl] / spacing + F32(0.35) * self.wobble.on_grid(part, vs)
        stripe = np.abs(q - np.floor(q) - F32(0.5)) * spacing
        crista = _ramp(np.maximum(F32(0.2) * spacing, F32(0.75 * soft)) - stripe, soft)
        crista *= _ramp(depth - band - F32(0.6) * spacing * F32(0.5), soft)
        crista *= np.clip(self.partial.on_grid(part, vs) * F32(3.0) + F32(1.5), F32(0), F32(1))
        value = _blend(MATRIX + F32(0.04) * fine[sl], F32(CRISTA), crista)
        value = _blend(value, F32(MITO_MEMBRANE), _ramp(band - depth, soft))
        image[sl] = np.where(mask[sl], value, image[sl])

    def _vesicle_image(
        self,
        image: NDArray[np.float32],
        grown: Box,
        coords: list[NDArray[np.floating]],
        cytoplasm: NDArray[np.bool_],
    ) -> None:
        hits = self._hits(self.ves_lo, self.ves_hi, grown)
        if len(hits) == 0:
            return
        dark = np.zeros(grown.shape, dtype=F32)
        for i in hits:
            part = self._clip(self.ves_lo[i], self.ves_hi[i], grown)
            if part.is_empty:
                continue
            sl = part.to_slices(grown)
            center = self.vesicles.centers_nm[i]
            t = [
                (c[s] - center[a]).astype(F32).reshape([-1 if b == a else 1 for b in range(3)])
                for a, (c, s) in enumerate(zip(coords, sl, strict=True))
            ]
            d2 = t[0] * t[0] + t[1] * t[1] + t[2] * t[2]
            alpha = _ramp(F32(self.vesicles.radii_nm[i]) - np.sqrt(d2), self.soft_nm)
            np.maximum(dark[sl], alpha, out=dark[sl])
        dark *= cytoplasm
        image[...] = _blend(image, F32(VESICLE), dark)

    def _acquire(self, image: NDArray[np.float32], box: Box) -> NDArray[np.uint8]:
        """Drift, section jitter, detector noise and 8-bit quantisation."""
        cfg = self.config
        seed = cfg.seed
        z_index = np.arange(box.offset[0], box.stop[0], dtype=np.int64)
        z_nm = z_index * self.voxel[0]
        ramp = z_nm / max(cfg.extent_nm[0], 1e-9) - 0.5
        points = np.stack([z_nm, np.zeros_like(z_nm), np.zeros_like(z_nm)], axis=1)
        drift = cfg.z_drift * (0.6 * ramp + 0.4 * self.drift.at_points(points))
        jitter = (
            cfg.section_jitter
            * math.sqrt(3.0)
            * uniform_from_hash(hash_ints(derive_key(seed, _KEY_JITTER), z_index))
        )
        gain = (1.0 + drift).astype(F32)[:, None, None]
        offset = jitter.astype(F32)[:, None, None]
        image = image * gain + offset
        if cfg.noise_level > 0:
            sigma = F32(cfg.noise_level) * np.sqrt(np.maximum(image, F32(0.02)) * F32(2.0))
            image += sigma * gaussian_noise(derive_key(seed, _KEY_NOISE), box, cfg.shape)
        image *= F32(255.0)
        np.clip(image, F32(0.0), F32(255.0), out=image)
        return np.rint(image).astype(np.uint8)
