"""Gaussian kernel density of object centroids, in objects per µm³."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from vemkit.errors import ConfigError
from vemkit.measure.neighbours import _check_points

__all__ = ["kernel_density"]

# Gaussian kernels are summed out to this many bandwidths (relative error < 1e-7).
_CUTOFF_BANDWIDTHS = 6.0


def kernel_density(
    points_um: NDArray[np.floating[Any]],
    *,
    bandwidth_um: float,
    include_self: bool = False,
) -> NDArray[np.float64]:
    """Gaussian kernel estimate of the number density of points at each point.

    ``density_i = sum_j (2 pi h^2)^(-3/2) exp(-|x_i - x_j|^2 / (2 h^2))`` over the
    other points ``j != i`` (leave-one-out), in points per µm³. For a homogeneous
    Poisson process of intensity ``lambda`` its expectation is ``lambda`` away from the
    region border (no edge correction: points near a border see fewer neighbours).

    ``include_self=True`` adds the point's own kernel, ``(2 pi h^2)^(-3/2)``, and then
    equals ``N * exp(KernelDensity(kernel="gaussian", bandwidth=h).fit(x)
    .score_samples(x))`` of scikit-learn, the quantity used in the ZEISS arivis HeLa
    nuclear-pore profile (which reports it per point, i.e. divided by ``N``).

    Parameters
    ----------
    points_um : (N, 3) ndarray of float
        Positions ``(z, y, x)`` in µm.
    bandwidth_um : float
        Kernel standard deviation ``h`` in µm (> 0).
    include_self : bool, optional
        Include each point's own kernel. Default False.

    Returns
    -------
    (N,) ndarray of float64
        Density in points per µm³.

    Examples
    --------
    >>> d = kernel_density(np.array([[0.0, 0, 0], [0, 0, 0.1]]), bandwidth_um=0.1)
    >>> bool(np.allclose(d, (2 * np.pi * 0.01) ** -1.5 * np.exp(-0.5)))
    True
    """
    h = float(bandwidth_um)
    if not math.isfinite(h) or h <= 0:
        raise ConfigError(f"bandwidth_um must be a positive number of µm, got {bandwidth_um!r}")
    points = _check_points(points_um, "points_um")
    n, dim = points.shape
    norm = (2.0 * math.pi * h * h) ** (-dim / 2.0)
    density = np.zeros(n)
    if n > 1:
        tree = cKDTree(points)
        pairs = tree.query_pairs(_CUTOFF_BANDWIDTHS * h, output_type="ndarray")
        if len(pairs):
            squared = ((points[pairs[:, 0]] - points[pairs[:, 1]]) ** 2).sum(axis=1)
            weights = norm * np.exp(-squared / (2.0 * h * h))
            density += np.bincount(pairs[:, 0], weights=weights, minlength=n)
            density += np.bincount(pairs[:, 1], weights=weights, minlength=n)
    if include_self:
        density += norm
    return density
