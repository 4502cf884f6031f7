"""Train a small network from sparse labels of a volume and segment all of it.

The arivis / Crick flow in miniature: a user paints every Nth plane of one organelle,
vemkit trains a 2D U-Net on those planes only (unlabelled planes are ignored by the
loss), predicts foreground and boundary for every plane and splits instances with a 3D
boundary watershed. ``vemkit demo`` uses it and scores the result against the full truth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from vemkit.geometry import VoxelSize
from vemkit.pipelines.predict import load_predictor, predict_block, segment_instances
from vemkit.pipelines.train import parse_train_config, run_training
from vemkit.progress import Progress

__all__ = ["min_object_nm3", "sparse_recipe", "train_and_segment", "train_sparse_model"]


def min_object_nm3(min_diameter_nm: float) -> float:
    """Smallest object kept: a ball of half the smallest expected diameter.

    That is 1/8 of the smallest expected object, so objects cut by the volume border
    survive while fragments from 2D predictions are dropped.
    """
    return float(np.pi / 6.0 * (min_diameter_nm / 2.0) ** 3)


def sparse_recipe(
    name: str,
    *,
    image: str,
    labels: str,
    every_n_planes: int,
    epochs: int,
    seed: int,
    min_diameter_nm: float,
    voxel_size: VoxelSize,
) -> dict[str, Any]:
    """Build a small, CPU-friendly training recipe (the dict a YAML file would hold)."""
    # Boundary maps ~2 voxels wide split touching objects without eating small ones.
    boundary_nm = 2.0 * min(voxel_size.y, voxel_size.x)
    return {
        "name": name,
        "task": name.split("-", maxsplit=1)[0],
        "description": f"demo: 2D U-Net from every {every_n_planes}th plane of {labels}",
        "train": [{"image": image, "labels": labels}],
        "sparse": {"every_n_planes": every_n_planes, "axis": 0, "seed": seed},
        "target": {"type": "foreground_boundary", "boundary_width_nm": boundary_nm},
        "network": {"dims": 2, "depth": 3, "base_channels": 16, "norm": "batch"},
        "patch_shape": [64, 64],
        "batch_size": 8,
        "epochs": epochs,
        "samples_per_epoch": 96,
        "validation_samples": 16,
        "foreground_fraction": 0.6,
        "optimizer": {"learning_rate": 3e-3, "schedule": "cosine"},
        "augment": {"flip": True, "noise_p": 0.2, "blur_p": 0.1},
        "seed": seed,
        "evaluation": {"min_size_nm3": min_object_nm3(min_diameter_nm)},
    }


def train_sparse_model(
    *,
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    name: str,
    voxel_size: VoxelSize,
    workdir: str | os.PathLike[str],
    n_planes: int,
    every_n_planes: int = 10,
    epochs: int = 12,
    seed: int = 0,
    min_diameter_nm: float = 0.0,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train a 2D U-Net on every ``every_n_planes``-th plane of ``labels``.

    Returns
    -------
    model : Path
        The saved model folder (usable by ``vemkit predict`` / ``vemkit segment --model``).
    facts : dict
        Training time, epochs and planes used.
    """
    torch.manual_seed(seed)
    recipe = sparse_recipe(
        name,
        image=str(image),
        labels=str(labels),
        every_n_planes=every_n_planes,
        epochs=epochs,
        seed=seed,
        min_diameter_nm=min_diameter_nm,
        voxel_size=voxel_size,
    )
    outcome = run_training(
        parse_train_config(recipe, where="demo"),
        output=Path(workdir) / name,
        progress=progress,
    )
    planes = len(range(0, n_planes, every_n_planes))
    return Path(outcome.model), {
        "train_seconds": round(outcome.seconds, 1),
        "epochs": epochs,
        "annotated_planes": f"{planes} of {n_planes}",
        "model": str(outcome.model),
    }


def train_and_segment(
    raw: NDArray[Any],
    *,
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    name: str,
    voxel_size: VoxelSize,
    workdir: str | os.PathLike[str],
    every_n_planes: int = 10,
    epochs: int = 12,
    seed: int = 0,
    min_diameter_nm: float = 0.0,
    progress: Progress | None = None,
) -> tuple[NDArray[np.uint32], dict[str, Any]]:
    """Train on every ``every_n_planes``-th plane of ``labels`` and segment all of ``raw``.

    Returns
    -------
    labels : (Z, Y, X) ndarray of uint32
        Instances for the whole volume.
    facts : dict
        Training time, epochs, planes used and the model folder.
    """
    model, facts = train_sparse_model(
        image=image,
        labels=labels,
        name=name,
        voxel_size=voxel_size,
        workdir=workdir,
        n_planes=raw.shape[0],
        every_n_planes=every_n_planes,
        epochs=epochs,
        seed=seed,
        min_diameter_nm=min_diameter_nm,
        progress=progress,
    )
    network, spec, _ = load_predictor(model)
    maps = predict_block(network, raw, spec=spec, voxel_size=voxel_size)
    instances = segment_instances(
        maps,
        spec=spec,
        voxel_size=voxel_size,
        min_size_nm3=min_object_nm3(min_diameter_nm),
    )
    return instances, facts
