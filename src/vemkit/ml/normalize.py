"""Intensity normalisation shared by training and prediction.

A model is only as good as the agreement between the intensities it was trained on
and those it sees later. :class:`Normalization` describes the mapping; when *fitted*
(fixed ``low``/``high`` or ``mean``/``std``, e.g. measured once on the training volume
with :func:`fit_normalization`) it gives identical results on a whole volume, on each
block of it and on each training patch. Store ``normalization.to_dict()`` in the model
card so prediction uses exactly the same mapping.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vemkit.errors import ConfigError, InvalidVolumeError

__all__ = ["Normalization", "fit_normalization", "normalize"]

NormalizationMode = Literal["percentile", "meanstd", "none"]


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become network input.

    Parameters
    ----------
    mode : {"percentile", "meanstd", "none"}
        ``"percentile"`` maps the ``lower_percentile`` value to 0 and the
        ``upper_percentile`` value to 1; ``"meanstd"`` subtracts the mean and divides
        by the standard deviation; ``"none"`` only converts to float32.
    lower_percentile, upper_percentile : float
        Percentiles (0–100) used by ``"percentile"`` mode.
    low, high : float, optional
        Fixed intensities for the percentiles. ``None``: measured on each array passed
        to :func:`normalize` (fine for whole volumes, inconsistent across blocks).
    mean, std : float, optional
        Fixed statistics for ``"meanstd"`` mode; ``None``: measured on each array.
    clip : bool
        Clip the result of ``"percentile"`` mode to [0, 1].
    """

    mode: NormalizationMode = "percentile"
    lower_percentile: float = 1.0
    upper_percentile: float = 99.8
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None
    clip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("percentile", "meanstd", "none"):
            raise ConfigError(
                f"normalization mode must be 'percentile', 'meanstd' or 'none', got {self.mode!r}"
            )
        if not 0.0 <= self.lower_percentile < self.upper_percentile <= 100.0:
            raise ConfigError(
                "normalization percentiles must satisfy 0 <= lower < upper <= 100, got "
                f"{self.lower_percentile} and {self.upper_percentile}"
            )
        for name in ("low", "high", "mean", "std"):
            value = getattr(self, name)
            if value is not None:
                if not math.isfinite(float(value)):
                    raise ConfigError(f"normalization {name} must be finite, got {value!r}")
                object.__setattr__(self, name, float(value))
        if (self.low is None) != (self.high is None):
            raise ConfigError("give both normalization low and high, or neither")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("give both normalization mean and std, or neither")

    @property
    def is_fitted(self) -> bool:
        """Whether the mapping is fixed (does not depend on the array it is applied to)."""
        if self.mode == "percentile":
            return self.low is not None
        if self.mode == "meanstd":
            return self.mean is not None
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        """Rebuild from :meth:`to_dict` output (e.g. a model card), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown normalization keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def _sample_values(
    image: NDArray[Any], valid: NDArray[np.bool_] | None, max_samples: int
) -> NDArray[np.float64]:
    values = image[valid] if valid is not None else image.reshape(-1)
    if values.size > max_samples:
        # A regular stride is deterministic and unbiased for percentiles of large volumes.
        values = values[:: math.ceil(values.size / max_samples)]
    values = values.astype(np.float64, copy=False)
    if values.size == 0:
        raise InvalidVolumeError("cannot measure normalization statistics on an empty array")
    if not np.all(np.isfinite(values)):
        raise InvalidVolumeError("image contains NaN or infinite values; clean it first")
    return values


def fit_normalization(
    image: ArrayLike,
    *,
    mode: NormalizationMode = "percentile",
    lower_percentile: float = 1.0,
    upper_percentile: float = 99.8,
    clip: bool = False,
    valid: ArrayLike | None = None,
    max_samples: int = 10_000_000,
) -> Normalization:
    """Measure fixed normalisation statistics on a (training) image.

    Parameters
    ----------
    image : ndarray
        Raw intensities, any shape and numeric dtype.
    mode, lower_percentile, upper_percentile, clip
        See :class:`Normalization`.
    valid : ndarray of bool, optional
        Only these voxels are measured (e.g. inside the sample, outside resin).
    max_samples : int
        At most this many voxels (a regular subsample) are measured.

    Returns
    -------
    Normalization
        A fitted normalisation (``is_fitted`` is true).

    Examples
    --------
    >>> norm = fit_normalization(np.arange(101.0), lower_percentile=0, upper_percentile=100)
    >>> (norm.low, norm.high)
    (0.0, 100.0)
    """
    array = np.asarray(image)
    mask = None if valid is None else np.asarray(valid, dtype=bool)
    if mask is not None and mask.shape != array.shape:
        raise InvalidVolumeError(
            f"valid mask shape {mask.shape} does not match image shape {array.shape}"
        )
    template = Normalization(
        mode=mode, lower_percentile=lower_percentile, upper_percentile=upper_percentile, clip=clip
    )
    if mode == "none":
        return template
    values = _sample_values(array, mask, max_samples)
    if mode == "percentile":
        low, high = np.percentile(values, [lower_percentile, upper_percentile])
        return dataclasses.replace(template, low=float(low), high=float(high))
    return dataclasses.replace(template, mean=float(values.mean()), std=float(values.std()))


def normalize(image: ArrayLike, normalization: Normalization) -> NDArray[np.float32]:
    """Apply ``normalization`` to ``image``.

    Parameters
    ----------
    image : ndarray
        Raw intensities, any shape and numeric dtype.
    normalization : Normalization
        The mapping; unfitted statistics are measured on ``image`` itself.

    Returns
    -------
    ndarray of float32
        Same shape as ``image``. A constant image maps to zeros.
    """
    array = np.asarray(image)
    if array.size == 0:
        raise InvalidVolumeError("cannot normalize an empty array")
    out = array.astype(np.float32, copy=True)
    if normalization.mode == "none":
        return out
    if normalization.is_fitted:
        fitted = normalization
    else:
        fitted = fit_normalization(
            array,
            mode=normalization.mode,
            lower_percentile=normalization.lower_percentile,
            upper_percentile=normalization.upper_percentile,
            clip=normalization.clip,
        )
    if fitted.mode == "percentile":
        assert fitted.low is not None
        assert fitted.high is not None
        offset, scale = fitted.low, fitted.high - fitted.low
    else:
        assert fitted.mean is not None
        assert fitted.std is not None
        offset, scale = fitted.mean, fitted.std
    out -= np.float32(offset)
    if scale > 0:
        out *= np.float32(1.0 / scale)
    if fitted.mode == "percentile" and fitted.clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out
