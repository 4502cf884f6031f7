"""Train, evaluate and ship the ``nuclei-em`` model (nucleus signed distance, webKnossos style).

    .venv/bin/python recipes/nuclei_em.py --threads 2 --output models/nuclei-em --ship

No real EM nucleus ground truth exists in ../shared/data (neuropil crops only), so the
model is trained on (a) synthetic nuclei (vemkit.synth.nuclei) embedded in the real EM
volumes of ../shared/data used as backgrounds (vemkit.pipelines.nuclei_data) and (b)
phantoms of whole tissue (vemkit.synth.make_phantom with real anatomy: cells, nuclei,
mitochondria), generated at 60-80 nm and brought to 100 nm. Two raw volumes are never
shown in training and give the "unseen EM context" score; phantoms with seeds never used
in training give the phantom score.

Model: a 2D U-Net (batch norm) regressing tanh(signed distance / 3 µm) on planes of
isotropic 100 nm voxels, trained on z, y and x planes of 3D scenes and used tri-axially
(z, y and x planes averaged). The training loop stops at a wall-clock budget
(max_train_minutes) with a cosine learning rate over that time; scene generation is
timed separately (with --cache it is a one-off). Instances: distance_watershed; its
parameters (smoothing, seed threshold, minimum seed and object sizes) are chosen by a
grid search on the validation scenes only.

Outputs: OUTPUT/model/ (model.safetensors + model.json with the card), OUTPUT/metrics.json,
OUTPUT/checkpoints/; with --ship the model folder is also copied to
src/vemkit/ml/zoo/nuclei-em/.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from scipy import ndimage

import vemkit
from vemkit.datasets import data_root, dataset_info
from vemkit.geometry import VoxelSize
from vemkit.ml import (
    Augmenter,
    Normalization,
    RegressionLoss,
    UNetConfig,
    build_network,
    count_parameters,
    fit_normalization,
    read_model_info,
    save_model,
    train,
)
from vemkit.ml.checkpoint import load_weights
from vemkit.pipelines.nuclei_data import (
    CLIP_NM,
    SEED_THRESHOLD_NM,
    TRAINING_BACKGROUNDS,
    UNSEEN_BACKGROUNDS,
    WORKING_VOXEL_SIZE,
    NucleiSample,
    NucleusPlanes,
    load_background,
    make_nuclei_sample,
    make_phantom_sample,
    resample_texture,
    score_nuclei,
    segment_nuclei_distance,
    summarise_nuclei_scores,
)
from vemkit.pipelines.predict import ModelSpec, predict_block
from vemkit.synth import PhantomConfig, make_phantom
from vemkit.synth.nuclei import NucleiSceneConfig, plan_nuclei_scene

log = logging.getLogger("nuclei_em")

RECIPE: dict[str, Any] = {
    "name": "nuclei-em",
    "voxel_size_nm": list(WORKING_VOXEL_SIZE.as_tuple()),
    "clip_nm": CLIP_NM,
    "scene_shape": [128, 128, 128],
    "train_scenes": 48,
    "validation_scenes": 8,
    "synthetic_background_share": 1 / 6,
    "background_scales": [0.5, 0.7, 1.0, 1.4],
    # At 100 nm a voxel averages ~1000 voxels of the raw 10 nm data: detector noise is
    # weak there, so the generator's noise range (made for 10-100 nm) is narrowed.
    "scene_config": {"noise_sigma": [0.0, 0.03]},
    # Phantoms (vemkit.synth.make_phantom) with real anatomy, generated at a voxel size
    # drawn from voxel_size_nm over a field of field_nm and resampled to 100 nm; each
    # range is drawn uniformly per phantom (see _phantom_config).
    "phantoms": {
        "train": 6,
        "validation": 2,
        "train_share": 0.35,
        "field_nm": 12800.0,
        "voxel_size_nm": [60.0, 70.0, 80.0],
        "cell_size_nm": [6000.0, 12000.0],
        "nucleus_diameter_min_nm": [3000.0, 5500.0],
        "nucleus_diameter_span_nm": [1000.0, 3000.0],
        "nucleus_fraction": [0.6, 1.0],
        "explicit_mitochondria_p": 0.5,
        "mitochondria_per_um3": [0.05, 0.4],
        "noise_level": [0.03, 0.12],
        "blur_sigma_nm": [4.0, 10.0],
        "z_drift": [0.0, 0.06],
        "section_jitter": [0.0, 0.04],
    },
    "network": {"dims": 2, "depth": 5, "base_channels": 8, "norm": "batch"},
    "patch_shape": [128, 128],
    "batch_size": 16,
    "samples_per_epoch": 1024,
    "epochs": 60,
    # Wall-clock budget of the training loop (scene generation, which a --cache makes a
    # one-off, is timed separately); the learning rate follows a cosine over it and
    # training stops at the last epoch that fits.
    "max_train_minutes": 30.0,
    "validation_samples": 96,
    "foreground_fraction": 0.7,
    "optimizer": {"name": "adamw", "learning_rate": 0.002, "weight_decay": 1e-4},
    "schedule": "cosine over the wall-clock training budget to 2% of the learning rate",
    "loss": "smooth_l1 (beta 0.1) on tanh(output) vs distance / clip_nm",
    # Intensity variation comes from the scene generators; extra intensity augmentation
    # (noise above all) shifted the batch-norm statistics away from clean inputs.
    "augment": {"flip": True, "rot90": True, "contrast_p": 0.0, "gamma_p": 0.0, "noise_p": 0.0},
    # "Precise BN": after training, the running statistics are re-estimated on this many
    # clean training batches (momentum-averaged statistics were stale at the end).
    "batch_norm_recalibration_batches": 40,
    "seeds": {
        "train": 10_000,
        "validation": 20_000,
        "held_out": 30_000,
        "unseen": 40_000,
        "phantom_train": 50_000,
        "phantom_validation": 60_000,
    },
    # Post-processing grid searched on the validation scenes (synthetic-nuclei scenes and
    # validation phantoms): best pooled object F1 at IoU 0.5, then at 0.75, then Dice.
    "postprocessing_grid": {
        "smooth_sigma_nm": [0.0, 200.0, 400.0],
        "seed_threshold_nm": [700.0, 1000.0, 1500.0],
        # Below 0: objects reach into the thin band the network puts just outside, which
        # rejoins nuclei cut by the volume border that it splits into pieces.
        "mask_threshold_nm": [0.0, -200.0, -400.0],
        "min_seed_size_nm3": [0.0, 0.25e9, 1e9],
        "min_size_nm3": [0.5e9, 2e9, 5e9],
    },
    "evaluation": {
        "held_out_scenes": 6,
        "unseen_scenes": 6,
        "triaxis": True,
        "stardist_assumed_voxel_size_nm": [800.0, 400.0, 400.0],
    },
    "prediction": {"tile": 512, "overlap": 0.125, "batch_size": 4},
    "seed": 0,
}

#: Test phantoms (seeds never used in training), 20-60 nm voxels, 3-8 µm nuclei; scored
#: like the segment pipeline: resampled to 100 nm, predicted tri-axially, instances on the
#: 100 nm grid, labels taken back to the phantom grid (nearest) and compared there.
TEST_PHANTOMS: dict[str, dict[str, Any]] = {
    "p70001_50nm": {
        "shape": (128, 192, 192),
        "voxel_size": (50.0, 50.0, 50.0),
        "cell_size_nm": 8000.0,
        "nucleus_diameter_nm": (4000.0, 6000.0),
        "seed": 70_001,
    },
    "p70002_40nm": {
        "shape": (128, 224, 224),
        "voxel_size": (40.0, 40.0, 40.0),
        "cell_size_nm": 7000.0,
        "nucleus_diameter_nm": (3000.0, 4500.0),
        "seed": 70_002,
    },
    "p70003_60nm": {
        "shape": (112, 160, 160),
        "voxel_size": (60.0, 60.0, 60.0),
        "cell_size_nm": 10000.0,
        "nucleus_diameter_nm": (5500.0, 8000.0),
        "seed": 70_003,
    },
    "p70004_60x30nm": {
        "shape": (96, 256, 256),
        "voxel_size": (60.0, 30.0, 30.0),
        "cell_size_nm": 6000.0,
        "nucleus_diameter_nm": (3000.0, 4500.0),
        "seed": 70_004,
    },
    "p70006_40x20nm": {
        "shape": (128, 320, 320),
        "voxel_size": (40.0, 20.0, 20.0),
        "cell_size_nm": 6000.0,
        "nucleus_diameter_nm": (3000.0, 4000.0),
        "nucleus_fraction": 1.0,
        "seed": 70_006,
    },
}

CARD_NOTES = [
    "Trained on synthetic data only: synthetic nuclei (vemkit.synth.nuclei) embedded in "
    "real EM backgrounds from ../shared/data, plus whole-tissue phantoms "
    "(vemkit.synth.make_phantom: cells, nuclei, mitochondria, vesicles) with real anatomy. "
    "No real EM nuclei ground truth was available (none of the volumes in ../shared/data "
    "contains a nucleus), so every score in `metrics` is measured on synthetic nuclei or "
    "phantoms, and accuracy on real nuclei is unmeasured. Expect to fine-tune on a few "
    "annotated real nuclei.",
    "Expects isotropic 100 nm voxels: `vemkit predict` resamples any input to 100 x 100 x 100 "
    "nm (give the input voxel size). Run it tri-axially (--triaxis: z, y and x planes "
    "averaged); z-planes alone see only a section of each nucleus.",
    "Normalisation: fixed percentile mapping fitted on the training scenes (uint8 "
    "intensities, see `normalization`); rescale other bit depths to 0-255 first.",
    "Output: tanh(network) x 3000 nm = signed distance to the nucleus border, positive "
    "inside, clipped to +/-3 um. Instances: "
    "vemkit.pipelines.nuclei_data.segment_nuclei_distance(distance, voxel_size=..., "
    "**instances without the 'instances' key): optional Gaussian smoothing, seeds deeper "
    "than seed_threshold_nm (smaller than min_seed_size_nm3 ignored), watershed over "
    "distance > mask_threshold_nm, objects below min_size_nm3 removed.",
    "The post-processing parameters in `instances` were chosen by a grid search on the "
    "validation scenes and validation phantoms only (metrics.postprocessing); held-out, "
    "unseen-background and test-phantom scores were measured afterwards with them. The "
    "webKnossos default (seeds > 1 um, mask > 0, nothing else) turns every small region "
    "the network wrongly puts deep inside into an object (see "
    "metrics.postprocessing.validation_webknossos_default).",
    "Backgrounds are small neuropil crops (0.5-5 um at 100 nm), tiled with random flips "
    "and rotations; real tissue around nuclei (somata, vessels, myelin) is only imitated "
    "by the generators' cell bodies, membranes and vessel-like distractors.",
    "The 'unseen backgrounds' are unseen volumes, not unseen modalities: NeuroProof is "
    "FIB-SEM of fly medulla like the gala training crops, ISBI test is ssTEM of the same "
    "kind as ISBI train. Test phantoms come from the same generator as the training "
    "phantoms (new seeds, other voxel sizes and anatomy), so they measure generalisation "
    "within the generator, not to real tissue.",
    "The model is the last complete epoch of a wall-clock-limited run (max_train_minutes) "
    "with its batch-norm running statistics re-estimated on clean training planes after "
    "training ('precise BN'); the per-epoch validation values in training.history were "
    "computed with the momentum statistics and understate it.",
]


def _machine(threads: int) -> dict[str, Any]:
    return {
        "device": "cpu",
        "torch_threads": threads,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a cache file atomically (a reader never sees a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)


class _Textures:
    """Background textures by name and scale, loaded on first use."""

    def __init__(self, sources: Any, scales: list[float]) -> None:
        self.sources = {source.name: source for source in sources}
        self.scales = scales
        self.loaded: dict[str, dict[float, np.ndarray]] = {}

    def __getitem__(self, name: str) -> dict[float, np.ndarray]:
        if name not in self.loaded:
            source = self.sources[name]
            self.loaded[name] = {s: load_background(source, scale=s) for s in self.scales}
            log.info("background %s: %s", name, {s: a.shape for s, a in self.loaded[name].items()})
        return self.loaded[name]


def _scenes(
    names: list[str | None],
    textures: _Textures,
    *,
    count: int,
    base_seed: int,
    scales: list[float] | None,
    shape: tuple[int, int, int],
    scene_config: dict[str, Any],
    cache: Path | None = None,
    part: tuple[int, int] = (0, 1),
) -> list[NucleiSample]:
    """``count`` scenes; scene i uses background names[i % len(names)] (None: synthetic).

    With ``cache`` each scene is read from / written to a file there (same seed, same
    scene). ``part=(k, n)`` makes only the scenes with ``i % n == k`` (to fill a cache in
    parallel).
    """
    samples = []
    config = NucleiSceneConfig(**scene_config)
    key = hashlib.sha256(repr((config, shape, scales)).encode()).hexdigest()[:12]
    for i in range(count):
        if i % part[1] != part[0]:
            continue
        seed = base_seed + i
        name = names[i % len(names)]
        scale = 1.0
        if name is not None:
            rng = np.random.default_rng([seed, 7])
            scale = float(rng.choice(scales)) if scales else 1.0
        label = "synthetic" if name is None else name.replace("/", "_")
        path = None if cache is None else cache / f"scene-{seed}-{label}-{scale}-{key}.npz"
        if path is not None and path.is_file():
            plan = plan_nuclei_scene(shape, voxel_size=WORKING_VOXEL_SIZE, seed=seed, config=config)
            with np.load(path) as z:
                samples.append(NucleiSample(z["raw"], z["nuclei"], z["distance_nm"], plan))
            continue
        texture = None if name is None else textures[name][scale]
        sample = make_nuclei_sample(texture, shape=shape, seed=seed, config=config)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _save_npz(path, raw=sample.raw, nuclei=sample.nuclei, distance_nm=sample.distance_nm)
        samples.append(sample)
    return samples


def _recalibrate_batch_norm(
    network: torch.nn.Module, data: NucleusPlanes, *, batch_size: int
) -> None:
    """Re-estimate batch-norm running statistics as plain averages over ``data``."""
    layers = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    network.train()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = [data[i][0] for i in range(start, min(start + batch_size, len(data)))]
            network(torch.stack(batch).to(memory_format=torch.channels_last))
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    network.eval()


def _validation_iou(network: torch.nn.Module, loader: Any) -> float:
    network.eval()
    scores, counts = 0.0, 0
    with torch.no_grad():
        for image, target, valid in loader:
            scores += _iou_metric(network(image), target, valid) * len(image)
            counts += len(image)
    return scores / max(counts, 1)


def _iou_metric(prediction: torch.Tensor, truth: torch.Tensor, valid: Any) -> float:
    predicted = prediction[:, 0] > 0
    actual = truth[:, 0] > 0
    if valid is not None:
        mask = valid.bool()
        predicted, actual = predicted & mask, actual & mask
    union = int((predicted | actual).sum())
    return 1.0 if union == 0 else int((predicted & actual).sum()) / union


def _phantom_config(seed: int, ranges: dict[str, Any]) -> PhantomConfig:
    """A training/validation phantom with anatomy and imaging drawn from ``ranges``."""
    rng = np.random.default_rng([seed, 11])

    def draw(name: str) -> float:
        lo, hi = ranges[name]
        return float(rng.uniform(lo, hi))

    voxel = float(rng.choice(ranges["voxel_size_nm"]))
    edge = math.ceil(ranges["field_nm"] / voxel)
    low = draw("nucleus_diameter_min_nm")
    options: dict[str, Any] = {}
    if rng.random() < ranges["explicit_mitochondria_p"]:
        options = {
            "mitochondria_per_um3": draw("mitochondria_per_um3"),
            "mitochondrion_length_nm": (500.0, 3000.0),
            "mitochondrion_width_nm": (200.0, 600.0),
        }
    return PhantomConfig(
        shape=(edge, edge, edge),
        voxel_size=(voxel, voxel, voxel),
        seed=seed,
        cell_size_nm=draw("cell_size_nm"),
        nucleus_diameter_nm=(low, low + draw("nucleus_diameter_span_nm")),
        nucleus_fraction=draw("nucleus_fraction"),
        noise_level=draw("noise_level"),
        blur_sigma_nm=draw("blur_sigma_nm"),
        z_drift=draw("z_drift"),
        section_jitter=draw("section_jitter"),
        **options,
    )


def _phantom_samples(
    count: int, base_seed: int, ranges: dict[str, Any], cache: Path | None
) -> list[NucleiSample]:
    """``count`` phantom scenes at 100 nm (read from / written to ``cache`` if given)."""
    samples = []
    for i in range(count):
        config = _phantom_config(base_seed + i, ranges)
        key = hashlib.sha256(repr(config).encode()).hexdigest()[:16]
        path = None if cache is None else cache / f"phantom-{base_seed + i}-{key}.npz"
        if path is not None and path.is_file():
            with np.load(path) as z:
                sample = NucleiSample(z["raw"], z["nuclei"], z["distance_nm"], None)
        else:
            t0 = time.perf_counter()
            sample = make_phantom_sample(config)
            log.info(
                "phantom %d (%s nm, %d nuclei) in %.0f s",
                base_seed + i,
                config.voxel_size.x,
                len(np.unique(sample.nuclei)) - 1,
                time.perf_counter() - t0,
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                _save_npz(
                    path, raw=sample.raw, nuclei=sample.nuclei, distance_nm=sample.distance_nm
                )
        samples.append(sample)
    return samples


class _OutOfTimeError(Exception):
    """The wall-clock training budget is spent (raised between epochs)."""


class _TimedLoader:
    """Training batches under a wall-clock budget, with a cosine learning rate over it.

    Before each batch the learning rate is set to the cosine of the elapsed share of
    ``seconds``; an epoch is only started if the last epoch's duration still fits.
    """

    def __init__(
        self,
        loader: torch.utils.data.DataLoader[Any],
        optimizer: torch.optim.Optimizer,
        *,
        seconds: float,
        learning_rate: float,
        final_fraction: float,
    ) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.optimizer = optimizer
        self.seconds = seconds
        self.learning_rate = learning_rate
        self.final_fraction = final_fraction
        self.start: float | None = None
        self.epoch_starts: list[float] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        if self.epoch_starts:
            last = now - self.epoch_starts[-1]
            if now - self.start + last > self.seconds:
                raise _OutOfTimeError
        self.epoch_starts.append(now)
        low = self.learning_rate * self.final_fraction
        for batch in self.loader:
            share = min(1.0, (time.perf_counter() - self.start) / self.seconds)
            lr = low + (self.learning_rate - low) * 0.5 * (1.0 + math.cos(math.pi * share))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            yield batch


def _segment(distance: np.ndarray, params: dict[str, float]) -> np.ndarray:
    return segment_nuclei_distance(distance, voxel_size=WORKING_VOXEL_SIZE, **params)


def _remove_small(labels: np.ndarray, min_size_nm3: float) -> np.ndarray:
    """Objects smaller than ``min_size_nm3`` set to 0, the rest renumbered 1..N."""
    voxel = float(np.prod(WORKING_VOXEL_SIZE.as_tuple()))
    sizes = np.bincount(labels.ravel()) * voxel
    keep = sizes >= min_size_nm3
    keep[0] = False
    lut = np.zeros(len(sizes), dtype=np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]


def _choose_postprocessing(
    distances: list[np.ndarray], truths: list[np.ndarray], grid: dict[str, list[float]]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Grid search of segment_nuclei_distance parameters on validation volumes.

    Returns the best parameters (pooled F1@0.5, then F1@0.75, then Dice) and every row.
    """
    rows = []
    for sigma in grid["smooth_sigma_nm"]:
        smoothed = [
            ndimage.gaussian_filter(d, sigma / WORKING_VOXEL_SIZE.x, mode="nearest")
            if sigma > 0
            else d
            for d in distances
        ]
        for seed_nm, mask_nm, min_seed in itertools.product(
            grid["seed_threshold_nm"], grid["mask_threshold_nm"], grid["min_seed_size_nm3"]
        ):
            base = [
                _segment(
                    d,
                    {
                        "seed_threshold_nm": seed_nm,
                        "mask_threshold_nm": mask_nm,
                        "min_seed_size_nm3": min_seed,
                    },
                )
                for d in smoothed
            ]
            for min_size in grid["min_size_nm3"]:
                scores = [
                    score_nuclei(_remove_small(b, min_size), t)
                    for b, t in zip(base, truths, strict=True)
                ]
                params = {
                    "seed_threshold_nm": seed_nm,
                    "mask_threshold_nm": mask_nm,
                    "min_seed_size_nm3": min_seed,
                    "min_size_nm3": min_size,
                    "smooth_sigma_nm": sigma,
                }
                rows.append({"params": params, **summarise_nuclei_scores(scores)})
    best = max(rows, key=lambda r: (r["f1_iou50"], r["f1_iou75"], r["dice"] or 0.0))
    log.info("post-processing chosen on validation: %s", best)
    return dict(best["params"]), rows


def _evaluate_scenes(
    network: torch.nn.Module,
    spec: ModelSpec,
    samples: list[NucleiSample],
    names: list[str],
    params: dict[str, float],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for sample, name in zip(samples, names, strict=True):
        start = time.perf_counter()
        distance = predict_block(
            network, sample.raw, spec=spec, voxel_size=WORKING_VOXEL_SIZE, triaxis=True
        )[0]
        row = score_nuclei(_segment(distance, params), sample.nuclei)
        seed = None if sample.plan is None else sample.plan.seed
        row.update(background=name, seed=seed, seconds=round(time.perf_counter() - start, 1))
        rows.append(row)
        log.info(
            "  %s seed %s: gt %d, pred %d, F1@0.5 %.3f",
            name,
            seed,
            row["n_gt"],
            row["n_pred"],
            row["f1_50"],
        )
    return summarise_nuclei_scores(rows), rows


#: Test-phantom truth nuclei smaller than this (slivers cut by the volume border) are
#: reported separately: "without_small_truth" drops them and the predictions lying in them.
SMALL_TRUTH_NM3 = 1e9


def _without_small_truth(
    prediction: np.ndarray, truth: np.ndarray, *, min_voxels: float
) -> tuple[np.ndarray, np.ndarray]:
    """Drop truth objects below ``min_voxels`` and predicted objects mostly inside them."""
    sizes = np.bincount(truth.ravel())
    small = np.flatnonzero(sizes < min_voxels)
    small = small[small > 0]
    if not len(small):
        return prediction, truth
    in_small = np.isin(truth, small)
    pred_sizes = np.bincount(prediction.ravel())
    pred_in_small = np.bincount(prediction[in_small].ravel(), minlength=len(pred_sizes))
    drop = np.flatnonzero(pred_in_small * 2 > pred_sizes)
    drop = drop[drop > 0]
    return (
        np.where(np.isin(prediction, drop), 0, prediction),
        np.where(in_small, 0, truth),
    )


def _labels_to_grid(labels: np.ndarray, shape: tuple[int, ...], factors: list[float]) -> np.ndarray:
    """Nearest-neighbour labels on a finer grid (``factors``: fine voxels per coarse voxel)."""
    index = [
        np.minimum(((np.arange(n) + 0.5) / f).astype(int), labels.shape[a] - 1)
        for a, (n, f) in enumerate(zip(shape, factors, strict=True))
    ]
    return labels[np.ix_(*index)]


def _evaluate_test_phantoms(
    network: torch.nn.Module,
    spec: ModelSpec,
    params: dict[str, float],
    phantoms: dict[str, dict[str, Any]],
    cache: Path | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score test phantoms (see :data:`TEST_PHANTOMS`) the way the segment pipeline runs."""
    rows = []
    for name, options in phantoms.items():
        t0 = time.perf_counter()
        config = PhantomConfig(**options)
        key = hashlib.sha256(repr(config).encode()).hexdigest()[:16]
        path = None if cache is None else cache / f"test-{name}-{key}.npz"
        if path is not None and path.is_file():
            with np.load(path) as z:
                phantom_raw, truth = z["raw"], z["nuclei"]
        else:
            phantom = make_phantom(config)
            phantom_raw, truth = phantom.raw, phantom.nuclei
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                _save_npz(path, raw=phantom_raw, nuclei=truth)
        generated = time.perf_counter() - t0
        source = config.voxel_size
        raw = resample_texture(phantom_raw, voxel_size=source, target_voxel_size=WORKING_VOXEL_SIZE)
        distance = predict_block(
            network, raw, spec=spec, voxel_size=WORKING_VOXEL_SIZE, triaxis=True
        )[0]
        labels = _segment(distance, params)
        factors = [
            w / v for w, v in zip(WORKING_VOXEL_SIZE.as_tuple(), source.as_tuple(), strict=True)
        ]
        fine = _labels_to_grid(labels, truth.shape, factors)
        row = score_nuclei(fine, truth)
        voxel_nm3 = float(np.prod(source.as_tuple()))
        kept_pred, kept_truth = _without_small_truth(
            fine, truth, min_voxels=SMALL_TRUTH_NM3 / voxel_nm3
        )
        row["without_small_truth"] = score_nuclei(kept_pred, kept_truth)
        row.update(
            phantom=name,
            voxel_size_nm=list(source.as_tuple()),
            shape=list(truth.shape),
            nucleus_diameter_nm=list(options["nucleus_diameter_nm"]),
            true_volumes_um3=[
                round(float(v) * voxel_nm3 / 1e9, 2) for v in np.bincount(truth.ravel())[1:]
            ],
            generation_seconds=round(generated, 1),
            seconds=round(time.perf_counter() - t0 - generated, 1),
        )
        rows.append(row)
        log.info(
            "  phantom %s: gt %d, pred %d, F1@0.5 %.3f F1@0.75 %.3f (without small truth: %.3f)",
            name,
            row["n_gt"],
            row["n_pred"],
            row["f1_50"],
            row["f1_75"],
            row["without_small_truth"]["f1_50"],
        )
    summary = summarise_nuclei_scores(rows)
    summary["without_small_truth"] = summarise_nuclei_scores(
        [r["without_small_truth"] for r in rows]
    )
    return summary, rows


def _predict_labels(
    network: torch.nn.Module,
    spec: ModelSpec,
    raw: np.ndarray,
    voxel_size: VoxelSize,
    params: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    distance = predict_block(network, raw, spec=spec, voxel_size=voxel_size, triaxis=True)[0]
    return distance, segment_nuclei_distance(distance, voxel_size=voxel_size, **params)


def _stardist(
    network: torch.nn.Module, spec: ModelSpec, params: dict[str, float]
) -> dict[str, Any]:
    root = data_root()
    assert root is not None
    folder = root / "stardist_nuclei_3d"
    raw = tifffile.imread(folder / "raw.tif").astype(np.float32)
    truth = tifffile.imread(folder / "nuclei_instances.tif")
    voxel = VoxelSize(*RECIPE["evaluation"]["stardist_assumed_voxel_size_nm"])
    low, high = np.percentile(raw, [1.0, 99.8])
    scaled = np.clip((raw - low) / (high - low), 0, 1) * 255.0
    result: dict[str, Any] = {
        "assumed_voxel_size_nm": list(voxel.as_tuple()),
        "preprocessing": "fluorescence rescaled to 0-255 (1st-99.8th percentile); "
        "'inverted' = 255 - that (dark nuclei on light, more EM-like)",
    }
    for variant, image in (("as_is", scaled), ("inverted", 255.0 - scaled)):
        start = time.perf_counter()
        distance, labels = _predict_labels(network, spec, image.astype(np.uint8), voxel, params)
        result[variant] = {
            "seconds": round(time.perf_counter() - start, 1),
            "predicted_inside_fraction": round(float((distance > 0).mean()), 4),
            "true_inside_fraction": round(float((truth > 0).mean()), 4),
            **summarise_nuclei_scores([score_nuclei(labels, truth)]),
        }
        log.info("stardist %s: %s", variant, result[variant])
    return result


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "object_f1_at": {"0.5": summary["f1_iou50"], "0.75": summary["f1_iou75"]},
        "foreground_dice": summary["dice"],
        "mean_matched_iou": summary["mean_matched_iou"],
        **summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="models/nuclei-em")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ship", action="store_true", help="copy the model into the zoo")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not shipped)")
    parser.add_argument("--skip-training", action="store_true", help="re-evaluate OUTPUT/model")
    parser.add_argument(
        "--cache",
        default=None,
        help="folder to keep generated scenes and phantoms in (same seeds, same scenes; a "
        "rerun reads them instead of generating them again)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    recipe = json.loads(json.dumps(RECIPE))
    test_phantoms = TEST_PHANTOMS
    if args.quick:
        recipe.update(
            train_scenes=6, validation_scenes=2, epochs=2, samples_per_epoch=32, max_train_minutes=5
        )
        recipe["phantoms"].update(train=1, validation=1, voxel_size_nm=[100.0], field_nm=6400.0)
        recipe["patch_shape"] = [48, 48]
        recipe["evaluation"].update(held_out_scenes=1, unseen_scenes=1)
        recipe["postprocessing_grid"] = {
            "smooth_sigma_nm": [0.0, 200.0],
            "seed_threshold_nm": [1000.0],
            "mask_threshold_nm": [0.0],
            "min_seed_size_nm3": [0.0],
            "min_size_nm3": [1e9],
        }
        test_phantoms = {"quick": {**TEST_PHANTOMS["p70003_60nm"], "shape": (64, 96, 96)}}
    output = Path(args.output)
    cache = Path(args.cache) if args.cache else None
    start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    shape = tuple(recipe["scene_shape"])
    scales = list(recipe["background_scales"])
    seeds = recipe["seeds"]
    ph = recipe["phantoms"]

    textures = _Textures(TRAINING_BACKGROUNDS, scales)
    unseen = _Textures(UNSEEN_BACKGROUNDS, [1.0])
    train_names: list[str | None] = [s.name for s in TRAINING_BACKGROUNDS]
    n_synthetic = round(
        len(train_names)
        * recipe["synthetic_background_share"]
        / (1 - recipe["synthetic_background_share"])
    )
    train_names += [None] * max(1, n_synthetic)

    config = UNetConfig(**recipe["network"])
    network = build_network(config, seed=recipe["seed"])
    network = network.to(memory_format=torch.channels_last)
    model_dir = output / "model"
    normalization = None
    card: dict[str, Any] = {}
    timings: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    val_samples = []
    val_phantoms = []
    if not args.skip_training:
        t0 = time.perf_counter()
        train_samples = _scenes(
            train_names,
            textures,
            count=recipe["train_scenes"],
            base_seed=seeds["train"],
            scales=scales,
            shape=shape,
            scene_config=recipe["scene_config"],
            cache=cache,
        )
        val_samples = _scenes(
            train_names,
            textures,
            count=recipe["validation_scenes"],
            base_seed=seeds["validation"],
            scales=scales,
            shape=shape,
            scene_config=recipe["scene_config"],
            cache=cache,
        )
        timings["scene_generation_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_phantoms = _phantom_samples(ph["train"], seeds["phantom_train"], ph, cache)
        val_phantoms = _phantom_samples(ph["validation"], seeds["phantom_validation"], ph, cache)
        timings["phantom_generation_seconds"] = time.perf_counter() - t0
        log.info(
            "generated %d + %d scenes and %d + %d phantoms in %.0f s",
            len(train_samples),
            len(val_samples),
            len(train_phantoms),
            len(val_phantoms),
            time.perf_counter() - start,
        )
        normalization = fit_normalization(
            np.concatenate([s.raw.reshape(-1)[::7] for s in train_samples]),
            lower_percentile=1.0,
            upper_percentile=99.8,
        )
        augment = Augmenter(
            voxel_size=tuple(WORKING_VOXEL_SIZE.as_tuple()[1:]),
            flip=True,
            rot90=True,
            contrast_p=recipe["augment"]["contrast_p"],
            gamma_p=recipe["augment"]["gamma_p"],
            noise_p=recipe["augment"]["noise_p"],
            blur_p=0.0,
        )
        # Phantoms get train_share of the planes, the synthetic-nuclei scenes the rest.
        all_train = train_samples + train_phantoms
        share = ph["train_share"]
        weights = [(1 - share) / len(train_samples)] * len(train_samples) + [
            share / len(train_phantoms)
        ] * len(train_phantoms)
        train_data = NucleusPlanes(
            all_train,
            patch_shape=recipe["patch_shape"],
            samples_per_epoch=recipe["samples_per_epoch"],
            normalization=normalization,
            augment=augment,
            foreground_fraction=recipe["foreground_fraction"],
            seed=recipe["seed"],
            scene_weights=weights,
        )
        val_data = NucleusPlanes(
            val_samples + val_phantoms,
            patch_shape=recipe["patch_shape"],
            samples_per_epoch=recipe["validation_samples"],
            normalization=normalization,
            foreground_fraction=recipe["foreground_fraction"],
            seed=recipe["seed"] + 1,
        )
        generator = torch.Generator().manual_seed(recipe["seed"])
        train_loader = torch.utils.data.DataLoader(
            train_data,
            batch_size=recipe["batch_size"],
            shuffle=True,
            drop_last=True,
            generator=generator,
        )
        val_loader = torch.utils.data.DataLoader(val_data, batch_size=recipe["batch_size"])
        opt = recipe["optimizer"]
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=opt["learning_rate"], weight_decay=opt["weight_decay"]
        )
        budget = recipe["max_train_minutes"] * 60.0
        timed = _TimedLoader(
            train_loader,
            optimizer,
            seconds=budget,
            learning_rate=opt["learning_rate"],
            final_fraction=0.02,
        )
        card = {
            "name": recipe["name"],
            "normalization": normalization.to_dict(),
            "voxel_size_nm": recipe["voxel_size_nm"],
        }
        log.info(
            "training: %d parameters, %d batches per epoch, %.0f s budget",
            count_parameters(network),
            len(train_loader),
            budget,
        )
        t0 = time.perf_counter()
        checkpoints = output / "checkpoints"
        if checkpoints.exists():
            shutil.rmtree(checkpoints)
        try:
            result = train(
                network,
                timed,
                val_loader,
                RegressionLoss(kind="smooth_l1", beta=0.1, activation="tanh"),
                optimizer,
                epochs=recipe["epochs"],
                checkpoint_dir=checkpoints,
                config=config,
                card=card,
                metric_fn=_iou_metric,
                seed=recipe["seed"],
            )
            stop = "epoch cap"
            records = [
                {
                    "epoch": r.epoch,
                    "train_loss": r.train_loss,
                    "val_loss": r.val_loss,
                    "val_metric": r.val_metric,
                    "seconds": r.seconds,
                    "learning_rate": r.learning_rate,
                }
                for r in result.history
            ]
        except _OutOfTimeError:
            stop = "wall-clock budget"
            _, last_card = read_model_info(checkpoints / "last")
            records = last_card["training"]["history"]
        timings["train_seconds"] = time.perf_counter() - t0
        history = [
            {
                "epoch": r["epoch"],
                "train_loss": round(r["train_loss"], 5),
                "val_loss": None if r["val_loss"] is None else round(r["val_loss"], 5),
                "val_metric": None if r["val_metric"] is None else round(r["val_metric"], 5),
                "learning_rate": round(r["learning_rate"], 6),
                "seconds": round(r["seconds"], 1),
            }
            for r in records
        ]
        log.info("training stopped by the %s after %d epochs", stop, len(history))
        # The last complete epoch (end of the cosine schedule) with re-estimated batch-norm
        # statistics is the model; the per-epoch validation used stale statistics.
        load_weights(checkpoints / "last", network)
        calibration = NucleusPlanes(
            all_train,
            patch_shape=recipe["patch_shape"],
            samples_per_epoch=recipe["batch_size"] * recipe["batch_norm_recalibration_batches"],
            normalization=normalization,
            foreground_fraction=recipe["foreground_fraction"],
            seed=recipe["seed"] + 2,
            scene_weights=weights,
        )
        _recalibrate_batch_norm(network, calibration, batch_size=recipe["batch_size"])
        validation_iou = _validation_iou(network, val_loader)
        log.info("validation mask IoU after recalibration: %.4f", validation_iou)
        timings["until_trained_seconds"] = time.perf_counter() - start
        del train_samples, train_phantoms, all_train, train_data, calibration
    else:
        _, old_card = read_model_info(model_dir)
        load_weights(model_dir, network)
        normalization = Normalization.from_dict(old_card["normalization"])
        val_samples = _scenes(
            train_names,
            textures,
            count=recipe["validation_scenes"],
            base_seed=seeds["validation"],
            scales=scales,
            shape=shape,
            scene_config=recipe["scene_config"],
            cache=cache,
        )
        val_phantoms = _phantom_samples(ph["validation"], seeds["phantom_validation"], ph, cache)
    network.eval()

    card = build_card(recipe, normalization.to_dict(), config)
    spec = ModelSpec.from_card(config, card, name=recipe["name"])
    if not args.skip_training:
        training_info: dict[str, Any] = {
            "epochs_run": len(history),
            "stopped_by": stop,
            "model": "last complete epoch, batch-norm statistics re-estimated on clean "
            "training planes",
            "validation_mask_iou": round(validation_iou, 4),
            **{k: round(v, 1) for k, v in timings.items()},
            "scene_cache": None
            if cache is None
            else "scenes and phantoms read from --cache "
            "where present (generated there by the same code and seeds)",
            "started": started,
            "machine": _machine(args.threads),
            "history": history,
        }
        # Save now, so that a failed evaluation can be redone with --skip-training.
        save_model(model_dir, network, config, {**card, "training": training_info})
    else:
        training_info = dict(old_card.get("training", {}))

    # Post-processing: grid search on the validation scenes and phantoms only.
    log.info(
        "choosing the post-processing on %d validation volumes",
        len(val_samples) + len(val_phantoms),
    )
    t0 = time.perf_counter()
    validation = val_samples + val_phantoms
    distances = [
        predict_block(network, s.raw, spec=spec, voxel_size=WORKING_VOXEL_SIZE, triaxis=True)[0]
        for s in validation
    ]
    params, grid_rows = _choose_postprocessing(
        distances, [s.nuclei for s in validation], recipe["postprocessing_grid"]
    )
    default_rows = [
        score_nuclei(_segment(d, {}), s.nuclei) for d, s in zip(distances, validation, strict=True)
    ]
    search_seconds = time.perf_counter() - t0
    del distances, validation, val_samples, val_phantoms
    card["instances"] = {"instances": "distance_watershed", **params}

    ev = recipe["evaluation"]
    held_names = [s.name for s in TRAINING_BACKGROUNDS]
    held_samples = _scenes(
        held_names,
        textures,
        count=ev["held_out_scenes"],
        base_seed=seeds["held_out"],
        scales=None,
        shape=shape,
        scene_config=recipe["scene_config"],
        cache=cache,
    )
    unseen_names = [s.name for s in UNSEEN_BACKGROUNDS]
    unseen_samples = _scenes(
        unseen_names,
        unseen,
        count=ev["unseen_scenes"],
        base_seed=seeds["unseen"],
        scales=None,
        shape=shape,
        scene_config=recipe["scene_config"],
        cache=cache,
    )
    log.info("evaluating held-out seeds (training backgrounds)")
    held = _evaluate_scenes(
        network,
        spec,
        held_samples,
        [held_names[i % len(held_names)] for i in range(len(held_samples))],
        params,
    )
    log.info("held-out: %s", held[0])
    log.info("evaluating unseen backgrounds")
    unseen_scores = _evaluate_scenes(
        network,
        spec,
        unseen_samples,
        [unseen_names[i % len(unseen_names)] for i in range(len(unseen_samples))],
        params,
    )
    log.info("unseen: %s", unseen_scores[0])
    del held_samples, unseen_samples
    log.info("evaluating test phantoms")
    phantom_scores = _evaluate_test_phantoms(network, spec, params, test_phantoms, cache)
    log.info("test phantoms: %s", phantom_scores[0])
    root = data_root()
    has_stardist = root is not None and (root / "stardist_nuclei_3d").is_dir()
    stardist = _stardist(network, spec, params) if has_stardist and not args.quick else None

    licenses = sorted({dataset_info(s.dataset).license for s in TRAINING_BACKGROUNDS})
    card["license"] = {
        "training_data": licenses,
        "note": "the weights derive from these backgrounds (and synthetic nuclei and "
        "phantoms); their license terms apply to the weights' use",
    }
    top = sorted(grid_rows, key=lambda r: (r["f1_iou50"], r["f1_iou75"], r["dice"] or 0.0))
    card["metrics"] = {
        "postprocessing": {
            "chosen": params,
            "chosen_on": f"{recipe['validation_scenes']} validation synthetic-nuclei scenes "
            f"and {ph['validation']} validation phantoms (seeds {seeds['validation']}+ and "
            f"{seeds['phantom_validation']}+); never on the test volumes below",
            "criterion": "pooled object F1 at IoU 0.5, then at 0.75, then Dice",
            "grid": recipe["postprocessing_grid"],
            "validation_best": top[-1],
            "validation_next_best": top[-6:-1][::-1],
            "validation_webknossos_default": {
                "params": {"seed_threshold_nm": SEED_THRESHOLD_NM, "mask_threshold_nm": 0.0},
                **summarise_nuclei_scores(default_rows),
            },
            "search_seconds": round(search_seconds, 1),
        },
        "held_out": _headline(held[0]),
        "unseen_backgrounds": _headline(unseen_scores[0]),
        "test_phantoms": _headline(phantom_scores[0]),
        "stardist_nuclei_3d": stardist,
        "protocol": (
            f"{ev['held_out_scenes']} held-out synthetic-nuclei scenes over the training "
            f"backgrounds (new seeds) and {ev['unseen_scenes']} over the never-seen "
            f"backgrounds, each {shape[0]}x{shape[1]}x{shape[2]} voxels of 100 nm with 1-4 "
            "nuclei (3-15 um, some cut by the border); predicted tri-axially through "
            "vemkit.pipelines.predict.predict_block, instances by segment_nuclei_distance "
            "with the card's `instances` parameters; object F1 at IoU 0.5 / 0.75 and Dice "
            "pooled over the volumes, mean IoU of the pairs matched at 0.5. Test phantoms "
            f"({len(test_phantoms)}, vemkit.synth.make_phantom, seeds never used in "
            "training, 20-60 nm voxels, 3-8 um nuclei, every nucleus counted including "
            "those cut by the volume border): resampled to 100 nm (anti-aliased), predicted "
            "and segmented there, labels brought back to the phantom grid (nearest) and "
            "scored against the phantom's nuclei at full resolution."
        ),
        "per_volume": {
            "held_out": held[1],
            "unseen_backgrounds": unseen_scores[1],
            "test_phantoms": phantom_scores[1],
        },
    }
    card["training"] = training_info
    card["training"]["total_seconds"] = round(time.perf_counter() - start, 1)
    card["notes"] = [*card["notes"], _summary_note(card)]
    save_model(model_dir, network, config, card)
    (output / "metrics.json").write_text(json.dumps(card["metrics"], indent=2) + "\n")
    log.info("model written to %s (%.0f s in all)", model_dir, time.perf_counter() - start)
    if args.ship and not args.quick:
        zoo = Path(vemkit.__file__).parent / "ml" / "zoo" / recipe["name"]
        zoo.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "model.json"):
            shutil.copy2(model_dir / name, zoo / name)
        log.info("shipped to %s", zoo)
    return 0


def _summary_note(card: dict[str, Any]) -> str:
    m, t = card["metrics"], card["training"]

    def f(key: str) -> str:
        h = m[key]
        return (
            f"F1@0.5 {h['f1_iou50']}, F1@0.75 {h['f1_iou75']}, Dice {h['dice']} "
            f"({h['n_pred']} predicted / {h['n_gt']} true objects in {h['volumes']} volumes)"
        )

    loop = t.get("train_seconds")
    minutes = "?" if loop is None else f"{loop / 60:.1f}"
    generation = (t.get("scene_generation_seconds") or 0) + (
        t.get("phantom_generation_seconds") or 0
    )
    return (
        f"Measured (synthetic data only): held-out seeds {f('held_out')}; unseen "
        f"backgrounds {f('unseen_backgrounds')}; test phantoms {f('test_phantoms')}. "
        f"Post-processing {m['postprocessing']['chosen']} (chosen on validation scenes). "
        f"Training: {minutes} min wall for the training loop ({t.get('epochs_run')} epochs, "
        f"stopped by the {t.get('stopped_by')}), CPU, "
        f"{t.get('machine', {}).get('torch_threads')} torch threads on the 2-core CPU; "
        f"scene/phantom generation {generation / 60:.1f} min in this run "
        "(see training.scene_cache)."
    )


def build_card(
    recipe: dict[str, Any], normalization: dict[str, Any], config: UNetConfig
) -> dict[str, Any]:
    """The model card without metrics and training history."""
    return {
        "name": recipe["name"],
        "task": "nuclei (signed distance to the nucleus border -> instances)",
        "description": (
            "Nuclei in volume EM at a coarse level (100 nm voxels): a 2D U-Net regresses the "
            "signed distance to the nucleus border, clipped at +/-3 um, on z, y and x planes "
            "(tri-axis); instances by seeded watershed of the distance (webKnossos nuclei "
            "recipe) with smoothing and size filters chosen on validation scenes. Trained "
            "on synthetic nuclei in real EM backgrounds and on tissue phantoms."
        ),
        "target": {
            "type": "signed_distance",
            "clip_nm": recipe["clip_nm"],
            "normalized": "network output passed through tanh is distance / clip_nm",
            "boundary_width_nm": None,
        },
        "channels": ["distance"],
        "classes": None,
        "voxel_size_nm": recipe["voxel_size_nm"],
        "normalization": normalization,
        "architecture": config.to_dict(),
        "patch_shape": recipe["patch_shape"],
        "prediction": {**recipe["prediction"], "triaxis": True},
        # Filled in by main() with the parameters chosen on the validation scenes.
        "instances": {"instances": "distance_watershed"},
        "training_data": [
            {
                "kind": "synthetic nuclei embedded in real EM backgrounds",
                "generator": "vemkit.synth.nuclei.make_nuclei_scene",
                "generator_config": "NucleiSceneConfig defaults except "
                + json.dumps(recipe["scene_config"]),
                "real_nuclei_ground_truth": "none available",
                "backgrounds": [s.name for s in TRAINING_BACKGROUNDS]
                + ["vemkit.synth.nuclei.synthetic_background (1 scene in 6)"],
                "background_scales": recipe["background_scales"],
                "scenes": recipe["train_scenes"],
                "validation_scenes": recipe["validation_scenes"],
                "scene_shape": recipe["scene_shape"],
            },
            {
                "kind": "tissue phantoms (vemkit.synth.make_phantom) with real anatomy",
                "truth": "the phantoms' nucleus labels",
                "generation": "generated at 60-80 nm over a 12.8 um field, resampled "
                "(anti-aliased) to 100 nm; anatomy and imaging drawn per phantom from "
                "recipe.phantoms",
                "scenes": recipe["phantoms"]["train"],
                "validation_scenes": recipe["phantoms"]["validation"],
                "share_of_training_planes": recipe["phantoms"]["train_share"],
            },
        ],
        "test_data": [
            {
                "held_out_seeds": [s.name for s in TRAINING_BACKGROUNDS],
                "unseen_backgrounds": [s.name for s in UNSEEN_BACKGROUNDS],
                "stardist_nuclei_3d": "fluorescence, not EM; sanity check only",
                "test_phantoms": TEST_PHANTOMS,
            }
        ],
        "recipe": recipe,
        "command": " ".join([".venv/bin/python", "recipes/nuclei_em.py", *sys.argv[1:]]),
        "notes": CARD_NOTES,
        "vemkit_version": vemkit.__version__,
    }


if __name__ == "__main__":
    sys.exit(main())
