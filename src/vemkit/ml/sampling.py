"""Random training patches from annotated volumes.

:class:`PatchSampler` draws 2D patches (planes along a chosen axis) or 3D patches from
an image and its labels, only around annotated voxels, with a share of patches centred
on foreground for class balance. :class:`PatchDataset` turns a sampler into a
``torch.utils.data.Dataset`` that also normalises, augments and builds targets, seeded
per (epoch, index) so every run — and every resumed run — sees the same patches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.ml.normalize import Normalization, normalize
from vemkit.ml.targets import Target

__all__ = ["Augment", "Patch", "PatchDataset", "PatchSampler", "TargetFn"]


class Patch(NamedTuple):
    """One training patch.

    Attributes
    ----------
    image : ndarray of float32
        ``(C, *patch_shape)``.
    labels : ndarray
        ``(*patch_shape)``, dtype of the label volume; 0 where outside the volume.
    valid : ndarray of bool
        ``(*patch_shape)``; false where unannotated or outside the volume.
    """

    image: NDArray[np.float32]
    labels: NDArray[Any]
    valid: NDArray[np.bool_]


def _crop(
    array: NDArray[Any], start: Sequence[int], shape: Sequence[int], *, pad_mode: str
) -> NDArray[Any]:
    """Cut ``array[start:start + shape]`` over the last axes, padding beyond its edges."""
    lead = array.ndim - len(shape)
    slices, widths = [slice(None)] * lead, [(0, 0)] * lead
    for s, n, size in zip(start, shape, array.shape[lead:], strict=True):
        lo, hi = max(s, 0), min(s + n, size)
        slices.append(slice(lo, hi))
        widths.append((lo - s, s + n - hi))
    out = array[tuple(slices)]
    if any(w != (0, 0) for w in widths):
        if pad_mode == "constant":
            out = np.pad(out, widths, mode="constant")
        else:
            out = np.pad(out, widths, mode="symmetric")
    return out


def _check_halo(halo: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Validate a per-axis halo (``()`` = none) and return one margin per patch axis."""
    if not len(halo):
        return (0,) * ndim
    margins = tuple(int(h) for h in halo)
    if len(margins) != ndim or any(h < 0 for h in margins):
        raise ConfigError(
            f"halo must be {ndim} non-negative sizes (one per patch axis), got {halo}"
        )
    return margins


class PatchSampler:
    """Draw random patches around annotated voxels.

    Parameters
    ----------
    image : ndarray
        ``(Z, Y, X)``, ``(C, Z, Y, X)``, ``(Y, X)`` or ``(C, Y, X)`` raw intensities
        (a leading channel axis is recognised when ``image.ndim == labels.ndim + 1``).
    labels : ndarray of int
        ``(Z, Y, X)`` or ``(Y, X)`` labels (or any per-voxel target array).
    patch_shape : sequence of int
        3 values for 3D patches, 2 values for 2D patches (planes perpendicular to
        ``axis`` of a 3D volume, or of a 2D image).
    axis : int
        For 2D patches from a 3D volume: the axis the planes are perpendicular to
        (0 = z planes, the usual choice; 1 and 2 give zx and zy planes).
    valid : ndarray of bool, optional
        False where unannotated.
    ignore_value : int, optional
        Label value marking unannotated voxels.
    foreground_fraction : float
        Probability that a patch is centred on a foreground voxel (annotated label > 0);
        otherwise it is centred on any annotated voxel.
    foreground : ndarray of bool, optional
        Voxels to balance towards instead of ``labels > 0``.

    Notes
    -----
    The coordinates of annotated voxels are held in memory (8 bytes per annotated
    voxel), which suits training volumes; subsample ``valid`` for huge ones.
    """

    def __init__(
        self,
        image: ArrayLike,
        labels: ArrayLike,
        *,
        patch_shape: Sequence[int],
        axis: int = 0,
        valid: ArrayLike | None = None,
        ignore_value: int | None = None,
        foreground_fraction: float = 0.5,
        foreground: ArrayLike | None = None,
    ) -> None:
        image = np.asarray(image)
        labels = np.asarray(labels)
        if labels.ndim not in (2, 3):
            raise InvalidVolumeError(f"labels must be 2D or 3D, got shape {labels.shape}")
        if image.ndim == labels.ndim:
            image = image[None]
        if image.ndim != labels.ndim + 1 or image.shape[1:] != labels.shape:
            raise InvalidVolumeError(
                f"image shape {image.shape} does not match labels shape {labels.shape} "
                "(give (Z, Y, X) or (C, Z, Y, X) images)"
            )
        patch_shape = tuple(int(p) for p in patch_shape)
        if len(patch_shape) not in (2, 3) or any(p <= 0 for p in patch_shape):
            raise ConfigError(f"patch_shape must be 2 or 3 positive sizes, got {patch_shape}")
        if len(patch_shape) > labels.ndim:
            raise ConfigError(f"a {len(patch_shape)}D patch needs a {len(patch_shape)}D volume")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ConfigError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        if not -labels.ndim <= axis < labels.ndim:
            raise ConfigError(f"axis {axis} is out of range for {labels.ndim}D labels")
        known = np.ones(labels.shape, dtype=bool)
        if ignore_value is not None:
            known &= labels != ignore_value
        if valid is not None:
            valid_array = np.asarray(valid, dtype=bool)
            if valid_array.shape != labels.shape:
                raise InvalidVolumeError(
                    f"valid shape {valid_array.shape} does not match labels shape {labels.shape}"
                )
            known &= valid_array
        self.image = image
        self.labels = labels
        self.valid = known
        self.patch_shape = patch_shape
        self.axis = axis % labels.ndim
        self.foreground_fraction = float(foreground_fraction)
        self._annotated = np.flatnonzero(known)
        if self._annotated.size == 0:
            raise InvalidVolumeError("no annotated voxels: every label is unknown or ignored")
        fg = (labels > 0) if foreground is None else np.asarray(foreground, dtype=bool)
        self._foreground = np.flatnonzero(fg & known)

    @property
    def is_planar(self) -> bool:
        """Whether patches are 2D planes of a 3D volume."""
        return len(self.patch_shape) < self.labels.ndim

    def sample(self, rng: np.random.Generator, *, halo: Sequence[int] = ()) -> Patch:
        """Draw one patch with ``rng``.

        Parameters
        ----------
        rng : numpy.random.Generator
            The random stream (the same draws with or without ``halo``).
        halo : sequence of int, optional
            Voxels added on both sides along each patch axis: the patch with its
            surroundings, e.g. so that targets can be computed exactly up to the
            patch's edges (see :class:`PatchDataset`).

        Returns
        -------
        Patch
            ``image`` ``(C, *shape)`` float32, ``labels`` and ``valid`` ``(*shape)``,
            where ``shape`` is ``patch_shape`` plus twice ``halo``; padded areas beyond
            the volume are not valid.
        """
        margins = _check_halo(halo, len(self.patch_shape))
        use_fg = self._foreground.size > 0 and rng.random() < self.foreground_fraction
        pool = self._foreground if use_fg else self._annotated
        centre = np.unravel_index(pool[rng.integers(pool.size)], self.labels.shape)
        image, labels, valid = self.image, self.labels, self.valid
        centre_list = [int(c) for c in centre]
        if self.is_planar:
            plane = centre_list.pop(self.axis)
            image = np.take(image, plane, axis=self.axis + 1)
            labels = np.take(labels, plane, axis=self.axis)
            valid = np.take(valid, plane, axis=self.axis)
        start = []
        for c, p, size in zip(centre_list, self.patch_shape, labels.shape, strict=True):
            if size >= p:
                # Any window inside the volume that contains the centre voxel.
                lo, hi = max(c - p + 1, 0), min(c, size - p)
                start.append(int(rng.integers(lo, hi + 1)))
            else:
                start.append(-((p - size) // 2))
        start = [s - h for s, h in zip(start, margins, strict=True)]
        shape = [p + 2 * h for p, h in zip(self.patch_shape, margins, strict=True)]
        return Patch(
            _crop(image, start, shape, pad_mode="symmetric").astype(np.float32),
            _crop(labels, start, shape, pad_mode="constant"),
            _crop(valid, start, shape, pad_mode="constant"),
        )


class Augment(Protocol):
    """Augmentation: ``(image (C, *S), labels (*S), valid (*S), rng) -> same``."""

    def __call__(
        self,
        image: NDArray[np.float32],
        labels: NDArray[Any],
        valid: NDArray[np.bool_],
        *,
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.float32], NDArray[Any], NDArray[np.bool_]]:
        """Return augmented copies."""
        ...


class TargetFn(Protocol):
    """Target builder: ``(labels (*S), valid=(*S)) -> Target`` (see :mod:`.targets`)."""

    def __call__(self, labels: NDArray[Any], *, valid: NDArray[np.bool_]) -> Target:
        """Return the target and its valid mask."""
        ...


class PatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """A ``Dataset`` of random patches: sample → normalise → augment → target.

    Parameters
    ----------
    sampler : PatchSampler
        Where patches come from.
    samples_per_epoch : int
        Length of the dataset.
    seed : int
        Item ``i`` of epoch ``e`` is drawn with ``np.random.default_rng([seed, e, i])``.
    normalization : Normalization, optional
        Applied to each image patch; must be fitted (fixed statistics) so that patches
        match whole-volume prediction.
    augment : callable, optional
        E.g. an :class:`vemkit.ml.augment.Augmenter`.
    target_fn : callable, optional
        Builds the target from augmented labels, e.g.
        ``functools.partial(signed_distance_target, clip_nm=500, voxel_size=vs)``.
        ``None``: the labels as one float32 channel.
    halo : sequence of int, optional
        Voxels of surroundings on both sides along each patch axis: the patch is drawn,
        normalised, augmented and given its target with them, then cropped to
        ``patch_shape``. Targets that look beyond a voxel (boundaries, distances) are
        otherwise unknown near the patch's edges and left out of the loss there — for
        3D patches only a few sections deep, a large share of the patch.

    Notes
    -----
    Items are ``(image (C, *S) float32, target, valid (*S) or (C, *S) bool)`` tensors
    (a valid mask per channel where the target function gives one). The trainer calls
    :meth:`set_epoch` before each epoch so epochs differ but stay reproducible. Leave
    ``set_epoch`` uncalled (e.g. for validation) to see the same patches each time.
    """

    def __init__(
        self,
        sampler: PatchSampler,
        *,
        samples_per_epoch: int,
        seed: int = 0,
        normalization: Normalization | None = None,
        augment: Augment | Callable[..., Any] | None = None,
        target_fn: TargetFn | Callable[..., Target] | None = None,
        halo: Sequence[int] = (),
    ) -> None:
        if samples_per_epoch < 1:
            raise ConfigError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        if normalization is not None and not normalization.is_fitted:
            raise ConfigError(
                "PatchDataset needs a fitted normalization (fixed statistics, see "
                "fit_normalization) so that patches match prediction on whole volumes"
            )
        if seed < 0:
            raise ConfigError(f"seed must be non-negative, got {seed}")
        self.sampler = sampler
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.normalization = normalization
        self.augment = augment
        self.target_fn = target_fn
        self.halo = _check_halo(halo, len(sampler.patch_shape))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        image, labels, valid = self.sampler.sample(rng, halo=self.halo)
        if self.normalization is not None:
            image = normalize(image, self.normalization)
        if self.augment is not None:
            image, labels, valid = self.augment(image, labels, valid, rng=rng)
        if self.target_fn is not None:
            target, valid = self.target_fn(labels, valid=valid)
        else:
            target = np.where(valid, labels, 0).astype(np.float32)[None]
        if any(self.halo):
            spatial = labels.shape  # the patch with its halo
            inner = tuple(slice(h, n - h) for h, n in zip(self.halo, spatial, strict=True))
            image, target, valid = image[(..., *inner)], target[(..., *inner)], valid[(..., *inner)]
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(target)),
            torch.from_numpy(np.ascontiguousarray(valid, dtype=bool)),
        )
