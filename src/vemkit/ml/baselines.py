"""Classical baselines: an ilastik-style random-forest pixel classifier.

:class:`RandomForestPixelClassifier` computes the classic ilastik feature stack —
smoothed intensity, gradient magnitude ("edges") and Hessian eigenvalues ("texture") at
several Gaussian scales, via :func:`skimage.feature.multiscale_basic_features` — and
fits a scikit-learn random forest on the few voxels a user has labelled (scribbles,
painted planes). Scales are given in nm and converted with the voxel size, so one
classifier works at any resolution. It is the "no deep learning" baseline of the
benchmarks and a quick way to get training labels from scribbles (DESIGN.md flow 3).

Labels follow the ilastik convention: ``ignore_value`` (0 by default) marks unlabelled
voxels and every other value is a class. Prediction is a plain array function, so it
runs blockwise with a halo of :attr:`RandomForestPixelClassifier.halo_voxels`.

Requires scikit-learn (``pip install scikit-learn``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vemkit.errors import ConfigError, InvalidVolumeError, MissingDependencyError
from vemkit.geometry import VoxelSize
from vemkit.ml.normalize import Normalization, fit_normalization, normalize

__all__ = ["DEFAULT_SIGMAS_VOXELS", "RandomForestPixelClassifier"]

#: Default Gaussian scales in voxels of the finest in-plane axis (ilastik-like).
DEFAULT_SIGMAS_VOXELS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)

# Planes are treated as 2D images when z is this much coarser than y and x.
_PLANAR_ANISOTROPY = 2.0
# 3D features need voxels this close to isotropic (the skimage filters take one sigma).
_MAX_3D_ANISOTROPY = 1.5


def _forest_class() -> Any:
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
        raise MissingDependencyError(
            "the random-forest pixel classifier needs scikit-learn; install it with: "
            "pip install scikit-learn"
        ) from error
    return RandomForestClassifier


class RandomForestPixelClassifier:
    """Random forest on multiscale intensity / edge / texture features (ilastik-style).

    Parameters
    ----------
    voxel_size : VoxelSize or (z, y, x) sequence
        Voxel size in nm of the images given to :meth:`fit` and :meth:`predict_proba`.
    sigmas_nm : sequence of float, optional
        Gaussian scales in nm. Default: :data:`DEFAULT_SIGMAS_VOXELS` times the in-plane
        voxel size.
    intensity, edges, texture : bool
        Which feature families to compute (see
        :func:`skimage.feature.multiscale_basic_features`).
    planar : bool or None
        Compute features per z plane (2D). ``None`` (default): planar when the z voxel is
        at least twice the in-plane size (serial sections). 3D features need nearly
        isotropic voxels (within a factor 1.5).
    n_estimators, max_depth, min_samples_leaf : int or None
        Random forest size (scikit-learn meaning).
    max_samples_per_class : int or None
        :meth:`fit` uses at most this many labelled voxels per class, drawn at random
        (balanced training). ``None``: all of them.
    n_jobs : int
        Threads for the forest and the feature filters.
    random_state : int
        Seed of the voxel sampling and the forest.

    Examples
    --------
    >>> image = np.zeros((1, 32, 32), np.float32); image[0, :, 16:] = 1.0
    >>> labels = np.zeros(image.shape, np.uint8)
    >>> labels[0, 4, 2:6] = 1; labels[0, 4, 26:30] = 2
    >>> rf = RandomForestPixelClassifier(voxel_size=(50, 5, 5), n_estimators=10)
    >>> proba = rf.fit(image, labels).predict_proba(image)
    >>> proba.shape, bool(proba[1, 0, 16, 28] > 0.5)
    ((2, 1, 32, 32), True)
    """

    def __init__(
        self,
        *,
        voxel_size: VoxelSize | Sequence[float],
        sigmas_nm: Sequence[float] | None = None,
        intensity: bool = True,
        edges: bool = True,
        texture: bool = True,
        planar: bool | None = None,
        n_estimators: int = 100,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_samples_per_class: int | None = 10_000,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.voxel_size = VoxelSize.coerce(voxel_size)
        z, y, x = self.voxel_size.as_tuple()
        if sigmas_nm is None:
            sigmas_nm = tuple(s * min(y, x) for s in DEFAULT_SIGMAS_VOXELS)
        self.sigmas_nm = tuple(float(s) for s in sigmas_nm)
        if not self.sigmas_nm or not all(math.isfinite(s) and s > 0 for s in self.sigmas_nm):
            raise ConfigError(f"sigmas_nm must be positive numbers, got {sigmas_nm!r}")
        if not (intensity or edges or texture):
            raise ConfigError("at least one of intensity, edges and texture must be True")
        if n_estimators < 1:
            raise ConfigError(f"n_estimators must be at least 1, got {n_estimators}")
        if max_samples_per_class is not None and max_samples_per_class < 1:
            raise ConfigError(
                f"max_samples_per_class must be at least 1 or None, got {max_samples_per_class}"
            )
        self.planar = z >= _PLANAR_ANISOTROPY * max(y, x) if planar is None else bool(planar)
        axes = (y, x) if self.planar else (z, y, x)
        if max(axes) > _MAX_3D_ANISOTROPY * min(axes):
            where = "in-plane (y, x)" if self.planar else "3D"
            raise ConfigError(
                f"{where} features need nearly isotropic voxels, got {self.voxel_size} nm; "
                "resample the volume first"
                + ("" if self.planar else " or use planar=True (features per z plane)")
            )
        self._unit_nm = float(np.mean(axes))
        self.intensity, self.edges, self.texture = intensity, edges, texture
        self.n_estimators = int(n_estimators)
        self.max_depth = max_depth
        self.min_samples_leaf = int(min_samples_leaf)
        self.max_samples_per_class = max_samples_per_class
        self.n_jobs = int(n_jobs)
        self.random_state = int(random_state)
        self.classes_: NDArray[Any] | None = None
        self.normalization_: Normalization | None = None
        self.forest_: Any = None

    @property
    def sigmas_voxels(self) -> tuple[float, ...]:
        """The Gaussian scales in voxels of the feature axes."""
        return tuple(s / self._unit_nm for s in self.sigmas_nm)

    @property
    def halo_voxels(self) -> tuple[int, int, int]:
        """(z, y, x) margin a block needs so that its features match the whole volume's."""
        margin = math.ceil(4.0 * max(self.sigmas_voxels)) + 1
        return (0 if self.planar else margin, margin, margin)

    @property
    def n_features(self) -> int:
        """Number of features per voxel."""
        per_sigma = (
            int(self.intensity) + int(self.edges) + int(self.texture) * (2 if self.planar else 3)
        )
        return per_sigma * len(self.sigmas_nm)

    def _check(self, image: ArrayLike, name: str = "image") -> NDArray[Any]:
        array = np.asarray(image)
        if array.ndim != 3:
            raise InvalidVolumeError(f"{name} must be a (Z, Y, X) array, got shape {array.shape}")
        if array.size == 0:
            raise InvalidVolumeError(f"{name} is empty (shape {array.shape})")
        return array

    def features(self, image: ArrayLike) -> NDArray[np.float32]:
        """Compute the feature stack of ``image``: ``(Z, Y, X, n_features)`` float32.

        The image is normalised with the statistics measured by :meth:`fit` (percentiles
        1 and 99.8 of the training image) so features are comparable across images; an
        unfitted classifier normalises each image by its own percentiles.
        """
        from skimage.feature import multiscale_basic_features

        array = self._check(image)
        norm = self.normalization_ or fit_normalization(array, mode="percentile")
        scaled = normalize(array, norm)
        out = np.empty((*array.shape, self.n_features), dtype=np.float32)
        options = {
            "intensity": self.intensity,
            "edges": self.edges,
            "texture": self.texture,
            "workers": self.n_jobs,
        }
        start = 0
        for sigma in self.sigmas_voxels:
            if self.planar:
                for z in range(array.shape[0]):
                    f = multiscale_basic_features(
                        scaled[z], sigma_min=sigma, sigma_max=sigma, num_sigma=1, **options
                    )
                    out[z, ..., start : start + f.shape[-1]] = f
            else:
                f = multiscale_basic_features(
                    scaled, sigma_min=sigma, sigma_max=sigma, num_sigma=1, **options
                )
                out[..., start : start + f.shape[-1]] = f
            start += f.shape[-1]
        return out

    def fit(
        self, image: ArrayLike, labels: ArrayLike, *, ignore_value: int = 0
    ) -> RandomForestPixelClassifier:
        """Fit the forest on the labelled voxels of ``image``.

        Parameters
        ----------
        image : (Z, Y, X) ndarray
            Raw intensities.
        labels : (Z, Y, X) ndarray of int
            Class of each labelled voxel; ``ignore_value`` marks unlabelled voxels. At
            least two classes must be present.
        ignore_value : int
            Label of unlabelled voxels (0, as in ilastik).

        Returns
        -------
        self
        """
        array = self._check(image)
        labels_arr = self._check(labels, "labels")
        if labels_arr.shape != array.shape:
            raise InvalidVolumeError(
                f"labels shape {labels_arr.shape} differs from image shape {array.shape}"
            )
        known = labels_arr != ignore_value
        classes = np.unique(labels_arr[known])
        if classes.size < 2:
            raise ConfigError(
                f"the labels hold {classes.size} class(es) besides the ignore value "
                f"{ignore_value}; paint at least two classes"
            )
        rng = np.random.default_rng(self.random_state)
        picked = []
        for value in classes:
            index = np.flatnonzero((labels_arr == value).ravel())
            if self.max_samples_per_class is not None and index.size > self.max_samples_per_class:
                index = rng.choice(index, self.max_samples_per_class, replace=False)
            picked.append(index)
        flat = np.sort(np.concatenate(picked))
        self.normalization_ = fit_normalization(array, mode="percentile")
        x, y = self._sampled_features(array, flat), labels_arr.ravel()[flat]
        forest = _forest_class()(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        forest.fit(x, y)
        self.forest_, self.classes_ = forest, forest.classes_
        return self

    def _sampled_features(self, array: NDArray[Any], flat: NDArray[np.intp]) -> NDArray[Any]:
        """Features of the voxels ``flat`` (raveled indices), one plane at a time if planar."""
        if not self.planar:
            return self.features(array).reshape(-1, self.n_features)[flat]
        plane = array.shape[1] * array.shape[2]
        rows = []
        for z in np.unique(flat // plane):
            in_plane = flat[(flat // plane) == z] - z * plane
            rows.append(self.features(array[z : z + 1]).reshape(-1, self.n_features)[in_plane])
        return np.concatenate(rows)

    def predict_proba(self, image: ArrayLike) -> NDArray[np.float32]:
        """Class probabilities ``(n_classes, Z, Y, X)`` float32, classes in :attr:`classes_`.

        Planar classifiers work one plane at a time (memory of one plane's features).
        """
        if self.forest_ is None or self.classes_ is None:
            raise ConfigError("the classifier is not fitted; call fit(image, labels) first")
        array = self._check(image)
        out = np.empty((len(self.classes_), *array.shape), dtype=np.float32)
        chunks = [slice(z, z + 1) for z in range(array.shape[0])] if self.planar else [slice(None)]
        for chunk in chunks:
            feats = self.features(array[chunk])
            proba = self.forest_.predict_proba(feats.reshape(-1, self.n_features))
            out[:, chunk] = proba.T.reshape(-1, *feats.shape[:-1])
        return out

    def predict(self, image: ArrayLike) -> NDArray[Any]:
        """Return the most probable class of every voxel, ``(Z, Y, X)``, as label values."""
        proba = self.predict_proba(image)
        assert self.classes_ is not None
        return np.asarray(self.classes_)[np.argmax(proba, axis=0)]
