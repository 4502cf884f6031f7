"""Training targets from label arrays, in physical units, with unannotated voxels tracked.

Every function takes a label array (``(Y, X)`` or ``(Z, Y, X)``, unsigned or signed
integers, 0 = background) and returns a :class:`Target`: the target array and a
boolean ``valid`` mask of the spatial shape (per channel, ``(C, *spatial)``, where the
channels are known in different places). ``valid`` is false where the label is
unknown (``labels == ignore_value`` or ``valid=False`` given by the caller) *and*
where the target value could depend on unknown labels — e.g. a distance whose nearest
border might lie in an unannotated region. Losses only use voxels where ``valid`` is
true, so sparse annotations (a few painted planes, scribbles) train correctly.

Distances are Euclidean in nm with ``voxel_size`` (``scipy.ndimage.distance_transform_edt``
with ``sampling``): a voxel's distance to the border of its object is the distance
between voxel centres to the nearest voxel with a different label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from vemkit.errors import ConfigError, InvalidVolumeError, VoxelSizeError
from vemkit.geometry import VoxelSize

__all__ = [
    "Target",
    "binary_target",
    "boundary_target",
    "foreground_boundary_target",
    "semantic_target",
    "signed_distance_target",
]

VoxelSizeLike = VoxelSize | Sequence[float] | float

# Relative tolerance when comparing the two distance bounds (ties may differ by an ulp).
_TOLERANCE = 1e-6


class Target(NamedTuple):
    """A training target and where it is known.

    Attributes
    ----------
    target : ndarray
        ``(C, *spatial)`` float32 for binary/boundary/distance targets, ``(*spatial)``
        int64 class indices for semantic targets. 0 where not valid.
    valid : ndarray of bool
        ``(*spatial)``, or ``(C, *spatial)`` with one mask per channel; true where the
        target is known and may be used by a loss.
    """

    target: NDArray[Any]
    valid: NDArray[np.bool_]


def _check_labels(labels: ArrayLike) -> NDArray[Any]:
    array = np.asarray(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidVolumeError(f"labels must be integers or booleans, got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise InvalidVolumeError(
            f"labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {array.shape}"
        )
    if array.size == 0:
        raise InvalidVolumeError("labels array is empty")
    return array


def _known(
    labels: NDArray[Any], ignore_value: int | None, valid: ArrayLike | None
) -> NDArray[np.bool_]:
    known = np.ones(labels.shape, dtype=bool)
    if ignore_value is not None:
        known &= labels != ignore_value
    if valid is not None:
        mask = np.asarray(valid)
        if mask.shape != labels.shape:
            raise InvalidVolumeError(
                f"valid mask shape {mask.shape} does not match labels shape {labels.shape}"
            )
        known &= mask.astype(bool, copy=False)
    return known


def _spacing(voxel_size: VoxelSizeLike, ndim: int) -> tuple[float, ...]:
    """Voxel size in nm for the axes of an ``ndim``-D array (2D uses y, x of a VoxelSize)."""
    values: tuple[float, ...]
    if isinstance(voxel_size, VoxelSize):
        values = voxel_size.as_tuple()
        return values if ndim == 3 else values[1:]
    if isinstance(voxel_size, int | float):
        values = (float(voxel_size),) * ndim
    else:
        values = tuple(float(v) for v in voxel_size)
    if len(values) != ndim:
        raise VoxelSizeError(
            f"voxel_size needs {ndim} values for a {ndim}D label array, got {voxel_size!r}"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise VoxelSizeError(f"voxel_size must be positive nm, got {voxel_size!r}")
    return values


def semantic_target(
    labels: ArrayLike,
    *,
    classes: Mapping[int, int] | Sequence[int] | None = None,
    ignore_value: int | None = None,
    valid: ArrayLike | None = None,
) -> Target:
    """Class indices for a cross-entropy loss.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) ndarray of int
        Label values.
    classes : mapping or sequence of int, optional
        ``{label value: class index}``, or a sequence of label values whose positions
        are the class indices. ``None``: the labels already are class indices.
    ignore_value : int, optional
        Label value that marks unannotated voxels (e.g. 255).
    valid : ndarray of bool, optional
        False where voxels are unannotated.

    Returns
    -------
    Target
        ``target`` int64 ``(*spatial)`` class indices (0 where not valid) and ``valid``.

    Raises
    ------
    InvalidVolumeError
        An annotated voxel has a label value that ``classes`` does not map.
    """
    array = _check_labels(labels)
    known = _known(array, ignore_value, valid)
    values, inverse = np.unique(array, return_inverse=True)
    if classes is None:
        lookup = values.astype(np.int64)
    else:
        mapping = (
            dict(classes) if isinstance(classes, Mapping) else {v: i for i, v in enumerate(classes)}
        )
        lookup = np.array([mapping.get(int(v), -1) for v in values], dtype=np.int64)
    target = lookup[inverse.reshape(array.shape)]
    bad = known & (target < 0)
    if bad.any():
        unmapped = sorted({int(v) for v in np.unique(array[bad])})
        raise InvalidVolumeError(
            f"label values {unmapped[:10]} are not listed in classes {classes!r}; "
            "map them or mark them as ignored"
        )
    target[~known] = 0
    return Target(target, known)


def binary_target(
    labels: ArrayLike,
    *,
    ignore_value: int | None = None,
    valid: ArrayLike | None = None,
) -> Target:
    """Foreground (any label > 0) as one float channel for a BCE/Dice loss.

    Returns
    -------
    Target
        ``target`` float32 ``(1, *spatial)`` in {0, 1} and ``valid``.
    """
    array = _check_labels(labels)
    known = _known(array, ignore_value, valid)
    target = ((array > 0) & known).astype(np.float32)[None]
    return Target(target, known)


def _distance_to_other_label(
    labels: NDArray[Any],
    known: NDArray[np.bool_],
    *,
    clip_nm: float,
    spacing: tuple[float, ...],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Distance (nm, clipped) from each known voxel to the nearest voxel of another label.

    Background (0) counts as one label, so a background voxel gets its distance to the
    nearest object. Returns a lower bound (unknown voxels count as another label) and an
    upper bound (unknown voxels count as the same label); where both agree the value is
    exact whatever the unknown labels are. Unknown voxels get ``clip_nm`` in both.
    """
    shape = labels.shape
    low = np.full(shape, clip_nm, dtype=np.float32)
    high = np.full(shape, clip_nm, dtype=np.float32)
    if not known.any():
        return low, high
    # Work per label inside its bounding box grown by the clip distance: a voxel's
    # nearest other-label voxel within clip_nm always lies in that window.
    margin = tuple(math.ceil(clip_nm / s) + 1 for s in spacing)
    values, inverse = np.unique(np.where(known, labels, 0), return_inverse=True)
    ids = inverse.reshape(shape).astype(np.int32) + 1
    ids[~known] = 0
    boxes = ndimage.find_objects(ids)
    for index, box in enumerate(boxes):
        if box is None:
            continue
        label_id = index + 1
        if values[index] == 0:
            window = tuple(slice(0, n) for n in shape)
        else:
            window = tuple(
                slice(max(b.start - m, 0), min(b.stop + m, n))
                for b, m, n in zip(box, margin, shape, strict=True)
            )
        inside = ids[window] == label_id
        unknown = ~known[window]
        if not unknown.any():
            if not inside.all():  # else no other label within the window: beyond clip_nm
                distance = ndimage.distance_transform_edt(inside, sampling=spacing)
                low[window][inside] = high[window][inside] = np.minimum(distance[inside], clip_nm)
            continue
        for bound, region in ((low, inside), (high, inside | unknown)):
            if region.all():
                continue
            distance = ndimage.distance_transform_edt(region, sampling=spacing)
            view = bound[window]
            view[inside] = np.minimum(distance[inside], clip_nm)
    low[~known] = clip_nm
    high[~known] = clip_nm
    return low, high


def _pad_unknown(
    labels: NDArray[Any], known: NDArray[np.bool_], margin: tuple[int, ...]
) -> tuple[NDArray[Any], NDArray[np.bool_], tuple[slice, ...]]:
    widths = [(m, m) for m in margin]
    crop = tuple(slice(m, m + n) for m, n in zip(margin, labels.shape, strict=True))
    return np.pad(labels, widths), np.pad(known, widths), crop


def _prepare(
    labels: ArrayLike,
    *,
    ignore_value: int | None,
    valid: ArrayLike | None,
    voxel_size: VoxelSizeLike,
    distance_nm: float,
    name: str,
) -> tuple[NDArray[Any], NDArray[np.bool_], tuple[float, ...]]:
    array = _check_labels(labels)
    known = _known(array, ignore_value, valid)
    spacing = _spacing(voxel_size, array.ndim)
    if not (math.isfinite(distance_nm) and distance_nm > 0):
        raise ConfigError(f"{name} must be a positive number of nm, got {distance_nm!r}")
    return array, known, spacing


def signed_distance_target(
    mask_or_instances: ArrayLike,
    *,
    clip_nm: float,
    voxel_size: VoxelSizeLike,
    ignore_value: int | None = None,
    valid: ArrayLike | None = None,
    normalize: bool = False,
    border_unknown: bool = False,
) -> Target:
    """Signed distance to the object border, per instance, clipped to ±``clip_nm``.

    Positive inside an object (distance to the nearest voxel not of that object, so
    touching objects are separated by a border), negative outside (distance to the
    nearest object voxel). This is the nucleus target of webKnossos-style distance
    watershed pipelines.

    Parameters
    ----------
    mask_or_instances : (Y, X) or (Z, Y, X) ndarray of bool or int
        A foreground mask or instance labels (0 = background).
    clip_nm : float
        Distances are clipped to ``[-clip_nm, clip_nm]``.
    voxel_size : VoxelSize or sequence of float or float
        Voxel size in nm, (z, y, x) for 3D, (y, x) for 2D (a VoxelSize gives its y, x
        for 2D arrays).
    ignore_value : int, optional
        Label value marking unannotated voxels.
    valid : ndarray of bool, optional
        False where voxels are unannotated.
    normalize : bool
        Return ``distance / clip_nm`` in [-1, 1] instead of nm (a well-scaled
        regression target; multiply predictions by ``clip_nm``).
    border_unknown : bool
        Treat the space beyond the array (e.g. outside a training patch) as
        unannotated, so voxels whose clipped distance could change are not valid.

    Returns
    -------
    Target
        ``target`` float32 ``(1, *spatial)`` in nm (or normalised) and ``valid``: false
        at unannotated voxels and where the nearest border might be unannotated.

    Examples
    --------
    >>> t = signed_distance_target(np.array([[0, 1, 1, 1, 0]]), clip_nm=10, voxel_size=(1, 2))
    >>> t.target[0, 0].tolist()
    [-2.0, 2.0, 4.0, 2.0, -2.0]
    """
    array, known, spacing = _prepare(
        mask_or_instances,
        ignore_value=ignore_value,
        valid=valid,
        voxel_size=voxel_size,
        distance_nm=clip_nm,
        name="clip_nm",
    )
    crop = tuple(slice(None) for _ in array.shape)
    work_labels, work_known = array, known
    if border_unknown:
        margin = tuple(math.ceil(clip_nm / s) + 1 for s in spacing)
        work_labels, work_known, crop = _pad_unknown(array, known, margin)
    low, high = _distance_to_other_label(
        work_labels, work_known, clip_nm=float(clip_nm), spacing=spacing
    )
    low, high = low[crop], high[crop]
    exact = known & (high - low <= _TOLERANCE * clip_nm)
    distance = np.where(array > 0, low, -low).astype(np.float32)
    distance[~exact] = 0.0
    if normalize:
        distance /= np.float32(clip_nm)
    return Target(distance[None], exact)


def _neighbour_differs(
    labels: NDArray[Any], known: NDArray[np.bool_]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Whether a face neighbour has another label: (counting unknown ones, known only)."""
    any_other = np.zeros(labels.shape, dtype=bool)
    known_other = np.zeros(labels.shape, dtype=bool)
    for axis in range(labels.ndim):
        n = labels.shape[axis]
        if n < 2:
            continue
        a = [slice(None)] * labels.ndim
        b = [slice(None)] * labels.ndim
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        ta, tb = tuple(a), tuple(b)
        differs = labels[ta] != labels[tb]
        both_known = known[ta] & known[tb]
        pair_known_other = differs & both_known
        known_other[ta] |= pair_known_other
        known_other[tb] |= pair_known_other
        # Seen from voxel a: neighbour b is another label or unknown (and vice versa).
        any_other[ta] |= pair_known_other | ~known[tb]
        any_other[tb] |= pair_known_other | ~known[ta]
    return any_other, known_other


def _boundaries(
    array: NDArray[Any],
    known: NDArray[np.bool_],
    spacing: tuple[float, ...],
    width_nm: float,
    border_unknown: bool,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    half = width_nm / 2.0
    crop = tuple(slice(None) for _ in array.shape)
    work_labels, work_known = array, known
    if border_unknown:
        margin = tuple(math.ceil(half / s) + 1 for s in spacing)
        work_labels, work_known, crop = _pad_unknown(array, known, margin)
    # Clip slightly beyond the half width so "<= half" is decided on exact distances.
    clip = half * 1.001 + 1e-6
    low, high = _distance_to_other_label(work_labels, work_known, clip_nm=clip, spacing=spacing)
    any_other, known_other = _neighbour_differs(work_labels, work_known)
    maybe = ((low <= half) | any_other)[crop]
    surely = ((high <= half) | known_other)[crop]
    exact = known & (maybe == surely)
    return surely & exact, exact


def boundary_target(
    instances: ArrayLike,
    *,
    width_nm: float,
    voxel_size: VoxelSizeLike,
    ignore_value: int | None = None,
    valid: ArrayLike | None = None,
    border_unknown: bool = False,
) -> Target:
    """Object borders, including the border between touching objects.

    A voxel is on a boundary when a voxel of another label (background included) lies
    within ``width_nm / 2`` of it or is one of its face neighbours — the latter keeps
    boundaries closed across thick z sections. Boundaries lie on both sides of a border.

    Parameters
    ----------
    instances : (Y, X) or (Z, Y, X) ndarray of int
        Instance labels, 0 = background.
    width_nm : float
        Boundary width in nm (both sides together).
    voxel_size, ignore_value, valid, border_unknown
        See :func:`signed_distance_target`.

    Returns
    -------
    Target
        ``target`` float32 ``(1, *spatial)`` in {0, 1} and ``valid`` (false where
        unknown labels could change the answer).
    """
    array, known, spacing = _prepare(
        instances,
        ignore_value=ignore_value,
        valid=valid,
        voxel_size=voxel_size,
        distance_nm=width_nm,
        name="width_nm",
    )
    boundary, exact = _boundaries(array, known, spacing, float(width_nm), border_unknown)
    return Target(boundary.astype(np.float32)[None], exact)


def foreground_boundary_target(
    instances: ArrayLike,
    *,
    width_nm: float,
    voxel_size: VoxelSizeLike,
    ignore_value: int | None = None,
    valid: ArrayLike | None = None,
    border_unknown: bool = False,
    per_channel: bool = False,
) -> Target:
    """Two channels, foreground and boundary (the Crick / MitoEM "U3D-BC" target).

    Parameters
    ----------
    instances, width_nm, voxel_size, ignore_value, valid, border_unknown
        See :func:`boundary_target`.
    per_channel : bool
        Return one valid mask per channel: the foreground is known wherever the label
        is, the boundary only where no unknown label could change it. Otherwise one
        mask, where both are known — which throws away the foreground of every labelled
        voxel whose boundary is uncertain: with every third 50 nm section painted, 95%
        of the painted voxels of a 3D patch (whether an object goes on into the unpainted
        section next to it is unknown). ``vemkit train`` uses per-channel masks for 3D
        patches; 2D patches keep one mask (it only leaves out a 1–2-pixel rim of fully
        labelled patches, and a tiny 2D network with per-channel masks was seen to
        collapse to "no foreground" where it learnt with one), so the shipped 2D models
        stay reproducible by their recipes.

    Returns
    -------
    Target
        ``target`` float32 ``(2, *spatial)``: channel 0 foreground (label > 0),
        channel 1 boundary; ``valid`` ``(*spatial)``, or ``(2, *spatial)`` with
        ``per_channel``.
    """
    array, known, spacing = _prepare(
        instances,
        ignore_value=ignore_value,
        valid=valid,
        voxel_size=voxel_size,
        distance_nm=width_nm,
        name="width_nm",
    )
    boundary, exact = _boundaries(array, known, spacing, float(width_nm), border_unknown)
    foreground = (array > 0) & (known if per_channel else exact)
    target = np.stack([foreground, boundary]).astype(np.float32)
    return Target(target, np.stack([known, exact]) if per_channel else exact)
