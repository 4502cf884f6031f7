"""``vemkit predict``: run a shipped or trained model on a volume, write probability maps.

The per-block work is one plain array function, :func:`predict_block` (raw ``(Z, Y, X)``
array in, ``(C, Z, Y, X)`` float32 maps out on the same grid); :func:`predict_volume`
opens the input, checks the memory budget, calls :func:`predict_block` on the whole
volume in memory and writes every output channel as an image layer of a *new* dataset.
The blockwise engine can later lift :func:`predict_block` unchanged (with a halo of
about half a tile).

Output layers are named ``<model>_<channel>`` (e.g. ``mito-em_foreground``,
``mito-em_boundary``) and hold, by target type:

* probabilities in [0, 1] (``binary``, ``boundary``, ``foreground_boundary``,
  ``multiclass`` — one layer per class, softmax);
* signed distances in nm, positive inside objects (``signed_distance``).

With ``dtype="float32"`` (default) values are stored as computed. With ``dtype="uint8"``
probabilities are stored as ``round(255 * p)`` (a quarter of the space; divide by 255 to
read them back); distance maps cannot be stored as uint8.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from numpy.typing import ArrayLike, NDArray
from torch import nn

from vemkit.errors import ConfigError, InvalidVolumeError, MemoryBudgetError, VoxelSizeError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import check_output_path
from vemkit.io.dataset import Dataset
from vemkit.io.registry import open_layer
from vemkit.io.validate import require_volume, require_voxel_size
from vemkit.ml.networks import UNetConfig
from vemkit.ml.normalize import Normalization
from vemkit.ml.precision import Precision, faster_precision_hint, resolve_precision
from vemkit.ml.predict import context_stack, predict_array, predict_triaxis, resample_to_shape
from vemkit.ml.zoo import load_zoo_model, resolve_model
from vemkit.pipelines import DEFAULT_MEMORY_BUDGET_GB
from vemkit.pipelines.convert import refuse_input_as_output
from vemkit.progress import Progress
from vemkit.segmentation import boundary_watershed, connected_components, remove_small_objects

__all__ = [
    "DEFAULT_MEMORY_BUDGET_GB",
    "TARGET_TYPES",
    "MemoryBudgetError",
    "ModelSpec",
    "PredictionResult",
    "context_sections",
    "estimate_prediction_bytes",
    "load_predictor",
    "predict_block",
    "predict_volume",
    "resample_planes",
    "segment_instances",
]

log = logging.getLogger(__name__)


TargetType = Literal["binary", "multiclass", "foreground_boundary", "signed_distance", "boundary"]
TARGET_TYPES: tuple[str, ...] = (
    "binary",
    "multiclass",
    "foreground_boundary",
    "signed_distance",
    "boundary",
)
_ACTIVATIONS: dict[str, Literal["sigmoid", "softmax", "tanh"]] = {
    "binary": "sigmoid",
    "boundary": "sigmoid",
    "foreground_boundary": "sigmoid",
    "multiclass": "softmax",
    "signed_distance": "tanh",
}
InstanceMethod = Literal[
    "none", "boundary_watershed_3d", "boundary_watershed_2d", "connected_components_3d"
]


def default_channels(target_type: str, n_classes: int = 0) -> tuple[str, ...]:
    """Output channel names of a target type (``class<i>`` for unnamed classes)."""
    if target_type == "foreground_boundary":
        return ("foreground", "boundary")
    if target_type == "binary":
        return ("foreground",)
    if target_type == "boundary":
        return ("boundary",)
    if target_type == "signed_distance":
        return ("distance",)
    return tuple(f"class{i}" for i in range(n_classes))


@dataclass(frozen=True)
class ModelSpec:
    """What prediction needs to know about a model, read from its card.

    Attributes
    ----------
    name : str
        Model name; prefix of the output layer names.
    target_type : str
        One of :data:`TARGET_TYPES`.
    channels : tuple of str
        Name of each output channel (``foreground``, ``boundary``, class names...).
    voxel_size : VoxelSize or None
        Voxel size (nm) the model expects; inputs are resampled to it. ``None``: the
        input is used at its own voxel size.
    normalization : Normalization
        Intensity normalisation used in training.
    dims : {2, 3}
        2D networks run plane by plane along z (or along z, y, x with tri-axis).
    tile : int
        Largest window edge in voxels (at the model voxel size).
    overlap : float
        Fraction by which windows overlap.
    batch_size : int
        Windows per network call.
    clip_nm : float or None
        For ``signed_distance``: the tanh output times this is the distance in nm.
    divisor : tuple of int
        Window sizes are rounded up to multiples of these (the network's pooling).
    context : int
        2.5D models: neighbouring sections on each side fed as extra input channels
        (see :func:`vemkit.ml.predict.context_stack`); 0 for plain 2D and 3D models.
    min_window : int
        The smallest training patch edge: tri-axis windows across a flat block are not
        made narrower than this (the plane is mirrored up to it), so the network sees
        at least the context it was trained with.
    """

    name: str
    target_type: str
    channels: tuple[str, ...]
    voxel_size: VoxelSize | None
    normalization: Normalization
    dims: int
    tile: int = 512
    overlap: float = 0.125
    batch_size: int = 2
    clip_nm: float | None = None
    divisor: tuple[int, ...] = (16, 16)
    context: int = 0
    min_window: int = 0

    @classmethod
    def from_card(
        cls, config: UNetConfig, card: Mapping[str, Any], *, name: str | None = None
    ) -> ModelSpec:
        """Build the spec from a network config and a model card (see ``vemkit train``)."""
        target = card.get("target") or {}
        target_type = str(target.get("type", "binary"))
        if target_type not in TARGET_TYPES:
            raise ConfigError(
                f"model card target type {target_type!r} is unknown; expected one of "
                f"{', '.join(TARGET_TYPES)}"
            )
        channels = tuple(str(c) for c in card.get("channels") or ()) or default_channels(
            target_type, config.out_channels
        )
        if len(channels) != config.out_channels:
            raise ConfigError(
                f"model card lists {len(channels)} channels but the network has "
                f"{config.out_channels} outputs"
            )
        voxel = card.get("voxel_size_nm")
        prediction = card.get("prediction") or {}
        norm = card.get("normalization")
        clip = target.get("clip_nm")
        return cls(
            name=str(name or card.get("name") or "model"),
            target_type=target_type,
            channels=channels,
            voxel_size=VoxelSize.coerce(voxel) if voxel else None,
            normalization=Normalization.from_dict(norm) if norm else Normalization(),
            dims=config.dims,
            tile=int(prediction.get("tile", 512)),
            overlap=float(prediction.get("overlap", 0.125)),
            batch_size=int(prediction.get("batch_size", 2)),
            clip_nm=float(clip) if clip is not None else None,
            divisor=config.shape_divisor(),
            min_window=min(int(p) for p in card.get("patch_shape") or [0]),
            context=context_sections(config),
        )

    @property
    def activation(self) -> Literal["sigmoid", "softmax", "tanh"]:
        """Activation applied to the network output."""
        return _ACTIVATIONS[self.target_type]

    @property
    def is_probability(self) -> bool:
        """Whether the outputs are probabilities in [0, 1]."""
        return self.target_type != "signed_distance"


def context_sections(config: UNetConfig) -> int:
    """Neighbouring sections on each side that a network takes as input channels.

    vEM raw data has one channel, so a 2D network with ``2k + 1`` input channels is a
    2.5D network fed sections ``z - k .. z + k`` (:func:`vemkit.ml.predict.context_stack`).

    Raises
    ------
    ConfigError
        For an even number of input channels, or several for a 3D network.
    """
    channels = int(config.in_channels)
    if channels == 1:
        return 0
    if config.dims != 2 or channels % 2 == 0:
        raise ConfigError(
            f"a {config.dims}D network with {channels} input channels cannot take "
            "single-channel EM; only 2D networks with 2k+1 channels (k neighbouring sections "
            "on each side) are supported"
        )
    return (channels - 1) // 2


def _working_shape(
    shape: Sequence[int],
    voxel_size: VoxelSize | None,
    model_voxel_size: VoxelSize | None,
    *,
    planar: bool = False,
) -> tuple[int, ...]:
    """Shape of ``shape`` resampled to the model voxel size (y, x only when ``planar``).

    A 2D model sees one plane at a time, so only the in-plane voxel size must match; z is
    kept (a 2D model trained on 50 nm sections also runs on 10 nm FIB-SEM planes).
    """
    if voxel_size is None or model_voxel_size is None:
        return tuple(int(s) for s in shape)
    working = tuple(
        max(1, round(n * s / t))
        for n, s, t in zip(shape, voxel_size.as_tuple(), model_voxel_size.as_tuple(), strict=True)
    )
    return (int(shape[0]), *working[1:]) if planar else working


def resample_planes(array: NDArray[Any], shape: Sequence[int]) -> NDArray[np.float32]:
    """Resample ``(..., Z, Y, X)`` to ``shape`` linearly, like ``ml.resample_to_shape``.

    When z is unchanged (2D models) this runs ``torch.nn.functional.interpolate``
    (bilinear, half-pixel centres, edges clamped), which gives the values of
    :func:`vemkit.ml.predict.resample_to_shape` (scipy ``zoom`` with ``grid_mode``) to
    within about 1e-4 of the value range (exactly for factors of 2), about 7× faster;
    otherwise it calls ``resample_to_shape``.
    """
    target = tuple(int(n) for n in shape)
    spatial = array.shape[-3:]
    if tuple(spatial) == target:
        return np.asarray(array, dtype=np.float32)
    if spatial[0] != target[0]:
        return resample_to_shape(array, target, order=1)
    lead = array.shape[:-3]
    planes = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(
        -1, 1, *spatial[1:]
    )
    out = torch.empty((planes.shape[0], 1, *target[1:]), dtype=torch.float32)
    step = 16  # planes per call: bounds the temporary memory
    with torch.inference_mode():
        for start in range(0, planes.shape[0], step):
            out[start : start + step] = F.interpolate(
                planes[start : start + step],
                size=target[1:],
                mode="bilinear",
                align_corners=False,
            )
    return out.reshape(*lead, *target).numpy()


def _windows_along(size: int, patch: int, overlap: float) -> int:
    """Count the windows :func:`~vemkit.ml.predict.predict_array` uses along one axis."""
    margin = round(overlap * patch / 2)
    padded = size + 2 * margin + max(patch - (size + 2 * margin), 0)
    step = max(1, int(patch * (1 - overlap)))
    count = len(range(0, padded - patch + 1, step))
    return count + (0 if (count - 1) * step == padded - patch else 1)


def _tile_shape(
    sizes: Sequence[int], *, tile: int, overlap: float, divisor: Sequence[int], floor: int = 0
) -> tuple[int, ...]:
    """Window shape that covers each axis with the fewest predicted voxels, at most ``tile``.

    Sliding windows predict the overlaps (and the mirrored margins) several times, which
    is what limits CPU throughput: a 512-voxel plane is best covered by one window of
    about ``512 / (1 - overlap)`` voxels, not by several 256-voxel windows. Windows are
    multiples of the network's ``divisor`` and at least half of ``tile`` (context), unless
    the axis is shorter, and never below ``floor`` (rounded up to the divisor, at most
    ``tile``).
    """
    shape = []
    for size, d in zip(sizes, divisor, strict=True):
        cap = max(d, tile // d * d)
        whole = max(d, math.ceil(size / (1.0 - overlap) / d) * d)
        lowest = min(whole, max(d, cap // 2 // d * d))
        lowest = max(lowest, min(cap, math.ceil(floor / d) * d))
        best: tuple[int, int] | None = None
        for patch in range(lowest, max(cap, lowest) + 1, d):
            cost = _windows_along(size, patch, overlap) * patch
            if best is None or cost < best[0] or (cost == best[0] and patch > best[1]):
                best = (cost, patch)
        assert best is not None
        shape.append(best[1])
    return tuple(shape)


def predict_block(
    model: nn.Module,
    array: ArrayLike,
    *,
    spec: ModelSpec,
    voxel_size: VoxelSize | None,
    tta: bool = False,
    triaxis: bool = False,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    progress: Progress | None = None,
) -> NDArray[np.float32]:
    """Predict the output maps of ``model`` for one raw block (the blockwise hook).

    Parameters
    ----------
    model : torch.nn.Module
        The network, in eval mode on ``device`` (see :func:`load_predictor`).
    array : (Z, Y, X) ndarray
        Raw intensities.
    spec : ModelSpec
        The model's card facts (voxel size, normalisation, tiling, activation).
    voxel_size : VoxelSize or None
        Voxel size of ``array`` in nm. When it differs from ``spec.voxel_size`` the
        block is resampled (linear) to the model's voxel size, predicted, and the maps
        resampled back to the block's grid. 2D models resample y and x only.
    tta : bool
        Average over flips of each window (4× the work in 2D, 8× in 3D).
    triaxis : bool
        2D models only: predict planes along z, y and x and average them; the block is
        resampled to isotropic voxels of the model's in-plane size first.
    device : str or torch.device
        Where the network runs.
    precision : {"auto", "float32", "bfloat16"}
        Autocast of the network (:func:`vemkit.ml.precision.resolve_precision`); the
        card's metrics are measured with ``"auto"``.
    progress : Progress, optional
        One step per batch of windows.

    Returns
    -------
    (C, Z, Y, X) ndarray of float32
        One map per ``spec.channels`` on the grid of ``array``: probabilities, or signed
        distances in nm for ``signed_distance`` models.
    """
    volume = np.asarray(array)
    if volume.ndim != 3:
        raise InvalidVolumeError(f"predict_block needs a (Z, Y, X) array, got shape {volume.shape}")
    if spec.voxel_size is not None and voxel_size is None:
        raise VoxelSizeError(
            f"model {spec.name!r} expects {spec.voxel_size} nm voxels; give the input's voxel "
            "size (--voxel-size Z,Y,X in nm) so it can be resampled"
        )
    shape = volume.shape
    options: dict[str, Any] = {
        "overlap": spec.overlap,
        "batch_size": spec.batch_size,
        "device": device,
        "normalization": spec.normalization,
        "tta": tta,
        "activation": spec.activation,
        "precision": precision,
        "progress": progress,
    }
    if triaxis:
        if spec.dims != 2:
            raise ConfigError("tri-axis prediction needs a 2D model; this model is 3D")
        if spec.context:
            raise ConfigError(
                f"model {spec.name!r} takes {spec.context} neighbouring section(s) along z "
                "as input (2.5D); it predicts along z only — leave out tri-axis"
            )
        in_plane = spec.voxel_size.y if spec.voxel_size is not None else None
        iso = None if in_plane is None else VoxelSize(in_plane, in_plane, in_plane)
        working = _working_shape(shape, voxel_size, iso)
        # One window shape per plane orientation: the zx and zy planes of a flat block
        # are flat too, and a square window would predict mostly mirrored padding.
        planes = {0: working[1:], 1: (working[0], working[2]), 2: working[:2]}
        windows = {
            axis: _tile_shape(
                sizes,
                tile=spec.tile,
                overlap=spec.overlap,
                divisor=spec.divisor,
                floor=spec.min_window,
            )
            for axis, sizes in planes.items()
        }
        maps = predict_triaxis(
            model,
            volume,
            patch_shape=windows,
            voxel_size=voxel_size if iso is not None else None,
            model_voxel_size=iso,
            **options,
        )
    else:
        working = _working_shape(shape, voxel_size, spec.voxel_size, planar=spec.dims == 2)
        work = volume
        if working != shape:
            log.info("resampling %s to %s for the model voxel size", shape, working)
            work = resample_planes(volume, working)
        spatial = working[1:] if spec.dims == 2 else working
        tile = _tile_shape(spatial, tile=spec.tile, overlap=spec.overlap, divisor=spec.divisor)
        if spec.context:
            work = context_stack(work, spec.context)
        maps = predict_array(model, work, patch_shape=tile, **options)
        if working != shape:
            maps = resample_planes(maps, shape)
    if spec.target_type == "signed_distance" and spec.clip_nm is not None:
        maps = maps * np.float32(spec.clip_nm)
    return np.ascontiguousarray(maps, dtype=np.float32)


def segment_instances(
    maps: NDArray[np.float32],
    *,
    spec: ModelSpec,
    voxel_size: VoxelSize,
    method: InstanceMethod = "boundary_watershed_3d",
    foreground_threshold: float = 0.5,
    boundary_threshold: float = 0.5,
    min_size_nm3: float = 0.0,
    min_seed_size_nm3: float = 0.0,
) -> NDArray[np.uint32]:
    """Instances from predicted maps (foreground + boundary, or foreground alone).

    Parameters
    ----------
    maps : (C, Z, Y, X) ndarray of float32
        Output of :func:`predict_block`.
    spec : ModelSpec
        Names the channels (``foreground`` and optionally ``boundary``).
    voxel_size : VoxelSize
        Voxel size of ``maps`` in nm.
    method : str
        ``"boundary_watershed_3d"``: seeds are foreground without boundary, flooded in
        3D (objects continue across sections); ``"boundary_watershed_2d"``: the same per
        z section (2D instances, ids unique over the volume); ``"connected_components_3d"``:
        face-connected components of the foreground.
    foreground_threshold, boundary_threshold : float
        Probability thresholds.
    min_size_nm3 : float
        Objects smaller than this are removed.
    min_seed_size_nm3 : float
        Boundary watersheds: seeds smaller than this are ignored (fewer splits of one
        object by gaps in its boundary map); a foreground component left without a seed
        is still one object.

    Returns
    -------
    (Z, Y, X) ndarray of uint32
        Instance labels, 0 = background.
    """
    if "foreground" not in spec.channels:
        raise ConfigError(
            f"instances need a 'foreground' channel; model {spec.name!r} has {spec.channels}"
        )
    foreground = maps[spec.channels.index("foreground")]
    if method == "connected_components_3d" or "boundary" not in spec.channels:
        labels = connected_components(foreground > foreground_threshold, connectivity=6)
        if min_size_nm3 > 0:
            labels = remove_small_objects(labels, min_size_nm3=min_size_nm3, voxel_size=voxel_size)
        return labels.astype(np.uint32, copy=False)
    boundary = maps[spec.channels.index("boundary")]
    options: dict[str, Any] = {
        "voxel_size": voxel_size,
        "foreground_threshold": foreground_threshold,
        "boundary_threshold": boundary_threshold,
        "min_size_nm3": min_size_nm3,
        "min_seed_size_nm3": min_seed_size_nm3,
    }
    if method == "boundary_watershed_3d":
        return boundary_watershed(foreground, boundary, **options)
    if method != "boundary_watershed_2d":
        raise ConfigError(
            f"instance method must be boundary_watershed_3d, boundary_watershed_2d or "
            f"connected_components_3d, got {method!r}"
        )
    out = np.zeros(foreground.shape, dtype=np.uint32)
    next_id = 0
    for z in range(foreground.shape[0]):
        section = boundary_watershed(foreground[z : z + 1], boundary[z : z + 1], **options)
        out[z : z + 1] = np.where(section > 0, section + next_id, 0)
        next_id += int(section.max())
    return out


def load_predictor(
    model: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Load a shipped model (by name) or a model folder for prediction.

    Returns
    -------
    network : torch.nn.Module
        In eval mode on ``device``.
    spec : ModelSpec
        What :func:`predict_block` needs.
    card : dict
        The full model card.
    """
    folder = resolve_model(model)
    network, config, card = load_zoo_model(folder, device=device)
    if config.dims == 2 and torch.device(device).type == "cpu":
        # oneDNN convolutions are faster on NHWC tensors on the CPU.
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    name = card.get("name") or folder.name
    return network, ModelSpec.from_card(config, card, name=str(name)), card


def estimate_prediction_bytes(
    shape: Sequence[int], *, spec: ModelSpec, voxel_size: VoxelSize | None, triaxis: bool = False
) -> int:
    """Peak memory of in-memory prediction of a ``shape`` volume, in bytes (an estimate).

    Counts the float32 input and outputs on the input grid, the resampled input, and
    :func:`~vemkit.ml.predict.predict_array`'s float64 accumulators at the model's grid.
    """
    n_in = int(np.prod(shape, dtype=np.int64))
    if triaxis and spec.voxel_size is not None:
        size = spec.voxel_size.y
        working = _working_shape(shape, voxel_size, VoxelSize(size, size, size))
    else:
        working = _working_shape(shape, voxel_size, spec.voxel_size, planar=spec.dims == 2)
    n_work = int(np.prod(working, dtype=np.int64))
    channels = len(spec.channels)
    per_input = 4 + 2 * 4 * channels  # float32 copy + maps (resampled and final)
    per_working = 2 * 4 + 8 * (channels + 1) + 8 * channels * (2 if triaxis else 1)
    per_working += 2 * 4 * (2 * spec.context + 1)  # 2.5D input stack and its normalised copy
    return n_in * per_input + n_work * per_working


@dataclass(frozen=True)
class PredictionResult:
    """Where :func:`predict_volume` wrote its layers and how fast it was."""

    output: Path
    layers: tuple[str, ...]
    seconds: float
    n_voxels: int

    @property
    def mvoxel_per_s(self) -> float:
        """Throughput in millions of input voxels per second (prediction only)."""
        return self.n_voxels / max(self.seconds, 1e-9) / 1e6


def _encode(maps: NDArray[np.float32], spec: ModelSpec, dtype: str) -> NDArray[Any]:
    if dtype == "float32":
        return maps
    if not spec.is_probability:
        raise ConfigError(
            f"model {spec.name!r} predicts distances in nm, which do not fit uint8; use "
            "--dtype float32"
        )
    return np.rint(np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)


def predict_volume(
    model: str | os.PathLike[str],
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    voxel_size: VoxelSize | str | None = None,
    tta: bool = False,
    triaxis: bool = False,
    device: str = "cpu",
    precision: Precision = "auto",
    dtype: Literal["float32", "uint8"] = "float32",
    raw_mode: Literal["copy", "reference"] = "copy",
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> PredictionResult:
    """Predict ``source`` with ``model`` and write the maps into a new dataset ``output``.

    Parameters
    ----------
    model : str or path-like
        Shipped model name (``vemkit models list``) or a model folder.
    source : str or path-like
        Any volume :func:`vemkit.io.open_layer` reads.
    output : str or path-like
        New OME-Zarr dataset (``OUT.zarr``); raw is copied or referenced
        (``raw_mode``), and each output channel becomes the image layer
        ``<model>_<channel>`` at the input's voxel size.
    voxel_size : VoxelSize or str, optional
        Overrides the input's voxel size (nm, z, y, x).
    tta, triaxis, device, precision
        See :func:`predict_block`.
    dtype : {"float32", "uint8"}
        Storage of probability maps (uint8 holds ``round(255 * p)``).
    raw_mode : {"copy", "reference"}
        Copy the raw volume into the dataset, or reference the input file.
    memory_budget_gb : float
        Refuse volumes whose estimated in-memory prediction exceeds this (GB).
    overwrite : bool
        Replace an existing output dataset.
    progress : Progress, optional
        Progress of the network windows.

    Raises
    ------
    MemoryBudgetError
        The volume is too large for in-memory prediction within the budget.
    """
    if dtype not in ("float32", "uint8"):
        raise ConfigError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    if not (math.isfinite(memory_budget_gb) and memory_budget_gb > 0):
        raise ConfigError(f"memory budget must be a positive number of GB, got {memory_budget_gb}")
    refuse_input_as_output(source, output)
    check_output_path(output, overwrite=overwrite)
    network, spec, _ = load_predictor(model, device=device)
    hint = faster_precision_hint(precision, device)
    if hint:
        log.info(hint)
    raw = require_voxel_size(require_volume(open_layer(source, voxel_size=voxel_size)))
    if raw.axes != "zyx":
        raise InvalidVolumeError(
            f"prediction needs a single-channel (Z, Y, X) volume; {str(source)!r} has axes "
            f"{raw.axes!r}"
        )
    needed = estimate_prediction_bytes(
        raw.shape, spec=spec, voxel_size=raw.voxel_size, triaxis=triaxis
    )
    if needed > memory_budget_gb * 1e9:
        raise MemoryBudgetError(
            f"predicting {str(source)!r} {raw.shape} in memory needs about {needed / 1e9:.1f} GB, "
            f"more than the budget of {memory_budget_gb:g} GB; raise --memory-budget-gb if the "
            "machine has the memory, or use `vemkit segment` (blockwise) or crop the volume"
        )
    image = raw.read()
    start = time.perf_counter()
    maps = predict_block(
        network,
        image,
        spec=spec,
        voxel_size=raw.voxel_size,
        tta=tta,
        triaxis=triaxis,
        device=device,
        precision=precision,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    dataset = Dataset.create(output, raw, mode=raw_mode, overwrite=overwrite, progress=progress)
    names = []
    for channel, values in zip(spec.channels, maps, strict=True):
        name = f"{spec.name}_{channel}"
        dataset.add_layer(
            name, _encode(values, spec, dtype), kind="image", voxel_size=raw.voxel_size
        )
        names.append(name)
    dataset.add_provenance(
        {
            "step": "predict",
            "model": spec.name,
            "model_path": str(resolve_model(model)),
            "target_type": spec.target_type,
            "model_voxel_size_nm": (
                list(spec.voxel_size.as_tuple()) if spec.voxel_size is not None else None
            ),
            "layers": names,
            "dtype": dtype,
            "encoding": "round(255 * probability)" if dtype == "uint8" else "as predicted",
            "units": "nm (signed distance)" if not spec.is_probability else "probability",
            "tta": tta,
            "triaxis": triaxis,
            "device": device,
            "precision": resolve_precision(precision, device).name,
            "seconds": round(seconds, 2),
            "normalization": spec.normalization.to_dict(),
        }
    )
    n_voxels = int(np.prod(raw.shape, dtype=np.int64))
    log.info(
        "predicted %s with %s in %.1f s (%.2f MVoxel/s)",
        source,
        spec.name,
        seconds,
        n_voxels / max(seconds, 1e-9) / 1e6,
    )
    return PredictionResult(
        output=Path(output),
        layers=tuple(names),
        seconds=seconds,
        n_voxels=n_voxels,
    )
