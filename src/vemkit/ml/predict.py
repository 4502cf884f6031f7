"""Network prediction on arrays: sliding windows, smooth blending, test-time augmentation.

:func:`predict_array` runs a 2D or 3D network over an image of any size that fits in
memory (``vemkit.blockwise`` lifts it to larger volumes by calling it per block with
a halo). Windows overlap and are blended with a smooth (Gaussian or cosine) weight, so
there are no seams; the image is mirrored at its borders so edge voxels get context.
:func:`predict_triaxis` runs a 2D network along z, y and x and fuses the three results.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from torch import nn

from vemkit.errors import ConfigError, InvalidVolumeError, VoxelSizeError
from vemkit.geometry import VoxelSize
from vemkit.ml.networks import ensemble_members
from vemkit.ml.normalize import Normalization, normalize
from vemkit.ml.precision import Autocast, Precision, resolve_precision
from vemkit.progress import NullProgress, Progress

__all__ = [
    "blend_weights",
    "context_stack",
    "predict_array",
    "predict_triaxis",
    "resample_labels",
    "resample_to_shape",
]

logger = logging.getLogger(__name__)

Activation = Literal["sigmoid", "softmax", "tanh"] | None
Blend = Literal["gaussian", "cosine", "constant"]

# Lowest blending weight relative to the centre: keeps every voxel's weight sum positive.
_MIN_WEIGHT = 1e-3


def context_stack(volume: ArrayLike, sections: int, *, axis: int = 0) -> NDArray[Any]:
    """Neighbouring sections as channels, the input of a 2.5D network.

    Channel ``c`` of plane ``z`` holds plane ``z + c - sections`` of ``volume`` (the
    plane itself in the middle channel); beyond the first and last plane the edge plane
    is repeated, so the result has the shape of ``volume`` with ``2 * sections + 1``
    channels in front. A 2D network with that many input channels then sees, for every
    section, its neighbours along ``axis`` — the context that tells a mitochondrion
    running through several sections from a dark blob in one (serial-section EM).

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
        Raw intensities.
    sections : int
        Neighbours on each side (0 returns ``volume[None]``).
    axis : int, default 0
        Axis along which the neighbours are taken.

    Returns
    -------
    (2 * sections + 1, Z, Y, X) ndarray
        Same dtype as ``volume``.

    Examples
    --------
    >>> context_stack(np.arange(3)[:, None, None], 1)[:, :, 0, 0]
    array([[0, 0, 1],
           [0, 1, 2],
           [1, 2, 2]])
    """
    array = np.asarray(volume)
    if array.ndim != 3:
        raise InvalidVolumeError(f"context_stack needs a (Z, Y, X) volume, got {array.shape}")
    k = int(sections)
    if k < 0:
        raise ConfigError(f"context sections must be >= 0, got {sections!r}")
    axis = axis % 3
    size = array.shape[axis]
    index = np.arange(size)
    planes = [
        np.take(array, np.clip(index + offset, 0, size - 1), axis=axis)
        for offset in range(-k, k + 1)
    ]
    return np.stack(planes)


def blend_weights(patch_shape: Sequence[int], *, blend: Blend = "gaussian") -> NDArray[np.float64]:
    """Weight of each voxel of a window when overlapping windows are averaged.

    ``"gaussian"`` uses σ = size / 8 per axis (as nnU-Net), ``"cosine"`` a Hann window;
    both are floored at 1e-3 of the centre weight. ``"constant"`` weighs all voxels
    equally.

    Returns
    -------
    ndarray of float64
        ``patch_shape``, maximum 1.
    """
    profiles = []
    for size in patch_shape:
        position = np.arange(size, dtype=np.float64)
        if blend == "constant" or size == 1:
            profile = np.ones(size)
        elif blend == "gaussian":
            sigma = size / 8.0
            profile = np.exp(-((position - (size - 1) / 2) ** 2) / (2 * sigma**2))
        elif blend == "cosine":
            profile = 0.5 - 0.5 * np.cos(2 * np.pi * (position + 0.5) / size)
        else:
            raise ConfigError(f"blend must be 'gaussian', 'cosine' or 'constant', got {blend!r}")
        profiles.append(np.maximum(profile / profile.max(), _MIN_WEIGHT))
    weights = profiles[0]
    for profile in profiles[1:]:
        weights = np.multiply.outer(weights, profile)
    return np.asarray(weights)


def _window_starts(size: int, patch: int, step: int) -> list[int]:
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _as_czyx(image: ArrayLike) -> tuple[NDArray[Any], int]:
    array = np.asarray(image)
    ndim = array.ndim
    if ndim == 2:
        array = array[None, None]
    elif ndim == 3:
        array = array[None]
    elif ndim != 4:
        raise InvalidVolumeError(
            f"image must be (Y, X), (Z, Y, X) or (C, Z, Y, X), got shape {array.shape}"
        )
    if array.size == 0:
        raise InvalidVolumeError(f"image is empty (shape {np.asarray(image).shape})")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise InvalidVolumeError(f"image must be numeric, got dtype {array.dtype}")
    return array, ndim


def _apply_activation(output: torch.Tensor, activation: Activation) -> torch.Tensor:
    if activation is None:
        return output
    if activation == "sigmoid":
        return torch.sigmoid(output)
    if activation == "softmax":
        return torch.softmax(output, dim=1)
    if activation == "tanh":
        return torch.tanh(output)
    raise ConfigError(f"activation must be sigmoid, softmax, tanh or None, got {activation!r}")


def _batches(items: list[tuple[int, ...]], size: int) -> Iterator[list[tuple[int, ...]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _predict(
    model: nn.Module,
    volume: NDArray[np.float32],
    *,
    patch_shape: tuple[int, ...],
    overlap: float,
    batch_size: int,
    device: torch.device,
    tta: bool,
    blend: Blend,
    activation: Activation,
    autocast: Autocast,
    progress: Progress,
    description: str,
) -> NDArray[np.float32]:
    """Sliding-window prediction of a normalised ``(C, Z, Y, X)`` volume.

    ``patch_shape`` has three entries; a leading 1 means a 2D network applied to z planes.
    """
    planar = patch_shape[0] == 1
    spatial = volume.shape[1:]
    margins = tuple(0 if p == 1 else round(overlap * p / 2) for p in patch_shape)
    pads = []
    for size, patch, margin in zip(spatial, patch_shape, margins, strict=True):
        before = margin
        after = margin + max(patch - (size + 2 * margin), 0)
        pads.append((before, after))
    padded = volume
    if any(p != (0, 0) for p in pads):
        # "reflect" needs two voxels along a padded axis; "symmetric" works with one.
        reflectable = all(s > 1 for s, p in zip(spatial, pads, strict=True) if p != (0, 0))
        padded = np.pad(volume, [(0, 0), *pads], mode="reflect" if reflectable else "symmetric")
    padded_shape = padded.shape[1:]
    steps = tuple(max(1, int(p * (1 - overlap))) for p in patch_shape)
    starts = [
        _window_starts(size, patch, step)
        for size, patch, step in zip(padded_shape, patch_shape, steps, strict=True)
    ]
    windows = list(itertools.product(*starts))
    weights = blend_weights(patch_shape, blend=blend)
    # Spatial axes of the network input: (B, C, Y, X) for 2D, (B, C, Z, Y, X) for 3D.
    window_axes = [2, 3] if planar else [2, 3, 4]
    flip_sets: list[list[int]] = [[]]
    if tta:
        flip_sets = [
            list(combo)
            for n in range(len(window_axes) + 1)
            for combo in itertools.combinations(window_axes, n)
        ]

    # An ensemble's maps are the mean of its members' maps (activation per member), as
    # the flips of test-time augmentation are.
    members = ensemble_members(model)

    accumulated: NDArray[np.float64] | None = None
    weight_sum = np.zeros(padded_shape, dtype=np.float64)
    model.eval()
    progress.start(math.ceil(len(windows) / batch_size), description)
    try:
        with torch.inference_mode():
            for batch in _batches(windows, batch_size):
                boxes = [
                    tuple(slice(s, s + p) for s, p in zip(start, patch_shape, strict=True))
                    for start in batch
                ]
                tiles = np.stack([padded[(slice(None), *box)] for box in boxes])
                inputs = torch.from_numpy(tiles).to(device)  # (B, C, pz, py, px)
                if planar:
                    inputs = inputs[:, :, 0]
                output: torch.Tensor | None = None
                for member, flips in itertools.product(members, flip_sets):
                    x = torch.flip(inputs, flips) if flips else inputs
                    with autocast():
                        y = member(x)
                    # float64 so that averaging identical flips is exact
                    y = _apply_activation(y.float(), activation).double()
                    if flips:
                        y = torch.flip(y, flips)
                    output = y if output is None else output + y
                assert output is not None
                if tuple(output.shape[2:]) != tuple(inputs.shape[2:]):
                    raise ConfigError(
                        f"the network returned spatial shape {tuple(output.shape[2:])} for "
                        f"an input of {tuple(inputs.shape[2:])}; choose a patch_shape it "
                        "accepts"
                    )
                result = output.cpu().numpy() / (len(members) * len(flip_sets))
                if planar:
                    result = result[:, :, None]
                if accumulated is None:
                    accumulated = np.zeros((result.shape[1], *padded_shape), dtype=np.float64)
                for tile, box in zip(result, boxes, strict=True):
                    accumulated[(slice(None), *box)] += tile * weights
                    weight_sum[box] += weights
                progress.advance(1)
    finally:
        progress.finish()
    assert accumulated is not None
    crop = tuple(
        slice(before, before + size) for (before, _), size in zip(pads, spatial, strict=True)
    )
    result = accumulated[(slice(None), *crop)] / weight_sum[crop]
    return result.astype(np.float32)


def _check_options(patch_shape: Sequence[int], overlap: float, batch_size: int) -> tuple[int, ...]:
    shape = tuple(int(p) for p in patch_shape)
    if len(shape) not in (2, 3) or any(p < 1 for p in shape):
        raise ConfigError(f"patch_shape must be 2 (2D network) or 3 sizes, got {patch_shape!r}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    return shape


def predict_array(
    model: nn.Module,
    image: ArrayLike,
    *,
    patch_shape: Sequence[int],
    overlap: float = 0.25,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    normalization: Normalization | None = None,
    tta: bool = False,
    axis: int = 0,
    blend: Blend = "gaussian",
    activation: Activation = None,
    precision: Precision = "auto",
    progress: Progress | None = None,
) -> NDArray[np.float32]:
    """Predict a whole image with a network, window by window.

    Parameters
    ----------
    model : torch.nn.Module
        A 2D or 3D network (``(N, C, *S)`` in and out, same ``S``), already on
        ``device``; it is put in eval mode. For an
        :class:`~vemkit.ml.networks.Ensemble` the members' maps (after ``activation``)
        are averaged.
    image : ndarray
        ``(Z, Y, X)``, ``(C, Z, Y, X)`` or a 2D ``(Y, X)`` image, raw intensities.
    patch_shape : sequence of int
        Window size: 3 values for a 3D network, 2 for a 2D network, which is then
        applied plane by plane perpendicular to ``axis``.
    overlap : float
        Fraction (0–1) by which neighbouring windows overlap. The image is also
        mirrored by ``overlap * patch / 2`` at its borders.
    batch_size : int
        Windows per network call.
    device : str or torch.device
        Where the network runs.
    normalization : Normalization, optional
        The training normalisation (from the model card); ``None`` uses the image as is.
    tta : bool
        Test-time augmentation: average over all flips of the window axes (4 for 2D,
        8 for 3D windows). Suitable for scalar outputs (probabilities, distances).
    axis : int
        For 2D networks on 3D images: the axis perpendicular to the planes.
    blend : {"gaussian", "cosine", "constant"}
        Weighting of overlapping windows (see :func:`blend_weights`).
    activation : {"sigmoid", "softmax", "tanh"} or None
        Applied to each network output before blending.
    precision : {"auto", "float32", "bfloat16"}
        Autocast of the network passes (:func:`~vemkit.ml.precision.resolve_precision`):
        ``"auto"`` is float16 on CUDA and float32 on the CPU.
    progress : Progress, optional
        One step per batch of windows.

    Returns
    -------
    ndarray of float32
        ``(C_out, Z, Y, X)``, or ``(C_out, Y, X)`` for a 2D ``image``.

    Notes
    -----
    Blending accumulates in float64, so a network that returns its input gives the
    input back exactly. Memory is about ``8 * (C_out + 1)`` bytes per voxel.
    """
    shape = _check_options(patch_shape, overlap, batch_size)
    volume, input_ndim = _as_czyx(image)
    device = torch.device(device)
    if normalization is not None:
        volume = normalize(volume, normalization)
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    reporter = progress if progress is not None else NullProgress()
    options: dict[str, Any] = {
        "overlap": overlap,
        "batch_size": batch_size,
        "device": device,
        "tta": tta,
        "blend": blend,
        "activation": activation,
        "autocast": resolve_precision(precision, device),
        "progress": reporter,
    }
    if len(shape) == 3:
        if input_ndim == 2:
            raise InvalidVolumeError("a 3D patch_shape needs a 3D image; got a 2D image")
        result = _predict(model, volume, patch_shape=shape, description="predicting", **options)
    else:
        if input_ndim == 2:
            axis = 0
        if not -3 <= axis < 3:
            raise ConfigError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis}")
        axis %= 3
        moved = np.ascontiguousarray(np.moveaxis(volume, axis + 1, 1))
        result = _predict(
            model,
            moved,
            patch_shape=(1, *shape),
            description=f"predicting planes along {'zyx'[axis]}",
            **options,
        )
        result = np.moveaxis(result, 1, axis + 1)
    result = np.ascontiguousarray(result)
    return result[:, 0] if input_ndim == 2 else result


def resample_to_shape(
    array: NDArray[Any], shape: Sequence[int], *, order: int = 1
) -> NDArray[np.float32]:
    """Resample the last ``len(shape)`` axes of ``array`` to ``shape`` (voxel edges aligned).

    Leading axes (channels) are kept. Uses ``scipy.ndimage.zoom`` with ``grid_mode``
    so that the volume covers the same physical extent before and after.
    """
    shape = tuple(int(s) for s in shape)
    spatial = array.shape[-len(shape) :]
    if tuple(spatial) == shape:
        return np.asarray(array, dtype=np.float32)
    lead = array.shape[: -len(shape)]
    flat = np.asarray(array, dtype=np.float32).reshape((-1, *spatial))
    out = np.empty((flat.shape[0], *shape), dtype=np.float32)
    factors = [n / s for n, s in zip(shape, spatial, strict=True)]
    for index, channel in enumerate(flat):
        zoomed = ndimage.zoom(channel, factors, order=order, mode="nearest", grid_mode=True)
        # zoom rounds the output size; crop or edge-pad to the exact shape.
        zoomed = zoomed[tuple(slice(0, n) for n in shape)]
        pad = [(0, n - z) for n, z in zip(shape, zoomed.shape, strict=True)]
        out[index] = np.pad(zoomed, pad, mode="edge") if any(p[1] for p in pad) else zoomed
    return out.reshape((*lead, *shape))


def resample_labels(labels: NDArray[Any], shape: Sequence[int]) -> NDArray[Any]:
    """Resample labels to ``shape`` by the nearest voxel, exactly for every dtype.

    The last ``len(shape)`` axes are resampled with voxel edges aligned, voxel for voxel as
    ``resample_to_shape(labels, shape, order=0)``, but by indexing instead of through
    float32 (which rounds ids above 2**24 and the uint32 ignore value 2**32 - 1). The
    result keeps the dtype of ``labels``.

    Examples
    --------
    >>> resample_labels(np.array([[1, 2, 3, 4]], np.uint32), (1, 2)).tolist()
    [[2, 4]]
    """
    shape = tuple(int(s) for s in shape)
    spatial = labels.shape[-len(shape) :]
    index = []
    for n_out, n_in in zip(shape, spatial, strict=True):
        centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5  # input coordinates
        index.append(np.clip(np.floor(centres + 0.5).astype(np.intp), 0, n_in - 1))
    return np.asarray(labels)[(Ellipsis, *np.ix_(*index))]


def predict_triaxis(
    model: nn.Module,
    volume: ArrayLike,
    *,
    patch_shape: Sequence[int] | Mapping[int, Sequence[int]],
    overlap: float = 0.25,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    normalization: Normalization | None = None,
    tta: bool = False,
    blend: Blend = "gaussian",
    activation: Activation = None,
    voxel_size: VoxelSize | Sequence[float] | None = None,
    model_voxel_size: VoxelSize | Sequence[float] | float | None = None,
    axes: Sequence[int] = (0, 1, 2),
    axis_weights: Sequence[float] | None = None,
    precision: Precision = "auto",
    progress: Progress | None = None,
) -> NDArray[np.float32]:
    """Run a 2D network along z, y and x planes and average the results (tri-axis).

    Parameters
    ----------
    model : torch.nn.Module
        A 2D network.
    volume : ndarray
        ``(Z, Y, X)`` or ``(C, Z, Y, X)`` raw intensities.
    patch_shape : sequence of int, or mapping of int to sequence of int
        2D window size used for every plane orientation, or one per orientation in
        ``axes`` (``{0: (y, x), 1: (z, x), 2: (z, y)}``): planes of a flat block are
        best covered by flat windows.
    voxel_size, model_voxel_size : VoxelSize or sequence of float, optional
        Voxel size of ``volume`` and the (isotropic) voxel size the model was trained
        at, in nm. When both are given the volume is resampled (linear) to the model
        voxel size, predicted, and the fused result resampled back to the input shape.
    axes : sequence of int
        Plane orientations to use (0 = z planes, 1 = zx planes, 2 = zy planes).
    axis_weights : sequence of float, optional
        Weight of each orientation in the average (default equal).
    overlap, batch_size, device, normalization, tta, blend, activation, precision
        As for :func:`predict_array`.
    progress : Progress, optional
        One task per orientation.

    Returns
    -------
    ndarray of float32
        ``(C_out, Z, Y, X)`` in the shape of ``volume``.

    Notes
    -----
    On anisotropic data (z step several times the xy pixel) the zx and zy planes look
    stretched and blurry along z compared with the yx planes the model was probably
    trained on. Either give ``voxel_size`` and ``model_voxel_size`` to resample to
    isotropic voxels first (costs memory: a 5× finer z means 5× more voxels), or
    down-weight the y and x passes with ``axis_weights`` (e.g. ``(1, 0.25, 0.25)``).
    """
    array, input_ndim = _as_czyx(volume)
    if input_ndim == 2:
        raise InvalidVolumeError("tri-axis prediction needs a 3D volume, got a 2D image")
    axes = tuple(int(a) % 3 for a in axes)
    if not axes:
        raise ConfigError("axes must name at least one of 0, 1, 2")
    if isinstance(patch_shape, Mapping):
        missing = [a for a in axes if a not in patch_shape]
        if missing:
            raise ConfigError(f"patch_shape has no window for the planes along axes {missing}")
        shapes = {a: _check_options(patch_shape[a], overlap, batch_size) for a in axes}
    else:
        shapes = dict.fromkeys(axes, _check_options(patch_shape, overlap, batch_size))
    if any(len(shape) != 2 for shape in shapes.values()):
        raise ConfigError(f"tri-axis prediction needs 2D windows, got {patch_shape!r}")
    weights = [1.0] * len(axes) if axis_weights is None else [float(w) for w in axis_weights]
    if len(weights) != len(axes) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(
            f"axis_weights must give one non-negative weight per axis in {axes}, got "
            f"{axis_weights!r}"
        )
    if normalization is not None:
        array = normalize(array, normalization)
    array = np.asarray(array, dtype=np.float32)
    original_shape = array.shape[1:]
    resampled = False
    if model_voxel_size is not None:
        if voxel_size is None:
            raise VoxelSizeError("model_voxel_size needs the volume's voxel_size too")
        source = VoxelSize.coerce(voxel_size).as_tuple()
        target = VoxelSize.coerce(model_voxel_size).as_tuple()
        working_shape = tuple(
            max(1, round(n * s / t)) for n, s, t in zip(original_shape, source, target, strict=True)
        )
        if working_shape != original_shape:
            logger.info(
                "tri-axis: resampling %s to %s for the model voxel size",
                original_shape,
                working_shape,
            )
            array = resample_to_shape(array, working_shape, order=1)
            resampled = True
    fused: NDArray[np.float64] | None = None
    for axis, weight in zip(axes, weights, strict=True):
        if weight == 0:
            continue
        prediction = predict_array(
            model,
            array,
            patch_shape=shapes[axis],
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            tta=tta,
            axis=axis,
            blend=blend,
            activation=activation,
            precision=precision,
            progress=progress,
        ).astype(np.float64)
        fused = prediction * weight if fused is None else fused + prediction * weight
    assert fused is not None
    result = (fused / sum(weights)).astype(np.float32)
    if resampled:
        result = resample_to_shape(result, original_shape, order=1)
    return result
