"""vemkit's shipped models side by side with peer baselines, on the same held-out data.

Task A — mitochondria, Drosophila VNC ssTEM (``../shared/data/drosophila_vnc_sstem``,
50 × 4.6 × 4.6 nm), the split of ``recipes/mito-em.yaml``: stack1 sections 0–8 train,
9–10 validate, 11–14 are held out and scored here.

* ``vemkit mito-em``: the shipped model through ``vemkit.pipelines.predict``
  (``load_predictor`` + ``predict_block`` + ``segment_instances`` with the card's
  instance settings), plus the same maps with the plain connected-components step.
* ``RF pixel classifier``: ilastik-style random forest
  (:class:`vemkit.ml.baselines.RandomForestPixelClassifier`, scikit-image multiscale
  features + scikit-learn) fitted on a fixed number of sampled labelled pixels (half
  mitochondria, half background) of sections 0–8.
* ``MONAI U-Net``: ``monai.networks.nets.UNet`` (2D, 16–256 channels, 2 residual units,
  batch norm), ``DiceCELoss``, Adam 1e-3, 160 × 160 patches (half centred on
  mitochondria), flips and 90° rotations, batch 8, trained on sections 0–8 for a fixed
  wall-clock budget (default: as long as the shipped mito-em trained, from its card)
  with the checkpoint of best Dice on sections 9–10 kept; ``sliding_window_inference``
  for prediction.

Both baselines see the data as mito-em does: sections resampled to 9.2 nm in-plane, maps
resampled back to 4.6 nm for scoring. Their instances are 3D connected components of
foreground > 0.5 with the card's minimum size.

Task B — nuclei, synthetic nuclei in real EM backgrounds
(:func:`vemkit.pipelines.nuclei_data.make_nuclei_sample`, 100 nm isotropic, held-out
scene seeds of the nuclei-em recipe):

* ``vemkit nuclei-em``: shipped model (card's tri-axis setting and distance-watershed
  thresholds).
* ``StarDist 3D``: trained from scratch on scenes of the nuclei-em training seeds,
  downsampled 4× to 400 nm so nuclei (3–15 µm) fit its rays and receptive field, for a
  fixed wall-clock budget; labels upsampled (nearest) for scoring.

and a cross-domain check on the real ``stardist_nuclei_3d`` fluorescence volume (both
models trained on EM-like data; voxel size assumed 800 × 400 × 400 nm as in the
nuclei-em recipe; intensities inverted to dark-on-light).

Scores: ``vemkit.measure.evaluate`` — foreground IoU / Dice of the semantic map
(probability > 0.5, or distance > 0) and object F1 at IoU 0.5 of the instances. Every
method runs its training and its prediction in separate processes so that peak resident
memory (``os.wait4``) is measured per method and stage. Throughput is input voxels per
second of prediction (resampling included; instance step and scoring excluded).

    python benchmarks/bench_models.py --quick --threads 1      # a few minutes
    python benchmarks/bench_models.py                          # full budgets
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "recipes" / "mito-em.yaml"

MITO_DATASET = "drosophila_vnc_sstem"
MITO_RAW = "stack1_z00-14_raw"
MITO_LABELS = "stack1_z00-14_mitochondria_instances"
MITO_VOXEL = (50.0, 4.6, 4.6)
MITO_WORKING_XY = 9.2  # nm, the in-plane size mito-em works at
TRAIN_Z, VAL_Z, TEST_Z = (0, 9), (9, 11), (11, 15)

NUCLEI_SCENE = (128, 128, 128)
NUCLEI_STARDIST_FACTOR = 4  # 100 nm -> 400 nm
SEEDS = {"train": 10_000, "validation": 20_000, "held_out": 30_000}
STARDIST_CHECK_VOXEL = (800.0, 400.0, 400.0)


def settings(quick: bool, args: argparse.Namespace) -> dict[str, Any]:
    """Sizes and budgets of a run (``--quick`` or full)."""
    recipe_minutes = _recipe_minutes()
    if quick:
        base = {
            "mito_test_yx": (256, 768),  # centre 512 x 512 of each held-out section
            "rf_trees": 50,
            "rf_samples": 4000,
            "monai_minutes": 0.5,
            "monai_val_every": 10**9,  # validate once, at the end
            "nuclei_train_scenes": 1,
            "fluorescence_check": False,
            "nuclei_test_scenes": 1,
            "stardist_minutes": 0.5,
            "stardist_optimize_thresholds": False,
        }
    else:
        base = {
            "mito_test_yx": (0, 1024),
            "rf_trees": 100,
            "rf_samples": 20_000,
            # MONAI trains exactly as long as the shipped mito-em did (its card records the
            # training seconds). StarDist gets 6 minutes, not nuclei-em's 30: `make bench`
            # must finish within an hour on 2 cores; the report prints both budgets.
            "monai_minutes": _shipped_minutes("mito-em") or recipe_minutes,
            "monai_val_every": 100,
            "nuclei_train_scenes": 16,
            "fluorescence_check": True,
            "nuclei_test_scenes": 4,
            "stardist_minutes": 6.0,
            "stardist_optimize_thresholds": True,
        }
    if args.monai_minutes is not None:
        base["monai_minutes"] = args.monai_minutes
    if args.stardist_minutes is not None:
        base["stardist_minutes"] = args.stardist_minutes
    base["recipe_minutes"] = recipe_minutes
    base["threads"] = args.threads
    base["quick"] = quick
    return base


def _shipped_minutes(name: str) -> float | None:
    """Training minutes of a shipped model (0.1 min steps), from its card; None if absent."""
    from vemkit.ml.zoo import resolve_model

    try:
        card = json.loads((resolve_model(name) / "model.json").read_text())["card"]
        return round(float(card["training"]["train_seconds"]) / 60, 1)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _shipped_train_minutes(name: str) -> str:
    """Training minutes of a shipped model, from its card ("?" when not recorded)."""
    minutes = _shipped_minutes(name)
    return "?" if minutes is None else f"{minutes:.1f}"


def _recipe_minutes() -> float:
    try:
        import yaml

        return float(yaml.safe_load(RECIPE.read_text())["max_train_minutes"])
    except (OSError, KeyError, TypeError, ValueError, ImportError):
        return 25.0


# ---------------------------------------------------------------------------------------
# shared helpers (worker side)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(max(1, threads))


def _mito_data(z_range: tuple[int, int], yx: tuple[int, int] | None = None) -> tuple[Any, Any]:
    from vemkit.datasets import load_layer

    raw = load_layer(MITO_DATASET, MITO_RAW).read()
    labels = load_layer(MITO_DATASET, MITO_LABELS).read()
    box = (slice(*z_range),) + ((slice(*yx), slice(*yx)) if yx else ())
    return np.ascontiguousarray(raw[box]), np.ascontiguousarray(labels[box])


def _working_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    factor = MITO_VOXEL[1] / MITO_WORKING_XY
    return (shape[0], round(shape[1] * factor), round(shape[2] * factor))


def _to_working(raw: Any) -> Any:
    from vemkit.pipelines.predict import resample_planes

    return resample_planes(raw, _working_shape(raw.shape))


def _mask_to_working(labels: Any) -> Any:
    return _to_working((labels > 0).astype(np.float32)) > 0.5


def _foreground_to_native(prob: Any, shape: tuple[int, ...]) -> Any:
    from vemkit.pipelines.predict import resample_planes

    return resample_planes(prob[None], shape)[0]


def _card_instances(card: dict[str, Any]) -> dict[str, Any]:
    return dict(card.get("instances") or {})


def _mito_min_size() -> float:
    from vemkit.pipelines.predict import load_predictor

    _, _, card = load_predictor("mito-em")
    return float(_card_instances(card).get("min_size_nm3", 1e6))


def _score_mito(foreground: Any, instances: Any, truth: Any) -> dict[str, Any]:
    """Foreground IoU/Dice (semantic) and object F1@0.5 (instances) against the truth."""
    from vemkit.measure import evaluate

    semantic = evaluate(
        foreground.astype(np.uint8),
        (truth > 0).astype(np.uint8),
        voxel_size=MITO_VOXEL,
        instance=False,
        classes=(1,),
        thresholds=(0.5,),
    )
    objects = evaluate(instances, truth, voxel_size=MITO_VOXEL, instance=True, thresholds=(0.5,))
    return {
        "iou": semantic["iou"],
        "dice": semantic["dice"],
        "f1_50": objects["f1_at"]["0.5"],
        "n_pred": objects["n_pred"],
        "n_gt": objects["n_gt"],
        **_intervals(foreground, instances, truth),
    }


def _intervals(foreground: Any, instances: Any, truth: Any) -> dict[str, Any]:
    """95% block-bootstrap intervals of the foreground IoU and of object F1@0.5."""
    from vemkit.measure import bootstrap_scores

    voxels = bootstrap_scores(
        foreground.astype(np.uint8), truth > 0, instance=False, spacing=MITO_VOXEL
    )
    objects = bootstrap_scores(instances, truth, thresholds=(0.5,), spacing=MITO_VOXEL)
    f1 = objects["f1_at"]["0.5"]
    return {
        "iou_ci": [voxels["iou"]["low"], voxels["iou"]["high"]],
        "f1_50_ci": [f1["low"], f1["high"]],
        "ci_blocks": voxels["n_blocks"],
    }


def _cc_instances(foreground: Any, min_size_nm3: float) -> Any:
    from vemkit.geometry import VoxelSize
    from vemkit.segmentation import connected_components, remove_small_objects

    labels = connected_components(foreground, connectivity=6)
    return remove_small_objects(
        labels, min_size_nm3=min_size_nm3, voxel_size=VoxelSize(*MITO_VOXEL)
    )


def _save(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=1, default=float))


# ---------------------------------------------------------------------------------------
# Task A workers


def mito_vemkit_predict(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    from vemkit.geometry import VoxelSize
    from vemkit.pipelines.predict import load_predictor, predict_block, segment_instances

    raw, truth = _mito_data(TEST_Z, cfg["mito_test_yx"])
    network, spec, card = load_predictor("mito-em")
    voxel = VoxelSize(*MITO_VOXEL)
    inst = _card_instances(card)
    method = inst.get("instances", "boundary_watershed_3d")
    # the card's foreground threshold was chosen on the validation sections, like the
    # baselines' thresholds below; the semantic mask and the instance seeds both use it
    fg_threshold = float(inst.get("foreground_threshold", 0.5))
    min_size = float(inst.get("min_size_nm3", 0.0))
    rows = []
    for tta in (False, True):
        start = time.perf_counter()
        maps = predict_block(network, raw, spec=spec, voxel_size=voxel, tta=tta)
        seconds = time.perf_counter() - start
        objects = segment_instances(
            maps,
            spec=spec,
            voxel_size=voxel,
            method=method,
            foreground_threshold=fg_threshold,
            boundary_threshold=float(inst.get("boundary_threshold", 0.5)),
            min_size_nm3=min_size,
        )
        foreground = maps[spec.channels.index("foreground")] > fg_threshold
        name = "vemkit mito-em --tta (flips averaged)" if tta else "vemkit mito-em (shipped)"
        found = [
            {
                "method": f"{name}; card instance step: {method}, fg>{fg_threshold:g}",
                **_score_mito(foreground, objects, truth),
            }
        ]
        if not tta:
            found.append(
                {
                    "method": "vemkit mito-em (same maps; connected components of "
                    f"fg>{fg_threshold:g})",
                    **_score_mito(foreground, _cc_instances(foreground, min_size), truth),
                }
            )
        for row in found:
            row.update(predict_s=seconds, n_voxels=int(raw.size))
        rows.extend(found)
    return {"rows": rows}


# ---------------------------------------------------------------------------------------
# Task A baselines


def _rf_sparse_labels(truth_mask: Any, n_samples: int, seed: int = 0) -> Any:
    """ilastik-style sparse labels: n/2 random mitochondrion and n/2 background pixels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(truth_mask.shape, np.uint8)
    for value, where in ((2, truth_mask), (1, ~truth_mask)):
        index = np.flatnonzero(where.ravel())
        chosen = rng.choice(index, min(n_samples // 2, index.size), replace=False)
        labels.ravel()[chosen] = value
    return labels


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _calibrate(probability: Any, truth_mask: Any) -> float:
    """Foreground threshold of best Dice on the validation sections (as mito-em's card)."""
    return max(THRESHOLDS, key=lambda t: _dice(probability > t, truth_mask))


def mito_rf_train(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    from vemkit.ml.baselines import RandomForestPixelClassifier

    raw, truth = _mito_data(TRAIN_Z)
    start = time.perf_counter()
    image = _to_working(raw)
    sparse = _rf_sparse_labels(_mask_to_working(truth), cfg["rf_samples"])
    rf = RandomForestPixelClassifier(
        voxel_size=(MITO_VOXEL[0], MITO_WORKING_XY, MITO_WORKING_XY),
        n_estimators=cfg["rf_trees"],
        max_samples_per_class=None,
        n_jobs=cfg["threads"],
    )
    rf.fit(image, sparse)
    val_raw, val_truth = _mito_data(VAL_Z)
    val_p = rf.predict_proba(_to_working(val_raw))[list(rf.classes_).index(2)]
    threshold = _calibrate(val_p, _mask_to_working(val_truth))
    seconds = time.perf_counter() - start
    (work / "rf.pkl").write_bytes(pickle.dumps({"rf": rf, "threshold": threshold}))
    return {
        "train_s": seconds,
        "note": f"{int((sparse > 0).sum())} labelled pixels, {cfg['rf_trees']} trees, "
        f"{rf.n_features} features (sigmas {', '.join(f'{s:g}' for s in rf.sigmas_nm)} nm); "
        f"foreground threshold {threshold:g} chosen on sections 9-10",
    }


def mito_rf_predict(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    saved = pickle.loads((work / "rf.pkl").read_bytes())
    rf, threshold = saved["rf"], saved["threshold"]
    raw, truth = _mito_data(TEST_Z, cfg["mito_test_yx"])
    start = time.perf_counter()
    proba = rf.predict_proba(_to_working(raw))
    foreground_p = _foreground_to_native(proba[list(rf.classes_).index(2)], raw.shape)
    seconds = time.perf_counter() - start
    foreground = foreground_p > threshold
    objects = _cc_instances(foreground, _mito_min_size())
    row = {
        "method": f"RF pixel classifier (skimage + sklearn; CC instances of fg>{threshold:g})",
        **_score_mito(foreground, objects, truth),
        "predict_s": seconds,
        "n_voxels": int(raw.size),
    }
    return {"rows": [row]}


def _monai_network() -> Any:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        norm="batch",
    )


def _percentile_scale(image: Any, low: float, high: float) -> Any:
    return ((image.astype(np.float32) - low) / max(high - low, 1e-6)).astype(np.float32)


def _monai_infer(network: Any, image: Any) -> Any:
    """Foreground probability (Z, Y, X) of normalised planes, MONAI sliding windows."""
    import torch
    from monai.inferers import sliding_window_inference

    network.eval()
    out = np.empty(image.shape, np.float32)
    with torch.inference_mode():
        for z in range(image.shape[0]):
            plane = torch.from_numpy(np.ascontiguousarray(image[z]))[None, None]
            logits = sliding_window_inference(
                plane, roi_size=(512, 512), sw_batch_size=1, predictor=network, overlap=0.0625
            )
            out[z] = torch.softmax(logits, dim=1)[0, 1].numpy()
    return out


def _dice(a: Any, b: Any) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def mito_monai_train(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    import torch
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    raw, truth = _mito_data(TRAIN_Z)
    val_raw, val_truth = _mito_data(VAL_Z)
    start = time.perf_counter()
    low, high = (float(v) for v in np.percentile(raw, [1.0, 99.8]))
    image = _percentile_scale(_to_working(raw), low, high)
    mask = _mask_to_working(truth)
    val_image = _percentile_scale(_to_working(val_raw), low, high)
    val_mask = _mask_to_working(val_truth)
    patch, batch = 160, 8
    positives = np.argwhere(mask)

    def sample() -> tuple[Any, Any]:
        xs, ys = [], []
        for i in range(batch):
            if i % 2 == 0 and len(positives):  # RandCropByPosNegLabel(pos=1, neg=1)
                z, cy, cx = positives[rng.integers(len(positives))]
                y0 = int(np.clip(cy - patch // 2, 0, image.shape[1] - patch))
                x0 = int(np.clip(cx - patch // 2, 0, image.shape[2] - patch))
            else:
                z = rng.integers(image.shape[0])
                y0 = int(rng.integers(image.shape[1] - patch + 1))
                x0 = int(rng.integers(image.shape[2] - patch + 1))
            x = image[z, y0 : y0 + patch, x0 : x0 + patch]
            y = mask[z, y0 : y0 + patch, x0 : x0 + patch]
            k = int(rng.integers(4))
            x, y = np.rot90(x, k), np.rot90(y, k)
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            xs.append(x.copy())
            ys.append(y.copy())
        return (
            torch.from_numpy(np.stack(xs)[:, None]),
            torch.from_numpy(np.stack(ys)[:, None].astype(np.int64)),
        )

    network = _monai_network()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    budget = cfg["monai_minutes"] * 60.0
    best, best_state, threshold, iterations, history = -1.0, None, 0.5, 0, []

    def validate() -> None:
        nonlocal best, best_state, threshold
        probability = _monai_infer(network, val_image)
        chosen = _calibrate(probability, val_mask)
        dice = _dice(probability > chosen, val_mask)
        history.append((iterations, round(dice, 4)))
        if dice > best:
            best, threshold = dice, chosen
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}

    train_start = time.perf_counter()
    while time.perf_counter() - train_start < budget:
        network.train()
        x, y = sample()
        optimizer.zero_grad()
        loss = loss_fn(network(x), y)
        loss.backward()
        optimizer.step()
        iterations += 1
        if iterations % cfg["monai_val_every"] == 0:
            validate()
    validate()
    seconds = time.perf_counter() - start
    assert best_state is not None
    torch.save(
        {"state": best_state, "low": low, "high": high, "threshold": threshold},
        work / "monai.pt",
    )
    return {
        "train_s": seconds,
        "note": f"{iterations} iterations of batch {batch} in {cfg['monai_minutes']:g} min; "
        f"best validation Dice {best:.3f} (sections 9-10, threshold {threshold:g}) at "
        f"iteration {max(history, key=lambda h: h[1])[0]}",
    }


def mito_monai_predict(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    import torch

    saved = torch.load(work / "monai.pt", weights_only=True)
    network = _monai_network()
    network.load_state_dict(saved["state"])
    threshold = float(saved["threshold"])
    raw, truth = _mito_data(TEST_Z, cfg["mito_test_yx"])
    start = time.perf_counter()
    image = _percentile_scale(_to_working(raw), saved["low"], saved["high"])
    foreground_p = _foreground_to_native(_monai_infer(network, image), raw.shape)
    seconds = time.perf_counter() - start
    foreground = foreground_p > threshold
    objects = _cc_instances(foreground, _mito_min_size())
    row = {
        "method": f"MONAI U-Net (DiceCE; CC instances of fg>{threshold:g})",
        **_score_mito(foreground, objects, truth),
        "predict_s": seconds,
        "n_voxels": int(raw.size),
    }
    return {"rows": [row]}


# ---------------------------------------------------------------------------------------
# Task B workers


def _nuclei_scenes(kind: str, count: int) -> list[Any]:
    """Scenes of the nuclei-em recipe's seed range ``kind`` over its training backgrounds."""
    from vemkit.pipelines.nuclei_data import (
        TRAINING_BACKGROUNDS,
        load_background,
        make_nuclei_sample,
    )

    textures: dict[int, Any] = {}
    scenes = []
    for i in range(count):
        which = i % len(TRAINING_BACKGROUNDS)
        if which not in textures:
            textures[which] = load_background(TRAINING_BACKGROUNDS[which])
        scenes.append(make_nuclei_sample(textures[which], shape=NUCLEI_SCENE, seed=SEEDS[kind] + i))
    return scenes


def _stack_labels(volumes: list[Any]) -> Any:
    """Concatenate label volumes along z with unique ids (objects stay separate)."""
    out, offset = [], 0
    for volume in volumes:
        labels = volume.astype(np.uint32)
        out.append(np.where(labels > 0, labels + offset, 0).astype(np.uint32))
        offset += int(labels.max())
    return np.concatenate(out)


def _score_nuclei(pred: list[Any], truth: list[Any], voxel: tuple[float, ...]) -> dict[str, Any]:
    from vemkit.measure import evaluate

    scores = evaluate(
        _stack_labels(pred),
        _stack_labels(truth),
        voxel_size=voxel,
        instance=True,
        thresholds=(0.5,),
    )
    return {
        "iou": scores["iou"],
        "dice": scores["dice"],
        "f1_50": scores["f1_at"]["0.5"],
        "n_pred": scores["n_pred"],
        "n_gt": scores["n_gt"],
    }


def _stardist_check_data() -> tuple[Any, Any] | None:
    from vemkit.datasets import data_root

    root = data_root()
    if root is None or not (root / "stardist_nuclei_3d" / "raw.tif").exists():
        return None
    import tifffile

    folder = root / "stardist_nuclei_3d"
    raw = tifffile.imread(folder / "raw.tif").astype(np.float32)
    truth = tifffile.imread(folder / "nuclei_instances.tif")
    low, high = np.percentile(raw, [1.0, 99.8])
    inverted = 255.0 - np.clip((raw - low) / (high - low), 0, 1) * 255.0
    return inverted.astype(np.uint8), truth


def nuclei_vemkit_predict(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    from vemkit.geometry import VoxelSize
    from vemkit.pipelines.nuclei_data import WORKING_VOXEL_SIZE, segment_nuclei_distance
    from vemkit.pipelines.predict import load_predictor, predict_block

    network, spec, card = load_predictor("nuclei-em")
    inst = _card_instances(card)
    triaxis = bool((card.get("prediction") or {}).get("triaxis", False))
    options = {
        "seed_threshold_nm": float(inst.get("seed_threshold_nm", 1000.0)),
        "mask_threshold_nm": float(inst.get("mask_threshold_nm", 0.0)),
        "min_size_nm3": float(inst.get("min_size_nm3", 0.0)),
    }
    for key in ("smooth_sigma_nm", "min_seed_size_nm3"):
        if key in inst:
            options[key] = float(inst[key])

    def run(raw: Any, voxel: VoxelSize) -> tuple[Any, Any]:
        distance = predict_block(network, raw, spec=spec, voxel_size=voxel, triaxis=triaxis)[0]
        return distance, segment_nuclei_distance(distance, voxel_size=voxel, **options)

    scenes = _nuclei_scenes("held_out", cfg["nuclei_test_scenes"])
    seconds, preds, fg_pred = 0.0, [], []
    for scene in scenes:
        start = time.perf_counter()
        distance = predict_block(
            network, scene.raw, spec=spec, voxel_size=WORKING_VOXEL_SIZE, triaxis=triaxis
        )[0]
        seconds += time.perf_counter() - start
        fg_pred.append(distance > 0)
        preds.append(segment_nuclei_distance(distance, voxel_size=WORKING_VOXEL_SIZE, **options))
    truths = [s.nuclei for s in scenes]
    scores = _score_nuclei(preds, truths, WORKING_VOXEL_SIZE.as_tuple())
    rows = [
        {
            "method": f"vemkit nuclei-em (shipped; tri-axis={triaxis}, distance watershed)",
            **scores,
            "predict_s": seconds,
            "n_voxels": int(sum(s.raw.size for s in scenes)),
        }
    ]
    check = _stardist_check_data() if cfg["fluorescence_check"] else None
    checks = []
    if check is not None:
        image, truth = check
        voxel = VoxelSize(*STARDIST_CHECK_VOXEL)
        start = time.perf_counter()
        _, labels = run(image, voxel)
        checks.append(
            {
                "method": "vemkit nuclei-em",
                **_score_nuclei([labels], [truth], STARDIST_CHECK_VOXEL),
                "predict_s": time.perf_counter() - start,
                "n_voxels": int(image.size),
            }
        )
    return {"rows": rows, "checks": checks}


def _tf_threads(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _downsample(raw: Any, factor: int) -> Any:
    z, y, x = (s // factor for s in raw.shape)
    cut = raw[: z * factor, : y * factor, : x * factor].astype(np.float32)
    return cut.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5))


def _downsample_labels(labels: Any, factor: int) -> Any:
    h = factor // 2
    return np.ascontiguousarray(labels[h::factor, h::factor, h::factor])


def _resize_nearest(labels: Any, shape: tuple[int, ...]) -> Any:
    index = [
        np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.int64), m - 1)
        for n, m in zip(shape, labels.shape, strict=True)
    ]
    return labels[np.ix_(*index)]


def _normalize_sd(image: Any) -> Any:
    low, high = np.percentile(image, [1.0, 99.8])
    return ((image - low) / max(high - low, 1e-6)).astype(np.float32)


class _TimeLimit:
    """Keras callback: stop training once ``seconds`` have passed (checked every batch)."""

    def __new__(cls, seconds: float) -> Any:
        from tensorflow import keras

        class TimeLimit(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.start = time.perf_counter()
                self.batches = 0

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.batches += 1
                if time.perf_counter() - self.start > seconds:
                    self.model.stop_training = True

        return TimeLimit()


def nuclei_stardist_train(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    _tf_threads(cfg["threads"])
    from stardist import Rays_GoldenSpiral
    from stardist.models import Config3D, StarDist3D

    f = NUCLEI_STARDIST_FACTOR
    start = time.perf_counter()
    train = _nuclei_scenes("train", cfg["nuclei_train_scenes"])
    val = train[:1] if cfg["quick"] else _nuclei_scenes("validation", 2)
    x = [_normalize_sd(_downsample(s.raw, f)) for s in train]
    y = [_downsample_labels(s.nuclei, f).astype(np.uint16) for s in train]
    xv = [_normalize_sd(_downsample(s.raw, f)) for s in val]
    yv = [_downsample_labels(s.nuclei, f).astype(np.uint16) for s in val]
    data_s = time.perf_counter() - start
    side = min(x[0].shape)
    config = Config3D(
        rays=Rays_GoldenSpiral(64, anisotropy=(1, 1, 1)),
        grid=(1, 1, 1),
        anisotropy=(1, 1, 1),
        n_channel_in=1,
        train_patch_size=(side, side, side),
        train_batch_size=2,
        unet_n_depth=2,
        unet_n_filter_base=16,
        train_epochs=10_000,
        train_steps_per_epoch=20,
        train_tensorboard=False,
    )
    model = StarDist3D(config, name="stardist", basedir=str(work))
    model.prepare_for_training()
    limit = _TimeLimit(cfg["stardist_minutes"] * 60.0)
    model.callbacks.append(limit)
    model.train(x, y, validation_data=(xv, yv), epochs=10_000, steps_per_epoch=20)
    if cfg["stardist_optimize_thresholds"]:
        model.optimize_thresholds(xv, yv)
    seconds = time.perf_counter() - start
    return {
        "train_s": seconds,
        "note": f"{len(train)} training scenes at {100 * f} nm ({x[0].shape}), "
        f"{limit.batches} batches of 2 in {cfg['stardist_minutes']:g} min "
        f"(scene generation {data_s:.0f} s included); 64 rays, U-Net depth 2, 16 filters; "
        + (
            "thresholds optimised on 2 validation scenes"
            if cfg["stardist_optimize_thresholds"]
            else "default thresholds (prob 0.5, NMS 0.4)"
        ),
    }


def nuclei_stardist_predict(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    _tf_threads(cfg["threads"])
    from stardist.models import StarDist3D

    from vemkit.pipelines.nuclei_data import WORKING_VOXEL_SIZE

    model = StarDist3D(None, name="stardist", basedir=str(work))
    f = NUCLEI_STARDIST_FACTOR
    scenes = _nuclei_scenes("held_out", cfg["nuclei_test_scenes"])
    seconds, preds = 0.0, []
    for scene in scenes:
        start = time.perf_counter()
        small, _ = model.predict_instances(
            _normalize_sd(_downsample(scene.raw, f)), verbose=False, show_tile_progress=False
        )
        preds.append(_resize_nearest(small, scene.raw.shape))
        seconds += time.perf_counter() - start
    truths = [s.nuclei for s in scenes]
    rows = [
        {
            "method": f"StarDist 3D (from scratch at {100 * f} nm)",
            **_score_nuclei(preds, truths, WORKING_VOXEL_SIZE.as_tuple()),
            "predict_s": seconds,
            "n_voxels": int(sum(s.raw.size for s in scenes)),
        }
    ]
    check = _stardist_check_data() if cfg["fluorescence_check"] else None
    checks = []
    if check is not None:
        from vemkit.ml.predict import resample_to_shape

        image, truth = check
        target = tuple(
            round(n * s / (100.0 * f))
            for n, s in zip(image.shape, STARDIST_CHECK_VOXEL, strict=True)
        )
        start = time.perf_counter()
        small, _ = model.predict_instances(
            _normalize_sd(resample_to_shape(image.astype(np.float32), target, order=1)),
            verbose=False,
            show_tile_progress=False,
        )
        labels = _resize_nearest(small, image.shape)
        checks.append(
            {
                "method": "StarDist 3D (phantom-trained)",
                **_score_nuclei([labels], [truth], STARDIST_CHECK_VOXEL),
                "predict_s": time.perf_counter() - start,
                "n_voxels": int(image.size),
            }
        )
    return {"rows": rows, "checks": checks}


# ---------------------------------------------------------------------------------------
# orchestration

WORKERS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "mito/vemkit/predict": mito_vemkit_predict,
    "mito/rf/train": mito_rf_train,
    "mito/rf/predict": mito_rf_predict,
    "mito/monai/train": mito_monai_train,
    "mito/monai/predict": mito_monai_predict,
    "nuclei/vemkit/predict": nuclei_vemkit_predict,
    "nuclei/stardist/train": nuclei_stardist_train,
    "nuclei/stardist/predict": nuclei_stardist_predict,
}

#: (task, method, label, packages it needs)
METHODS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("mito", "vemkit", "vemkit mito-em", ("torch",)),
    ("mito", "rf", "RF pixel classifier", ("sklearn", "skimage")),
    ("mito", "monai", "MONAI U-Net", ("monai",)),
    ("nuclei", "vemkit", "vemkit nuclei-em", ("torch",)),
    ("nuclei", "stardist", "StarDist 3D", ("stardist", "tensorflow")),
]


def _progress(message: str) -> None:
    """Print a progress line on a terminal only (run.py puts all output in the report)."""
    if sys.stderr.isatty():
        print(f"  {message}", file=sys.stderr, flush=True)


def _missing(packages: tuple[str, ...]) -> list[str]:
    return [p for p in packages if importlib.util.find_spec(p) is None]


def _run_worker(key: str, cfg: dict[str, Any], work: Path) -> tuple[int, float, float, str, Any]:
    """Run one stage in a fresh process; exit code, wall s, peak RSS MiB, log tail, result."""
    out = work / (key.replace("/", "-") + ".json")
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(cfg["threads"])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, __file__, "--worker", key, "--config", json.dumps(cfg)]
    command += ["--workdir", str(work), "--result", str(out)]
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        log.seek(0)
        tail = "\n".join(log.read().strip().splitlines()[-8:])
    result = json.loads(out.read_text()) if code == 0 and out.exists() else None
    return code, wall, usage.ru_maxrss / 1024.0, tail, result


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], key: str) -> str:
    interval = row.get(f"{key}_ci")
    if not interval or interval[0] is None:
        return _fmt(row[key])
    return f"{_fmt(row[key])} [{_fmt(interval[0], 2)}, {_fmt(interval[1], 2)}]"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| method | IoU | Dice | F1@0.5 | objects (pred / true) | train s | "
        "predict MVoxel/s | peak RSS MiB (train / predict) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['method']} | {r['skipped']} | | | | | | |")
            continue
        speed = r["n_voxels"] / max(r["predict_s"], 1e-9) / 1e6
        train = _fmt(r.get("train_s"), 0) if r.get("train_s") is not None else "— (shipped)"
        rss_train = _fmt(r.get("train_rss"), 0) if r.get("train_rss") else "—"
        lines.append(
            f"| {r['method']} | {_with_ci(r, 'iou')} | {_fmt(r['dice'])} | "
            f"{_with_ci(r, 'f1_50')} | "
            f"{r['n_pred']} / {r['n_gt']} | {train} | {speed:.3f} | "
            f"{rss_train} / {_fmt(r.get('predict_rss'), 0)} |"
        )
    return lines


def orchestrate(cfg: dict[str, Any], tasks: list[str]) -> int:
    from vemkit.datasets import data_root

    failures = 0
    results: dict[str, list[dict[str, Any]]] = {"mito": [], "nuclei": []}
    checks: list[dict[str, Any]] = []
    notes: dict[str, list[str]] = {"mito": [], "nuclei": []}
    root = data_root()
    have_mito = root is not None and (root / MITO_DATASET / "dataset.json").exists()
    with tempfile.TemporaryDirectory(prefix="vemkit-bench-models-") as tmp:
        work = Path(tmp)
        for task, method, label, packages in METHODS:
            if task not in tasks:
                continue
            missing = _missing(packages)
            if task == "mito" and not have_mito:
                missing.append(f"../shared/data/{MITO_DATASET}")
            if missing:
                results[task].append(
                    {"method": label, "skipped": f"skipped: {', '.join(missing)} not available"}
                )
                continue
            train_info: dict[str, Any] = {}
            if f"{task}/{method}/train" in WORKERS:
                _progress(f"{task}: training {label} ...")
                code, _, rss, tail, result = _run_worker(f"{task}/{method}/train", cfg, work)
                if result is None:
                    failures += 1
                    results[task].append({"method": label, "skipped": f"training failed ({code})"})
                    notes[task].append(f"{label} training failed (exit {code}): `{tail[-300:]}`")
                    continue
                train_info = {"train_s": result["train_s"], "train_rss": rss}
                notes[task].append(f"{label}: {result['note']}.")
            _progress(f"{task}: predicting with {label} ...")
            code, _, rss, tail, result = _run_worker(f"{task}/{method}/predict", cfg, work)
            if result is None:
                failures += 1
                results[task].append({"method": label, "skipped": f"prediction failed ({code})"})
                notes[task].append(f"{label} prediction failed (exit {code}): `{tail[-300:]}`")
                continue
            for row in result["rows"]:
                results[task].append({**row, **train_info, "predict_rss": rss})
            for row in result.get("checks", []):
                checks.append({**row, **train_info, "predict_rss": rss})

    mode = "quick" if cfg["quick"] else "full"
    threads = cfg["threads"]
    lines: list[str] = []
    if "mito" in tasks:
        y0, y1 = cfg["mito_test_yx"]
        lines += [
            "### Task A — mitochondria, Drosophila VNC ssTEM (held-out sections 11–14)",
            "",
            f"Scored on stack1 sections 11–14, y/x {y0}:{y1} ({4}×{y1 - y0}×{y1 - y0} voxels "
            "at 50×4.6×4.6 nm); training data sections 0–8 (validation 9–10). "
            f"MONAI budget {cfg['monai_minutes']:g} min (the shipped mito-em trained for "
            f"{_shipped_train_minutes('mito-em')} min; recipe cap {cfg['recipe_minutes']:g} "
            f"min); {mode} mode, {threads} thread(s).",
            "",
            *_table(results["mito"]),
            "",
            "In brackets: 95% spatial block-bootstrap intervals (16 blocks of the test sections, "
            "`vemkit.measure.bootstrap_scores`) — how far IoU and F1 could move on another "
            "region like this one; one object more or less matched moves F1 by about "
            "2 / (predicted + true objects).",
            "",
            *[f"- {n}" for n in notes["mito"]],
            "",
        ]
    if "nuclei" in tasks:
        lines += [
            "### Task B — nuclei, synthetic nuclei in real EM backgrounds (held-out seeds)",
            "",
            f"{cfg['nuclei_test_scenes']} scene(s) of {'×'.join(map(str, NUCLEI_SCENE))} voxels "
            "at 100 nm (nuclei-em held-out seeds 30000+, training backgrounds); StarDist "
            f"trained on {cfg['nuclei_train_scenes']} scene(s) of the nuclei-em training seeds "
            f"for {cfg['stardist_minutes']:g} min (nuclei-em: "
            f"{_shipped_train_minutes('nuclei-em')} min of training). Foreground IoU/Dice "
            "from the instances.",
            "",
            *_table(results["nuclei"]),
            "",
            *[f"- {n}" for n in notes["nuclei"]],
            "",
        ]
        if checks:
            lines += [
                "Cross-domain check, real fluorescence `stardist_nuclei_3d` (31×61×57, voxel "
                "size assumed 800×400×400 nm, inverted): neither model saw fluorescence.",
                "",
                *_table(checks),
                "",
            ]
    lines.append(
        "Peak RSS is the whole worker process (Python, libraries, data, model). "
        "Throughput counts input voxels over prediction time (resampling included)."
    )
    print("\n".join(lines))
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="crops and tiny budgets")
    parser.add_argument("--task", choices=("mito", "nuclei", "all"), default="all")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--monai-minutes", type=float, default=None, help="MONAI budget")
    parser.add_argument("--stardist-minutes", type=float, default=None, help="StarDist budget")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        cfg = json.loads(args.config)
        if "stardist" not in args.worker:
            _set_threads(cfg["threads"])
        _save(args.result, WORKERS[args.worker](cfg, args.workdir))
        return 0
    tasks = ["mito", "nuclei"] if args.task == "all" else [args.task]
    return orchestrate(settings(args.quick, args), tasks)


if __name__ == "__main__":
    sys.exit(main())
