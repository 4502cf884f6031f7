"""Training and evaluation data of the ``nuclei-em`` model: synthetic nuclei in real EM.

No real EM nucleus ground truth exists in ``../shared/data`` (the volumes are neuropil
crops), so the nucleus model is trained on scenes from
:func:`vemkit.synth.nuclei.make_nuclei_scene`: random nuclei (ellipsoids with envelope,
heterochromatin, nucleolus) painted into *real* EM backgrounds. This module does the
part that touches files: it opens the backgrounds with :func:`vemkit.datasets.load_layer`,
resamples them (anti-aliased) to the model's working voxel size, and builds scenes,
exact signed-distance targets, 2D training planes and the evaluation scores.

Backgrounds are split once: :data:`TRAINING_BACKGROUNDS` are used for training and
validation (and for the "held-out seeds" score), :data:`UNSEEN_BACKGROUNDS` are never
shown to the network and only used for the "unseen EM context" score.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from vemkit.datasets import load_layer
from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import Box, VoxelSize
from vemkit.measure import match_instances
from vemkit.ml.augment import Augmenter
from vemkit.ml.normalize import Normalization, normalize
from vemkit.segmentation import distance_watershed
from vemkit.synth.config import PhantomConfig
from vemkit.synth.nuclei import (
    NucleiPlan,
    NucleiSceneConfig,
    label_nuclei,
    plan_nuclei_scene,
    render_nuclei_scene,
    synthetic_background,
    tile_background,
)
from vemkit.synth.phantom import make_phantom

__all__ = [
    "CLIP_NM",
    "MASK_THRESHOLD_NM",
    "SEED_THRESHOLD_NM",
    "TRAINING_BACKGROUNDS",
    "UNSEEN_BACKGROUNDS",
    "WORKING_VOXEL_SIZE",
    "BackgroundSource",
    "NucleiSample",
    "NucleusPlanes",
    "load_background",
    "make_nuclei_sample",
    "make_phantom_sample",
    "nuclei_distance_target",
    "resample_texture",
    "score_nuclei",
    "segment_nuclei_distance",
    "summarise_nuclei_scores",
]

log = logging.getLogger(__name__)

#: Voxel size (nm, z y x) the nucleus model works at: nuclei of 3–15 µm are 30–150 voxels.
WORKING_VOXEL_SIZE = VoxelSize(100.0, 100.0, 100.0)
#: Signed distances are clipped to ±3 µm (and regressed as distance / 3 µm).
CLIP_NM = 3000.0
#: Post-processing defaults (webKnossos): seeds deeper than 1 µm, mask at the border.
SEED_THRESHOLD_NM = 1000.0
MASK_THRESHOLD_NM = 0.0


@dataclass(frozen=True)
class BackgroundSource:
    """One raw volume of the shared datasets used as EM context.

    Parameters
    ----------
    dataset : str
        Dataset name in ``../shared/data``.
    key : str
        File stem of the raw volume.
    """

    dataset: str
    key: str

    @property
    def name(self) -> str:
        """``dataset/key``."""
        return f"{self.dataset}/{self.key}"


#: Backgrounds the network is trained (and validated) on.
TRAINING_BACKGROUNDS: tuple[BackgroundSource, ...] = (
    BackgroundSource("drosophila_vnc_sstem", "stack1_z00-14_raw"),
    BackgroundSource("drosophila_vnc_sstem", "stack2_raw"),
    BackgroundSource("isbi2012_vnc_sstem", "train_z00-24_raw"),
    BackgroundSource("gala_medulla_fibsem", "train_raw"),
    BackgroundSource("gala_medulla_fibsem", "test_raw"),
)
#: Backgrounds never shown in training: the "unseen EM context" score.
UNSEEN_BACKGROUNDS: tuple[BackgroundSource, ...] = (
    BackgroundSource("neuroproof_medulla_fibsem", "training_sample1_raw"),
    BackgroundSource("isbi2012_vnc_sstem", "test_raw"),
)


def resample_texture(
    array: ArrayLike,
    *,
    voxel_size: VoxelSize | Sequence[float],
    target_voxel_size: VoxelSize | Sequence[float],
) -> NDArray[np.float32]:
    """Resample a raw volume to another voxel size, anti-aliased when shrinking.

    A Gaussian of ``sigma = sqrt(f**2 - 1) / 2`` voxels (``f`` the shrink factor of an
    axis) is applied before linear interpolation, about what a detector with the
    coarser pixel would have recorded.

    Parameters
    ----------
    array : (Z, Y, X) ndarray
        Raw intensities.
    voxel_size, target_voxel_size : VoxelSize or (z, y, x) floats
        Voxel size of ``array`` and the one wanted, in nm.

    Returns
    -------
    ndarray of float32
        The resampled volume (at least one voxel per axis).
    """
    volume = np.asarray(array, dtype=np.float32)
    if volume.ndim != 3 or volume.size == 0:
        raise InvalidVolumeError(f"expected a non-empty (Z, Y, X) volume, got {volume.shape}")
    source = VoxelSize.coerce(voxel_size).as_tuple()
    target = VoxelSize.coerce(target_voxel_size).as_tuple()
    factors = [t / s for s, t in zip(source, target, strict=True)]
    sigma = [0.5 * math.sqrt(f * f - 1.0) if f > 1.0 else 0.0 for f in factors]
    if any(s > 0 for s in sigma):
        volume = ndimage.gaussian_filter(volume, sigma, mode="mirror")
    shape = [max(1, round(n / f)) for n, f in zip(volume.shape, factors, strict=True)]
    zoom = [m / n for m, n in zip(shape, volume.shape, strict=True)]
    out = ndimage.zoom(volume, zoom, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1], : shape[2]].astype(np.float32, copy=False)


def load_background(
    source: BackgroundSource,
    *,
    voxel_size: VoxelSize = WORKING_VOXEL_SIZE,
    scale: float = 1.0,
    root: str | None = None,
) -> NDArray[np.float32]:
    """Open a shared raw volume and resample it to serve as background at ``voxel_size``.

    Parameters
    ----------
    source : BackgroundSource
        Which volume.
    voxel_size : VoxelSize
        The scene voxel size in nm.
    scale : float
        Texture scale jitter: the volume is resampled to ``scale * voxel_size`` and then
        used as if it had ``voxel_size`` (``scale > 1`` makes its structures look
        smaller).
    root : str, optional
        Data folder (default ``$VEMKIT_DATA`` or ``../shared/data``).

    Returns
    -------
    ndarray of float32
        The background texture.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"scale must be a positive number, got {scale!r}")
    layer = load_layer(source.dataset, source.key, root=root)
    if layer.voxel_size is None:
        raise ConfigError(f"{source.name} has no voxel size in its dataset.json")
    target = VoxelSize(*(v * scale for v in voxel_size.as_tuple()))
    return resample_texture(layer.read(), voxel_size=layer.voxel_size, target_voxel_size=target)


class NucleiSample(NamedTuple):
    """A scene with its training target.

    Attributes
    ----------
    raw : (Z, Y, X) ndarray of uint8
        The image.
    nuclei : (Z, Y, X) ndarray of uint32
        Nucleus instances.
    distance_nm : (Z, Y, X) ndarray of float32
        Signed distance to the nearest nucleus border (positive inside), clipped.
    plan : NucleiPlan or None
        The drawn scene (``None`` for a scene made from a phantom).
    """

    raw: NDArray[np.uint8]
    nuclei: NDArray[np.uint32]
    distance_nm: NDArray[np.float32]
    plan: NucleiPlan | None


def nuclei_distance_target(plan: NucleiPlan, *, clip_nm: float = CLIP_NM) -> NDArray[np.float32]:
    """Exact clipped signed distance of a planned scene, including nuclei cut by its border.

    Labels are rendered on the volume grown, on each face that a nucleus crosses, by
    ``clip_nm`` plus one voxel (nuclei continue beyond the volume, and nothing further
    away can change a clipped distance). Distances are Euclidean between voxel centres
    as in :func:`vemkit.ml.targets.signed_distance_target`: positive inside, to the
    nearest voxel outside the nucleus; negative outside, to the nearest nucleus voxel.
    Nuclei never touch, so one transform of the foreground is exact per instance.

    Returns
    -------
    ndarray of float32
        ``plan.shape``, signed distance in nm in ``[-clip_nm, clip_nm]``.
    """
    if not clip_nm > 0:
        raise ConfigError(f"clip_nm must be positive, got {clip_nm!r}")
    volume = Box.from_shape(plan.shape)
    spacing = plan.voxel_size.as_tuple()
    margin = [math.ceil(clip_nm / v) + 1 for v in spacing]
    lo, hi = [0, 0, 0], list(plan.shape)
    for nucleus in plan.nuclei:
        box = nucleus.shape.bounding_box(plan.voxel_size)
        for a in range(3):
            lo[a] = min(lo[a], max(box.offset[a], -margin[a]))
            hi[a] = max(hi[a], min(box.stop[a], plan.shape[a] + margin[a]))
    grown = Box.from_bounds(lo, hi)
    foreground = label_nuclei(plan, grown) > 0
    if not foreground.any():
        return np.full(plan.shape, -clip_nm, dtype=np.float32)
    inside = ndimage.distance_transform_edt(foreground, sampling=spacing)
    outside = ndimage.distance_transform_edt(~foreground, sampling=spacing)
    distance = np.where(foreground, inside, -outside).astype(np.float32)
    np.clip(distance, -clip_nm, clip_nm, out=distance)
    return distance[volume.to_slices(grown)]


def make_nuclei_sample(
    texture: ArrayLike | None,
    *,
    shape: Sequence[int],
    seed: int,
    voxel_size: VoxelSize = WORKING_VOXEL_SIZE,
    config: NucleiSceneConfig | None = None,
    clip_nm: float = CLIP_NM,
) -> NucleiSample:
    """Make one scene over a background texture (tiled to ``shape``) with its target.

    Parameters
    ----------
    texture : (Z, Y, X) ndarray or None
        Background at ``voxel_size`` (see :func:`load_background`); ``None`` uses
        :func:`~vemkit.synth.nuclei.synthetic_background`.
    shape : (3,) ints
        Scene shape in voxels.
    seed : int
        Scene seed (tiling, nuclei, imaging).
    voxel_size : VoxelSize
        Scene voxel size in nm.
    config : NucleiSceneConfig, optional
        Ranges of the scene generator.
    clip_nm : float
        Distance clip in nm.
    """
    shape3 = tuple(int(s) for s in shape)
    background: NDArray[Any]
    if texture is None:
        background = synthetic_background(shape3, voxel_size=voxel_size, seed=seed)
    else:
        background = tile_background(texture, shape3, seed=seed)
    plan = plan_nuclei_scene(shape3, voxel_size=voxel_size, seed=seed, config=config)
    raw, nuclei = render_nuclei_scene(plan, background)
    distance = nuclei_distance_target(plan, clip_nm=clip_nm)
    return NucleiSample(raw, nuclei, distance, plan)


def _signed_distance_continued(
    foreground: NDArray[np.bool_], *, spacing: Sequence[float], clip_nm: float
) -> NDArray[np.float32]:
    """Clipped signed distance of a mask whose objects continue straight beyond its faces.

    The mask is edge-padded by ``clip_nm`` (plus a voxel) before the transforms, so a
    nucleus cut by the volume face is not given a border there.
    """
    margin = [math.ceil(clip_nm / v) + 1 for v in spacing]
    padded = np.pad(foreground, [(m, m) for m in margin], mode="edge")
    if not padded.any():
        return np.full(foreground.shape, -clip_nm, dtype=np.float32)
    if padded.all():
        return np.full(foreground.shape, clip_nm, dtype=np.float32)
    inside = ndimage.distance_transform_edt(padded, sampling=spacing)
    outside = ndimage.distance_transform_edt(~padded, sampling=spacing)
    distance = np.where(padded, inside, -outside).astype(np.float32)
    np.clip(distance, -clip_nm, clip_nm, out=distance)
    crop = tuple(slice(m, m + n) for m, n in zip(margin, foreground.shape, strict=True))
    return distance[crop]


def make_phantom_sample(
    config: PhantomConfig,
    *,
    voxel_size: VoxelSize = WORKING_VOXEL_SIZE,
    clip_nm: float = CLIP_NM,
) -> NucleiSample:
    """Make a training/evaluation scene from a phantom (:func:`vemkit.synth.make_phantom`).

    The phantom is generated at its own (finer) voxel size, then brought to
    ``voxel_size`` as the segment pipeline sees it: the image anti-aliased
    (:func:`resample_texture`), nucleus labels by their area fraction (> 0.5) and the
    nearest fine voxel. The distance target assumes that nuclei cut by a volume face
    continue straight beyond it (the phantom does not say what lies outside).

    Parameters
    ----------
    config : PhantomConfig
        The phantom; give real anatomy (``cell_size_nm``, ``nucleus_diameter_nm``).
    voxel_size : VoxelSize
        Voxel size of the scene in nm.
    clip_nm : float
        Distance clip in nm.

    Returns
    -------
    NucleiSample
        With ``plan=None``.
    """
    if not clip_nm > 0:
        raise ConfigError(f"clip_nm must be positive, got {clip_nm!r}")
    phantom = make_phantom(config)
    source = phantom.voxel_size
    image = resample_texture(phantom.raw, voxel_size=source, target_voxel_size=voxel_size)
    raw = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    fraction = resample_texture(
        (phantom.nuclei > 0).astype(np.float32), voxel_size=source, target_voxel_size=voxel_size
    )
    foreground = fraction > 0.5
    index = [
        np.minimum(
            ((np.arange(n) + 0.5) * voxel_size.as_tuple()[a] / source.as_tuple()[a]).astype(int),
            phantom.nuclei.shape[a] - 1,
        )
        for a, n in enumerate(raw.shape)
    ]
    nuclei = np.where(foreground, phantom.nuclei[np.ix_(*index)], 0).astype(np.uint32)
    distance = _signed_distance_continued(
        nuclei > 0, spacing=voxel_size.as_tuple(), clip_nm=clip_nm
    )
    return NucleiSample(raw, nuclei, distance, None)


class NucleusPlanes(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """2D training planes (along z, y and x) from 3D nucleus scenes.

    Item ``i`` of epoch ``e`` is drawn with ``np.random.default_rng([seed, e, i])``: a
    scene, an axis, a plane (with probability ``foreground_fraction`` one that cuts a
    nucleus) and a random window; then normalisation, augmentation and the target
    ``distance / clip_nm`` in [-1, 1].

    Parameters
    ----------
    samples : sequence of NucleiSample
        Isotropic scenes (planes of every axis have the same pixel size).
    patch_shape : (2,) ints
        Window (rows, columns) in voxels; at most the scene size.
    samples_per_epoch : int
        Dataset length.
    normalization : Normalization
        Fitted intensity normalisation.
    augment : Augmenter, optional
        Applied to each plane.
    clip_nm : float
        Distance clip (targets are divided by it).
    foreground_fraction : float
        Share of planes that cut a nucleus.
    seed : int
        Random seed.
    scene_weights : sequence of float, optional
        Relative probability of drawing each scene (default: equal).
    """

    def __init__(
        self,
        samples: Sequence[NucleiSample],
        *,
        patch_shape: Sequence[int],
        samples_per_epoch: int,
        normalization: Normalization,
        augment: Augmenter | None = None,
        clip_nm: float = CLIP_NM,
        foreground_fraction: float = 0.7,
        seed: int = 0,
        scene_weights: Sequence[float] | None = None,
    ) -> None:
        if not samples:
            raise ConfigError("NucleusPlanes needs at least one scene")
        self.scene_p: NDArray[np.float64] | None = None
        if scene_weights is not None:
            weights = np.asarray(scene_weights, dtype=np.float64)
            if weights.shape != (len(samples),) or not (weights >= 0).all() or weights.sum() <= 0:
                raise ConfigError(
                    f"scene_weights must be {len(samples)} non-negative numbers with a "
                    f"positive sum, got {scene_weights!r}"
                )
            self.scene_p = weights / weights.sum()
        if not normalization.is_fitted:
            raise ConfigError("NucleusPlanes needs a fitted normalization")
        self.samples = list(samples)
        self.patch_shape = tuple(int(p) for p in patch_shape)
        for sample in self.samples:
            if min(sample.raw.shape) < max(self.patch_shape):
                raise ConfigError(
                    f"scene {sample.raw.shape} is smaller than the patch {self.patch_shape}"
                )
        self.samples_per_epoch = int(samples_per_epoch)
        self.normalization = normalization
        self.augment = augment
        self.clip_nm = float(clip_nm)
        self.foreground_fraction = float(foreground_fraction)
        self.seed = int(seed)
        self.epoch = 0
        # Plane indices, per scene and axis, that cut a nucleus.
        self.foreground_planes = [
            [
                np.flatnonzero((s.nuclei > 0).any(axis=tuple(b for b in range(3) if b != a)))
                for a in range(3)
            ]
            for s in self.samples
        ]

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        if self.scene_p is None:
            k = int(rng.integers(len(self.samples)))
        else:
            k = int(rng.choice(len(self.samples), p=self.scene_p))
        sample = self.samples[k]
        axis = int(rng.integers(3))
        planes = self.foreground_planes[k][axis]
        if len(planes) and rng.random() < self.foreground_fraction:
            plane = int(rng.choice(planes))
        else:
            plane = int(rng.integers(sample.raw.shape[axis]))
        take = [slice(None)] * 3
        take[axis] = slice(plane, plane + 1)
        sl = tuple(take)
        raw = np.squeeze(sample.raw[sl], axis=axis)
        distance = np.squeeze(sample.distance_nm[sl], axis=axis)
        rows, cols = raw.shape
        py, px = self.patch_shape
        y0 = int(rng.integers(rows - py + 1))
        x0 = int(rng.integers(cols - px + 1))
        window = (slice(y0, y0 + py), slice(x0, x0 + px))
        image = normalize(raw[window][None], self.normalization)
        target = distance[window] / np.float32(self.clip_nm)
        mask = np.ones(self.patch_shape, dtype=bool)
        if self.augment is not None:
            image, target, mask = self.augment(image, target, mask, rng=rng)
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)[None]),
            torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),
        )


def segment_nuclei_distance(
    distance_nm: ArrayLike,
    *,
    voxel_size: VoxelSize,
    smooth_sigma_nm: float = 0.0,
    seed_threshold_nm: float = SEED_THRESHOLD_NM,
    mask_threshold_nm: float = MASK_THRESHOLD_NM,
    min_seed_size_nm3: float = 0.0,
    min_size_nm3: float = 0.0,
) -> NDArray[np.uint32]:
    """Nucleus instances from a predicted signed distance map.

    :func:`~vemkit.segmentation.distance_watershed`: seeds are the connected parts
    deeper than ``seed_threshold_nm``, grown over ``distance > mask_threshold_nm``; seeds
    smaller than ``min_seed_size_nm3`` are ignored and objects smaller than
    ``min_size_nm3`` removed. With ``smooth_sigma_nm > 0`` the map is first smoothed
    by a Gaussian of that standard deviation (nm), which removes the plane-to-plane
    stripes of tri-axis 2D predictions that would otherwise break seeds into pieces.

    Parameters
    ----------
    distance_nm : (Z, Y, X) ndarray of float
        Signed distance in nm, positive inside nuclei.
    voxel_size : VoxelSize
        Voxel size in nm.
    smooth_sigma_nm, seed_threshold_nm, mask_threshold_nm : float
        In nm, see above.
    min_seed_size_nm3, min_size_nm3 : float
        In nm³, see above.

    Returns
    -------
    (Z, Y, X) ndarray of uint32
        Nucleus instances 1..N.
    """
    if not (math.isfinite(smooth_sigma_nm) and smooth_sigma_nm >= 0):
        raise ConfigError(f"smooth_sigma_nm must be a number >= 0, got {smooth_sigma_nm!r}")
    distance = np.asarray(distance_nm, dtype=np.float32)
    if smooth_sigma_nm > 0:
        sigma = [smooth_sigma_nm / v for v in voxel_size.as_tuple()]
        distance = ndimage.gaussian_filter(distance, sigma, mode="nearest")
    return distance_watershed(
        distance,
        voxel_size=voxel_size,
        seed_threshold_nm=seed_threshold_nm,
        mask_threshold_nm=mask_threshold_nm,
        min_seed_size_nm3=min_seed_size_nm3,
        min_size_nm3=min_size_nm3,
    )


def score_nuclei(
    prediction: NDArray[np.integer[Any]], truth: NDArray[np.integer[Any]]
) -> dict[str, Any]:
    """Count matches and overlaps of one volume (pool them with summarise_nuclei_scores).

    Returns
    -------
    dict
        ``tp/fp/fn`` at IoU 0.5 and 0.75, the IoUs of the pairs matched at 0.5, the
        foreground intersection and sizes (for Dice), and the object counts.
    """
    scores = match_instances(prediction, truth, thresholds=(0.5, 0.75))
    at50, at75 = scores.at(0.5), scores.at(0.75)
    fg_pred, fg_true = prediction > 0, truth > 0
    return {
        "n_pred": scores.n_pred,
        "n_gt": scores.n_gt,
        "tp50": at50.tp,
        "fp50": at50.fp,
        "fn50": at50.fn,
        "tp75": at75.tp,
        "fp75": at75.fp,
        "fn75": at75.fn,
        "matched_iou50": [float(v) for v in at50.matched_score],
        "intersection": int(np.count_nonzero(fg_pred & fg_true)),
        "pred_voxels": int(np.count_nonzero(fg_pred)),
        "gt_voxels": int(np.count_nonzero(fg_true)),
        "f1_50": at50.f1,
        "f1_75": at75.f1,
    }


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else float("nan")


def summarise_nuclei_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool per-volume counts: object F1 at IoU 0.5 / 0.75, Dice, mean matched IoU.

    Object counts and voxel counts are summed over the volumes before the ratios are
    taken (micro average); the mean matched IoU averages every pair matched at 0.5.
    """
    tp50 = sum(r["tp50"] for r in rows)
    fp50 = sum(r["fp50"] for r in rows)
    fn50 = sum(r["fn50"] for r in rows)
    tp75 = sum(r["tp75"] for r in rows)
    fp75 = sum(r["fp75"] for r in rows)
    fn75 = sum(r["fn75"] for r in rows)
    ious = [v for r in rows for v in r["matched_iou50"]]
    inter = sum(r["intersection"] for r in rows)
    sizes = sum(r["pred_voxels"] + r["gt_voxels"] for r in rows)
    return {
        "volumes": len(rows),
        "n_gt": sum(r["n_gt"] for r in rows),
        "n_pred": sum(r["n_pred"] for r in rows),
        "f1_iou50": round(_f1(tp50, fp50, fn50), 4),
        "f1_iou75": round(_f1(tp75, fp75, fn75), 4),
        "precision_iou50": round(tp50 / (tp50 + fp50), 4) if tp50 + fp50 else None,
        "recall_iou50": round(tp50 / (tp50 + fn50), 4) if tp50 + fn50 else None,
        "dice": round(2 * inter / sizes, 4) if sizes else None,
        "mean_matched_iou": round(float(np.mean(ious)), 4) if ious else None,
        "tp_fp_fn_iou50": [tp50, fp50, fn50],
        "tp_fp_fn_iou75": [tp75, fp75, fn75],
    }
