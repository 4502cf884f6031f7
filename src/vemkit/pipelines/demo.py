"""``vemkit demo``: phantom → dataset → segmentation → scores against the exact truth."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output
from vemkit.io.dataset import Dataset
from vemkit.measure.metrics import evaluate
from vemkit.pipelines.phantom import phantom_config, write_phantom_dataset
from vemkit.pipelines.segment import load_segment_settings, segment_volume
from vemkit.pipelines.sparse_demo import min_object_nm3, train_sparse_model
from vemkit.progress import Progress
from vemkit.segmentation import segment_mitochondria_classical, segment_nuclei_classical
from vemkit.synth import PhantomConfig
from vemkit.viz import save_orthoslices

__all__ = ["DemoResult", "run_demo"]

log = logging.getLogger(__name__)

Segmenter = Callable[..., NDArray[np.integer]]

# What the demo segments today and how: the best the project can do without a trained
# model. Later pipelines (trained models) replace these entries.
_METHODS: dict[str, tuple[str, Segmenter]] = {
    "nuclei": ("classical: smoothing, Otsu, distance watershed", segment_nuclei_classical),
    "mitochondria": (
        "classical: local darkness threshold, opening, distance split",
        segment_mitochondria_classical,
    ),
}


def _expected_sizes(config: PhantomConfig) -> dict[str, dict[str, float]]:
    """Object sizes a biologist would give for their sample; here the phantom's nominal ranges.

    The classical methods need the expected size (e.g. nuclei ≥ 3 µm in real cells); small
    demo phantoms scale anatomy to their field of view, so the demo passes the phantom's
    nominal ranges — the same prior knowledge a user has about their cell type.
    """
    resolved = config.resolved()
    nucleus_lo, _ = resolved.nucleus_diameter_nm
    mito_lo, mito_hi = resolved.mitochondrion_width_nm
    return {
        "nuclei": {"min_diameter_nm": float(nucleus_lo)},
        "mitochondria": {"min_diameter_nm": float(mito_lo), "max_diameter_nm": float(mito_hi)},
    }


@dataclass
class DemoResult:
    """Where the demo wrote its outputs and how well it did."""

    output_dir: Path
    phantom: Path
    segmentation: Path
    preview: Path
    summary: Path
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _score_summary(scores: dict[str, Any]) -> dict[str, Any]:
    """Pick the few numbers worth printing from a full evaluation."""
    f1 = scores.get("f1_at", {})
    return {
        "n_pred": scores.get("n_pred"),
        "n_gt": scores.get("n_gt"),
        "dice": scores.get("dice"),
        "f1_at_0.5": f1.get("0.5"),
        "f1_at_0.7": f1.get("0.7"),
        "hausdorff_95_nm": scores.get("hausdorff_95_nm"),
    }


def run_demo(
    output_dir: str | os.PathLike[str],
    *,
    size: int = 128,
    seed: int = 0,
    preset: str = "fibsem",
    train: bool = True,
    epochs: int = 10,
    every_n_planes: int = 10,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the whole demo into a new folder ``output_dir``.

    For nuclei and mitochondria it runs the classical baseline and — unless ``train`` is
    false — trains a small 2D U-Net from every ``every_n_planes``-th plane of the phantom's
    truth (sparse labels, as a biologist would paint them) and runs the organelle pipeline
    (:func:`vemkit.pipelines.segment.segment_volume`, as ``vemkit segment``) with that
    model on the whole volume. Both are scored against the full truth.

    Writes ``phantom.zarr`` (raw + exact truth), ``segmentation.zarr`` (raw + predicted
    labels of the best method per organelle), ``models/`` (the trained models),
    ``segment/NAME.zarr`` (each pipeline's dataset: labels, table, seeds, meshes),
    ``preview.png`` (orthogonal slices with outlines) and ``summary.json``.
    """
    out = Path(output_dir)
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        phantom = write_phantom_dataset(
            tmp / "phantom.zarr", size=size, seed=seed, preset=preset, progress=progress
        )
        seconds["phantom"] = time.perf_counter() - start
        raw_layer = phantom.layer("raw")
        raw = raw_layer.read()
        voxel_size: VoxelSize = raw_layer.voxel_size

        segmentation = Dataset.create(tmp / "segmentation.zarr", raw_layer, progress=progress)
        sizes = _expected_sizes(phantom_config(size, seed=seed, preset=preset))
        best: dict[str, NDArray[np.integer]] = {}
        scores: dict[str, dict[str, Any]] = {}
        for name, (method, segment) in _METHODS.items():
            truth = phantom.layer(f"labels/{name}").read()
            start = time.perf_counter()
            baseline = segment(raw, voxel_size=voxel_size, **sizes[name])
            seconds[f"{name}_classical"] = time.perf_counter() - start
            full = evaluate(baseline, truth, voxel_size=voxel_size)
            scores[name] = {"classical": {"method": method, **_score_summary(full)}}
            best[name] = baseline
            if not train:
                continue
            start = time.perf_counter()
            model, facts = train_sparse_model(
                image=tmp / "phantom.zarr" / "raw",
                labels=tmp / "phantom.zarr" / "labels" / name,
                name=f"{name}-sparse",
                voxel_size=voxel_size,
                workdir=tmp / "models",
                n_planes=raw.shape[0],
                every_n_planes=every_n_planes,
                epochs=epochs,
                seed=seed,
                min_diameter_nm=sizes[name]["min_diameter_nm"],
                progress=progress,
            )
            seconds[f"{name}_train"] = time.perf_counter() - start
            # the organelle pipeline (`vemkit segment`) with the model just trained
            start = time.perf_counter()
            settings = load_segment_settings(
                name,
                model=str(model),
                triaxis=False,  # as trained: z planes of the phantom
                min_size_nm3=min_object_nm3(sizes[name]["min_diameter_nm"]),
            )
            (tmp / "segment").mkdir(exist_ok=True)
            result = segment_volume(
                name,
                tmp / "phantom.zarr" / "raw",
                tmp / "segment" / f"{name}.zarr",
                settings,
                progress=progress,
            )
            trained = Dataset.open(result.output).layer(result.labels_layer).read()
            seconds[f"{name}_pipeline"] = time.perf_counter() - start
            full = evaluate(trained, truth, voxel_size=voxel_size)
            scores[name]["sparse_unet"] = {
                "method": f"vemkit segment {name} with a 2D U-Net trained from every "
                f"{every_n_planes}th plane",
                **facts,
                "pipeline_outputs": f"segment/{name}.zarr (labels, table, meshes)",
                **_score_summary(full),
            }
            best[name] = trained
        for name, labels in best.items():
            segmentation.add_layer(name, labels, kind="labels")
        segmentation.add_provenance(
            {
                "step": "demo",
                "methods": dict.fromkeys(best, "sparse_unet" if train else "classical"),
                "expected_sizes_nm": sizes,
            }
        )
        save_orthoslices(
            tmp / "preview.png",
            raw,
            best,
            voxel_size=voxel_size,
            title=f"vemkit demo: {preset} phantom {raw.shape}, seed {seed}",
        )
        summary = {
            "phantom": {"preset": preset, "shape": list(raw.shape), "seed": seed},
            "voxel_size_nm": list(voxel_size.as_tuple()),
            "scores": scores,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return DemoResult(
        output_dir=out,
        phantom=out / "phantom.zarr",
        segmentation=out / "segmentation.zarr",
        preview=out / "preview.png",
        summary=out / "summary.json",
        scores=scores,
        seconds=seconds,
    )
