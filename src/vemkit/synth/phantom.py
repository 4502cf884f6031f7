"""Phantom generation: the object list once, then voxels block by block."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vemkit.geometry import BlockGrid, Box, VoxelSize
from vemkit.progress import Progress, track
from vemkit.synth.anatomy import (
    CellModel,
    Mitochondrion,
    Nucleus,
    Vesicles,
    make_cell_model,
    sample_cell_seeds,
    sample_mitochondria,
    sample_nuclei,
    sample_vesicles,
)
from vemkit.synth.config import PhantomConfig
from vemkit.synth.scene import Scene

__all__ = ["ARRAY_NAMES", "Phantom", "PhantomGenerator", "make_phantom"]

log = logging.getLogger(__name__)

#: Keys of :meth:`PhantomGenerator.generate_block` results and arrays of a :class:`Phantom`.
ARRAY_NAMES = ("raw", "nuclei", "mitochondria", "cells", "membranes")

_DEFAULT_BLOCK = (64, 128, 128)
_NO_VESICLES = Vesicles(np.empty((0, 3)), np.empty(0))


@dataclass(frozen=True)
class Phantom:
    """An EM-like volume with exact ground truth.

    Attributes
    ----------
    raw : (Z, Y, X) ndarray of uint8
        The image.
    nuclei : (Z, Y, X) ndarray of uint32
        Nucleus instances 1..N (envelope included), 0 elsewhere.
    mitochondria : (Z, Y, X) ndarray of uint32
        Mitochondrion instances 1..M, 0 elsewhere; never inside a nucleus.
    cells : (Z, Y, X) ndarray of uint32
        Cell instances 1..C (nucleus and organelles included); 0 on membranes.
    membranes : (Z, Y, X) ndarray of uint8
        1 on cell membranes, 0 elsewhere.
    voxel_size : VoxelSize
        Voxel size in nm.
    config : PhantomConfig
        The resolved configuration that made it (no automatic values left).
    """

    raw: NDArray[np.uint8]
    nuclei: NDArray[np.uint32]
    mitochondria: NDArray[np.uint32]
    cells: NDArray[np.uint32]
    membranes: NDArray[np.uint8]
    voxel_size: VoxelSize
    config: PhantomConfig

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape (z, y, x) in voxels."""
        return self.raw.shape

    def arrays(self) -> dict[str, NDArray]:
        """Return the five arrays by name (see :data:`ARRAY_NAMES`)."""
        return {name: getattr(self, name) for name in ARRAY_NAMES}


class PhantomGenerator:
    """Draws a phantom's objects once, then rasterises any block of it on demand.

    Assembling :meth:`generate_block` results over any tiling of the volume gives
    exactly the arrays of :func:`make_phantom` (bit for bit).

    Parameters
    ----------
    config : PhantomConfig
        What to generate; automatic values are resolved here.

    Examples
    --------
    >>> from vemkit.geometry import Box
    >>> gen = PhantomGenerator(PhantomConfig(shape=(32, 32, 32), seed=1))
    >>> block = gen.generate_block(Box((0, 0, 0), (8, 16, 16)))
    >>> block["raw"].shape, block["cells"].dtype
    ((8, 16, 16), dtype('uint32'))
    """

    def __init__(self, config: PhantomConfig) -> None:
        self.config = config.resolved()
        self.box = Box.from_shape(self.config.shape)
        cells = self._present_cells(sample_cell_seeds(self.config))
        nuclei = sample_nuclei(self.config, cells)
        nuclei = self._present_nuclei(cells, nuclei)
        mitochondria = sample_mitochondria(self.config, cells, nuclei)
        mitochondria = self._present_mitochondria(cells, nuclei, mitochondria)
        vesicles = sample_vesicles(self.config, cells, nuclei, mitochondria)
        self._scene = Scene(self.config, cells, nuclei, mitochondria, vesicles)
        log.debug(
            "phantom objects: %d cells, %d nuclei, %d mitochondria, %d vesicles",
            self.n_cells,
            self.n_nuclei,
            self.n_mitochondria,
            len(vesicles.radii_nm),
        )

    # -- object list --------------------------------------------------------------------

    @property
    def n_cells(self) -> int:
        """Number of cell labels (ids 1..n_cells all occur in the volume)."""
        return len(self._scene.cells.seeds_nm)

    @property
    def n_nuclei(self) -> int:
        """Number of nucleus labels (ids 1..n_nuclei all occur in the volume)."""
        return len(self._scene.nuclei)

    @property
    def n_mitochondria(self) -> int:
        """Number of mitochondrion labels (ids 1..n_mitochondria all occur in the volume)."""
        return len(self._scene.mitochondria)

    @property
    def halo(self) -> tuple[int, int, int]:
        """Voxels read around a block for the blur (z, y, x)."""
        return self._scene.halo  # type: ignore[return-value]

    @property
    def nuclei(self) -> list[Nucleus]:
        """Nucleus models in label order (label = index + 1)."""
        return list(self._scene.nuclei)

    @property
    def mitochondria(self) -> list[Mitochondrion]:
        """Mitochondrion models in label order (label = index + 1)."""
        return list(self._scene.mitochondria)

    def _labels_at(self, scene: Scene, voxel: Sequence[int]) -> dict[str, NDArray]:
        return scene.render(Box(tuple(voxel), (1, 1, 1)), with_raw=False)

    def _sample_voxels(self, spacing_nm: float) -> NDArray[np.int64]:
        axes = []
        for n, v in zip(self.config.shape, self.config.voxel_size.as_tuple(), strict=True):
            step = max(1, int(spacing_nm / v))
            axes.append(np.unique(np.r_[np.arange(step // 2, n, step), n - 1]))
        grid = np.meshgrid(*axes, indexing="ij")
        return np.stack([g.ravel() for g in grid], axis=1)

    def _present_cells(self, seeds: NDArray[np.float64]) -> CellModel:
        """Drop seeds whose cell has no voxel in the volume, so ids are consecutive.

        A sample grid finds a voxel deep inside each cell; rasterising that one voxel
        confirms it. Dropping a seed can shift its neighbours' boundaries, so repeat
        until every remaining seed passes.
        """
        cfg = self.config
        voxel = np.asarray(cfg.voxel_size.as_tuple())
        samples = self._sample_voxels(float(cfg.cell_size_nm) / 6.0)  # type: ignore[arg-type]
        inner_nm = 0.5 * cfg.membrane_thickness_nm + float(np.linalg.norm(voxel))
        ids = np.arange(len(seeds))
        for _ in range(100):
            cells = make_cell_model(cfg, seeds, ids)
            owner, boundary = cells.query(samples * voxel)
            deep = boundary > inner_nm
            present = np.unique(owner[deep])
            if len(present) < len(seeds):
                seeds, ids = seeds[present], ids[present]
                continue
            scene = Scene(cfg, cells, [], [], _NO_VESICLES)
            keep = np.zeros(len(seeds), dtype=bool)
            for i in range(len(seeds)):
                mine = np.flatnonzero(deep & (owner == i))
                voxel_index = samples[mine[np.argmax(boundary[mine])]]
                keep[i] = self._labels_at(scene, voxel_index)["cells"][0, 0, 0] == i + 1
            if keep.all():
                return cells
            seeds, ids = seeds[keep], ids[keep]
        raise RuntimeError("cell seeds did not settle")  # pragma: no cover

    def _present_nuclei(self, cells: CellModel, nuclei: list[Nucleus]) -> list[Nucleus]:
        """Keep the nuclei that own the volume voxel nearest to their centre."""
        scene = Scene(self.config, cells, nuclei, [], _NO_VESICLES)
        voxel = np.asarray(self.config.voxel_size.as_tuple())
        top = np.asarray(self.config.shape) - 1
        kept = []
        for k, nucleus in enumerate(nuclei):
            index = np.clip(np.rint(nucleus.center_nm / voxel).astype(np.int64), 0, top)
            if self._labels_at(scene, index)["nuclei"][0, 0, 0] == k + 1:
                kept.append(nucleus)
        return kept

    def _present_mitochondria(
        self, cells: CellModel, nuclei: list[Nucleus], mitochondria: list[Mitochondrion]
    ) -> list[Mitochondrion]:
        """Keep the mitochondria that own at least one volume voxel on their centre line."""
        scene = Scene(self.config, cells, nuclei, mitochondria, _NO_VESICLES)
        voxel = np.asarray(self.config.voxel_size.as_tuple())
        shape = np.asarray(self.config.shape)
        kept = []
        for k, mito in enumerate(mitochondria):
            index = np.rint(mito.points_nm / voxel).astype(np.int64)
            inside = index[((index >= 0) & (index < shape)).all(axis=1)]
            if len(inside) == 0:
                continue
            picks = inside[np.unique(np.linspace(0, len(inside) - 1, 5).astype(int))]
            if any(self._labels_at(scene, p)["mitochondria"][0, 0, 0] == k + 1 for p in picks):
                kept.append(mito)
        return kept

    # -- voxels -------------------------------------------------------------------------

    def generate_block(self, box: Box) -> dict[str, NDArray]:
        """Rasterise one block of the phantom.

        Parameters
        ----------
        box : Box
            A 3-D box of voxels inside the volume (global coordinates).

        Returns
        -------
        dict
            ``raw`` (uint8), ``nuclei``, ``mitochondria``, ``cells`` (uint32) and
            ``membranes`` (uint8), each of shape ``box.shape``.
        """
        if box.ndim != 3 or not self.box.contains(box):
            raise ValueError(f"block {box} is not a 3-D box inside the volume {self.box}")
        if box.is_empty:
            dtypes = {"raw": np.uint8, "membranes": np.uint8}
            return {
                name: np.zeros(box.shape, dtype=dtypes.get(name, np.uint32)) for name in ARRAY_NAMES
            }
        result = self._scene.render(box, with_raw=True)
        return {name: result[name] for name in ARRAY_NAMES}


def make_phantom(
    config: PhantomConfig,
    *,
    block_shape: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> Phantom:
    """Generate an EM-like phantom with exact ground truth.

    The volume is rasterised block by block into the output arrays, so peak memory is
    about the outputs (14 bytes per voxel) plus a few blocks.

    Parameters
    ----------
    config : PhantomConfig
        What to generate (see :meth:`PhantomConfig.preset`).
    block_shape : (3,) ints, optional
        Block shape (z, y, x) in voxels; default (64, 128, 128). Any value gives the
        same result.
    progress : Progress, optional
        Receives one step per block.

    Returns
    -------
    Phantom
        ``raw`` image and the ``nuclei``, ``mitochondria``, ``cells`` and ``membranes``
        ground truth.

    Examples
    --------
    >>> ph = make_phantom(PhantomConfig.preset("fibsem", shape=(32, 32, 32), seed=3))
    >>> ph.raw.dtype, ph.raw.shape
    (dtype('uint8'), (32, 32, 32))
    """
    generator = PhantomGenerator(config)
    cfg = generator.config
    arrays: dict[str, NDArray[Any]] = {
        "raw": np.empty(cfg.shape, dtype=np.uint8),
        "nuclei": np.empty(cfg.shape, dtype=np.uint32),
        "mitochondria": np.empty(cfg.shape, dtype=np.uint32),
        "cells": np.empty(cfg.shape, dtype=np.uint32),
        "membranes": np.empty(cfg.shape, dtype=np.uint8),
    }
    grid = BlockGrid(generator.box, tuple(block_shape or _DEFAULT_BLOCK))
    for box in track(grid, progress, total=len(grid), description="generating phantom"):
        block = generator.generate_block(box)
        for name, values in block.items():
            arrays[name][box.to_slices()] = values
    return Phantom(**arrays, voxel_size=cfg.voxel_size, config=cfg)
