"""Write an EM phantom with exact ground truth as a new OME-Zarr dataset."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vemkit.geometry import Box, VoxelSize
from vemkit.io.atomic import atomic_output
from vemkit.io.dataset import Dataset
from vemkit.io.layer import Layer
from vemkit.progress import Progress
from vemkit.synth import PhantomConfig, PhantomGenerator, make_phantom

__all__ = ["LABEL_LAYERS", "phantom_config", "write_phantom_dataset"]

log = logging.getLogger(__name__)

#: Ground-truth label layers written for every phantom, in ``labels/``.
LABEL_LAYERS = ("nuclei", "mitochondria", "cells")

# Phantoms up to this many voxels are generated in memory in one go; larger ones are
# generated block by block into a staging store so memory stays bounded.
_IN_MEMORY_VOXELS = 300**3
_STAGING_BLOCK = 128


def phantom_config(
    size: int | Sequence[int],
    *,
    seed: int = 0,
    preset: str = "fibsem",
    voxel_size: VoxelSize | None = None,
) -> PhantomConfig:
    """Build the phantom configuration for a cube (``size``) or a (z, y, x) shape."""
    shape = (size,) * 3 if isinstance(size, int) else tuple(int(s) for s in size)
    config = PhantomConfig.preset(preset, shape=shape, seed=seed)
    if voxel_size is not None:
        config = config.with_voxel_size(voxel_size)
    return config


def _arrays_by_block(config: PhantomConfig, staging: Path, progress: Progress | None) -> dict:
    """Generate the phantom block by block into a zarr staging group; return its arrays."""
    import zarr

    generator = PhantomGenerator(config)
    group = zarr.open_group(str(staging), mode="w", zarr_format=2)
    block = (_STAGING_BLOCK,) * 3
    arrays = {}
    first = generator.generate_block(Box.from_shape((1, 1, 1)))
    for key, sample in first.items():
        arrays[key] = group.create_array(
            key, shape=config.shape, chunks=block, dtype=sample.dtype, fill_value=0
        )
    from vemkit.geometry import BlockGrid
    from vemkit.progress import track

    grid = BlockGrid(Box.from_shape(config.shape), block)
    for box in track(grid, progress, total=len(grid), description="generating phantom"):
        for key, values in generator.generate_block(box).items():
            arrays[key][box.to_slices()] = values
    return arrays


def write_phantom_dataset(
    output: str | os.PathLike[str],
    *,
    size: int | Sequence[int] = 128,
    seed: int = 0,
    preset: str = "fibsem",
    voxel_size: VoxelSize | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Dataset:
    """Write a phantom dataset: image ``raw`` and labels ``nuclei``, ``mitochondria``, ``cells``.

    Parameters
    ----------
    output : path
        New ``*.zarr`` dataset.
    size : int or (z, y, x)
        Shape in voxels.
    seed : int
        Same seed, same phantom.
    preset : {"fibsem", "sstem", "sbem"}
        Imaging modality the phantom imitates (voxel size, anisotropy, noise).
    voxel_size : VoxelSize, optional
        Overrides the preset's voxel size (nm).
    overwrite : bool
        Replace an existing output.
    """
    config = phantom_config(size, seed=seed, preset=preset, voxel_size=voxel_size)
    n_voxels = int(np.prod(config.shape))
    with (
        atomic_output(output, overwrite=overwrite) as tmp,
        tempfile.TemporaryDirectory(
            dir=Path(output).expanduser().absolute().parent, prefix=".vemkit-staging-"
        ) as staging,
    ):
        if n_voxels <= _IN_MEMORY_VOXELS:
            phantom = make_phantom(config)
            arrays = {key: getattr(phantom, key) for key in ("raw", *LABEL_LAYERS)}
        else:
            arrays = _arrays_by_block(config, Path(staging), progress)
        raw = Layer(arrays["raw"], config.voxel_size, name="raw", kind="image")
        dataset = Dataset.create(tmp, raw, progress=progress)
        for name in LABEL_LAYERS:
            dataset.add_layer(name, arrays[name], kind="labels", progress=progress)
        dataset.add_provenance(
            {
                "step": "phantom",
                "preset": preset,
                "seed": seed,
                "shape": list(config.shape),
                "voxel_size_nm": list(config.voxel_size.as_tuple()),
            }
        )
    log.info("phantom written to %s", output)
    return Dataset.open(output)
