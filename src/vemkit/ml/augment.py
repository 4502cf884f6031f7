"""Data augmentation on NumPy patches, seeded by a generator passed in.

A sample is ``image`` ``(C, *S)`` float32, ``labels`` ``(*S)`` and ``valid`` ``(*S)``
bool, with ``S`` 2D ``(Y, X)`` or 3D ``(Z, Y, X)``. Geometric transforms move all three
together: the image is interpolated linearly, labels and ``valid`` take the nearest
voxel, and areas that come from beyond the patch become not valid (unannotated), so
ignore regions are kept and never invented. Intensity transforms change the image only.

Sizes are in nm, converted with the patch ``voxel_size``, so the same settings suit
isotropic FIB-SEM and anisotropic serial-section data; 90° rotations happen only in a
plane whose two axes have the same voxel size, and arbitrary rotations are done in
physical space. The serial-section defects (missing section, misalignment) apply to
3D patches, whose first axis is z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from vemkit.errors import ConfigError, InvalidVolumeError

__all__ = [
    "Augmenter",
    "add_gaussian_noise",
    "adjust_contrast",
    "adjust_gamma",
    "elastic_displacement",
    "gaussian_blur",
    "misalign_sections",
    "missing_section",
    "random_flip",
    "random_rot90",
    "rotation_coordinates",
    "warp",
]

Sample = tuple[NDArray[np.float32], NDArray[Any], NDArray[np.bool_]]


def _check_sample(image: NDArray[Any], labels: NDArray[Any], valid: NDArray[Any]) -> None:
    if image.ndim != labels.ndim + 1 or image.shape[1:] != labels.shape:
        raise InvalidVolumeError(
            f"augmentation needs image (C, *S) and labels (*S); got {image.shape} and "
            f"{labels.shape}"
        )
    if valid.shape != labels.shape:
        raise InvalidVolumeError(f"valid shape {valid.shape} differs from labels {labels.shape}")


def random_flip(
    image: NDArray[np.float32],
    labels: NDArray[Any],
    valid: NDArray[np.bool_],
    *,
    rng: np.random.Generator,
    axes: Sequence[int] | None = None,
) -> Sample:
    """Flip each spatial axis in ``axes`` (default all) with probability 1/2."""
    spatial = labels.ndim
    for axis in range(spatial) if axes is None else axes:
        if rng.random() < 0.5:
            a = axis % spatial
            image = np.flip(image, axis=a + 1)
            labels = np.flip(labels, axis=a)
            valid = np.flip(valid, axis=a)
    return image, labels, valid


def random_rot90(
    image: NDArray[np.float32],
    labels: NDArray[Any],
    valid: NDArray[np.bool_],
    *,
    rng: np.random.Generator,
    axes: tuple[int, int] = (-2, -1),
) -> Sample:
    """Rotate by a random multiple of 90° in the plane of two spatial ``axes``.

    Only multiples of 180° are used when the two sizes differ, so shapes are kept.
    The caller must make sure the plane is isotropic.
    """
    spatial = labels.ndim
    a, b = (axes[0] % spatial, axes[1] % spatial)
    k = int(rng.integers(4)) if labels.shape[a] == labels.shape[b] else 2 * int(rng.integers(2))
    if k == 0:
        return image, labels, valid
    return (
        np.rot90(image, k, axes=(a + 1, b + 1)),
        np.rot90(labels, k, axes=(a, b)),
        np.rot90(valid, k, axes=(a, b)),
    )


def rotation_coordinates(
    shape: Sequence[int],
    *,
    angle_deg: float,
    voxel_size: Sequence[float],
    tilt_deg: float = 0.0,
    tilt_direction_deg: float = 0.0,
) -> NDArray[np.float64]:
    """Source coordinates (voxels) that rotate a patch about its centre in physical space.

    Parameters
    ----------
    shape : sequence of int
        Spatial patch shape, 2D ``(Y, X)`` or 3D ``(Z, Y, X)``.
    angle_deg : float
        Rotation in the last two axes (the yx plane).
    voxel_size : sequence of float
        nm per voxel along each spatial axis; the rotation is done in nm, so
        anisotropic voxels are handled correctly.
    tilt_deg : float
        3D only: rotation out of the yx plane about an in-plane axis.
    tilt_direction_deg : float
        3D only: direction of that in-plane axis.

    Returns
    -------
    ndarray of float64
        ``(ndim, *shape)`` coordinates for :func:`warp`.
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(voxel_size, dtype=np.float64)
    ndim = len(shape)
    theta = math.radians(angle_deg)
    in_plane = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    if ndim == 2:
        rotation = in_plane
    else:
        rotation = np.eye(3)
        rotation[1:, 1:] = in_plane
        if tilt_deg:
            # Rodrigues rotation about the in-plane unit axis (0, sin d, cos d).
            d = math.radians(tilt_direction_deg)
            u = np.array([0.0, math.sin(d), math.cos(d)])
            cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
            phi = math.radians(tilt_deg)
            tilt = np.eye(3) + math.sin(phi) * cross + (1 - math.cos(phi)) * cross @ cross
            rotation = tilt @ rotation
    # Output voxel x -> physical p = (x - c) * s -> source physical R^T p -> voxels.
    matrix = (rotation.T * spacing[None, :]) / spacing[:, None]
    centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    grid = np.indices(shape, dtype=np.float64).reshape(ndim, -1) - centre[:, None]
    coords = matrix @ grid + centre[:, None]
    return coords.reshape((ndim, *shape))


def elastic_displacement(
    shape: Sequence[int],
    *,
    rng: np.random.Generator,
    displacement_nm: float,
    spacing_nm: float,
    voxel_size: Sequence[float],
) -> NDArray[np.float64]:
    """Draw a smooth random displacement field in voxels, ``(ndim, *shape)``.

    Random displacements with standard deviation ``displacement_nm`` are drawn on a
    control grid of about ``spacing_nm`` and interpolated (cubic) to the patch.
    Add the result to the identity grid (``np.indices``) to get :func:`warp` coordinates.
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(voxel_size, dtype=np.float64)
    control = tuple(
        max(2, math.ceil(n * s / spacing_nm) + 1) for n, s in zip(shape, spacing, strict=True)
    )
    field = np.empty((len(shape), *shape), dtype=np.float64)
    for axis in range(len(shape)):
        coarse = rng.normal(0.0, displacement_nm / spacing[axis], size=control)
        zoomed = ndimage.zoom(
            coarse, [n / c for n, c in zip(shape, control, strict=True)], order=3, mode="nearest"
        )
        field[axis] = zoomed[tuple(slice(0, n) for n in shape)]
    return field


def warp(
    image: NDArray[np.float32],
    labels: NDArray[Any],
    valid: NDArray[np.bool_],
    coordinates: NDArray[np.floating[Any]],
) -> Sample:
    """Resample a sample at ``coordinates`` ``(ndim, *S_out)`` (voxels of the input).

    The image is interpolated linearly (mirrored beyond the edges); labels and
    ``valid`` take the nearest voxel, and points beyond the patch are not valid.
    """
    _check_sample(image, labels, valid)
    spatial = labels.shape
    out_shape = coordinates.shape[1:]
    warped = np.empty((image.shape[0], *out_shape), dtype=np.float32)
    for channel in range(image.shape[0]):
        warped[channel] = ndimage.map_coordinates(
            image[channel], coordinates, order=1, mode="mirror"
        )
    nearest = np.rint(coordinates).astype(np.intp)
    inside = np.ones(out_shape, dtype=bool)
    for axis, size in enumerate(spatial):
        inside &= (nearest[axis] >= 0) & (nearest[axis] < size)
        np.clip(nearest[axis], 0, size - 1, out=nearest[axis])
    index = tuple(nearest)
    new_valid = valid[index] & inside
    new_labels = np.where(inside, labels[index], np.zeros((), dtype=labels.dtype))
    return warped, new_labels, new_valid


def adjust_contrast(
    image: NDArray[np.float32],
    *,
    rng: np.random.Generator,
    contrast_range: tuple[float, float] = (0.75, 1.33),
    brightness_range: tuple[float, float] = (-0.1, 0.1),
) -> NDArray[np.float32]:
    """Scale contrast about the mean and shift brightness (in normalised units)."""
    contrast = rng.uniform(*contrast_range)
    brightness = rng.uniform(*brightness_range)
    mean = image.mean()
    return ((image - mean) * contrast + mean + brightness).astype(np.float32)


def adjust_gamma(
    image: NDArray[np.float32],
    *,
    rng: np.random.Generator,
    gamma_range: tuple[float, float] = (0.75, 1.33),
) -> NDArray[np.float32]:
    """Gamma correction on the image rescaled to its own [min, max] (range is kept)."""
    gamma = math.exp(rng.uniform(math.log(gamma_range[0]), math.log(gamma_range[1])))
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return image
    scaled = (image - low) / (high - low)
    return (low + (high - low) * scaled**gamma).astype(np.float32)


def add_gaussian_noise(
    image: NDArray[np.float32],
    *,
    rng: np.random.Generator,
    sigma_range: tuple[float, float] = (0.0, 0.1),
) -> NDArray[np.float32]:
    """Add Gaussian noise with a standard deviation drawn from ``sigma_range``."""
    sigma = rng.uniform(*sigma_range)
    return (image + rng.normal(0.0, sigma, size=image.shape)).astype(np.float32)


def gaussian_blur(
    image: NDArray[np.float32],
    *,
    rng: np.random.Generator,
    sigma_nm_range: tuple[float, float],
    voxel_size: Sequence[float],
) -> NDArray[np.float32]:
    """Blur with a Gaussian of physical width drawn from ``sigma_nm_range`` (nm)."""
    sigma_nm = rng.uniform(*sigma_nm_range)
    sigma = [0.0, *(sigma_nm / s for s in voxel_size)]
    return ndimage.gaussian_filter(image, sigma=sigma, mode="mirror").astype(np.float32)


def missing_section(
    image: NDArray[np.float32],
    *,
    rng: np.random.Generator,
    mode: str | None = None,
) -> NDArray[np.float32]:
    """Serial-section defect: blank one z slice or duplicate its neighbour into it.

    Parameters
    ----------
    image : (C, Z, Y, X) ndarray of float32
        A 3D patch (z first). Labels are unchanged: the network must infer the
        missing section from its neighbours.
    rng : numpy.random.Generator
        Random source.
    mode : {"blank", "duplicate"}, optional
        Random when ``None``.
    """
    if image.ndim != 4 or image.shape[1] < 2:
        return image
    out = image.copy()
    z = int(rng.integers(image.shape[1]))
    chosen = mode or ("blank" if rng.random() < 0.5 else "duplicate")
    if chosen == "blank":
        out[:, z] = image.mean(axis=(1, 2, 3), keepdims=True)[:, 0]
    elif chosen == "duplicate":
        source = z - 1 if z > 0 else z + 1
        out[:, z] = image[:, source]
    else:
        raise ConfigError(f"missing-section mode must be 'blank' or 'duplicate', got {mode!r}")
    return out


def _shift_yx(array: NDArray[Any], dy: int, dx: int, *, fill: Any | None) -> NDArray[Any]:
    """Shift the last two axes by (dy, dx); new areas get ``fill`` (or the edge value)."""
    if fill is None:
        pad = ((0, 0),) * (array.ndim - 2) + ((abs(dy), abs(dy)), (abs(dx), abs(dx)))
        padded = np.pad(array, pad, mode="edge")
    else:
        pad = ((0, 0),) * (array.ndim - 2) + ((abs(dy), abs(dy)), (abs(dx), abs(dx)))
        padded = np.pad(array, pad, mode="constant", constant_values=fill)
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return padded[..., y0 : y0 + array.shape[-2], x0 : x0 + array.shape[-1]]


def misalign_sections(
    image: NDArray[np.float32],
    labels: NDArray[Any],
    valid: NDArray[np.bool_],
    *,
    rng: np.random.Generator,
    max_shift_vox: tuple[int, int],
    mode: str | None = None,
) -> Sample:
    """Serial-section defect: shift part of a 3D stack in yx.

    ``"shift"`` moves all sections from a random z on; ``"slip"`` moves one section.
    Image, labels and ``valid`` move together (annotations follow the image they were
    drawn on); areas uncovered by the shift are not valid.
    """
    _check_sample(image, labels, valid)
    if labels.ndim != 3 or labels.shape[0] < 2:
        return image, labels, valid
    chosen = mode or ("shift" if rng.random() < 0.5 else "slip")
    if chosen not in ("shift", "slip"):
        raise ConfigError(f"misalignment mode must be 'shift' or 'slip', got {mode!r}")
    dy = int(rng.integers(-max_shift_vox[0], max_shift_vox[0] + 1))
    dx = int(rng.integers(-max_shift_vox[1], max_shift_vox[1] + 1))
    z = int(rng.integers(1, labels.shape[0]))
    stop = labels.shape[0] if chosen == "shift" else z + 1
    image, labels, valid = image.copy(), labels.copy(), valid.copy()
    image[:, z:stop] = _shift_yx(image[:, z:stop], dy, dx, fill=None)
    labels[z:stop] = _shift_yx(labels[z:stop], dy, dx, fill=0)
    valid[z:stop] = _shift_yx(valid[z:stop], dy, dx, fill=False)
    return image, labels, valid


@dataclass(frozen=True)
class Augmenter:
    """A seeded augmentation pipeline; call it as ``augmenter(image, labels, valid, rng=rng)``.

    Parameters
    ----------
    voxel_size : tuple of float
        nm per voxel along each spatial axis of the *patch* (``(y, x)`` for 2D patches
        of z planes, ``(z, x)`` for zx planes, ``(z, y, x)`` for 3D patches).
    flip : bool
        Random flips of every spatial axis.
    rot90 : bool
        Random 90° rotations in the plane of the last two axes, applied only when
        those two axes have the same voxel size.
    rotation_p : float
        Probability of an arbitrary rotation (in physical space) of up to
        ``max_rotation_deg`` in the yx plane and ``max_tilt_deg`` out of it (3D).
    elastic_p : float
        Probability of an elastic deformation with ``elastic_displacement_nm``
        (standard deviation, default 2 voxels of the finest axis) on a control grid of
        ``elastic_spacing_nm`` (default 16 voxels).
    contrast_p, gamma_p, noise_p, blur_p : float
        Probabilities of the intensity transforms, with their ranges;
        ``blur_sigma_nm_range`` defaults to 0.5–1.5 voxels of the finest axis.
    missing_section_p, misalignment_p : float
        Probabilities of the serial-section defects (3D patches only);
        ``max_misalignment_nm`` defaults to 8 voxels of the finest axis.
    """

    voxel_size: tuple[float, ...]
    flip: bool = True
    rot90: bool = True
    rotation_p: float = 0.0
    max_rotation_deg: float = 180.0
    max_tilt_deg: float = 0.0
    elastic_p: float = 0.0
    elastic_displacement_nm: float | None = None
    elastic_spacing_nm: float | None = None
    contrast_p: float = 0.5
    contrast_range: tuple[float, float] = (0.75, 1.33)
    brightness_range: tuple[float, float] = (-0.1, 0.1)
    gamma_p: float = 0.3
    gamma_range: tuple[float, float] = (0.75, 1.33)
    noise_p: float = 0.3
    noise_sigma_range: tuple[float, float] = (0.0, 0.1)
    blur_p: float = 0.2
    blur_sigma_nm_range: tuple[float, float] | None = None
    missing_section_p: float = 0.0
    misalignment_p: float = 0.0
    max_misalignment_nm: float | None = None

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.voxel_size)
        if len(spacing) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise ConfigError(
                f"Augmenter.voxel_size must be 2 or 3 positive nm values, got {self.voxel_size!r}"
            )
        object.__setattr__(self, "voxel_size", spacing)
        for name in (
            "rotation_p",
            "elastic_p",
            "contrast_p",
            "gamma_p",
            "noise_p",
            "blur_p",
            "missing_section_p",
            "misalignment_p",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"Augmenter.{name} must be a probability in [0, 1], got {value}")

    @property
    def _finest_nm(self) -> float:
        return min(self.voxel_size)

    def __call__(
        self,
        image: NDArray[np.float32],
        labels: NDArray[Any],
        valid: NDArray[np.bool_],
        *,
        rng: np.random.Generator,
    ) -> Sample:
        """Return an augmented copy of the sample (see the module docstring for shapes)."""
        _check_sample(image, labels, valid)
        if labels.ndim != len(self.voxel_size):
            raise InvalidVolumeError(
                f"Augmenter has a {len(self.voxel_size)}D voxel_size but the patch is "
                f"{labels.ndim}D ({labels.shape})"
            )
        ndim = labels.ndim
        if self.flip:
            image, labels, valid = random_flip(image, labels, valid, rng=rng)
        if self.rot90 and math.isclose(self.voxel_size[-1], self.voxel_size[-2], rel_tol=1e-3):
            image, labels, valid = random_rot90(image, labels, valid, rng=rng)
        coordinates = None
        if rng.random() < self.rotation_p:
            tilt = rng.uniform(-self.max_tilt_deg, self.max_tilt_deg) if ndim == 3 else 0.0
            coordinates = rotation_coordinates(
                labels.shape,
                angle_deg=rng.uniform(-self.max_rotation_deg, self.max_rotation_deg),
                tilt_deg=tilt,
                tilt_direction_deg=rng.uniform(0.0, 360.0),
                voxel_size=self.voxel_size,
            )
        if rng.random() < self.elastic_p:
            displacement = elastic_displacement(
                labels.shape,
                rng=rng,
                displacement_nm=self.elastic_displacement_nm or 2.0 * self._finest_nm,
                spacing_nm=self.elastic_spacing_nm or 16.0 * self._finest_nm,
                voxel_size=self.voxel_size,
            )
            base = (
                coordinates
                if coordinates is not None
                else np.indices(labels.shape, dtype=np.float64)
            )
            coordinates = base + displacement
        if coordinates is not None:
            image, labels, valid = warp(image, labels, valid, coordinates)
        if ndim == 3 and rng.random() < self.misalignment_p:
            max_nm = self.max_misalignment_nm or 8.0 * self._finest_nm
            image, labels, valid = misalign_sections(
                image,
                labels,
                valid,
                rng=rng,
                max_shift_vox=(
                    round(max_nm / self.voxel_size[1]),
                    round(max_nm / self.voxel_size[2]),
                ),
            )
        if ndim == 3 and rng.random() < self.missing_section_p:
            image = missing_section(image, rng=rng)
        if rng.random() < self.contrast_p:
            image = adjust_contrast(
                image,
                rng=rng,
                contrast_range=self.contrast_range,
                brightness_range=self.brightness_range,
            )
        if rng.random() < self.gamma_p:
            image = adjust_gamma(image, rng=rng, gamma_range=self.gamma_range)
        if rng.random() < self.blur_p:
            sigma_range = self.blur_sigma_nm_range or (0.5 * self._finest_nm, 1.5 * self._finest_nm)
            image = gaussian_blur(
                image, rng=rng, sigma_nm_range=sigma_range, voxel_size=self.voxel_size
            )
        if rng.random() < self.noise_p:
            image = add_gaussian_noise(image, rng=rng, sigma_range=self.noise_sigma_range)
        return (
            np.ascontiguousarray(image, dtype=np.float32),
            np.ascontiguousarray(labels),
            np.ascontiguousarray(valid),
        )
