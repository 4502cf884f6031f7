"""Threshold-based masks and the classical (model-free) organelle segmentations.

:func:`segment_nuclei_classical` and :func:`segment_mitochondria_classical` are the best
vemkit can do without a trained model. They are the default of ``vemkit demo`` until
models ship, and the classical baseline in the benchmarks. They rely only on general
properties of heavy-metal stained EM, stated in each docstring; tune the keywords when
your data breaks an assumption.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu

from vemkit.errors import ConfigError
from vemkit.geometry import VoxelSize
from vemkit.segmentation._validation import (
    as_float_volume,
    as_real_volume,
    check_nonnegative,
    check_positive,
    coerce_voxel_size,
    sigma_vox,
)
from vemkit.segmentation.components import binary_opening_nm, fill_holes, relabel_sequential
from vemkit.segmentation.watershed import distance_watershed

__all__ = ["otsu_threshold_mask", "segment_mitochondria_classical", "segment_nuclei_classical"]

Polarity = Literal["bright", "dark"]


def _smooth(data: NDArray[np.float32], sigma_nm: float, voxel_size: VoxelSize) -> NDArray:
    if sigma_nm <= 0:
        return data
    return ndi.gaussian_filter(data, sigma_vox(sigma_nm, voxel_size), mode="nearest")


def otsu_threshold_mask(
    image: ArrayLike,
    *,
    smoothing_sigma_nm: float,
    voxel_size: VoxelSize,
    invert: bool = False,
) -> NDArray[np.bool_]:
    """Smooth with a Gaussian in nm, then split voxels in two classes with Otsu's threshold.

    Parameters
    ----------
    image : (Z, Y, X) ndarray of real numbers
        Intensity image.
    smoothing_sigma_nm : float
        Gaussian sigma in nm (0 = no smoothing); per-axis sigmas in voxels follow the
        voxel size, so anisotropic data is smoothed isotropically in space.
    voxel_size : VoxelSize
        Voxel size in nm (z, y, x).
    invert : bool, default False
        Return the dark class (below the threshold) instead of the bright one.

    Returns
    -------
    (Z, Y, X) ndarray of bool
        Voxels above (``invert``: at or below) the threshold. A constant image has no
        threshold and gives an all-``False`` mask.
    """
    data = as_float_volume(image, "image").astype(np.float32, copy=False)
    sigma = check_nonnegative(smoothing_sigma_nm, "smoothing_sigma_nm")
    vs = coerce_voxel_size(voxel_size)
    smoothed = _smooth(data, sigma, vs)
    low, high = float(smoothed.min()), float(smoothed.max())
    if low == high:
        return np.zeros(data.shape, dtype=bool)
    threshold = threshold_otsu(smoothed)
    return np.asarray(smoothed <= threshold) if invert else np.asarray(smoothed > threshold)


# ----------------------------------------------------------------- working resolution


def _working_factors(voxel_size: VoxelSize, working_voxel_nm: float) -> tuple[int, int, int]:
    """Integer downsampling factors so that working voxels are about ``working_voxel_nm``."""
    return tuple(max(1, math.floor(working_voxel_nm / s)) for s in voxel_size.as_tuple())  # type: ignore[return-value]


def _downsample_mean(data: NDArray[Any], factors: tuple[int, ...]) -> NDArray[np.float32]:
    """Block means as float32; edge blocks are padded by repetition so they are not darkened.

    Works on the raw dtype, so a uint8 volume is never expanded to float at full size.
    """
    if all(f == 1 for f in factors):
        return data.astype(np.float32, copy=False)
    pad = [(0, (-s) % f) for s, f in zip(data.shape, factors, strict=True)]
    if any(p for _, p in pad):
        data = np.pad(data, pad, mode="edge")
    shape = []
    for s, f in zip(data.shape, factors, strict=True):
        shape += [s // f, f]
    return data.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def _upsample_labels(
    labels: NDArray[np.uint32], factors: tuple[int, ...], shape: tuple[int, ...]
) -> NDArray[np.uint32]:
    """Nearest-neighbour upsampling of block-mean labels back to ``shape``."""
    if all(f == 1 for f in factors):
        return labels
    index = np.ix_(*(np.arange(s) // f for s, f in zip(shape, factors, strict=True)))
    return np.ascontiguousarray(labels[index])


def _split_by_distance(
    mask: NDArray[np.bool_],
    *,
    voxel_size: VoxelSize,
    seed_threshold_nm: float,
    min_size_nm3: float,
) -> NDArray[np.uint32]:
    """Instances of ``mask``: distance watershed on its Euclidean distance transform in nm."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.uint32)
    distance_nm = ndi.distance_transform_edt(mask, sampling=voxel_size.as_tuple())
    return distance_watershed(
        distance_nm.astype(np.float32),
        voxel_size=voxel_size,
        seed_threshold_nm=seed_threshold_nm,
        mask_threshold_nm=0.0,
        min_size_nm3=min_size_nm3,
    )


def _sphere_volume_nm3(diameter_nm: float) -> float:
    return math.pi / 6.0 * diameter_nm**3


def _check_polarity(polarity: str) -> Polarity:
    if polarity not in ("bright", "dark"):
        raise ConfigError(f"polarity must be 'bright' or 'dark', got {polarity!r}")
    return polarity  # type: ignore[return-value]


# ------------------------------------------------------------------------------ nuclei


def _drop_faint_objects(
    labels: NDArray[np.uint32],
    signal: NDArray[np.float32],
    *,
    voxel_size: VoxelSize,
    shell_nm: float,
    min_contrast: float,
) -> NDArray[np.uint32]:
    """Remove objects that barely stand out from the background shell around them.

    An object goes when its mean ``signal`` exceeds the shell's mean by less than
    ``min_contrast`` standard deviations of the shell; the rest are renumbered 1..N.
    """
    grow = [math.ceil(shell_nm / s) for s in voxel_size.as_tuple()]
    faint = []
    for label_id, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        around = tuple(
            slice(max(0, b.start - g), min(n, b.stop + g))
            for b, g, n in zip(box, grow, labels.shape, strict=True)
        )
        crop = labels[around]
        inside = crop == label_id
        distance = ndi.distance_transform_edt(~inside, sampling=voxel_size.as_tuple())
        shell = (distance > 0) & (distance <= shell_nm) & (crop == 0)
        if np.count_nonzero(shell) < 2:
            continue  # nothing around it to compare with (it fills the volume): keep
        values = signal[around]
        spread = max(float(values[shell].std()), 1e-12)
        if (float(values[inside].mean()) - float(values[shell].mean())) / spread < min_contrast:
            faint.append(label_id)
    if not faint:
        return labels
    labels = labels.copy()
    labels[np.isin(labels, faint)] = 0
    return relabel_sequential(labels, in_place=True)[0]


def segment_nuclei_classical(
    raw: ArrayLike,
    *,
    voxel_size: VoxelSize,
    min_diameter_nm: float = 3000.0,
    polarity: Polarity = "bright",
    n_classes: int = 2,
    foreground_class: int | None = None,
    smoothing_sigma_nm: float | None = None,
    opening_radius_nm: float | None = None,
    seed_fraction: float = 0.5,
    min_size_nm3: float | None = None,
    min_contrast: float = 2.0,
    working_voxel_nm: float | None = None,
) -> NDArray[np.uint32]:
    """Segment nuclei in an EM volume without a trained model.

    Assumptions (typical of heavy-metal stained FIB-SEM / SBEM of tissue and cells):
    nuclei are the largest compact objects, at least ``min_diameter_nm`` across, and on
    average lighter than the cytoplasm around them (euchromatin stains weakly; cytoplasm
    is crowded with dark membranes and organelles). Heterochromatin, nucleoli or texture
    inside a nucleus only make holes, which are filled. Nuclei touch only through necks
    much narrower than themselves.

    Steps, at a working resolution of about ``min_diameter_nm / 24`` per voxel
    (block-mean downsampling keeps this fast on large volumes):

    1. Gaussian smoothing, sigma ``min_diameter_nm / 10``, to average out texture.
    2. Otsu threshold (multi-Otsu with ``n_classes > 2``) → nucleus class.
    3. Fill holes in 3-D, then in each z slice (cavities open to the volume border).
    4. Opening with a ball of radius ``min_diameter_nm / 4`` cuts bridges and drops
       bright structures (light neurites, lumen) thinner than half a nucleus.
    5. Euclidean distance transform in nm and :func:`distance_watershed` with seeds
       deeper than ``seed_fraction`` × the minimum radius: touching nuclei are split at
       their neck.
    6. Objects below ``min_size_nm3`` are dropped, and so are objects that stand out
       from a shell ``min_diameter_nm / 4`` wide around them by less than
       ``min_contrast`` standard deviations of the smoothed intensity in that shell:
       Otsu always finds two classes, and in a volume without nuclei the brighter one
       is only a faint patch of cytoplasm or neuropil.
    7. Labels are upsampled (nearest) to the input grid, so outlines are precise to
       about one working voxel.

    When the data break an assumption: ``polarity="dark"`` for nuclei darker than the
    cytoplasm; ``n_classes=3, foreground_class=1`` when bright empty resin or lumen would
    otherwise join the nuclei (classes are numbered from dark to bright).

    Parameters
    ----------
    raw : (Z, Y, X) ndarray of real numbers
        Raw EM intensities (any range; not modified).
    voxel_size : VoxelSize
        Voxel size in nm (z, y, x).
    min_diameter_nm : float, default 3000.0
        Diameter of the smallest nucleus to find, in nm; sets every other scale.
    polarity : {"bright", "dark"}, default "bright"
        Whether nuclei are lighter or darker than their surroundings.
    n_classes : int, default 2
        Number of intensity classes for (multi-)Otsu thresholding.
    foreground_class : int, optional
        Which class (0 = darkest) is the nucleus; default the brightest class for
        ``"bright"``, the darkest for ``"dark"``.
    smoothing_sigma_nm : float, optional
        Gaussian sigma in nm; default ``min_diameter_nm / 10``.
    opening_radius_nm : float, optional
        Radius of the opening in nm; default ``min_diameter_nm / 4``.
    seed_fraction : float, default 0.5
        Seed threshold as a fraction of the minimum radius, in (0, 1].
    min_size_nm3 : float, optional
        Smallest object kept, nm³; default the volume of a sphere of half the minimum
        diameter (so nuclei cut by the volume border survive).
    min_contrast : float, default 2.0
        Smallest contrast of a nucleus against its surroundings, in standard deviations
        of the smoothed intensity around it; 0 keeps every object.
    working_voxel_nm : float, optional
        Working voxel edge in nm; default ``min_diameter_nm / 24``. Never finer than
        the input.

    Returns
    -------
    (Z, Y, X) ndarray of uint32
        Nucleus labels 1..N, 0 = background, on the input grid.
    """
    data = as_real_volume(raw, "raw")
    vs = coerce_voxel_size(voxel_size)
    diameter = check_positive(min_diameter_nm, "min_diameter_nm")
    pol = _check_polarity(polarity)
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if foreground_class is None:
        foreground_class = n_classes - 1 if pol == "bright" else 0
    if not isinstance(foreground_class, int) or not 0 <= foreground_class < n_classes:
        raise ConfigError(
            f"foreground_class must be an integer in [0, {n_classes - 1}], got {foreground_class!r}"
        )
    sigma = check_nonnegative(
        diameter / 10 if smoothing_sigma_nm is None else smoothing_sigma_nm, "smoothing_sigma_nm"
    )
    opening = check_nonnegative(
        diameter / 4 if opening_radius_nm is None else opening_radius_nm, "opening_radius_nm"
    )
    fraction = check_positive(seed_fraction, "seed_fraction")
    if fraction > 1:
        raise ConfigError(f"seed_fraction must be in (0, 1], got {seed_fraction!r}")
    min_size = check_nonnegative(
        _sphere_volume_nm3(diameter / 2) if min_size_nm3 is None else min_size_nm3,
        "min_size_nm3",
    )
    contrast = check_nonnegative(min_contrast, "min_contrast")
    working = check_positive(
        diameter / 24 if working_voxel_nm is None else working_voxel_nm, "working_voxel_nm"
    )

    factors = _working_factors(vs, working)
    work_vs = vs.scaled(factors)
    smoothed = _smooth(_downsample_mean(data, factors), sigma, work_vs)
    if float(smoothed.min()) == float(smoothed.max()):
        return np.zeros(data.shape, dtype=np.uint32)
    if n_classes == 2:
        thresholds = np.array([threshold_otsu(smoothed)])
    else:
        thresholds = threshold_multiotsu(smoothed, classes=n_classes)
    classes = np.digitize(smoothed, thresholds)
    mask = classes == foreground_class

    mask = fill_holes(mask)
    mask = fill_holes(mask, per_slice=True)
    if opening > 0:
        mask = binary_opening_nm(mask, radius_nm=opening, voxel_size=work_vs)
    labels = _split_by_distance(
        mask,
        voxel_size=work_vs,
        seed_threshold_nm=fraction * diameter / 2,
        min_size_nm3=min_size,
    )
    if contrast > 0 and labels.any():
        signal = smoothed if pol == "bright" else -smoothed
        labels = _drop_faint_objects(
            labels, signal, voxel_size=work_vs, shell_nm=diameter / 4, min_contrast=contrast
        )
    return _upsample_labels(labels, factors, data.shape)


# ------------------------------------------------------------------------ mitochondria


def _robust_std(values: NDArray[np.floating]) -> float:
    """Estimate the standard deviation from the median absolute deviation (outlier-proof)."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _local_mean(
    values: NDArray[np.float32],
    window_vox: list[int],
    *,
    weight: NDArray[np.bool_] | None = None,
) -> NDArray[np.float32]:
    """Box mean over ``window_vox``, of the voxels where ``weight`` is true when given.

    ``uniform_filter`` is a running sum, so its cost does not grow with the large window.
    """
    if weight is None:
        return ndi.uniform_filter(values, size=window_vox, mode="reflect")
    w = weight.astype(np.float32)
    total = ndi.uniform_filter(values * w, size=window_vox, mode="reflect")
    count = ndi.uniform_filter(w, size=window_vox, mode="reflect")
    plain = ndi.uniform_filter(values, size=window_vox, mode="reflect")
    enough = count > 0.05
    return np.where(enough, total / np.where(enough, count, 1.0), plain)


def segment_mitochondria_classical(
    raw: ArrayLike,
    *,
    voxel_size: VoxelSize,
    min_diameter_nm: float = 150.0,
    max_diameter_nm: float = 1000.0,
    polarity: Polarity = "dark",
    contrast_threshold: float | None = None,
    smoothing_sigma_nm: float | None = None,
    opening_radius_nm: float | None = None,
    seed_fraction: float = 0.6,
    min_size_nm3: float | None = None,
    working_voxel_nm: float | None = None,
) -> NDArray[np.uint32]:
    """Segment mitochondria in an EM volume without a trained model.

    Assumptions (heavy-metal stained FIB-SEM / SBEM): mitochondria are tubes or blobs
    ``min_diameter_nm``–``max_diameter_nm`` thick whose dense matrix is darker than the
    cytoplasm right around them; membranes, ER and other dark structures are much
    thinner than ``min_diameter_nm``. Absolute intensity varies across the volume
    (charging, section thickness), so darkness is measured against a local background.

    Steps, at a working resolution of about ``min_diameter_nm / 8`` per voxel:

    1. Gaussian smoothing, sigma ``min_diameter_nm / 6`` (averages cristae and noise).
    2. Local background: the mean over a box ``2 × max_diameter_nm`` wide, computed
       twice, the second time without the voxels that stood out the first time (so
       large or clustered mitochondria do not darken their own background);
       contrast = background − smoothed (for ``polarity="dark"``).
    3. Threshold the contrast at Otsu's threshold, but never below half a robust
       standard deviation (1.4826 × MAD) of the contrast: in real tissue mitochondria
       are often only that much darker than their surroundings, and Otsu then falls
       into the cytoplasm. ``contrast_threshold`` (in robust standard deviations)
       replaces this rule.
    4. Fill holes; opening with a ball of diameter ``min_diameter_nm`` removes membranes,
       ER and every other dark structure thinner than the thinnest mitochondrion.
    5. Distance transform in nm and :func:`distance_watershed` with seeds deeper than
       ``seed_fraction`` × the minimum radius: touching mitochondria are split at narrow
       contacts; a long tube stays one object.
    6. Objects below ``min_size_nm3`` are dropped; labels are upsampled to the input grid.

    Known weaknesses: dark heterochromatin, lipid droplets and lysosomes of mitochondrial
    size are detected too; mitochondria touching along a broad face stay merged.

    Parameters
    ----------
    raw : (Z, Y, X) ndarray of real numbers
        Raw EM intensities (not modified).
    voxel_size : VoxelSize
        Voxel size in nm (z, y, x).
    min_diameter_nm : float, default 150.0
        Thickness of the thinnest mitochondrion, in nm; sets the small scales.
    max_diameter_nm : float, default 1000.0
        Thickness of the thickest mitochondrion, in nm; sets the background window.
    polarity : {"dark", "bright"}, default "dark"
        Whether mitochondria are darker or lighter than their surroundings.
    contrast_threshold : float, optional
        Fixed threshold in robust standard deviations of the contrast; default automatic.
    smoothing_sigma_nm : float, optional
        Gaussian sigma in nm; default ``min_diameter_nm / 6``.
    opening_radius_nm : float, optional
        Radius of the opening in nm; default ``min_diameter_nm / 2``.
    seed_fraction : float, default 0.6
        Seed threshold as a fraction of the minimum radius, in (0, 1].
    min_size_nm3 : float, optional
        Smallest object kept, nm³; default half the volume of a sphere of the minimum
        diameter.
    working_voxel_nm : float, optional
        Working voxel edge in nm; default ``min_diameter_nm / 8``. Never finer than the
        input.

    Returns
    -------
    (Z, Y, X) ndarray of uint32
        Mitochondrion labels 1..N, 0 = background, on the input grid.
    """
    data = as_real_volume(raw, "raw")
    vs = coerce_voxel_size(voxel_size)
    min_diameter = check_positive(min_diameter_nm, "min_diameter_nm")
    max_diameter = check_positive(max_diameter_nm, "max_diameter_nm")
    if max_diameter < min_diameter:
        raise ConfigError(
            f"max_diameter_nm ({max_diameter_nm!r}) must be >= min_diameter_nm "
            f"({min_diameter_nm!r})"
        )
    pol = _check_polarity(polarity)
    fixed_threshold = (
        None
        if contrast_threshold is None
        else check_nonnegative(contrast_threshold, "contrast_threshold")
    )
    sigma = check_nonnegative(
        min_diameter / 6 if smoothing_sigma_nm is None else smoothing_sigma_nm,
        "smoothing_sigma_nm",
    )
    opening = check_nonnegative(
        min_diameter / 2 if opening_radius_nm is None else opening_radius_nm,
        "opening_radius_nm",
    )
    fraction = check_positive(seed_fraction, "seed_fraction")
    if fraction > 1:
        raise ConfigError(f"seed_fraction must be in (0, 1], got {seed_fraction!r}")
    min_size = check_nonnegative(
        _sphere_volume_nm3(min_diameter) / 2 if min_size_nm3 is None else min_size_nm3,
        "min_size_nm3",
    )
    working = check_positive(
        min_diameter / 8 if working_voxel_nm is None else working_voxel_nm, "working_voxel_nm"
    )

    factors = _working_factors(vs, working)
    work_vs = vs.scaled(factors)
    smoothed = _smooth(_downsample_mean(data, factors), sigma, work_vs)
    signal = -smoothed if pol == "dark" else smoothed  # mitochondria are high in `signal`
    if float(signal.min()) == float(signal.max()):
        return np.zeros(data.shape, dtype=np.uint32)
    window = [max(1, round(2 * max_diameter / s)) | 1 for s in work_vs.as_tuple()]
    contrast = signal - _local_mean(signal, window)
    # Second pass: the background mean leaves out what stood out in the first, so large
    # or clustered mitochondria do not darken their own background.
    typical = contrast <= 2.0 * _robust_std(contrast)
    contrast = signal - _local_mean(signal, window, weight=typical)
    spread = _robust_std(contrast)
    if fixed_threshold is not None:
        threshold = fixed_threshold * spread
    else:
        threshold = max(float(threshold_otsu(contrast)), 0.5 * spread)
    mask = contrast > threshold

    mask = fill_holes(mask)
    if opening > 0:
        mask = binary_opening_nm(mask, radius_nm=opening, voxel_size=work_vs)
    labels = _split_by_distance(
        mask,
        voxel_size=work_vs,
        seed_threshold_nm=fraction * min_diameter / 2,
        min_size_nm3=min_size,
    )
    return _upsample_labels(labels, factors, data.shape)
