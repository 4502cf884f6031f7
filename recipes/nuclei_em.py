"""Train, evaluate and ship the ``nuclei-em`` model (nucleus signed distance, webKnossos style).

    .venv/bin/python recipes/nuclei_em.py --threads 2 --output models/nuclei-em --ship

No real EM nucleus ground truth exists in ../shared/data (neuropil crops only), so the
model is trained on synthetic nuclei (vemkit.synth.nuclei) embedded in the real EM
volumes of ../shared/data used as backgrounds (vemkit.pipelines.nuclei_data). Two raw
volumes are never shown in training and give the "unseen EM context" score.

Model: a 2D U-Net (batch norm) regressing tanh(signed distance / 3 µm) on planes of
isotropic 100 nm voxels, trained on z, y and x planes of 3D scenes and used tri-axially
(z, y and x planes averaged). Instances: distance_watershed with seeds at 1 µm and the
mask at 0 (the webKnossos defaults).

Outputs: OUTPUT/model/ (model.safetensors + model.json with the card), OUTPUT/metrics.json,
OUTPUT/checkpoints/; with --ship the model folder is also copied to
src/vemkit/ml/zoo/nuclei-em/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

import vemkit
from vemkit.datasets import data_root, dataset_info
from vemkit.geometry import VoxelSize
from vemkit.ml import (
    Augmenter,
    RegressionLoss,
    UNetConfig,
    build_network,
    count_parameters,
    fit_normalization,
    save_model,
    train,
)
from vemkit.ml.checkpoint import load_weights
from vemkit.pipelines.nuclei_data import (
    CLIP_NM,
    MASK_THRESHOLD_NM,
    SEED_THRESHOLD_NM,
    TRAINING_BACKGROUNDS,
    UNSEEN_BACKGROUNDS,
    WORKING_VOXEL_SIZE,
    NucleusPlanes,
    load_background,
    make_nuclei_sample,
    score_nuclei,
    segment_nuclei_distance,
    summarise_nuclei_scores,
)
from vemkit.pipelines.predict import ModelSpec, predict_block
from vemkit.synth.nuclei import NucleiSceneConfig

log = logging.getLogger("nuclei_em")

RECIPE: dict[str, Any] = {
    "name": "nuclei-em",
    "voxel_size_nm": list(WORKING_VOXEL_SIZE.as_tuple()),
    "clip_nm": CLIP_NM,
    "scene_shape": [128, 128, 128],
    "train_scenes": 80,
    "validation_scenes": 6,
    "synthetic_background_share": 1 / 6,
    "background_scales": [0.5, 0.7, 1.0, 1.4],
    # At 100 nm a voxel averages ~1000 voxels of the raw 10 nm data: detector noise is
    # weak there, so the generator's noise range (made for 10-100 nm) is narrowed.
    "scene_config": {"noise_sigma": [0.0, 0.03]},
    "network": {"dims": 2, "depth": 5, "base_channels": 8, "norm": "batch"},
    "patch_shape": [96, 96],
    "batch_size": 16,
    "samples_per_epoch": 640,
    "epochs": 40,
    "validation_samples": 96,
    "foreground_fraction": 0.7,
    "optimizer": {"name": "adamw", "learning_rate": 0.002, "weight_decay": 1e-4},
    "schedule": "cosine to 2% of the learning rate",
    "loss": "smooth_l1 (beta 0.1) on tanh(output) vs distance / clip_nm",
    # Intensity variation comes from the scene generator; extra intensity augmentation
    # (noise above all) shifted the batch-norm statistics away from clean inputs.
    "augment": {"flip": True, "rot90": True, "contrast_p": 0.0, "gamma_p": 0.0, "noise_p": 0.0},
    # "Precise BN": after training, the running statistics are re-estimated on this many
    # clean training batches (momentum-averaged statistics were stale at the end).
    "batch_norm_recalibration_batches": 40,
    "seeds": {"train": 10_000, "validation": 20_000, "held_out": 30_000, "unseen": 40_000},
    "evaluation": {
        "held_out_scenes": 8,
        "unseen_scenes": 8,
        "triaxis": True,
        "seed_threshold_nm": SEED_THRESHOLD_NM,
        "mask_threshold_nm": MASK_THRESHOLD_NM,
        "stardist_assumed_voxel_size_nm": [800.0, 400.0, 400.0],
    },
    "prediction": {"tile": 512, "overlap": 0.125, "batch_size": 4},
    "seed": 0,
}

CARD_NOTES = [
    "Trained on synthetic nuclei embedded in real EM backgrounds; no real EM nuclei ground "
    "truth was available (none of the volumes in ../shared/data contains a nucleus), so "
    "every score below is measured on synthetic nuclei, and accuracy on real nuclei is "
    "unmeasured. Expect to fine-tune on a few annotated real nuclei.",
    "Expects isotropic 100 nm voxels: `vemkit predict` resamples any input to 100 x 100 x 100 "
    "nm (give the input voxel size). Run it tri-axially (--triaxis: z, y and x planes "
    "averaged); z-planes alone see only a section of each nucleus.",
    "Normalisation: fixed percentile mapping fitted on the training scenes (uint8 "
    "intensities, see `normalization`); rescale other bit depths to 0-255 first.",
    "Output: tanh(network) x 3000 nm = signed distance to the nucleus border, positive "
    "inside, clipped to +/-3 um. Instances: vemkit.segmentation.distance_watershed with "
    "seed_threshold_nm=1000 and mask_threshold_nm=0.",
    "Backgrounds are small neuropil crops (0.5-5 um at 100 nm), tiled with random flips "
    "and rotations; real tissue around nuclei (somata, vessels, myelin) is only imitated "
    "by the generator's cell bodies and vessel-like distractors.",
    "The 'unseen backgrounds' are unseen volumes, not unseen modalities: NeuroProof is "
    "FIB-SEM of fly medulla like the gala training crops, ISBI test is ssTEM of the same "
    "kind as ISBI train.",
]


def _machine(threads: int) -> dict[str, Any]:
    return {
        "device": "cpu",
        "torch_threads": threads,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _backgrounds(sources: Any, scales: list[float]) -> dict[str, dict[float, np.ndarray]]:
    out: dict[str, dict[float, np.ndarray]] = {}
    for source in sources:
        out[source.name] = {s: load_background(source, scale=s) for s in scales}
        log.info(
            "background %s: %s", source.name, {s: a.shape for s, a in out[source.name].items()}
        )
    return out


def _scenes(
    names: list[str | None],
    textures: dict[str, dict[float, np.ndarray]],
    *,
    count: int,
    base_seed: int,
    scales: list[float] | None,
    shape: tuple[int, int, int],
    scene_config: dict[str, Any],
) -> list[Any]:
    """``count`` scenes; scene i uses background names[i % len(names)] (None: synthetic)."""
    samples = []
    config = NucleiSceneConfig(**scene_config)
    for i in range(count):
        seed = base_seed + i
        name = names[i % len(names)]
        texture = None
        if name is not None:
            rng = np.random.default_rng([seed, 7])
            scale = float(rng.choice(scales)) if scales else 1.0
            texture = textures[name][scale]
        samples.append(make_nuclei_sample(texture, shape=shape, seed=seed, config=config))
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


#: Instance post-processing variants scored from the same predicted distance maps. The
#: first is the model card's default (webKnossos: seeds > 1 µm, mask > 0, nothing else).
POSTPROCESSING: dict[str, dict[str, float]] = {
    "seed1um_mask0": {},
    "seed1um_mask0_min_size_1um3": {"min_size_nm3": 1e9},
    "seed1um_mask0_min_seed_0.1um3_min_size_1um3": {"min_seed_size_nm3": 1e8, "min_size_nm3": 1e9},
    "seed1um_mask0_min_seed_1um3_min_size_2um3": {"min_seed_size_nm3": 1e9, "min_size_nm3": 2e9},
}
DEFAULT_POSTPROCESSING = "seed1um_mask0"


def _predict_labels(
    network: torch.nn.Module, spec: ModelSpec, raw: np.ndarray, voxel_size: VoxelSize
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    distance = predict_block(network, raw, spec=spec, voxel_size=voxel_size, triaxis=True)[0]
    labels = {
        name: segment_nuclei_distance(
            distance,
            voxel_size=voxel_size,
            seed_threshold_nm=SEED_THRESHOLD_NM,
            mask_threshold_nm=MASK_THRESHOLD_NM,
            **options,
        )
        for name, options in POSTPROCESSING.items()
    }
    return distance, labels


def _evaluate_scenes(
    network: torch.nn.Module, spec: ModelSpec, samples: list[Any], names: list[str]
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in POSTPROCESSING}
    for sample, name in zip(samples, names, strict=True):
        start = time.perf_counter()
        _, labels = _predict_labels(network, spec, sample.raw, WORKING_VOXEL_SIZE)
        seconds = time.perf_counter() - start
        for variant, variant_labels in labels.items():
            row = score_nuclei(variant_labels, sample.nuclei)
            row.update(background=name, seed=sample.plan.seed, seconds=round(seconds, 1))
            rows[variant].append(row)
        log.info(
            "  %s seed %d: gt %d, pred %s, F1@0.5 %s (%.0f s)",
            name,
            sample.plan.seed,
            rows[DEFAULT_POSTPROCESSING][-1]["n_gt"],
            [rows[v][-1]["n_pred"] for v in POSTPROCESSING],
            [round(rows[v][-1]["f1_50"], 3) for v in POSTPROCESSING],
            seconds,
        )
    return {v: (summarise_nuclei_scores(r), r) for v, r in rows.items()}


def _stardist(network: torch.nn.Module, spec: ModelSpec) -> dict[str, Any]:
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
        distance, labels = _predict_labels(network, spec, image.astype(np.uint8), voxel)
        result[variant] = {
            "seconds": round(time.perf_counter() - start, 1),
            "predicted_inside_fraction": round(float((distance > 0).mean()), 4),
            "true_inside_fraction": round(float((truth > 0).mean()), 4),
            **{
                name: summarise_nuclei_scores([score_nuclei(found, truth)])
                for name, found in labels.items()
            },
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    recipe = json.loads(json.dumps(RECIPE))
    if args.quick:
        recipe.update(train_scenes=12, validation_scenes=2, epochs=2, samples_per_epoch=64)
        recipe["evaluation"].update(held_out_scenes=1, unseen_scenes=1)
    output = Path(args.output)
    start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    shape = tuple(recipe["scene_shape"])
    scales = list(recipe["background_scales"])
    seeds = recipe["seeds"]

    textures = _backgrounds(TRAINING_BACKGROUNDS, scales)
    unseen = _backgrounds(UNSEEN_BACKGROUNDS, [1.0])
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
    train_seconds = 0.0
    result = None
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
        )
        val_samples = _scenes(
            train_names,
            textures,
            count=recipe["validation_scenes"],
            base_seed=seeds["validation"],
            scales=scales,
            shape=shape,
            scene_config=recipe["scene_config"],
        )
        generation_seconds = time.perf_counter() - t0
        log.info(
            "generated %d + %d scenes in %.0f s",
            len(train_samples),
            len(val_samples),
            generation_seconds,
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
        train_data = NucleusPlanes(
            train_samples,
            patch_shape=recipe["patch_shape"],
            samples_per_epoch=recipe["samples_per_epoch"],
            normalization=normalization,
            augment=augment,
            foreground_fraction=recipe["foreground_fraction"],
            seed=recipe["seed"],
        )
        val_data = NucleusPlanes(
            val_samples,
            patch_shape=(128, 128),
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
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=recipe["epochs"], eta_min=opt["learning_rate"] * 0.02
        )
        card = {
            "name": recipe["name"],
            "normalization": normalization.to_dict(),
            "voxel_size_nm": recipe["voxel_size_nm"],
        }
        log.info(
            "training: %d parameters, %d batches per epoch",
            count_parameters(network),
            len(train_loader),
        )
        t0 = time.perf_counter()
        result = train(
            network,
            train_loader,
            val_loader,
            RegressionLoss(kind="smooth_l1", beta=0.1, activation="tanh"),
            optimizer,
            epochs=recipe["epochs"],
            checkpoint_dir=output / "checkpoints",
            config=config,
            card=card,
            metric_fn=_iou_metric,
            scheduler=scheduler,
            seed=recipe["seed"],
        )
        train_seconds = time.perf_counter() - t0
        # The last epoch (end of the cosine schedule) with re-estimated batch-norm
        # statistics is the model; the per-epoch validation used stale statistics.
        load_weights(result.last_checkpoint, network)
        calibration = NucleusPlanes(
            train_samples,
            patch_shape=recipe["patch_shape"],
            samples_per_epoch=recipe["batch_size"] * recipe["batch_norm_recalibration_batches"],
            normalization=normalization,
            foreground_fraction=recipe["foreground_fraction"],
            seed=recipe["seed"] + 2,
        )
        _recalibrate_batch_norm(network, calibration, batch_size=recipe["batch_size"])
        validation_iou = _validation_iou(network, val_loader)
        log.info("validation mask IoU after recalibration: %.4f", validation_iou)
        del train_samples
    else:
        from vemkit.ml import Normalization, read_model_info

        _, old_card = read_model_info(model_dir)
        load_weights(model_dir, network)
        normalization = Normalization.from_dict(old_card["normalization"])
        generation_seconds = 0.0
    network.eval()

    card = build_card(recipe, normalization.to_dict(), config)
    training_info: dict[str, Any] = {}
    if result is not None:
        training_info = {
            "epochs_run": len(result.history),
            "model": "last epoch, batch-norm statistics re-estimated on clean training planes",
            "validation_mask_iou": round(validation_iou, 4),
            "generation_seconds": round(generation_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "started": started,
            "machine": _machine(args.threads),
            "history": [
                {
                    "epoch": r.epoch,
                    "train_loss": round(r.train_loss, 5),
                    "val_loss": None if r.val_loss is None else round(r.val_loss, 5),
                    "val_metric": None if r.val_metric is None else round(r.val_metric, 5),
                    "seconds": round(r.seconds, 1),
                }
                for r in result.history
            ],
        }
        # Save now, so that a failed evaluation can be redone with --skip-training.
        save_model(model_dir, network, config, {**card, "training": training_info})
    else:
        training_info = dict(old_card.get("training", {}))
    spec = ModelSpec.from_card(config, card, name=recipe["name"])
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
    )
    log.info("evaluating held-out seeds (training backgrounds)")
    held = _evaluate_scenes(
        network,
        spec,
        held_samples,
        [held_names[i % len(held_names)] for i in range(len(held_samples))],
    )
    log.info("held-out: %s", {v: h[0] for v, h in held.items()})
    log.info("evaluating unseen backgrounds")
    unseen_scores = _evaluate_scenes(
        network,
        spec,
        unseen_samples,
        [unseen_names[i % len(unseen_names)] for i in range(len(unseen_samples))],
    )
    log.info("unseen: %s", {v: h[0] for v, h in unseen_scores.items()})
    root = data_root()
    has_stardist = root is not None and (root / "stardist_nuclei_3d").is_dir()
    stardist = _stardist(network, spec) if has_stardist and not args.quick else None

    licenses = sorted({dataset_info(s.dataset).license for s in TRAINING_BACKGROUNDS})
    card["license"] = {
        "training_data": licenses,
        "note": "the weights derive from these backgrounds (and synthetic nuclei); their "
        "license terms apply to the weights' use",
    }
    default = DEFAULT_POSTPROCESSING
    card["metrics"] = {
        "postprocessing": f"{default}: distance_watershed(seed_threshold_nm=1000, "
        "mask_threshold_nm=0), the card's default",
        "held_out": _headline(held[default][0]),
        "unseen_backgrounds": _headline(unseen_scores[default][0]),
        "stardist_nuclei_3d": stardist,
        "postprocessing_variants": {
            name: {
                "options": POSTPROCESSING[name],
                "held_out": held[name][0],
                "unseen_backgrounds": unseen_scores[name][0],
            }
            for name in POSTPROCESSING
        },
        "protocol": (
            f"{ev['held_out_scenes']} held-out synthetic scenes over the training backgrounds "
            f"(new seeds) and {ev['unseen_scenes']} over the never-seen backgrounds, each "
            f"{shape[0]}x{shape[1]}x{shape[2]} voxels of 100 nm with 1-4 nuclei (3-15 um, "
            "some cut by the border); predicted tri-axially through vemkit.pipelines.predict."
            "predict_block, instances by distance_watershed(seed 1000 nm, mask 0 nm); object "
            "F1 at IoU 0.5 / 0.75 and Dice pooled over the scenes, mean IoU of the pairs "
            "matched at 0.5."
        ),
        "per_scene": {
            "held_out": held[default][1],
            "unseen_backgrounds": unseen_scores[default][1],
        },
    }
    card["training"] = training_info
    card["training"]["total_seconds"] = round(time.perf_counter() - start, 1)
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
            "(tri-axis); instances by seeded watershed with seeds deeper than 1 um and the "
            "mask at 0 (webKnossos nuclei classifier recipe)."
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
        "instances": {
            "instances": "distance_watershed",
            "seed_threshold_nm": recipe["evaluation"]["seed_threshold_nm"],
            "mask_threshold_nm": recipe["evaluation"]["mask_threshold_nm"],
            "min_size_nm3": 0.0,
        },
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
            }
        ],
        "test_data": [
            {
                "held_out_seeds": [s.name for s in TRAINING_BACKGROUNDS],
                "unseen_backgrounds": [s.name for s in UNSEEN_BACKGROUNDS],
                "stardist_nuclei_3d": "fluorescence, not EM; sanity check only",
            }
        ],
        "recipe": recipe,
        "command": (
            ".venv/bin/python recipes/nuclei_em.py --threads 2 --output models/nuclei-em --ship"
        ),
        "notes": CARD_NOTES,
        "vemkit_version": vemkit.__version__,
    }


if __name__ == "__main__":
    sys.exit(main())
