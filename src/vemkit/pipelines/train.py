"""``vemkit train CONFIG.yaml``: train a segmentation network from a recipe, ship a model card.

A recipe (:class:`TrainConfig`, YAML) names the training, validation and held-out test
data, the annotation sparsity, the target, the network, the optimisation and the
augmentation. :func:`run_training`

1. loads every source (a shared dataset by name, or image/label files) and resamples it
   to the recipe's ``voxel_size_nm`` (images linearly, labels by nearest voxel, with
   :func:`vemkit.ml.predict.resample_to_shape`, the resampling ``vemkit predict`` uses);
2. fits the intensity normalisation on the training images;
3. trains with :func:`vemkit.ml.train.train` (best and last checkpoints, early stopping
   on the validation region);
4. predicts each held-out test region at its *own* voxel size with
   :func:`vemkit.pipelines.predict.predict_block` — the code path of ``vemkit predict`` —
   and scores it against the ground truth (foreground IoU / Dice, object F1 after
   instance segmentation, per-class F1 for multi-class targets);
5. writes ``OUTPUT/model/`` (weights + model card), ``OUTPUT/recipe.yaml`` (the exact
   recipe), ``OUTPUT/metrics.json`` and ``OUTPUT/checkpoints/``.

Z ranges are half-open section ranges ``[start, stop)`` like Python slices:
``z_range: [0, 9]`` is sections 0–8.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from scipy import ndimage

import vemkit
from vemkit.datasets.catalog import dataset_info, load_layer
from vemkit.errors import ConfigError, InvalidVolumeError, VolumeNotFoundError
from vemkit.geometry import Box, VoxelSize
from vemkit.io.atomic import atomic_output
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer
from vemkit.measure.metrics import evaluate
from vemkit.measure.uncertainty import bootstrap_class_scores, bootstrap_scores
from vemkit.ml.augment import Augmenter
from vemkit.ml.checkpoint import (
    CONFIG_FILE,
    load_weights,
    read_model_info,
    round_to_float16,
    save_model,
    write_model_card,
)
from vemkit.ml.losses import BCEDiceLoss, CrossEntropyLoss, RegressionLoss
from vemkit.ml.networks import (
    MAX_ENSEMBLE,
    Ensemble,
    UNetConfig,
    build_network,
    count_parameters,
    ensemble_members,
    freeze_encoder,
)
from vemkit.ml.normalize import Normalization, fit_normalization
from vemkit.ml.precision import Precision, resolve_precision
from vemkit.ml.predict import context_stack, resample_labels, resample_to_shape
from vemkit.ml.sampling import PatchDataset, PatchSampler
from vemkit.ml.sparse import sparse_plane_mask
from vemkit.ml.targets import (
    Target,
    binary_target,
    boundary_target,
    foreground_boundary_target,
    semantic_target,
    signed_distance_target,
)
from vemkit.ml.train import TrainResult, train
from vemkit.ml.zoo import resolve_model
from vemkit.pipelines.predict import (
    InstanceMethod,
    ModelSpec,
    context_sections,
    default_channels,
    load_predictor,
    predict_block,
    segment_instances,
)
from vemkit.progress import Progress
from vemkit.segmentation import label_sizes
from vemkit.viz import save_orthoslices

__all__ = [
    "AugmentSettings",
    "CandidateScores",
    "DataSource",
    "EvaluationSettings",
    "ImageSource",
    "LoadedSource",
    "NetworkSettings",
    "OptimizerSettings",
    "PredictionSettings",
    "PseudoLabelSettings",
    "SparseAnnotation",
    "TargetSettings",
    "TrainConfig",
    "TrainingOutcome",
    "build_model",
    "calibrates",
    "changed_fields",
    "check_source_models",
    "choose_from_candidates",
    "choose_instance_settings",
    "convert_labels",
    "load_pseudo_labelled",
    "load_train_config",
    "pseudo_ignore_value",
    "recalibrate_model",
    "run_training",
    "save_pseudo_labels",
    "score_model",
]

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.json"
MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
NETWORK_RECORD_FILE = "network.json"  # in a network's checkpoint folder once it is trained

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

LabelsAs = Literal["labels", "mask", "instance_boundaries"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_z_range(value: tuple[int, int] | None) -> tuple[int, int] | None:
    if value is not None and not 0 <= value[0] < value[1]:
        raise ValueError(f"z_range must be [start, stop) with 0 <= start < stop, got {value}")
    return value


def _check_voxel_size(
    value: tuple[float, float, float] | None,
) -> tuple[float, float, float] | None:
    if value is not None and not all(math.isfinite(v) and v > 0 for v in value):
        raise ValueError(f"voxel_size must be three positive numbers in nm, got {value}")
    return value


class DataSource(_Settings):
    """One image/labels pair: a shared dataset by name, or two files.

    ``dataset`` given: ``image`` and ``labels`` are file stems or roles of that shared
    dataset (``vemkit datasets``), and its ``dataset.json`` gives the voxel size and the
    license. Otherwise they are paths (any format ``vemkit info`` reads) and
    ``voxel_size`` is needed unless the files record it.
    """

    dataset: str | None = None
    image: str
    labels: str
    z_range: tuple[int, int] | None = Field(
        default=None, description="Sections [start, stop) along z (half-open)."
    )
    voxel_size: tuple[float, float, float] | None = Field(
        default=None, description="Voxel size in nm (z, y, x); overrides the files."
    )
    ignore_value: int | None = Field(
        default=None, description="Label value of unannotated voxels (ignored by the loss)."
    )
    labels_as: LabelsAs = Field(
        default="labels",
        description="How to read the label file: 'labels' as it is; 'mask' as a binary "
        "mask (foreground_values, default any value > 0 -> 1, else 0); "
        "'instance_boundaries' as instance labels whose borders become 1 (boundary_width_nm).",
    )
    foreground_values: list[int] | None = Field(
        default=None,
        min_length=1,
        description="labels_as: mask only: the label values that become 1, e.g. [0] when "
        "the mask marks the structure with 0 (default: every value > 0).",
    )
    boundary_width_nm: float | None = Field(
        default=None,
        gt=0.0,
        description="labels_as: instance_boundaries only: width of the boundary band in nm "
        "(both sides together); a voxel is boundary when a voxel of another label (0 "
        "included) is a face neighbour or lies within half the width.",
    )
    boundary_dims: Literal[2, 3] | None = Field(
        default=None,
        description="labels_as: instance_boundaries only: 3 = borders in 3D with the voxel "
        "size (default; isotropic data), 2 = within each z section (per-section labels).",
    )

    _check_z_range = field_validator("z_range")(_check_z_range)
    _check_voxel_size = field_validator("voxel_size")(_check_voxel_size)

    @model_validator(mode="after")
    def _check_label_conversion(self) -> DataSource:
        how = self.labels_as
        if self.foreground_values is not None and how != "mask":
            raise ValueError(
                f"foreground_values applies to labels_as: mask only (labels_as is {how!r})"
            )
        boundary_fields = [
            name
            for name in ("boundary_width_nm", "boundary_dims")
            if getattr(self, name) is not None
        ]
        if boundary_fields and how != "instance_boundaries":
            raise ValueError(
                f"{' and '.join(boundary_fields)} apply to labels_as: instance_boundaries only "
                f"(labels_as is {how!r})"
            )
        if how == "instance_boundaries" and self.boundary_width_nm is None:
            raise ValueError(
                "labels_as: instance_boundaries needs boundary_width_nm (the membrane width in "
                "nm, e.g. 30)"
            )
        if how != "labels" and self.ignore_value in (0, 1):
            raise ValueError(
                f"ignore_value {self.ignore_value} clashes with the converted labels of "
                f"labels_as: {how} (0 = background, 1 = structure); use another value"
            )
        if self.foreground_values is not None:
            if len(set(self.foreground_values)) != len(self.foreground_values):
                raise ValueError(f"foreground_values has duplicates: {self.foreground_values}")
            if self.ignore_value in self.foreground_values:
                raise ValueError(
                    f"ignore_value {self.ignore_value} is also in foreground_values "
                    f"{self.foreground_values}"
                )
        return self

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the model card."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class SparseAnnotation(_Settings):
    """Simulate sparse annotation of the training data (for experiments).

    Only every ``every_n_planes``-th plane along ``axis`` counts as annotated, and of
    each only ``fraction_painted`` (as brush-stroke-like blobs); the rest is ignored.
    """

    every_n_planes: int = Field(default=1, ge=1)
    offset: int = Field(default=0, ge=0)
    axis: Literal[0, 1, 2] = 0
    fraction_painted: float = Field(default=1.0, gt=0.0, le=1.0)
    stroke_px: float = Field(default=8.0, gt=0.0)
    seed: int = 0


class ImageSource(_Settings):
    """An unlabelled image: a shared dataset's image by name, or an image file."""

    dataset: str | None = None
    image: str
    z_range: tuple[int, int] | None = Field(
        default=None, description="Sections [start, stop) along z (half-open)."
    )
    voxel_size: tuple[float, float, float] | None = Field(
        default=None, description="Voxel size in nm (z, y, x); overrides the file."
    )

    _check_z_range = field_validator("z_range")(_check_z_range)
    _check_voxel_size = field_validator("voxel_size")(_check_voxel_size)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the model card."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


PSEUDO_LABEL_TARGETS = ("binary", "foreground_boundary", "multiclass")
"""Target types a recipe with ``pseudo_labels`` can have."""


class PseudoLabelSettings(_Settings):
    """Self-training: a teacher model labels unlabelled images for the training.

    The teacher (a shipped model or a model folder, e.g. an ensemble) predicts each of
    ``sources``; voxels whose foreground probability is at least ``confidence`` become
    foreground, at most ``1 - confidence`` background, and the rest is ignored by the
    loss. For a multiclass recipe the teacher must be a multiclass model with the same
    class names: a voxel whose most probable class has probability at least
    ``confidence`` becomes that class, the rest is ignored. ``share`` of each epoch's
    training patches come from these images. In
    ``vemkit crossval``, ``{fold}`` in ``teacher`` is replaced by the fold's number, so
    that each fold's teacher is a model that never saw that fold's test sections (e.g.
    ``runs/mito-em-crossval/fold-{fold}/model``).
    """

    teacher: str = Field(description="Shipped model name or model folder.")
    sources: list[ImageSource] = Field(min_length=1)
    confidence: float = Field(default=0.8, gt=0.5, lt=1.0)
    share: float = Field(default=0.5, gt=0.0, lt=1.0)
    min_class_share: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Multiclass: each class keeps at least this share of the voxels the "
        "teacher predicts as it (its most confident ones), even below confidence, so that a "
        "class the teacher is never sure of (a rare one) does not vanish from the "
        "pseudo-labels (class-balanced self-training, Zou et al. 2018).",
    )
    instances: bool = Field(
        default=False,
        description="foreground_boundary targets: label the teacher's objects (its card's "
        "instance step on its maps) instead of a foreground mask, so that the boundary "
        "target also runs between touching objects the teacher separates (from a mask it "
        "only runs along the foreground's outline).",
    )


class TargetSettings(_Settings):
    """What the network learns.

    ``type``:

    * ``binary``: foreground (label > 0) probability;
    * ``multiclass``: one softmax channel per class; ``classes`` maps label values to
      class indices 0..K-1 and ``class_names`` names them;
    * ``foreground_boundary``: foreground and object-boundary probabilities (instances
      by boundary watershed); ``boundary_width_nm`` is the boundary width;
    * ``signed_distance``: signed distance to the object border, clipped to
      ``clip_nm`` (trained as ``tanh`` of distance / clip);
    * ``boundary``: boundary probability only (membranes, neuron borders).
    """

    type: Literal["binary", "multiclass", "foreground_boundary", "signed_distance", "boundary"]
    boundary_width_nm: float = Field(default=20.0, gt=0.0)
    clip_nm: float = Field(default=500.0, gt=0.0)
    classes: dict[int, int] | None = None
    class_names: list[str] | None = None
    class_weights: list[float] | None = None

    @model_validator(mode="after")
    def _check_classes(self) -> TargetSettings:
        if self.type == "multiclass":
            if not self.classes:
                raise ValueError("a multiclass target needs 'classes': {label value: class index}")
            indices = sorted(set(self.classes.values()))
            if indices != list(range(len(indices))):
                raise ValueError(
                    f"class indices must be 0..K-1 without gaps, got {sorted(indices)}"
                )
            if self.class_names is not None and len(self.class_names) != len(indices):
                raise ValueError(
                    f"class_names has {len(self.class_names)} names for {len(indices)} classes"
                )
            if self.class_weights is not None and len(self.class_weights) != len(indices):
                raise ValueError(
                    f"class_weights has {len(self.class_weights)} values for {len(indices)} classes"
                )
        elif self.classes is not None or self.class_names is not None:
            raise ValueError("classes and class_names apply to multiclass targets only")
        return self

    @property
    def n_classes(self) -> int:
        """Number of classes of a multiclass target (0 otherwise)."""
        return len(set(self.classes.values())) if self.classes else 0

    @property
    def channels(self) -> tuple[str, ...]:
        """Output channel names."""
        if self.type == "multiclass" and self.class_names:
            return tuple(self.class_names)
        return default_channels(self.type, self.n_classes)


class NetworkSettings(_Settings):
    """The fields of :class:`vemkit.ml.networks.UNetConfig` (channels come from the target).

    Prefer ``norm: batch`` with ``batch_size >= 8`` for 2D models: its statistics are
    fixed at prediction, so tiled prediction equals whole-plane prediction; group norm
    computes statistics per window and gave worse tiled predictions in our tests.
    """

    dims: Literal[2, 3] = 2
    depth: int = Field(default=4, ge=1, le=8)
    base_channels: int = Field(default=16, ge=1)
    channel_growth: float = Field(default=2.0, ge=1.0)
    norm: Literal["group", "batch", "instance"] | None = "batch"
    norm_groups: int = Field(default=8, ge=1)
    residual: bool = False
    anisotropic_levels: int = Field(default=0, ge=0)
    context_sections: int = Field(
        default=0,
        ge=0,
        le=4,
        description="2D networks: neighbouring sections on each side given as extra input "
        "channels (2.5D; 1 gives the network sections z-1, z, z+1).",
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    backend: Literal["vemkit", "monai"] = "vemkit"
    architecture: Literal["unet", "segresnet", "swinunetr"] = "unet"


class OptimizerSettings(_Settings):
    """Optimiser and learning-rate schedule (stepped once per epoch)."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    schedule: Literal["constant", "cosine", "plateau"] = "cosine"
    grad_clip_norm: float | None = Field(default=None, gt=0.0)


class AugmentSettings(_Settings):
    """Augmentation switches (see :class:`vemkit.ml.augment.Augmenter`).

    ``missing_section_p`` and ``misalignment_p`` imitate serial-section defects and
    apply to 3D patches.
    """

    enabled: bool = True
    flip: bool = True
    rot90: bool = True
    rotation_p: float = Field(default=0.0, ge=0.0, le=1.0)
    elastic_p: float = Field(default=0.0, ge=0.0, le=1.0)
    contrast_p: float = Field(default=0.5, ge=0.0, le=1.0)
    gamma_p: float = Field(default=0.3, ge=0.0, le=1.0)
    noise_p: float = Field(default=0.3, ge=0.0, le=1.0)
    blur_p: float = Field(default=0.2, ge=0.0, le=1.0)
    missing_section_p: float = Field(default=0.0, ge=0.0, le=1.0)
    misalignment_p: float = Field(default=0.0, ge=0.0, le=1.0)


class NormalizationSettings(_Settings):
    """Intensity normalisation, fitted once on the training images."""

    mode: Literal["percentile", "meanstd", "none"] = "percentile"
    lower_percentile: float = Field(default=1.0, ge=0.0, le=100.0)
    upper_percentile: float = Field(default=99.8, ge=0.0, le=100.0)
    clip: bool = False


class EvaluationSettings(_Settings):
    """How the held-out test regions are scored after training.

    ``instances`` turns the predicted maps into objects for object-level F1:
    ``boundary_watershed_3d`` (foreground/boundary targets; objects continue across
    sections, like 3D ground-truth instances), ``boundary_watershed_2d`` (per section,
    for 2D ground truth), ``connected_components_3d`` or ``none``.
    """

    instances: InstanceMethod = "boundary_watershed_3d"
    foreground_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    boundary_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    min_size_nm3: float = Field(default=0.0, ge=0.0)
    min_seed_size_nm3: float = Field(
        default=0.0,
        ge=0.0,
        description="Boundary watersheds: ignore seeds smaller than this (nm³), so that a gap "
        "in the boundary map does not split an object.",
    )
    iou_thresholds: tuple[float, ...] = (0.5, 0.75)
    ground_truth_instances: list[str] | None = Field(
        default=None,
        description="Per test source: the instance label file to score objects against "
        "(default: the source's labels).",
    )
    calibrate_thresholds: bool = Field(
        default=False,
        description="Choose foreground_threshold and boundary_threshold for the best mean of "
        "foreground IoU and object F1@0.5 on the validation sources after training (binary "
        "targets: best IoU); the test data is not used.",
    )
    calibrate_foreground: bool = Field(
        default=True,
        description="With calibrate_thresholds, set false to keep foreground_threshold "
        "fixed and choose only the boundary threshold (and the instance method).",
    )
    instance_candidates: list[InstanceMethod] | None = Field(
        default=None,
        min_length=1,
        description="With calibrate_thresholds: also choose the instance method among these "
        "on the validation sources, e.g. [boundary_watershed_3d, connected_components_3d] "
        "(default: instances only).",
    )
    boundary_dilation_px: int = Field(
        default=0, ge=0, description="Boundary targets: tolerance in pixels for boundary F1."
    )

    @model_validator(mode="after")
    def _check_candidates(self) -> EvaluationSettings:
        if not self.calibrate_foreground and not self.calibrate_thresholds:
            raise ValueError("calibrate_foreground: false needs calibrate_thresholds: true")
        candidates = self.instance_candidates
        if candidates is None:
            return self
        if not self.calibrate_thresholds:
            raise ValueError("instance_candidates needs calibrate_thresholds: true")
        if "none" in candidates or len(set(candidates)) != len(candidates):
            raise ValueError(
                f"instance_candidates must be distinct instance methods (not 'none'), got "
                f"{candidates}"
            )
        if self.instances not in candidates:
            raise ValueError(
                f"instance_candidates {candidates} must include instances ({self.instances!r})"
            )
        return self


class PredictionSettings(_Settings):
    """Tiling used by ``vemkit predict`` and by the held-out evaluation (stored in the card)."""

    tile: int = Field(default=512, ge=16, description="Largest window edge (model voxels).")
    overlap: float = Field(default=0.125, ge=0.0, lt=1.0)
    batch_size: int = Field(default=2, ge=1)


class TrainConfig(_Settings):
    """A training recipe; load it with :func:`load_train_config`.

    See ``recipes/mito-em.yaml`` for a complete example. Sizes are in voxels of the
    training voxel size (``voxel_size_nm``, or the data's own), physical lengths in nm.
    """

    name: str = Field(description="Model name: lower-case letters, digits, '-', '_', '.'.")
    task: str = Field(description="What the model segments, e.g. 'mitochondria'.")
    description: str = ""
    notes: list[str] = Field(default_factory=list)
    train: list[DataSource] = Field(min_length=1)
    validation: list[DataSource] = Field(default_factory=list)
    test: list[DataSource] = Field(default_factory=list)
    voxel_size_nm: tuple[float, float, float] | None = Field(
        default=None,
        description="Train at this voxel size (nm, z, y, x); data is resampled to it and "
        "`vemkit predict` resamples inputs to it.",
    )
    normalization: NormalizationSettings = NormalizationSettings()
    sparse: SparseAnnotation | None = None
    pseudo_labels: PseudoLabelSettings | None = Field(
        default=None,
        description="Also train on unlabelled images labelled by a teacher model "
        "(self-training; binary, foreground_boundary and multiclass targets).",
    )
    target: TargetSettings
    network: NetworkSettings = NetworkSettings()
    patch_shape: tuple[int, ...] = (128, 128)
    batch_size: int = Field(default=8, ge=1)
    epochs: int = Field(default=20, ge=1)
    samples_per_epoch: int = Field(default=256, ge=1)
    validation_samples: int = Field(default=64, ge=1)
    foreground_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    source_sampling: Literal["labelled_voxels", "equal"] = Field(
        default="labelled_voxels",
        description="How patches are shared between the sources of train (and of "
        "validation): in proportion to each source's labelled voxels, or equally, so that "
        "a small dataset weighs as much as a large one.",
    )
    optimizer: OptimizerSettings = OptimizerSettings()
    augment: AugmentSettings = AugmentSettings()
    early_stopping_patience: int | None = Field(default=None, ge=1)
    max_train_minutes: float | None = Field(
        default=None,
        gt=0.0,
        description="Wall-clock budget: no new epoch starts after this many minutes.",
    )
    seed: int = Field(default=0, ge=0)
    ensemble: int = Field(
        default=1,
        ge=1,
        le=MAX_ENSEMBLE,
        description="Train this many networks, each with its own seed (seed, seed + 1, ...) "
        "but the same data and schedule, and ship them as one model whose prediction "
        "averages their maps. Training takes this many times longer (max_train_minutes "
        "applies to each network); prediction too.",
    )
    device: str = "cpu"
    precision: Precision = Field(
        default="auto",
        description="Autocast of training passes: auto (float16 on CUDA, float32 on the "
        "CPU), float32, or bfloat16 (about 2x faster on CPUs with bfloat16 instructions; "
        "vemkit.ml.precision). Held-out metrics are always measured as `vemkit predict` "
        "runs by default.",
    )
    output: str = Field(default="", description="Output folder (default: models/<name>).")
    init_from: str | None = Field(
        default=None,
        description="Shipped model name or model folder to start from (transfer learning): "
        "its architecture and weights are used (the network section is ignored); the "
        "normalisation is refitted on the new training data, and voxel_size_nm applies as "
        "usual (set it to the model's voxel size to keep the scale).",
    )
    freeze_encoder: bool = False
    weights_dtype: Literal["float32", "float16"] = Field(
        default="float32",
        description="Precision of the stored weights: float16 halves the file (shipped "
        "models); the held-out metrics are measured with the rounded weights.",
    )
    evaluation: EvaluationSettings = EvaluationSettings()
    prediction: PredictionSettings = PredictionSettings()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _MODEL_NAME.match(value):
            raise ValueError(
                f"name {value!r} must be lower-case letters, digits, '-', '_' or '.', "
                "starting with a letter or digit (e.g. 'mito-em')"
            )
        return value

    @field_validator("voxel_size_nm")
    @classmethod
    def _check_voxel_size(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if value is not None and not all(math.isfinite(v) and v > 0 for v in value):
            raise ValueError(f"voxel_size_nm must be three positive numbers, got {value}")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        dims = self.network.dims
        if len(self.patch_shape) != dims or any(p < 1 for p in self.patch_shape):
            raise ValueError(
                f"patch_shape {list(self.patch_shape)} must have {dims} positive sizes for a "
                f"{dims}D network"
            )
        if dims == 2 and self.network.anisotropic_levels:
            raise ValueError("network.anisotropic_levels applies to 3D networks only")
        if dims == 3 and self.network.context_sections:
            raise ValueError(
                "network.context_sections applies to 2D networks only (a 3D network sees "
                "its neighbouring sections already)"
            )
        if self.network.norm == "batch" and self.batch_size < 2:
            raise ValueError("norm: batch needs batch_size >= 2 (8 or more is better)")
        if self.freeze_encoder and self.init_from is None:
            raise ValueError("freeze_encoder needs init_from (a model to take the encoder from)")
        pseudo = self.pseudo_labels
        if pseudo is not None and self.target.type not in PSEUDO_LABEL_TARGETS:
            raise ValueError(
                "pseudo_labels works with binary, foreground_boundary and multiclass targets "
                f"(the teacher's probabilities are thresholded), not {self.target.type}"
            )
        if pseudo is not None and pseudo.min_class_share and self.target.type != "multiclass":
            raise ValueError("pseudo_labels.min_class_share applies to multiclass targets only")
        if pseudo is not None and pseudo.instances and self.target.type != "foreground_boundary":
            raise ValueError("pseudo_labels.instances applies to foreground_boundary targets only")
        gt = self.evaluation.ground_truth_instances
        if gt is not None and len(gt) != len(self.test):
            raise ValueError(
                f"evaluation.ground_truth_instances has {len(gt)} entries for "
                f"{len(self.test)} test sources"
            )
        return self

    def output_folder(self) -> Path:
        """Return the output folder (``output``, or ``models/<name>``)."""
        return Path(self.output) if self.output else Path("models") / self.name

    def unet_config(self) -> UNetConfig:
        """Build the network config: the ``network`` fields plus channels from the target."""
        fields = self.network.model_dump()
        in_channels = 2 * fields.pop("context_sections") + 1
        out_channels = len(self.target.channels)
        return UNetConfig(in_channels=in_channels, out_channels=out_channels, **fields)


def _format_validation_error(error: ValidationError, where: str) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see recipes/*.yaml)"
        elif item["type"] == "missing":
            message = "required field is missing"
        parts.append(f"{location}: {message}")
    return f"invalid training config {where}: " + "; ".join(parts)


def parse_train_config(data: Mapping[str, Any], *, where: str = "") -> TrainConfig:
    """Validate a mapping (e.g. parsed YAML) as a :class:`TrainConfig`.

    Raises
    ------
    ConfigError
        With one line per problem, naming the field (``target.type: ...``).
    """
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, where or "(mapping)")) from None
    except ConfigError as error:
        raise ConfigError(f"invalid training config {where}: {error}") from None


def load_train_config(path: str | os.PathLike[str]) -> tuple[TrainConfig, str]:
    """Read a YAML recipe.

    Returns
    -------
    config : TrainConfig
        The validated recipe.
    text : str
        The file's exact text (kept in the model card for provenance).

    Raises
    ------
    VolumeNotFoundError
        No such file.
    ConfigError
        Not YAML, not a mapping, or a field is wrong or unknown.
    """
    file = Path(path)
    if not file.is_file():
        raise VolumeNotFoundError(f"no training config at {str(file)!r}; give a YAML recipe")
    text = file.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{str(file)!r} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{str(file)!r} must hold a mapping of settings (name:, train:, target: ...)"
        )
    return parse_train_config(data, where=repr(str(file))), text


# --- data ------------------------------------------------------------------------------------
@dataclass
class LoadedSource:
    """One source in memory at the training voxel size (and at its own)."""

    source: DataSource
    image: NDArray[Any]
    labels: NDArray[Any]
    voxel_size: VoxelSize
    native_voxel_size: VoxelSize
    license: str
    files: dict[str, str]
    margin: tuple[int, int] = (0, 0)
    """Unlabelled sections of ``image`` before and after the labelled ones (2.5D context)."""
    made: tuple[NDArray[Any], str] | None = None
    """Pseudo-labels: the labels at the image's own voxel size and the key of what they were
    made from (:func:`save_pseudo_labels`), until the training folder holds them."""

    @property
    def labelled(self) -> slice:
        """The sections of ``image`` that have labels (all but the margin)."""
        return slice(self.margin[0], self.image.shape[0] - self.margin[1])

    def network_input(self, context: int) -> NDArray[Any]:
        """Return the network input of the labelled sections (``(2k+1, Z, Y, X)`` in 2.5D).

        The neighbours of the first and last labelled section come from the margin.
        """
        if not context:
            return self.image[self.labelled]
        return context_stack(self.image, context)[:, self.labelled]


def _open_image(source: DataSource | ImageSource) -> tuple[Layer, str]:
    """Open a source's image (a shared dataset's, or a file) and tell its licence."""
    voxel = VoxelSize.coerce(source.voxel_size) if source.voxel_size else None
    if source.dataset is not None:
        image = load_layer(source.dataset, source.image)
        if voxel is not None:
            image = image.with_data(image.data, voxel_size=voxel)
        return image, dataset_info(source.dataset).license
    return open_layer(source.image, voxel_size=voxel), "user data (license not recorded)"


def _open_pair(source: DataSource) -> tuple[Layer, Layer, str]:
    image, license_text = _open_image(source)
    voxel = VoxelSize.coerce(source.voxel_size) if source.voxel_size else None
    if source.dataset is not None:
        labels = load_layer(source.dataset, source.labels)
        if voxel is not None:
            labels = labels.with_data(labels.data, voxel_size=voxel)
    else:
        labels = open_layer(source.labels, voxel_size=voxel, kind="labels")
    return image, labels, license_text


def _where(source: DataSource | ImageSource, layer: Layer) -> str:
    """Name a source's image in messages; refuse an image without a voxel size."""
    where = f"{source.dataset + ':' if source.dataset else ''}{source.image}"
    if layer.metadata.get("voxel_size_from") == "unknown":
        raise ConfigError(
            f"{where} does not record its voxel size; add voxel_size: [z, y, x] (nm) to the source"
        )
    return where


def _read(layer: Layer, z_range: tuple[int, int] | None, what: str) -> NDArray[Any]:
    if layer.axes not in ("zyx", "yx"):
        raise InvalidVolumeError(
            f"{what} has axes {layer.axes!r}; training needs single-channel (Z, Y, X) volumes"
        )
    if layer.axes == "yx":
        if z_range not in (None, (0, 1)):
            raise ConfigError(f"{what} is a 2D image; drop its z_range")
        return layer.read()[None]
    if z_range is None:
        return layer.read()
    depth = layer.spatial_shape[0]
    if z_range[1] > depth:
        raise ConfigError(
            f"z_range {list(z_range)} of {what} goes beyond its {depth} sections (0..{depth - 1})"
        )
    offset = layer.box.offset
    box = Box(
        (offset[0] + z_range[0], *offset[1:]),
        (z_range[1] - z_range[0], *layer.spatial_shape[1:]),
    )
    return layer.read(box)


def convert_labels(
    labels: NDArray[Any],
    *,
    labels_as: LabelsAs,
    voxel_size: VoxelSize | Sequence[float],
    foreground_values: Sequence[int] | None = None,
    boundary_width_nm: float | None = None,
    boundary_dims: Literal[2, 3] | None = None,
    ignore_value: int | None = None,
    name: str = "labels",
) -> NDArray[Any]:
    """Turn a label volume into the 0/1 labels of one structure (``labels_as`` of a source).

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of int or bool
        The label file's values.
    labels_as : {"labels", "mask", "instance_boundaries"}
        ``"labels"``: returned unchanged. ``"mask"``: 1 where the value is in
        ``foreground_values`` (default: any value > 0), else 0. ``"instance_boundaries"``:
        ``labels`` are instances (0 = background, e.g. the 1-voxel lines between
        neurons of a watershed ground truth); 1 where a face neighbour has another label
        or one lies within ``boundary_width_nm / 2`` (the rule of
        :func:`vemkit.ml.targets.boundary_target`), else 0. The volume border is not a
        boundary.
    voxel_size : VoxelSize or (z, y, x) sequence
        Voxel size of ``labels`` in nm (the boundary width is measured with it).
    foreground_values : sequence of int, optional
        ``"mask"`` only, see above.
    boundary_width_nm : float, optional
        ``"instance_boundaries"`` only (required there).
    boundary_dims : {2, 3}, optional
        ``"instance_boundaries"`` only: 3 (default) measures in 3D, 2 within each z
        section (per-section instance labels, thick serial sections).
    ignore_value : int, optional
        Unannotated voxels; they keep this value in the result (it must not be 0 or 1),
        and so do boundary voxels whose answer depends on unannotated neighbours.
    name : str
        Names the labels in error messages.

    Returns
    -------
    (Z, Y, X) ndarray
        uint8 values 0 and 1 (and ``ignore_value``; a wider dtype if it needs one).

    Raises
    ------
    InvalidVolumeError
        ``labels`` is not a 3D integer volume, or contains none of ``foreground_values``.
    ConfigError
        Inconsistent options (unknown ``labels_as``, missing width, ``ignore_value`` 0 or 1).
    """
    if labels_as == "labels":
        return labels
    array = np.asarray(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.integer):
        raise InvalidVolumeError(
            f"{name}: labels_as: {labels_as} needs a (Z, Y, X) integer volume, got shape "
            f"{array.shape} and dtype {array.dtype}"
        )
    if ignore_value in (0, 1):
        raise ConfigError(
            f"{name}: ignore_value {ignore_value} clashes with the converted labels (0 and 1)"
        )
    known = np.ones(array.shape, dtype=bool) if ignore_value is None else array != ignore_value
    valid = known
    if labels_as == "mask":
        if foreground_values is None:
            structure = array > 0
        else:
            structure = np.isin(array, np.asarray(list(foreground_values)))
            if not np.any(structure & known):
                present = np.unique(array[known]) if known.any() else np.array([], int)
                shown = ", ".join(str(v) for v in present[:20])
                more = f", ... ({present.size} values)" if present.size > 20 else ""
                raise InvalidVolumeError(
                    f"{name} contain none of the foreground_values {list(foreground_values)}; "
                    f"the values present are {shown}{more} (check the label meanings in the "
                    "dataset.json, e.g. which value marks membrane)"
                )
        structure &= known
    elif labels_as == "instance_boundaries":
        if boundary_width_nm is None or not boundary_width_nm > 0:
            raise ConfigError(
                f"{name}: labels_as: instance_boundaries needs a positive boundary_width_nm, "
                f"got {boundary_width_nm}"
            )
        spacing = VoxelSize.coerce(voxel_size).as_tuple()
        borders = functools.partial(
            boundary_target, width_nm=float(boundary_width_nm), ignore_value=ignore_value
        )
        if (boundary_dims or 3) == 3:
            target, valid = borders(array, voxel_size=spacing)
            structure = target[0] > 0
        else:
            structure = np.zeros(array.shape, dtype=bool)
            valid = np.ones(array.shape, dtype=bool)
            for z, plane in enumerate(array):
                target, valid[z] = borders(plane, voxel_size=spacing[1:])
                structure[z] = target[0] > 0
    else:
        raise ConfigError(
            f"{name}: unknown labels_as {labels_as!r}; use labels, mask or instance_boundaries"
        )
    dtype = np.dtype(np.uint8)
    if ignore_value is not None:
        dtype = np.result_type(np.uint8, np.min_scalar_type(ignore_value))
    out = structure.astype(dtype)
    if ignore_value is not None:
        out[~valid] = ignore_value
    return out


def _read_labels(layer: Layer, source: DataSource, what: str) -> NDArray[Any]:
    """Read a source's labels (its z range) and apply its ``labels_as`` conversion.

    3D instance boundaries are computed with the sections next to the z range, so the
    range's first and last sections get the same boundaries as in the whole volume.
    """
    z_range = source.z_range
    margin = 0
    if (
        source.labels_as == "instance_boundaries"
        and (source.boundary_dims or 3) == 3
        and z_range is not None
        and layer.axes == "zyx"
        and z_range[1] <= layer.spatial_shape[0]
    ):
        width = float(source.boundary_width_nm or 0.0)
        margin = math.ceil(width / 2.0 / layer.voxel_size.z) + 1
    if margin == 0:
        labels = _read(layer, z_range, what)
        start = 0
    else:
        assert z_range is not None
        low = max(0, z_range[0] - margin)
        high = min(layer.spatial_shape[0], z_range[1] + margin)
        labels = _read(layer, (low, high), what)
        start = z_range[0] - low
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise InvalidVolumeError(
            f"labels {source.labels!r} must be integers (0 = background), got {labels.dtype}"
        )
    labels = convert_labels(
        labels,
        labels_as=source.labels_as,
        voxel_size=layer.voxel_size,
        foreground_values=source.foreground_values,
        boundary_width_nm=source.boundary_width_nm,
        boundary_dims=source.boundary_dims,
        ignore_value=source.ignore_value,
        name=what,
    )
    if margin:
        assert z_range is not None
        labels = labels[start : start + z_range[1] - z_range[0]]
    return labels


def load_source(
    source: DataSource,
    *,
    voxel_size_nm: Sequence[float] | None = None,
    native: bool = False,
    planar: bool = False,
    context: int = 0,
) -> LoadedSource:
    """Read a source (its ``z_range``) and resample it to ``voxel_size_nm``.

    Parameters
    ----------
    source : DataSource
        Which data.
    voxel_size_nm : sequence of float, optional
        Resample to this voxel size (images linearly, labels by nearest voxel).
    native : bool
        Keep the data's own voxel size (for held-out evaluation).
    planar : bool
        Resample y and x only (2D networks): z keeps its own voxel size.
    context : int
        2.5D networks: also read up to this many image sections before and after the
        ``z_range`` (as far as the volume goes), the neighbours of its first and last
        section; their labels are not read (see :attr:`LoadedSource.margin`).
    """
    image_layer, label_layer, license_text = _open_pair(source)
    where = _where(source, image_layer)
    margin = (0, 0)
    z_range = source.z_range
    if context and z_range is not None and image_layer.axes == "zyx":
        depth = image_layer.spatial_shape[0]
        first, stop = max(0, z_range[0] - context), min(depth, z_range[1] + context)
        if z_range[1] <= depth:  # else _read reports the bad z_range
            margin, z_range = (z_range[0] - first, stop - z_range[1]), (first, stop)
    image = _read(image_layer, z_range, where)
    labels = _read_labels(label_layer, source, f"labels {source.labels!r}")
    labelled = (image.shape[0] - sum(margin), *image.shape[1:])
    if labelled != labels.shape:
        raise InvalidVolumeError(
            f"image {where} {labelled} and labels {source.labels!r} {labels.shape} differ in shape"
        )
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise InvalidVolumeError(
            f"labels {source.labels!r} must be integers (0 = background), got {labels.dtype}"
        )
    native_size = image_layer.voxel_size
    size = native_size
    if voxel_size_nm is not None and not native:
        image, labels, size = _resample_pair(
            image, labels, native_size, voxel_size_nm, planar=planar, margin=margin, where=where
        )
    files = {"image": source.image, "labels": source.labels}
    return LoadedSource(source, image, labels, size, native_size, license_text, files, margin)


def _resample_pair(
    image: NDArray[Any],
    labels: NDArray[Any],
    native_size: VoxelSize,
    voxel_size_nm: Sequence[float],
    *,
    planar: bool,
    margin: tuple[int, int] = (0, 0),
    where: str,
) -> tuple[NDArray[Any], NDArray[Any], VoxelSize]:
    """Resample an image (linearly) and its labels (nearest voxel) to ``voxel_size_nm``."""
    target_nm = tuple(float(v) for v in voxel_size_nm)
    if planar:
        target_nm = (native_size.z, *target_nm[1:])
    size = VoxelSize.coerce(target_nm)
    shape = tuple(
        max(1, round(n * s / t))
        for n, s, t in zip(image.shape, native_size.as_tuple(), size.as_tuple(), strict=True)
    )
    if shape != image.shape:
        if sum(margin) and shape[0] != image.shape[0]:
            raise ConfigError("2.5D context sections need planar (2D) resampling")
        log.info("resampling %s from %s to %s", where, image.shape, shape)
        image = resample_to_shape(image, shape, order=1)
        label_shape = (labels.shape[0], *shape[1:])
        labels = resample_labels(labels, label_shape)
    return image, labels, size


PSEUDO_IGNORE = 255
"""Label value of the voxels a teacher is not confident about (ignored by the loss)."""
PSEUDO_INSTANCE_IGNORE = 2**32 - 1
"""The same for instance pseudo-labels (``pseudo_labels.instances``: uint32 object ids)."""


def _tested_sections_seen(card: Mapping[str, Any], tested: Sequence[DataSource]) -> str | None:
    """Describe a test source whose sections a model trained or validated on, if any."""
    for entry in [*card.get("training_data", []), *card.get("validation_data", [])]:
        seen = (entry.get("dataset"), entry.get("image"))
        seen_range = entry.get("z_range")
        for source in tested:
            if (source.dataset, source.image) != seen:
                continue
            if seen_range is None or source.z_range is None:
                return f"{source.image} (it saw all sections)"
            if seen_range[0] < source.z_range[1] and source.z_range[0] < seen_range[1]:
                return (
                    f"{source.image} sections {source.z_range[0]}-{source.z_range[1] - 1} "
                    f"(it saw {seen_range[0]}-{seen_range[1] - 1})"
                )
    return None


def _save_pseudo_preview(path: Path, loaded: LoadedSource, target: TargetSettings) -> str:
    """Draw the section with the most sure objects and its pseudo-labels; return the name.

    Binary targets show the sure foreground, multiclass ones every sure class but the most
    frequent (the background), with the unsure voxels.
    """
    labels = loaded.labels
    unsure = labels == loaded.source.ignore_value
    if target.type == "multiclass":
        masks = {name: labels == value for name, value in _shown_classes(target).items()}
        counts = {name: int(np.count_nonzero(mask)) for name, mask in masks.items()}
        del masks[max(counts, key=counts.__getitem__)]
    else:  # foreground 1, or object ids (instance pseudo-labels)
        masks = {"foreground": (labels > 0) & ~unsure}
    sure = np.logical_or.reduce(list(masks.values()))
    section = int(np.argmax(sure.reshape(sure.shape[0], -1).sum(axis=1)))
    layers = {"unsure (ignored)": unsure.astype(np.uint8)}
    # drawn in this order: the sure classes' outlines on top
    layers.update({f"sure {name}": mask.astype(np.uint8) for name, mask in masks.items()})
    temporary = path.with_name(path.stem + ".tmp.png")
    save_orthoslices(
        temporary,
        loaded.image,
        layers,
        voxel_size=loaded.voxel_size,
        center=(section, labels.shape[1] // 2, labels.shape[2] // 2),
        title=f"{Path(loaded.source.image).name}: the teacher's sure and unsure voxels",
    )
    os.replace(temporary, path)
    return path.name


def check_source_models(config: TrainConfig) -> None:
    """Check the models a recipe starts from or learns from (reads their cards only).

    ``init_from`` and the ``pseudo_labels`` teacher must not have trained or validated on
    sections that the recipe tests: what they learnt there would leak into the held-out
    scores. The teacher must have a foreground channel.

    Raises
    ------
    ConfigError
        If a model still names ``{fold}`` (only ``vemkit crossval`` fills it in), saw
        tested sections, or the teacher has no foreground channel.
    ModelNotFoundError
        If there is no such model.
    """
    teacher = config.pseudo_labels.teacher if config.pseudo_labels is not None else None
    for field, model in (("init_from", config.init_from), ("pseudo_labels.teacher", teacher)):
        if model is None:
            continue
        if "{fold}" in model:
            raise ConfigError(
                f"{field} {model!r} names {{fold}}, which only vemkit crossval fills in; "
                "name one model for a training"
            )
        _, card = read_model_info(resolve_model(model))
        leak = _tested_sections_seen(card, config.test)
        if leak is not None:
            raise ConfigError(
                f"{field} {model!r} was trained or validated on {leak}, which this recipe "
                "tests: what it learnt there would leak into the held-out scores"
            )
        if model == teacher:
            _check_teacher(config, model, card)


def _check_teacher(config: TrainConfig, model: str, card: Mapping[str, Any]) -> None:
    """Refuse a teacher whose outputs cannot label this recipe's target."""
    channels = list(card.get("channels") or [])
    if config.target.type != "multiclass":
        if "foreground" not in channels:
            raise ConfigError(
                f"teacher {model!r} has no foreground channel (channels {channels}); "
                "pseudo-labels for a binary or foreground_boundary recipe need a binary or "
                "foreground_boundary model"
            )
        return
    wanted = list(config.target.channels)
    kind = (card.get("target") or {}).get("type")
    if kind != "multiclass" or sorted(channels) != sorted(wanted):
        raise ConfigError(
            f"teacher {model!r} ({kind} model, channels {channels}) cannot label this "
            f"multiclass recipe: it needs a multiclass teacher with the classes {wanted} "
            "(target.class_names)"
        )


def pseudo_ignore_value(target: TargetSettings, *, instances: bool = False) -> int:
    """Label value of the voxels a teacher is unsure of, for this recipe's target.

    :data:`PSEUDO_IGNORE`, unless a multiclass recipe maps that label value to a class;
    then one more than its largest label value. Instance pseudo-labels
    (``pseudo_labels.instances``): :data:`PSEUDO_INSTANCE_IGNORE`, above any object id.
    """
    if instances:
        return PSEUDO_INSTANCE_IGNORE
    used = set(target.classes or {}) if target.type == "multiclass" else set()
    return PSEUDO_IGNORE if PSEUDO_IGNORE not in used else max(used) + 1


def _shown_classes(target: TargetSettings) -> dict[str, int]:
    """Per class name, the label value pseudo-labels use for it (binary: foreground = 1)."""
    if target.type != "multiclass":
        return {"foreground": 1}
    values: dict[int, int] = {}
    for value, index in sorted((target.classes or {}).items()):
        values.setdefault(index, value)
    return {name: values[index] for index, name in enumerate(target.channels)}


def _label_with_teacher(
    maps: NDArray[np.float32],
    teacher_channels: Sequence[str],
    target: TargetSettings,
    *,
    confidence: float,
    ignore: int,
    min_class_share: float | None = None,
    objects: NDArray[np.uint32] | None = None,
) -> tuple[NDArray[Any], dict[str, float]]:
    """Pseudo-labels of the teacher's maps and the probability each class needed.

    Binary and foreground_boundary: foreground probability ``>= confidence`` -> 1 (or,
    given the teacher's ``objects``, their ids; sure voxels outside every object are
    unsure), ``<= 1 - confidence`` -> 0. Multiclass: the most probable class where its
    probability is ``>= confidence`` (with ``min_class_share``: or among that share of
    the class's most probable voxels), as the recipe's label value of that class. The
    rest ``ignore``.
    """
    if target.type != "multiclass":
        foreground = maps[list(teacher_channels).index("foreground")]
        sure = foreground >= confidence
        if objects is None:
            labels = np.full(foreground.shape, ignore, dtype=np.uint8)
            labels[sure] = 1
        else:
            labels = np.full(foreground.shape, ignore, dtype=np.uint32)
            inside = sure & (objects > 0)
            labels[inside] = objects[inside]
        labels[foreground <= 1.0 - confidence] = 0
        return labels, {"foreground": confidence, "background": confidence}
    names = _shown_classes(target)
    lookup = np.array([names[name] for name in teacher_channels])
    dtype = np.min_scalar_type(max(ignore, int(lookup.max())))
    labels = np.full(maps.shape[1:], ignore, dtype=np.result_type(np.uint8, dtype))
    best = np.argmax(maps, axis=0)
    top = np.take_along_axis(maps, best[None], axis=0)[0]
    needed = np.full(len(teacher_channels), confidence, dtype=np.float64)
    if min_class_share:
        for channel in range(len(teacher_channels)):
            predicted = top[best == channel]
            if predicted.size:
                needed[channel] = min(confidence, np.quantile(predicted, 1.0 - min_class_share))
    sure = top >= needed[best]
    labels[sure] = lookup[best[sure]]
    return labels, {name: round(float(needed[i]), 4) for i, name in enumerate(teacher_channels)}


def _label_fractions(labels: NDArray[Any], target: TargetSettings, ignore: int) -> dict[str, float]:
    """Return the fraction of pseudo-labelled voxels of each class and of ignored ones."""
    if target.type == "multiclass":
        names = _shown_classes(target)
        fractions = {name: float(np.mean(labels == value)) for name, value in names.items()}
    else:  # foreground: 1, or object ids (instance pseudo-labels)
        fractions = {
            "foreground": float(np.mean((labels > 0) & (labels != ignore))),
            "background": float(np.mean(labels == 0)),
        }
    fractions["ignored"] = float(np.mean(labels == ignore))
    return fractions


def _teacher_objects(
    maps: NDArray[np.float32], spec: ModelSpec, card: Mapping[str, Any], voxel_size: VoxelSize
) -> NDArray[np.uint32]:
    """Segment the teacher's objects in its maps with the instance step of its card."""
    settings = card.get("instances") or {}
    if "boundary" not in spec.channels or settings.get("instances") in (None, "none"):
        raise ConfigError(
            "pseudo_labels.instances needs a teacher with a boundary channel and an instance "
            f"step in its card (instances: {settings.get('instances')!r}, channels "
            f"{list(spec.channels)})"
        )
    evaluation = card_evaluation(card, EvaluationSettings())
    return _instances(maps, spec=spec, voxel_size=voxel_size, evaluation=evaluation)


def _instances(
    maps: NDArray[np.float32],
    *,
    spec: ModelSpec,
    voxel_size: VoxelSize,
    evaluation: EvaluationSettings,
) -> NDArray[np.uint32]:
    """Objects of predicted maps with the instance method and settings of ``evaluation``."""
    return segment_instances(
        maps,
        spec=spec,
        voxel_size=voxel_size,
        method=evaluation.instances,
        foreground_threshold=evaluation.foreground_threshold,
        boundary_threshold=evaluation.boundary_threshold,
        min_size_nm3=evaluation.min_size_nm3,
        min_seed_size_nm3=evaluation.min_seed_size_nm3,
    )


def _teacher_digest(teacher_folder: Path) -> str:
    """Return a digest of a model folder's card and weights files."""
    digest = hashlib.sha256()
    for path in sorted(teacher_folder.iterdir()):
        if path.suffix in (".json", ".safetensors") and path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _pseudo_label_key(
    config: TrainConfig,
    settings: PseudoLabelSettings,
    teacher_digest: str,
    source: ImageSource,
    *,
    ignore: int,
) -> str:
    """Return a digest of everything a teacher's pseudo-labels of ``source`` depend on."""
    digest = hashlib.sha256(teacher_digest.encode())
    digest.update(
        json.dumps(
            {
                "source": source.describe(),
                # what labels a voxel (not: which model, images, share of the patches)
                "settings": settings.model_dump(
                    mode="json", exclude={"teacher", "sources", "share"}
                ),
                "ignore": ignore,
                "target": config.target.model_dump(mode="json"),
                "device": config.device,
                "vemkit": vemkit.__version__,
            },
            sort_keys=True,
        ).encode()
    )
    return digest.hexdigest()


def _saved_pseudo_labels(
    folder: Path, index: int, key: str
) -> tuple[NDArray[Any], dict[str, Any]] | None:
    """Read the labels and notes :func:`save_pseudo_labels` wrote with this key, if any."""
    record = folder / f"pseudo-labels-{index}.json"
    labels = folder / f"pseudo-labels-{index}.tif"
    if not (record.is_file() and labels.is_file()):
        return None
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("key") != key:
        return None
    return np.asarray(tifffile.imread(labels)), saved


def save_pseudo_labels(
    folder: Path, index: int, labels: NDArray[Any], key: str, notes: Mapping[str, Any]
) -> str:
    """Write a teacher's pseudo-labels (at the image's own voxel size) into a training folder.

    ``pseudo-labels-<index>.tif`` (zlib-compressed) and ``pseudo-labels-<index>.json`` (the
    key of everything they depend on: teacher files, image, settings, target; and
    ``notes``, e.g. the voxel fractions) are written atomically; a resumed training reuses
    them when its key is the same. Returns the TIFF's name.
    """
    tiff = folder / f"pseudo-labels-{index}.tif"
    record = folder / f"pseudo-labels-{index}.json"
    record.unlink(missing_ok=True)  # a key is never left beside other labels than its own
    with atomic_output(tiff, overwrite=True) as tmp:
        tifffile.imwrite(
            tmp, labels, compression="zlib", bigtiff=labels.nbytes >= 2**31, metadata=None
        )
    with atomic_output(record, overwrite=True) as tmp:
        tmp.write_text(
            json.dumps({**notes, "key": key}, indent=1),
            encoding="utf-8",
        )
    return tiff.name


def load_pseudo_labelled(
    config: TrainConfig,
    *,
    voxel_size_nm: Sequence[float] | None = None,
    planar: bool = False,
    reuse_from: Path | None = None,
) -> tuple[list[LoadedSource], dict[str, Any]]:
    """Label the recipe's ``pseudo_labels`` images with the teacher's predictions.

    Each image is predicted by the teacher at its own voxel size (the ``vemkit predict``
    code path); voxels with foreground probability ``>= confidence`` become 1, those
    ``<= 1 - confidence`` 0, the rest :func:`pseudo_ignore_value` (multiclass: the most
    probable class where its probability is ``>= confidence``, as the recipe's label value
    of that class). Image and labels are then resampled like the labelled sources.
    ``reuse_from``: a training folder whose saved pseudo-labels (:func:`save_pseudo_labels`)
    are reused where they were made from the same teacher, image and settings.

    Returns
    -------
    sources : list of LoadedSource
        One per image, ``ignore_value`` :func:`pseudo_ignore_value`.
    record : dict
        For the model card: the teacher, its training data licences and per image the
        fractions of sure voxels of each class (foreground, background) and of ignored ones.

    Raises
    ------
    ConfigError
        If :func:`check_source_models` refuses the teacher, or it is sure of no foreground or
        no background voxel of an image (multiclass: of fewer than two classes).
    """
    settings = config.pseudo_labels
    if settings is None:
        return [], {}
    check_source_models(config)
    teacher_folder = resolve_model(settings.teacher)
    card = read_model_info(teacher_folder)[1]
    teacher_digest = _teacher_digest(teacher_folder)  # once, not per image

    @functools.cache
    def teacher() -> tuple[torch.nn.Module, ModelSpec]:
        """Load the teacher's network once, only if an image needs labelling."""
        network, spec, _ = load_predictor(settings.teacher, device=config.device)
        return network, spec

    confidence = settings.confidence
    ignore = pseudo_ignore_value(config.target, instances=settings.instances)
    loaded: list[LoadedSource] = []
    images: list[dict[str, Any]] = []
    for index, source in enumerate(settings.sources):
        layer, license_text = _open_image(source)
        where = _where(source, layer)
        image = _read(layer, source.z_range, where)
        native_size = layer.voxel_size
        key = _pseudo_label_key(config, settings, teacher_digest, source, ignore=ignore)
        saved = _saved_pseudo_labels(reuse_from, index, key) if reuse_from else None
        if saved is not None and saved[0].shape == image.shape:
            log.info("reusing the pseudo-labels of %s saved in %s", where, reuse_from)
            labels, needed = saved[0], saved[1].get("class_confidence", {})
        else:
            log.info("pseudo-labelling %s %s with %s", where, image.shape, settings.teacher)
            network, spec = teacher()
            maps = predict_block(
                network, image, spec=spec, voxel_size=native_size, device=config.device
            )
            objects = (
                _teacher_objects(maps, spec, card, native_size) if settings.instances else None
            )
            labels, needed = _label_with_teacher(
                maps,
                spec.channels,
                config.target,
                confidence=confidence,
                ignore=ignore,
                min_class_share=settings.min_class_share,
                objects=objects,
            )
            del objects
            del maps
        fractions = _label_fractions(labels, config.target, ignore)
        native_labels = labels
        missing = [name for name, share in fractions.items() if name != "ignored" and not share]
        if config.target.type != "multiclass":
            if missing:
                raise ConfigError(
                    f"teacher {settings.teacher!r} is sure (confidence {confidence}) of no "
                    f"{missing[0]} voxel of {where}; lower pseudo_labels.confidence or use a "
                    "better teacher"
                )
        elif len(missing) >= len(fractions) - 2:  # sure of one class or of none
            raise ConfigError(
                f"teacher {settings.teacher!r} is sure (confidence {confidence}) of no "
                f"voxel of {where} in the classes {missing}; lower "
                "pseudo_labels.confidence, set pseudo_labels.min_class_share or use a better "
                "teacher"
            )
        size = native_size
        if voxel_size_nm is not None:
            image, labels, size = _resample_pair(
                image, labels, native_size, voxel_size_nm, planar=planar, where=where
            )
        as_source = DataSource(
            dataset=source.dataset,
            image=source.image,
            labels=f"pseudo-labels from {settings.teacher}",
            z_range=source.z_range,
            voxel_size=source.voxel_size,
            ignore_value=ignore,
        )
        files = {"image": source.image, "labels": as_source.labels}
        loaded.append(
            LoadedSource(
                as_source,
                image,
                labels,
                size,
                native_size,
                license_text,
                files,
                made=(native_labels, key),
            )
        )
        images.append(
            {
                **source.describe(),
                "native_voxel_size_nm": list(native_size.as_tuple()),
                "license": license_text,
                "voxel_fractions": {name: round(share, 4) for name, share in fractions.items()},
                **({"class_confidence": needed} if config.target.type == "multiclass" else {}),
            }
        )
    teacher_licences = card.get("license", {}).get("training_data", [])
    record = {
        "teacher": settings.teacher,
        "teacher_name": card.get("name"),
        "teacher_training_licences": list(teacher_licences),
        "confidence": confidence,
        "share": settings.share,
        **({"instances": True} if settings.instances else {}),
        "images": images,
    }
    return loaded, record


# --- targets, losses, metrics ----------------------------------------------------------------
def _target_fn(target: TargetSettings, spacing: tuple[float, ...]) -> Callable[..., Target]:
    width = target.boundary_width_nm
    if target.type == "binary":
        return binary_target
    if target.type == "multiclass":
        return functools.partial(semantic_target, classes=dict(target.classes or {}))
    if target.type == "foreground_boundary":
        return functools.partial(
            foreground_boundary_target,
            width_nm=width,
            voxel_size=spacing,
            border_unknown=True,
            per_channel=len(spacing) == 3,  # see foreground_boundary_target
        )
    if target.type == "boundary":
        return functools.partial(
            boundary_target, width_nm=width, voxel_size=spacing, border_unknown=True
        )
    return functools.partial(
        signed_distance_target,
        clip_nm=target.clip_nm,
        voxel_size=spacing,
        normalize=True,
        border_unknown=True,
    )


def _target_halo(
    target: TargetSettings, spacing: tuple[float, ...], patch_shape: Sequence[int]
) -> tuple[int, ...]:
    """Surroundings a 3D patch is drawn with so that its target is known up to its edges.

    Boundaries look ``boundary_width_nm / 2`` (at least the face neighbour) beyond a
    voxel, distances ``clip_nm``. Without surroundings the target is unknown there and
    left out of the loss: on ``4 × 160 × 160`` patches at 50 × 9.2 × 9.2 nm that is the
    first and last section, half of every patch, and such a network never learnt to
    predict the sections at a window's edges (foreground IoU 0.09 there vs 0.75 in the
    middle). 2D patches keep their 1–2-voxel rim out of the loss as before (a few percent
    of a 128² patch), so the shipped 2D recipes still reproduce their cards. The halo
    is at most the patch's own size along each axis (large ``clip_nm`` in small voxels).
    """
    if len(spacing) != 3 or target.type in ("binary", "multiclass"):
        return ()
    reach = target.clip_nm if target.type == "signed_distance" else target.boundary_width_nm / 2
    halo = [
        min(max(1, math.ceil(reach / s)), int(p)) for s, p in zip(spacing, patch_shape, strict=True)
    ]
    # Equal in y and x, so that 90-degree rotations keep the patch's shape.
    halo[1] = halo[2] = max(halo[1], halo[2])
    return tuple(halo)


def _loss(target: TargetSettings) -> torch.nn.Module:
    if target.type == "multiclass":
        return CrossEntropyLoss(class_weights=target.class_weights)
    if target.type == "signed_distance":
        return RegressionLoss(kind="smooth_l1", beta=0.1, activation="tanh")
    return BCEDiceLoss()


def _metric(target: TargetSettings) -> Callable[..., float]:
    """Return the validation metric (higher is better): IoU of channel 0 or macro IoU."""

    def binary_iou(prediction: torch.Tensor, truth: torch.Tensor, valid: Any) -> float:
        mask = torch.ones_like(truth[:, 0], dtype=torch.bool) if valid is None else valid.bool()
        if mask.ndim == prediction.ndim:
            mask = mask[:, 0]
        predicted = (prediction[:, 0] > 0) & mask
        actual = (truth[:, 0] > 0.5) & mask
        union = int((predicted | actual).sum())
        return 1.0 if union == 0 else int((predicted & actual).sum()) / union

    def class_iou(prediction: torch.Tensor, truth: torch.Tensor, valid: Any) -> float:
        mask = torch.ones_like(truth, dtype=torch.bool) if valid is None else valid.bool()
        predicted = prediction.argmax(1)
        scores = []
        for index in range(prediction.shape[1]):
            p, t = (predicted == index) & mask, (truth == index) & mask
            union = int((p | t).sum())
            if union:
                scores.append(int((p & t).sum()) / union)
        return float(np.mean(scores)) if scores else 1.0

    def distance_score(prediction: torch.Tensor, truth: torch.Tensor, valid: Any) -> float:
        mask = torch.ones_like(truth, dtype=torch.bool) if valid is None else valid.bool()
        mask = mask.expand_as(truth) if mask.ndim == truth.ndim else mask[:, None]
        error = (torch.tanh(prediction) - truth).abs()[mask]
        return -float(error.mean()) if error.numel() else 0.0

    if target.type == "multiclass":
        return class_iou
    if target.type == "signed_distance":
        return distance_score
    return binary_iou


class _MixedPatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Several :class:`PatchDataset` as one; ``set_epoch`` reaches all of them."""

    def __init__(self, parts: Sequence[PatchDataset]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part][index - int(self.offsets[part])]


def _split_samples(total: int, weights: Sequence[int]) -> list[int]:
    weights_array = np.asarray(weights, dtype=np.float64)
    shares = np.maximum(1, np.round(total * weights_array / weights_array.sum())).astype(int)
    return [int(s) for s in shares]


def _patch_datasets(
    config: TrainConfig,
    sources: Sequence[LoadedSource],
    *,
    total: int,
    normalization: Normalization,
    training: bool,
    context: int = 0,
    pseudo: Sequence[LoadedSource] = (),
    pseudo_share: float = 0.0,
    seed_offset: int = 0,
    sparse: bool = True,
) -> _MixedPatches:
    """Patches of the sources, ``pseudo_share`` of them from the pseudo-labelled ``pseudo``.

    ``sparse`` applies the recipe's simulated sparse annotation (training only);
    ``seed_offset`` shifts the patch seeds of these sources.
    """
    if pseudo:
        common: dict[str, Any] = {
            "normalization": normalization,
            "training": training,
            "context": context,
        }
        labelled_total = max(1, round(total * (1.0 - pseudo_share)))
        labelled = _patch_datasets(config, sources, total=labelled_total, **common)
        # Seeds of the pseudo-labelled parts: index offset 200 (labelled: 0..., validation 500...).
        extra = _patch_datasets(
            config,
            pseudo,
            total=max(1, total - labelled_total),
            seed_offset=200,
            sparse=False,
            **common,
        )
        return _MixedPatches([*labelled.parts, *extra.parts])
    dims = config.network.dims
    parts = []
    valids = []
    for index, loaded in enumerate(sources):
        valid = None
        if training and sparse and config.sparse is not None:
            sparse = config.sparse
            valid = sparse_plane_mask(
                loaded.labels.shape,
                every_n=sparse.every_n_planes,
                axis=sparse.axis,
                offset=sparse.offset,
                fraction_painted=sparse.fraction_painted,
                stroke_px=sparse.stroke_px,
                seed=sparse.seed + index,
            )
        valids.append(valid)
    if config.source_sampling == "equal":
        sizes = [1] * len(sources)
    else:  # in proportion to the labelled voxels
        sizes = [
            int(np.count_nonzero(v)) if v is not None else int(s.labels.size)
            for v, s in zip(valids, sources, strict=True)
        ]
    counts = _split_samples(total, sizes)
    for index, (loaded, valid, count) in enumerate(zip(sources, valids, counts, strict=True)):
        spacing = loaded.voxel_size.as_tuple()
        patch_spacing = spacing[1:] if dims == 2 else spacing
        sampler = PatchSampler(
            loaded.network_input(context),
            loaded.labels,
            patch_shape=config.patch_shape,
            axis=0,
            valid=valid,
            ignore_value=loaded.source.ignore_value,
            foreground_fraction=config.foreground_fraction,
            foreground=_foreground(config.target, loaded.labels, loaded.source.ignore_value),
        )
        augment = None
        if training and config.augment.enabled:
            settings = config.augment
            augment = Augmenter(
                voxel_size=patch_spacing,
                flip=settings.flip,
                rot90=settings.rot90,
                rotation_p=settings.rotation_p,
                elastic_p=settings.elastic_p,
                contrast_p=settings.contrast_p,
                gamma_p=settings.gamma_p,
                noise_p=settings.noise_p,
                blur_p=settings.blur_p,
                missing_section_p=settings.missing_section_p,
                misalignment_p=settings.misalignment_p,
            )
        parts.append(
            PatchDataset(
                sampler,
                samples_per_epoch=count,
                seed=config.seed * 1000 + seed_offset + index + (0 if training else 500),
                normalization=normalization,
                augment=augment,
                target_fn=_target_fn(config.target, patch_spacing),
                halo=_target_halo(config.target, patch_spacing, config.patch_shape),
            )
        )
    return _MixedPatches(parts)


def _foreground(
    target: TargetSettings, labels: NDArray[Any], ignore_value: int | None = None
) -> NDArray[np.bool_] | None:
    """Voxels to centre a share of the patches on (multi-class: every non-majority class).

    The majority is counted among the annotated voxels, and unannotated ones are no centres.
    """
    if target.type != "multiclass" or not target.classes:
        return None
    known = labels != ignore_value if ignore_value is not None else np.ones(labels.shape, bool)
    values, counts = np.unique(labels[known], return_counts=True)
    if not values.size:
        return np.zeros(labels.shape, bool)
    majority = values[np.argmax(counts)]
    return np.asarray((labels != majority) & known)


# --- model -----------------------------------------------------------------------------------
def _recipe_context(config: TrainConfig) -> int:
    """Neighbouring sections the trained network will take (from ``init_from`` if given)."""
    if config.init_from is None:
        return config.network.context_sections
    return context_sections(read_model_info(resolve_model(config.init_from))[0])


def build_model(
    config: TrainConfig, *, member: int = 0
) -> tuple[torch.nn.Module, UNetConfig, dict[str, Any]]:
    """Build one network to train: fresh (seeded), or the weights of ``init_from``.

    Parameters
    ----------
    config : TrainConfig
        The recipe (its ``seed`` seeds a fresh network).
    member : int
        Which network of an ``ensemble`` recipe this is: with ``init_from`` an ensemble
        model, network ``member`` starts from that model's member ``member`` (modulo its
        size).

    Returns
    -------
    network : torch.nn.Module
        A single network (never an ensemble) on the CPU, in training mode (encoder
        frozen when ``freeze_encoder``).
    unet_config : UNetConfig
        Its config (``ensemble == 1``).
    init : dict
        Where the weights came from (for the model card).
    """
    if config.init_from is None:
        unet = config.unet_config()
        return build_network(unet, seed=config.seed), unet, {"init": "random", "seed": config.seed}
    folder = resolve_model(config.init_from)
    source_config, source_card = read_model_info(folder)
    wanted = len(config.target.channels)
    if source_config.out_channels != wanted:
        raise ConfigError(
            f"init_from model {config.init_from!r} has {source_config.out_channels} output "
            f"channels but the {config.target.type} target needs {wanted}; fine-tune from a "
            "model with the same target type"
        )
    source = build_network(source_config, seed=config.seed)
    load_weights(folder, source)
    source_member = member % source_config.ensemble
    network = ensemble_members(source)[source_member]
    network.train()
    info: dict[str, Any] = {
        "init": "from_model",
        "init_from": config.init_from,
        "init_model_name": source_card.get("name", folder.name),
        "freeze_encoder": config.freeze_encoder,
    }
    if source_config.ensemble > 1:
        info["init_member"] = source_member
        if config.ensemble == 1:
            log.info(
                "init_from: %s is an ensemble of %d networks; fine-tuning its first (set "
                "ensemble: %d in the recipe to fine-tune them all)",
                config.init_from,
                source_config.ensemble,
                source_config.ensemble,
            )
    if config.freeze_encoder:
        info["frozen_parameters"] = freeze_encoder(network)
    if "network" in config.model_fields_set:
        log.warning(
            "init_from: the network section is ignored; the architecture of %s is used",
            config.init_from,
        )
    return network, source_config.member(), info


def _optimizer(
    config: TrainConfig, network: torch.nn.Module
) -> tuple[torch.optim.Optimizer, Any | None]:
    settings = config.optimizer
    parameters = [p for p in network.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if settings.name == "adam":
        optimizer = torch.optim.Adam(
            parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
    elif settings.name == "adamw":
        optimizer = torch.optim.AdamW(
            parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            parameters,
            lr=settings.learning_rate,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    scheduler: Any | None = None
    if settings.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=settings.learning_rate * 0.02
        )
    elif settings.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    return optimizer, scheduler


# --- evaluation ------------------------------------------------------------------------------
def _predict_source(
    network: torch.nn.Module,
    spec: ModelSpec,
    loaded: LoadedSource,
    *,
    device: str,
    tta: bool = False,
    precision: Precision = "auto",
) -> NDArray[np.float32]:
    """Predict the labelled sections of a source (its context margin feeds 2.5D models)."""
    maps = predict_block(
        network,
        loaded.image,
        spec=spec,
        voxel_size=loaded.voxel_size,
        device=device,
        tta=tta,
        precision=precision,
    )
    return maps[:, loaded.labelled]


def _score_source(
    config: TrainConfig,
    network: torch.nn.Module,
    spec: ModelSpec,
    loaded: LoadedSource,
    *,
    evaluation: EvaluationSettings,
    instance_labels: str | None,
    device: str,
    tta: bool = False,
    precision: Precision = "auto",
) -> dict[str, Any]:
    """Predict one held-out region (at its own voxel size) and score it."""
    start = time.perf_counter()
    maps = _predict_source(network, spec, loaded, device=device, tta=tta, precision=precision)
    seconds = time.perf_counter() - start
    size = loaded.voxel_size
    labels = loaded.labels
    result: dict[str, Any] = {
        "data": loaded.source.describe(),
        "shape": list(labels.shape),
        "voxel_size_nm": list(size.as_tuple()),
        "prediction_seconds": round(seconds, 2),
        "prediction_mvoxel_per_s": round(labels.size / max(seconds, 1e-9) / 1e6, 3),
    }
    outputs = segment_outputs(
        config, maps, loaded, spec=spec, evaluation=evaluation, instance_labels=instance_labels
    )
    result.update(score_outputs(config, outputs, spec=spec, voxel_size=size, evaluation=evaluation))
    return result


@dataclass(frozen=True)
class SegmentedRegion:
    """A held-out region's predictions turned into what is scored, with its truth.

    ``predicted`` / ``truth`` are class maps (multi-class targets; unknown truth is
    ``ignore_label``) or foreground masks (1; ``ignore_label`` 2 marks unannotated truth).
    ``objects`` / ``truth_objects`` are predicted and true instances where objects are
    scored (``objects_ignore`` marks unannotated truth).
    """

    predicted: NDArray[Any]
    truth: NDArray[Any]
    ignore_label: int | None
    objects: NDArray[Any] | None = None
    truth_objects: NDArray[Any] | None = None
    objects_ignore: int | None = None
    instance_ground_truth: str | None = None


def _scores_objects(target: TargetSettings, evaluation: EvaluationSettings) -> bool:
    return evaluation.instances != "none" and target.type in ("binary", "foreground_boundary")


def segment_outputs(
    config: TrainConfig,
    maps: NDArray[np.float32],
    loaded: LoadedSource,
    *,
    spec: ModelSpec,
    evaluation: EvaluationSettings,
    instance_labels: str | None = None,
) -> SegmentedRegion:
    """Threshold (and segment into objects) a region's predicted maps as the card does.

    Parameters
    ----------
    config : TrainConfig
        The recipe (target type and classes).
    maps : (C, Z, Y, X) ndarray
        Predictions for the labelled sections of ``loaded``.
    loaded : LoadedSource
        The region, at its own voxel size.
    spec : ModelSpec
        The model's channels.
    evaluation : EvaluationSettings
        Thresholds and the instance method.
    instance_labels : str, optional
        Label file with the true instances (default: the region's labels).

    Returns
    -------
    SegmentedRegion
    """
    labels = loaded.labels
    ignore = loaded.source.ignore_value
    target = config.target
    if target.type == "multiclass":
        lookup = dict(target.classes or {})
        truth = np.full(labels.shape, -1, dtype=np.int64)
        for value, index in lookup.items():
            truth[labels == value] = index
        unknown = truth < 0
        if ignore is not None:
            unknown |= labels == ignore
        truth[unknown] = len(spec.channels)
        return SegmentedRegion(
            predicted=maps.argmax(0).astype(np.int64),
            truth=truth,
            ignore_label=len(spec.channels),
        )
    if target.type == "signed_distance":
        predicted_fg = (maps[0] > 0).astype(np.uint8)
    elif target.type == "boundary":
        predicted_fg = (maps[0] > evaluation.boundary_threshold).astype(np.uint8)
    else:
        predicted_fg = (maps[0] > evaluation.foreground_threshold).astype(np.uint8)
    truth_fg = (labels > 0).astype(np.uint8)
    ignore_label = None
    if ignore is not None:
        truth_fg[labels == ignore] = 2
        ignore_label = 2
    if not _scores_objects(target, evaluation):
        return SegmentedRegion(predicted=predicted_fg, truth=truth_fg, ignore_label=ignore_label)
    if instance_labels is not None:
        gt_source = loaded.source.model_copy(update={"labels": instance_labels})
        truth_objects = load_source(gt_source, native=True).labels
    else:
        truth_objects = labels
    objects = _instances(maps, spec=spec, voxel_size=loaded.voxel_size, evaluation=evaluation)
    return SegmentedRegion(
        predicted=predicted_fg,
        truth=truth_fg,
        ignore_label=ignore_label,
        objects=objects,
        truth_objects=truth_objects,
        objects_ignore=ignore,
        instance_ground_truth=instance_labels or loaded.source.labels,
    )


def score_outputs(
    config: TrainConfig,
    region: SegmentedRegion,
    *,
    spec: ModelSpec,
    voxel_size: VoxelSize,
    evaluation: EvaluationSettings,
    blocks: Sequence[int] | None = None,
    block_counts: bool = False,
) -> dict[str, Any]:
    """Compute the card's metrics of one segmented region (see :func:`segment_outputs`).

    ``blocks`` sets the block-bootstrap grid of the confidence intervals (default:
    :func:`vemkit.measure.uncertainty.default_blocks`); ``block_counts`` keeps the
    counts of each block in them (for paired comparisons).
    """
    target = config.target
    if target.type == "multiclass":
        lookup = dict(target.classes or {})
        scores = evaluate(
            region.predicted,
            region.truth,
            voxel_size=voxel_size,
            instance=False,
            classes=tuple(range(len(spec.channels))),
            ignore_label=region.ignore_label,
            thresholds=evaluation.iou_thresholds,
        )
        per_class = {}
        for index, name in enumerate(spec.channels):
            entry = scores["per_class"].get(str(index)) or scores["per_class"].get(index) or {}
            per_class[name] = {
                k: entry.get(k) for k in ("f1", "iou", "precision", "recall", "support")
            }
        return {
            "macro_f1": scores["dice"],
            "weighted_f1": scores["weighted_f1"],
            "per_class": per_class,
            "class_mapping": {str(k): spec.channels[v] for k, v in lookup.items()},
            "confidence_intervals": bootstrap_class_scores(
                region.predicted,
                region.truth,
                range(len(spec.channels)),
                names=spec.channels,
                blocks=blocks,
                spacing=voxel_size.as_tuple(),
                ignore_label=region.ignore_label,
                block_counts=block_counts,
            ),
        }
    predicted_fg, truth_fg, ignore_label = region.predicted, region.truth, region.ignore_label
    spacing = voxel_size.as_tuple()
    semantic = evaluate(
        predicted_fg,
        truth_fg,
        voxel_size=voxel_size,
        instance=False,
        classes=(1,),
        ignore_label=ignore_label,
        thresholds=evaluation.iou_thresholds,
    )
    key = "boundary" if target.type == "boundary" else "foreground"
    result: dict[str, Any] = {
        f"{key}_iou": semantic["iou"],
        f"{key}_dice": semantic["dice"],
        f"{key}_precision": semantic["precision"],
        f"{key}_recall": semantic["recall"],
        f"{key}_f1": semantic["dice"],
    }
    if region.objects is None:
        result["confidence_intervals"] = bootstrap_scores(
            predicted_fg,
            truth_fg,
            instance=False,
            blocks=blocks,
            spacing=spacing,
            ignore_label=ignore_label,
            block_counts=block_counts,
        )
    radius = evaluation.boundary_dilation_px
    if radius and target.type in ("binary", "boundary"):
        known = truth_fg != 2
        precision, recall, f1 = _tolerant_scores(
            (predicted_fg == 1) & known, (truth_fg == 1) & known, radius_px=radius
        )
        result.update(
            {
                "boundary_tolerance_px": radius,
                f"{key}_precision_tolerant": precision,
                f"{key}_recall_tolerant": recall,
                f"{key}_f1_tolerant": f1,
            }
        )
    if region.objects is not None and region.truth_objects is not None:
        instance_scores = evaluate(
            region.objects,
            region.truth_objects,
            voxel_size=voxel_size,
            instance=True,
            thresholds=evaluation.iou_thresholds,
            ignore_label=region.objects_ignore,
        )
        result.update(
            instance_method=evaluation.instances,
            instance_ground_truth=region.instance_ground_truth,
            n_pred=instance_scores["n_pred"],
            n_gt=instance_scores["n_gt"],
            object_f1_at=dict(instance_scores["f1_at"]),
            # foreground of the final segmentation (after min_size_nm3), for reference
            instances_foreground_iou=instance_scores["iou"],
            instances_foreground_dice=instance_scores["dice"],
            instance_thresholds={
                "foreground": evaluation.foreground_threshold,
                "boundary": evaluation.boundary_threshold,
            },
            # how far the numbers of this one region may be from those of the next one
            confidence_intervals=bootstrap_scores(
                region.objects,
                region.truth_objects,
                thresholds=evaluation.iou_thresholds,
                blocks=blocks,
                spacing=spacing,
                ignore_label=region.objects_ignore,
                block_counts=block_counts,
            ),
        )
        result.update(
            _scores_without_small_truth(
                region,
                voxel_size,
                evaluation,
                instance_scores["f1_at"],
                blocks=blocks,
                block_counts=block_counts,
            )
        )
    return result


def _scores_without_small_truth(
    region: SegmentedRegion,
    voxel_size: VoxelSize,
    evaluation: EvaluationSettings,
    object_f1_at: Mapping[str, float | None],
    *,
    blocks: Sequence[int] | None = None,
    block_counts: bool = False,
) -> dict[str, Any]:
    """Object F1 with true objects below ``min_size_nm3`` left out (neither found nor missed).

    The segmentation removes every object below ``min_size_nm3``, so a true object that
    small can only be missed: in real data these are mostly slivers of objects cut by the
    edge of the image or of the scored block. Like the ignored small instances of the
    Cityscapes benchmark, they are here treated as unannotated (their voxels are left out
    of the matching; a predicted object that lies entirely on them is not counted). The
    card's ``object_f1_at`` still counts them; this is reported beside it. ``object_f1_at``
    (the scores with every true object) is returned again when none is that small.

    Where some are left out, ``confidence_intervals_without_small_truth`` holds the
    block-bootstrap intervals of these scores (on the ``blocks`` grid of the full scores,
    with the block counts a paired comparison needs when ``block_counts``); where none
    are, the full scores' ``confidence_intervals`` are the same.
    """
    truth = region.truth_objects
    if evaluation.min_size_nm3 <= 0 or truth is None or region.objects is None:
        return {}
    ids, sizes = label_sizes(truth)  # the size test of remove_small_objects
    ignore = region.objects_ignore
    if ignore is None:
        ignore = int(ids.max(initial=0)) + 1
    small = ids[(ids != ignore) & (sizes * voxel_size.volume_nm3 < evaluation.min_size_nm3)]
    if not small.size:
        return {
            "small_true_objects_left_out": 0,
            "object_f1_at_without_small_truth": dict(object_f1_at),
        }
    dtype = np.promote_types(truth.dtype, np.min_scalar_type(ignore))
    kept = np.where(np.isin(truth, small), ignore, truth).astype(dtype, copy=False)
    scores = evaluate(
        region.objects,
        kept,
        voxel_size=voxel_size,
        instance=True,
        thresholds=evaluation.iou_thresholds,
        ignore_label=ignore,
    )
    return {
        "small_true_objects_left_out": int(small.size),
        "object_f1_at_without_small_truth": dict(scores["f1_at"]),
        "confidence_intervals_without_small_truth": bootstrap_scores(
            region.objects,
            kept,
            thresholds=evaluation.iou_thresholds,
            blocks=blocks,
            spacing=voxel_size.as_tuple(),
            ignore_label=ignore,
            block_counts=block_counts,
        ),
    }


def _tolerant_scores(
    predicted: NDArray[np.bool_], truth: NDArray[np.bool_], *, radius_px: int
) -> tuple[float, float, float]:
    """Precision, recall and F1 of thin structures with a tolerance (boundary F1).

    A predicted voxel counts as correct when a true one lies within ``radius_px`` pixels
    in its z section (Euclidean), a true voxel as found when a predicted one does.
    """
    r = int(radius_px)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    footprint = (yy**2 + xx**2 <= r * r)[None]
    near_truth = ndimage.binary_dilation(truth, structure=footprint)
    near_predicted = ndimage.binary_dilation(predicted, structure=footprint)
    n_predicted, n_truth = int(np.count_nonzero(predicted)), int(np.count_nonzero(truth))
    precision = int(np.count_nonzero(predicted & near_truth)) / n_predicted if n_predicted else 1.0
    recall = int(np.count_nonzero(truth & near_predicted)) / n_truth if n_truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# The evaluation settings a model card keeps for `vemkit segment` and re-scoring.
_CARD_INSTANCE_KEYS = {
    "instances",
    "foreground_threshold",
    "boundary_threshold",
    "min_size_nm3",
    "min_seed_size_nm3",
}


def calibrates(config: TrainConfig) -> bool:
    """Whether the recipe's thresholds are chosen on its validation data after training."""
    return bool(
        config.evaluation.calibrate_thresholds
        and config.validation
        and config.target.type in ("binary", "foreground_boundary")
    )


def _choose_on_validation(
    config: TrainConfig,
    network: torch.nn.Module,
    spec: ModelSpec,
    *,
    device: str,
) -> dict[str, Any]:
    """Instance settings chosen on the validation sources, or ``{}`` if not asked for."""
    if not calibrates(config):
        return {}
    sources = [load_source(s, native=True, context=spec.context) for s in config.validation]
    return _calibrate(config, network, spec, sources, device=device)


def _calibrate(
    config: TrainConfig,
    network: torch.nn.Module,
    spec: ModelSpec,
    sources: Sequence[LoadedSource],
    *,
    device: str,
) -> dict[str, Any]:
    """Pick the thresholds best for (foreground IoU + object F1@0.5) / 2 on validation data.

    Only the validation sources are used, at their own voxel size, through
    :func:`predict_block` like the held-out evaluation.
    """
    predicted = [_predict_source(network, spec, s, device=device) for s in sources]
    chosen = choose_instance_settings(predicted, sources, spec=spec, evaluation=config.evaluation)
    log.info("chosen on the validation data: %s", chosen)
    return chosen


_CANDIDATE_FOREGROUND = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class CandidateScores:
    """One validation source's scores under every candidate instance setting.

    ``counts``: per foreground threshold, the (intersection, union) of the mask with the
    truth; ``f1``: per (method, foreground, boundary threshold), object F1@0.5 (empty
    without instances). Choices over several sources (:func:`choose_from_candidates`)
    add the counts and average the F1s, so each source is scored once however many
    choices it takes part in.
    """

    counts: dict[float, tuple[int, int]]
    f1: dict[tuple[InstanceMethod, float, float], float]


def _uses_instances(spec: ModelSpec, evaluation: EvaluationSettings) -> bool:
    return "boundary" in spec.channels and evaluation.instances != "none"


def _foreground_candidates(evaluation: EvaluationSettings) -> tuple[float, ...]:
    if evaluation.calibrate_foreground:
        return _CANDIDATE_FOREGROUND
    return (evaluation.foreground_threshold,)


def score_candidates(
    maps: NDArray[np.float32],
    source: LoadedSource,
    *,
    spec: ModelSpec,
    evaluation: EvaluationSettings,
) -> CandidateScores:
    """Score every candidate setting of :func:`choose_instance_settings` on one source."""
    known = np.ones(source.labels.shape, bool)
    if source.source.ignore_value is not None:
        known = source.labels != source.source.ignore_value
    truth = (source.labels > 0) & known
    foregrounds = _foreground_candidates(evaluation)
    counts = {}
    for t in foregrounds:
        mask = (maps[0] > t) & known
        counts[t] = (int(np.count_nonzero(mask & truth)), int(np.count_nonzero(mask | truth)))
    f1: dict[tuple[InstanceMethod, float, float], float] = {}
    if _uses_instances(spec, evaluation):
        for method in evaluation.instance_candidates or [evaluation.instances]:
            boundaries = (
                (evaluation.boundary_threshold,)
                if method == "connected_components_3d"
                else (0.3, 0.5, 0.7, 0.9)
            )
            for fg in foregrounds:
                for bd in boundaries:
                    objects = segment_instances(
                        maps,
                        spec=spec,
                        voxel_size=source.voxel_size,
                        method=method,
                        foreground_threshold=fg,
                        boundary_threshold=bd,
                        min_size_nm3=evaluation.min_size_nm3,
                        min_seed_size_nm3=evaluation.min_seed_size_nm3,
                    )
                    result = evaluate(
                        objects,
                        source.labels,
                        voxel_size=source.voxel_size,
                        instance=True,
                        thresholds=(0.5,),
                        ignore_label=source.source.ignore_value,
                    )
                    f1[method, fg, bd] = result["f1_at"]["0.5"] or 0.0
    return CandidateScores(counts, f1)


def choose_from_candidates(
    scores: Sequence[CandidateScores],
    *,
    spec: ModelSpec,
    evaluation: EvaluationSettings,
) -> dict[str, Any]:
    """Choose settings on several sources' candidate scores (see choose_instance_settings)."""

    def iou(threshold: float) -> float:
        inter = sum(s.counts[threshold][0] for s in scores)
        union = sum(s.counts[threshold][1] for s in scores)
        return inter / union if union else 1.0

    foregrounds = _foreground_candidates(evaluation)
    if missing := [t for t in foregrounds if any(t not in s.counts for s in scores)]:
        raise ValueError(
            f"candidate scores lack foreground thresholds {missing}: they were scored with "
            "other evaluation settings"
        )
    if not _uses_instances(spec, evaluation):
        foreground = max(foregrounds, key=lambda t: (round(iou(t), 4), -abs(t - 0.5)))
        return {"foreground_threshold": foreground}

    # One foreground threshold serves both the semantic mask and the instances, so
    # choose the pair (and method) best for the mean of foreground IoU and object F1@0.5.
    methods = list(evaluation.instance_candidates or [evaluation.instances])
    ious = {t: iou(t) for t in foregrounds}
    scored = {
        key: (ious[key[1]] + float(np.mean([s.f1[key] for s in scores]))) / 2
        for key in scores[0].f1
        if key[1] in ious
    }
    method, foreground, boundary = max(
        scored,
        key=lambda key: (
            round(scored[key], 4),
            -methods.index(key[0]),
            -abs(key[1] - 0.5),
            -abs(key[2] - 0.5),
        ),
    )
    chosen: dict[str, Any] = {"foreground_threshold": foreground, "boundary_threshold": boundary}
    if len(methods) > 1:
        chosen["instances"] = method
    return chosen


def choose_instance_settings(
    predicted: Sequence[NDArray[np.float32]],
    sources: Sequence[LoadedSource],
    *,
    spec: ModelSpec,
    evaluation: EvaluationSettings,
) -> dict[str, Any]:
    """Choose thresholds (and the instance method) for the best mean of IoU and object F1.

    Parameters
    ----------
    predicted : sequence of (C, Z, Y, X) ndarray
        Predicted maps of the labelled sections of each source.
    sources : sequence of LoadedSource
        The (validation) regions with their labels, at the maps' voxel size.
    spec : ModelSpec
        The model's channels.
    evaluation : EvaluationSettings
        The instance method, its candidates (``instance_candidates``) and
        ``min_size_nm3``.

    Returns
    -------
    dict
        ``foreground_threshold``; with a boundary channel and instances also
        ``boundary_threshold``, and ``instances`` when there were candidates. Ties go to
        the configured method, then to thresholds nearest 0.5. IoU counts all sources'
        voxels together; object F1 is the mean over the sources.
    """
    scores = [
        score_candidates(maps, source, spec=spec, evaluation=evaluation)
        for maps, source in zip(predicted, sources, strict=True)
    ]
    return choose_from_candidates(scores, spec=spec, evaluation=evaluation)


def _score_test_sources(
    config: TrainConfig,
    network: torch.nn.Module,
    spec: ModelSpec,
    test_sources: Sequence[LoadedSource],
    *,
    evaluation: EvaluationSettings,
    device: str,
    tta: bool = False,
    precision: Precision = "auto",
) -> list[dict[str, Any]]:
    """Score every held-out source (against its instance ground truth file, if named)."""
    gt_files: list[str | None] = [None] * len(test_sources)
    if evaluation.ground_truth_instances is not None:
        gt_files = list(evaluation.ground_truth_instances)
    return [
        _score_source(
            config,
            network,
            spec,
            loaded,
            evaluation=evaluation,
            instance_labels=gt_file,
            device=device,
            tta=tta,
            precision=precision,
        )
        for loaded, gt_file in zip(test_sources, gt_files, strict=True)
    ]


def changed_fields(a: TrainConfig, b: TrainConfig, *, ignore: Sequence[str] = ()) -> list[str]:
    """Return the top-level recipe fields in which ``a`` and ``b`` differ, except ``ignore``."""
    return [
        name
        for name in TrainConfig.model_fields
        if name not in ignore and getattr(a, name) != getattr(b, name)
    ]


def recipe_changes(stored: Any, config: TrainConfig, *, ignore: Sequence[str] = ()) -> list[str]:
    """Return the top-level fields in which a stored recipe differs from ``config``.

    ``stored`` is the parsed YAML of a ``recipe.yaml``; both are compared as parsed
    recipes, so fields added to vemkit since (with their defaults) do not count.

    Raises
    ------
    ConfigError
        ``stored`` is not a valid recipe.
    """
    if not isinstance(stored, Mapping):
        raise ConfigError(f"expected a recipe mapping, got {type(stored).__name__}")
    return changed_fields(parse_train_config(stored), config, ignore=ignore)


def card_evaluation(card: Mapping[str, Any], evaluation: EvaluationSettings) -> EvaluationSettings:
    """Return a recipe's evaluation settings with the instance settings its model card chose."""
    chosen = {
        key: value
        for key, value in (card.get("instances") or {}).items()
        if key in EvaluationSettings.model_fields and key != "iou_thresholds"
    }
    return evaluation.model_copy(update=chosen)


def score_model(
    model: str | os.PathLike[str],
    *,
    tta: bool = False,
    device: str = "cpu",
    precision: Precision = "auto",
) -> dict[str, Any]:
    """Re-measure a model's held-out metrics on this machine, as its card reports them.

    The test regions, the scoring and the instance thresholds come from the model card
    (its recipe and its validation-chosen thresholds); nothing is recalibrated and the
    card is not changed.

    Parameters
    ----------
    model : str or path
        Shipped model name or model folder.
    tta : bool
        Average the predictions over flips (see :func:`predict_block`).
    device : str
        Where the network runs.
    precision : {"auto", "float32", "bfloat16"}
        Autocast of the network (the card's numbers are measured with ``"auto"``).

    Returns
    -------
    dict
        ``held_out`` (the card's summary keys), ``per_source``, ``card_held_out`` (the
        card's own numbers, for comparison), ``tta``, ``precision``, ``machine`` and
        ``date``.

    Raises
    ------
    ConfigError
        If the card holds no `vemkit train` recipe with test data.
    """
    network, spec, card = load_predictor(model, device=device)
    recipe = card.get("recipe")
    if not recipe:
        raise ConfigError(f"model {str(model)!r} has no recipe in its card; cannot re-score it")
    if not isinstance(recipe, str):
        raise ConfigError(
            f"model {str(model)!r} was not trained by `vemkit train`; its card names the command "
            f"that trains and re-measures it: {card.get('command', '(none)')}"
        )
    config = parse_train_config(yaml.safe_load(recipe), where=f"card of {str(model)!r}")
    if not config.test:
        raise ConfigError(f"the recipe of {str(model)!r} names no test data")
    evaluation = card_evaluation(card, config.evaluation)
    test_sources = [load_source(s, native=True, context=spec.context) for s in config.test]
    per_source = _score_test_sources(
        config,
        network,
        spec,
        test_sources,
        evaluation=evaluation,
        device=device,
        tta=tta,
        precision=precision,
    )
    return {
        "model": card.get("name", str(model)),
        "held_out": _summarise(per_source),
        "per_source": per_source,
        "card_held_out": (card.get("metrics") or {}).get("held_out", {}),
        "tta": tta,
        "precision": resolve_precision(precision, device).name,
        "machine": _machine(device),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def recalibrate_model(
    model: str | os.PathLike[str],
    config: TrainConfig,
    *,
    output: str | os.PathLike[str],
    recipe_text: str | None = None,
    command: str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Apply a recipe's new ``evaluation`` settings to a trained model, without retraining.

    The instance settings are chosen again on the recipe's validation sources (when
    ``calibrate_thresholds``), the held-out metrics are measured again, and the model is
    written to ``output`` with its weights unchanged and an updated card (recipe,
    instance settings, metrics, and a ``recalibrations`` entry with the previous ones).

    Parameters
    ----------
    model : str or path
        Shipped model name or model folder, trained by ``vemkit train``.
    config : TrainConfig
        The model's recipe; only ``evaluation`` and ``notes`` may differ from the card's.
    output : path-like
        New model folder (the model itself is never modified).
    recipe_text : str, optional
        The recipe file's text for the card (default: ``config`` as YAML).
    command : str, optional
        The command line (recorded).
    overwrite : bool
        Replace an existing model folder at ``output``.
    device : str
        Where the network runs.

    Returns
    -------
    dict
        The new card.

    Raises
    ------
    ConfigError
        If the recipe changes anything but the evaluation, or ``output`` is taken.
    """
    source = resolve_model(model)
    folder = Path(output)
    if folder.resolve() == source.resolve():
        raise ConfigError("write the recalibrated model to a new folder; the model is not modified")
    if folder.exists() and not overwrite:
        raise ConfigError(f"output {str(folder)!r} already exists; choose another or --overwrite")
    if folder.exists() and not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"refusing to overwrite {str(folder)!r}: it is not a vemkit model folder")
    network, spec, card = load_predictor(source, device=device)
    if not isinstance(card.get("recipe"), str):
        raise ConfigError(f"model {str(model)!r} was not trained by `vemkit train`; no recipe")
    trained = parse_train_config(yaml.safe_load(card["recipe"]), where=f"card of {str(model)!r}")
    changed = changed_fields(
        trained, config, ignore=("evaluation", "notes", "device", "precision", "output")
    )
    if changed:
        raise ConfigError(
            f"the recipe changes {', '.join(changed)} of the trained model; only evaluation "
            "(and notes) can change without retraining: use vemkit train"
        )
    instances = config.evaluation.model_dump(include=_CARD_INSTANCE_KEYS)
    chosen = _choose_on_validation(config, network, spec, device=device)
    evaluation = config.evaluation.model_copy(update=chosen)
    if chosen:
        instances.update(chosen, calibrated_on="validation")
    test_sources = [load_source(s, native=True, context=spec.context) for s in config.test]
    per_source = _score_test_sources(
        config, network, spec, test_sources, evaluation=evaluation, device=device
    )
    previous = {
        "instances": card.get("instances"),
        "held_out": (card.get("metrics") or {}).get("held_out"),
        "recipe": card.get("recipe"),
    }
    new_card = {
        **card,
        "instances": instances,
        "recipe": recipe_text
        if recipe_text is not None
        else yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
        "notes": list(config.notes),
        "metrics": {"held_out": _summarise(per_source), "per_source": per_source},
        "recalibrations": [
            *(card.get("recalibrations") or []),
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "command": command,
                "machine": _machine(device),
                "previous": previous,
            },
        ],
    }
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    write_model_card(tmp, new_card)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return new_card


def _summarise(per_source: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each scalar metric (and of object F1 per threshold) over the test sources."""
    summary: dict[str, Any] = {}
    if not per_source:
        return summary
    keys = [k for k, v in per_source[0].items() if isinstance(v, float) and "seconds" not in k]
    for key in keys:
        values = [s[key] for s in per_source if isinstance(s.get(key), float)]
        if values:
            summary[key] = round(float(np.mean(values)), 4)
    if "object_f1_at" in per_source[0]:
        summary["object_f1_at"] = {
            t: round(float(np.mean([s["object_f1_at"][t] or 0.0 for s in per_source])), 4)
            for t in per_source[0]["object_f1_at"]
        }
    if "per_class" in per_source[0]:
        summary["per_class_f1"] = {
            name: round(float(np.mean([s["per_class"][name]["f1"] or 0.0 for s in per_source])), 4)
            for name in per_source[0]["per_class"]
        }
    return summary


# --- the pipeline ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingOutcome:
    """What :func:`run_training` produced.

    ``results`` holds one training history per network of the recipe (``None`` for a
    network a resumed run reused).
    """

    output: Path
    model: Path
    card: dict[str, Any]
    results: list[TrainResult | None]
    seconds: float

    @property
    def metrics(self) -> dict[str, Any]:
        """The held-out summary metrics of the model card."""
        return dict(self.card.get("metrics", {}).get("held_out", {}))


def _prepare_output(folder: Path, *, overwrite: bool) -> None:
    if folder.exists():
        if not overwrite:
            raise ConfigError(
                f"output folder {str(folder)!r} already exists; choose another output "
                "(output: in the recipe or --output), pass --resume to go on with an "
                "interrupted training of this recipe, or --overwrite to start again"
            )
        if any(folder.iterdir()) and not (folder / RECIPE_FILE).is_file():
            raise ConfigError(
                f"refusing to overwrite {str(folder)!r}: it is not a vemkit training output "
                f"(no {RECIPE_FILE}); choose an empty or new folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _can_resume(folder: Path, config: TrainConfig) -> bool:
    """Whether ``folder`` holds an interrupted training of this recipe (False: start afresh).

    Raises
    ------
    ConfigError
        ``folder`` holds a training of another recipe.
    """
    path = folder / RECIPE_FILE
    if not path.is_file():
        if folder.exists() and any(folder.iterdir()):
            raise ConfigError(
                f"cannot resume in {str(folder)!r}: it is not a vemkit training output (no "
                f"{RECIPE_FILE}); choose another output folder"
            )
        return False
    try:
        # Settings applied after training, or that do not change what is trained, may differ.
        changed = recipe_changes(
            yaml.safe_load(path.read_text(encoding="utf-8")), config, ignore=_RESUME_MAY_CHANGE
        )
    except (yaml.YAMLError, ConfigError) as error:
        raise ConfigError(
            f"cannot resume: {str(path)!r} is not a readable recipe: {error}"
        ) from None
    if changed:
        raise ConfigError(
            f"cannot resume in {str(folder)!r}: the recipe changed ({', '.join(changed)}) "
            "since that training began; pass --overwrite to start again"
        )
    return True


_RESUME_MAY_CHANGE = (
    "device",
    "precision",
    "output",
    "description",
    "notes",
    "test",
    "evaluation",
    "prediction",
    "max_train_minutes",
)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(device: str) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "device": device,
        "cuda_device": torch.cuda.get_device_name(0)
        if device.startswith("cuda") and torch.cuda.is_available()
        else None,
    }


def _member_config(config: TrainConfig) -> UNetConfig:
    """Config of one network the recipe trains (the ``init_from`` model's architecture)."""
    if config.init_from is None:
        return config.unet_config()
    return read_model_info(resolve_model(config.init_from))[0].member()


def _train_network(
    config: TrainConfig,
    train_sources: Sequence[LoadedSource],
    val_sources: Sequence[LoadedSource],
    *,
    normalization: Normalization,
    context: int,
    checkpoint_dir: Path,
    card: Mapping[str, Any],
    member: int,
    progress: Progress | None,
    resume: bool = False,
    pseudo_sources: Sequence[LoadedSource] = (),
) -> tuple[torch.nn.Module, dict[str, Any], TrainResult | None, dict[str, Any]]:
    """Train one network of the recipe (seeded by ``config.seed``) and load its best weights.

    With ``resume``, a network finished before (its record in ``checkpoint_dir``) is
    loaded instead of trained (``result`` is then ``None``), and an interrupted one goes
    on from its last checkpoint.

    Returns
    -------
    network : torch.nn.Module
        With the best checkpoint's weights.
    init : dict
        Where its starting weights came from (:func:`build_model`).
    result : TrainResult
        The training history.
    record : dict
        Its training record for the model card (epochs, best epoch, history, seconds).
    """
    network, unet_config, init_info = build_model(config, member=member)
    record_path = checkpoint_dir / NETWORK_RECORD_FILE
    if resume and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        load_weights(checkpoint_dir / "best", network)
        log.info("%s was trained before; reusing it", checkpoint_dir)
        return network, init_info, None, record
    resume_from = checkpoint_dir / "last" if resume and (checkpoint_dir / "last").is_dir() else None
    epochs_before = 0
    if resume_from is not None:
        epochs_before = int(read_model_info(resume_from)[1].get("training", {}).get("epoch", 0))
    train_data = _patch_datasets(
        config,
        train_sources,
        total=config.samples_per_epoch,
        normalization=normalization,
        training=True,
        context=context,
        pseudo=pseudo_sources,
        pseudo_share=config.pseudo_labels.share if config.pseudo_labels is not None else 0.0,
    )
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = torch.utils.data.DataLoader(
        train_data,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
    )
    if len(train_loader) == 0:
        raise ConfigError(
            f"samples_per_epoch ({config.samples_per_epoch}) is smaller than batch_size "
            f"({config.batch_size}); raise samples_per_epoch"
        )
    val_loader = None
    if val_sources:
        val_data = _patch_datasets(
            config,
            val_sources,
            total=config.validation_samples,
            normalization=normalization,
            training=False,
            context=context,
        )
        val_loader = torch.utils.data.DataLoader(val_data, batch_size=config.batch_size)

    if unet_config.dims == 2 and torch.device(config.device).type == "cpu":
        # oneDNN convolutions are faster on NHWC tensors (about 1.3x measured).
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer, scheduler = _optimizer(config, network)
    log.info(
        "training %s: %d parameters (%d trainable), %d batches per epoch",
        config.name,
        count_parameters(network),
        count_parameters(network, trainable_only=True),
        len(train_loader),
    )
    train_start = time.perf_counter()
    result = train(
        network,
        train_loader,
        val_loader,
        _loss(config.target),
        optimizer,
        epochs=config.epochs,
        checkpoint_dir=checkpoint_dir,
        device=config.device,
        precision=config.precision,
        config=unet_config,
        card=card,
        metric_fn=_metric(config.target) if val_loader is not None else None,
        early_stopping_patience=config.early_stopping_patience,
        scheduler=scheduler,
        grad_clip_norm=config.optimizer.grad_clip_norm,
        progress=progress,
        seed=config.seed,
        max_seconds=None if config.max_train_minutes is None else 60.0 * config.max_train_minutes,
        resume_from=resume_from,
    )
    # A resumed network also counts the epochs it ran before the interruption.
    train_seconds = (
        time.perf_counter()
        - train_start
        + sum(r.seconds for r in result.history if r.epoch <= epochs_before)
    )
    load_weights(result.best_checkpoint, network)
    record = {
        "seed": config.seed,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_value": result.best_value,
        "stopped_early": result.stopped_early,
        "stopped_by_time_budget": result.stopped_by_time,
        "train_seconds": round(train_seconds, 1),
        "precision": result.precision,
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
    # Written last and atomically: its presence means the network is finished.
    temporary = record_path.with_name(record_path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, record_path)
    return network, init_info, result, record


def _training_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Build the model card's training record: one network's, or an ensemble's."""
    if len(records) == 1:
        record = dict(records[0])
        del record["seed"]  # the init record has it
        return record
    return {
        "ensemble": len(records),
        "seeds": [r["seed"] for r in records],
        "epochs_run": sum(r["epochs_run"] for r in records),
        "best_epoch": [r["best_epoch"] for r in records],
        "monitor": records[0]["monitor"],
        "stopped_by_time_budget": any(r["stopped_by_time_budget"] for r in records),
        "train_seconds": round(sum(r["train_seconds"] for r in records), 1),
        "precision": records[0].get("precision"),
        "networks": list(records),
    }


def run_training(
    config: TrainConfig,
    *,
    recipe_text: str | None = None,
    command: str | None = None,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
) -> TrainingOutcome:
    """Train the model a recipe describes, evaluate it on held-out data, write the model.

    Parameters
    ----------
    config : TrainConfig
        The recipe.
    recipe_text : str, optional
        The recipe file's exact text (stored in ``recipe.yaml`` and the model card);
        default: ``config`` dumped as YAML.
    command : str, optional
        The command line that ran the training (model card).
    output : path-like, optional
        Overrides ``config.output``.
    overwrite : bool
        Replace an existing training output folder.
    resume : bool
        Go on with an interrupted training of the same recipe in the output folder:
        networks trained before are reused, an interrupted one continues from its last
        checkpoint (epoch, optimizer, schedule and early-stopping state). A folder that
        does not exist yet is started afresh.
    progress : Progress, optional
        One task per epoch.

    Returns
    -------
    TrainingOutcome
        The output folder, the model folder (``OUTPUT/model``), its card and the
        training history.

    Notes
    -----
    With ``ensemble: N`` the recipe's network is trained N times, with seeds ``seed`` to
    ``seed + N - 1`` (checkpoints in ``OUTPUT/checkpoints/network-<i>``), and the model
    is their :class:`~vemkit.ml.networks.Ensemble`: thresholds are chosen and held-out
    metrics measured on the averaged maps.
    """
    start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    folder = Path(output) if output is not None else config.output_folder()
    text = (
        recipe_text
        if recipe_text is not None
        else yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    check_source_models(config)
    voxel = config.voxel_size_nm
    planar = config.network.dims == 2
    context = _recipe_context(config)
    options: dict[str, Any] = {"voxel_size_nm": voxel, "planar": planar, "context": context}
    train_sources = [load_source(s, **options) for s in config.train]
    val_sources = [load_source(s, **options) for s in config.validation]
    test_sources = [load_source(s, native=True, context=context) for s in config.test]
    working_size = train_sources[0].voxel_size
    for loaded in train_sources[1:] + val_sources:
        compared = slice(1, 3) if planar else slice(0, 3)
        if not np.allclose(
            loaded.voxel_size.as_tuple()[compared], working_size.as_tuple()[compared], rtol=1e-3
        ):
            raise ConfigError(
                f"training sources have different voxel sizes ({working_size} and "
                f"{loaded.voxel_size}); set voxel_size_nm in the recipe to resample them all"
            )
    resume = resume and _can_resume(folder, config)
    pseudo_sources, pseudo_record = load_pseudo_labelled(
        config,
        voxel_size_nm=working_size.as_tuple(),
        planar=planar,
        reuse_from=folder if resume else None,
    )
    if not resume:
        _prepare_output(folder, overwrite=overwrite)
    (folder / RECIPE_FILE).write_text(text, encoding="utf-8")
    for index, loaded in enumerate(pseudo_sources):
        entry = pseudo_record["images"][index]
        if loaded.made is not None:
            labels, key = loaded.made
            notes = {k: entry[k] for k in ("voxel_fractions", "class_confidence") if k in entry}
            entry["labels_file"] = save_pseudo_labels(folder, index, labels, key, notes)
            loaded.made = None  # the folder holds them now
        entry["preview"] = _save_pseudo_preview(
            folder / f"pseudo-labels-{index}.png", loaded, config.target
        )

    norm_settings = config.normalization
    normalization = fit_normalization(
        np.concatenate([s.image.reshape(-1) for s in train_sources]),
        mode=norm_settings.mode,
        lower_percentile=norm_settings.lower_percentile,
        upper_percentile=norm_settings.upper_percentile,
        clip=norm_settings.clip,
    )
    unet_config = dataclasses.replace(_member_config(config), ensemble=config.ensemble)
    card: dict[str, Any] = {
        "name": config.name,
        "task": config.task,
        "description": config.description,
        "target": {
            "type": config.target.type,
            "boundary_width_nm": config.target.boundary_width_nm
            if config.target.type in ("foreground_boundary", "boundary")
            else None,
            "clip_nm": config.target.clip_nm if config.target.type == "signed_distance" else None,
        },
        "channels": list(config.target.channels),
        "classes": (
            {str(k): config.target.channels[v] for k, v in (config.target.classes or {}).items()}
            if config.target.type == "multiclass"
            else None
        ),
        "voxel_size_nm": list(working_size.as_tuple()),
        "normalization": normalization.to_dict(),
        "architecture": unet_config.to_dict(),
        "context_sections": context,
        "patch_shape": list(config.patch_shape),
        "prediction": config.prediction.model_dump(),
        "instances": config.evaluation.model_dump(include=_CARD_INSTANCE_KEYS),
        "vemkit_version": vemkit.__version__,
    }
    members: list[torch.nn.Module] = []
    results: list[TrainResult | None] = []
    records: list[dict[str, Any]] = []
    init_info: dict[str, Any] = {}
    for index in range(config.ensemble):
        # Network i of an ensemble: seed + i for its weights, patches and shuffling.
        member_config = config.model_copy(update={"seed": config.seed + index})
        if config.ensemble > 1:
            log.info(
                "training network %d of %d (seed %d)",
                index + 1,
                config.ensemble,
                member_config.seed,
            )
        network, info, result, record = _train_network(
            member_config,
            train_sources,
            val_sources,
            normalization=normalization,
            context=context,
            checkpoint_dir=folder / CHECKPOINT_DIR
            if config.ensemble == 1
            else folder / CHECKPOINT_DIR / f"network-{index}",
            card=card,
            member=index,
            progress=progress,
            resume=resume,
            pseudo_sources=pseudo_sources,
        )
        init_info = init_info or info
        members.append(network)
        results.append(result)
        records.append(record)
    network = members[0] if config.ensemble == 1 else Ensemble(members, unet_config)

    # The best checkpoints are the model; score it on the held-out data like `vemkit predict`.
    if config.weights_dtype == "float16":
        round_to_float16(network)  # score exactly what is stored
    network.eval()
    card["weights_dtype"] = config.weights_dtype
    spec = ModelSpec.from_card(unet_config, card, name=config.name)
    chosen = _choose_on_validation(config, network, spec, device=config.device)
    evaluation = config.evaluation.model_copy(update=chosen)
    if chosen:
        card["instances"].update(chosen, calibrated_on="validation")
    per_source = _score_test_sources(
        config, network, spec, test_sources, evaluation=evaluation, device=config.device
    )
    held_out = _summarise(per_source)

    def data_entries(sources: Sequence[LoadedSource]) -> list[dict[str, Any]]:
        return [
            {**s.source.describe(), "native_voxel_size_nm": list(s.native_voxel_size.as_tuple())}
            for s in sources
        ]

    licenses = sorted(
        {s.license for s in train_sources + val_sources + pseudo_sources}
        | set(pseudo_record.get("teacher_training_licences", []))
    )
    card.update(
        {
            "training_data": data_entries(train_sources),
            **({"pseudo_labels": pseudo_record} if pseudo_record else {}),
            "validation_data": data_entries(val_sources),
            "test_data": data_entries(test_sources),
            "license": {
                "training_data": licenses,
                "by_source": {
                    s.source.dataset or s.source.image: s.license
                    for s in train_sources + val_sources + pseudo_sources
                },
                "note": "the weights derive from the training data; its license terms apply "
                "to their use",
            },
            "recipe": text,
            "command": command or f"vemkit train {RECIPE_FILE}",
            "metrics": {"held_out": held_out, "per_source": per_source},
            "notes": list(config.notes),
            "training": {
                **init_info,
                **_training_summary(records),
                "total_seconds": round(time.perf_counter() - start, 1),
                "started": started,
                "machine": _machine(config.device),
            },
        }
    )
    model_dir = save_model(
        folder / MODEL_DIR, network, unet_config, card, weights_dtype=config.weights_dtype
    )
    (folder / METRICS_FILE).write_text(
        json.dumps(card["metrics"], indent=2, default=str) + "\n", encoding="utf-8"
    )
    seconds = time.perf_counter() - start
    log.info("trained %s in %.0f s; model in %s", config.name, seconds, model_dir)
    return TrainingOutcome(
        output=folder, model=model_dir, card=card, results=results, seconds=seconds
    )
