"""Layer: an array with axes, voxel size, kind and name — the one storage abstraction."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from vemkit.errors import InvalidVolumeError, ReadOnlyLayerError
from vemkit.geometry import Box, VoxelSize

__all__ = ["ArrayLike", "Layer", "LayerKind"]

LayerKind = Literal["image", "labels"]


class ArrayLike(Protocol):
    """What a Layer can hold: NumPy, Zarr, Dask, h5py, tensorstore-backed arrays..."""

    @property
    def shape(self) -> tuple[int, ...]: ...  # noqa: D102

    @property
    def dtype(self) -> Any: ...  # noqa: D102

    def __getitem__(self, key: Any) -> Any: ...


@dataclass
class Layer:
    """A (possibly lazy) array plus the physical and semantic facts needed to use it.

    Parameters
    ----------
    data : array-like
        NumPy, Zarr, Dask or any array with ``shape``, ``dtype`` and slicing.
    voxel_size : VoxelSize
        Size of one voxel in nm (z, y, x).
    axes : str
        Axis names, ``"zyx"`` for volumes, ``"czyx"`` with channels, ``"yx"`` for a single
        2D image.
    kind : {"image", "labels"}
        Intensity image or integer labels (0 = background).
    name : str
        Layer name (e.g. ``"raw"``, ``"nuclei"``).
    offset : tuple of int
        Position of the first voxel in the dataset's voxel grid (spatial axes only).
    metadata : dict
        Free-form facts from the source (format, pyramid level, label meanings, ...).
    read_only : bool
        Inputs are opened read-only; :meth:`write` then refuses.
    """

    data: ArrayLike
    voxel_size: VoxelSize
    axes: str = "zyx"
    kind: LayerKind = "image"
    name: str = "raw"
    offset: tuple[int, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    read_only: bool = True

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.data.shape):
            raise InvalidVolumeError(
                f"layer {self.name!r}: axes {self.axes!r} do not match data of shape "
                f"{tuple(self.data.shape)}"
            )
        if self.kind not in ("image", "labels"):
            raise ValueError(f"layer kind must be 'image' or 'labels', got {self.kind!r}")
        spatial = self.spatial_ndim
        if self.offset is None:
            self.offset = (0,) * spatial
        self.offset = tuple(int(o) for o in self.offset)
        if len(self.offset) != spatial:
            raise ValueError(f"offset {self.offset} must have {spatial} values")

    # --- shape facts -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data, all axes."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """NumPy dtype of the data."""
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.axes)

    @property
    def spatial_axes(self) -> str:
        """The spatial axes (``axes`` without ``c``)."""
        return "".join(a for a in self.axes if a in "zyx")

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.spatial_axes)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape along the spatial axes."""
        return tuple(s for a, s in zip(self.axes, self.shape, strict=True) if a in "zyx")

    @property
    def box(self) -> Box:
        """The voxels this layer covers, in the dataset's voxel grid."""
        assert self.offset is not None
        return Box(self.offset, self.spatial_shape)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Storage chunk shape when the data is chunked, else None."""
        chunks = getattr(self.data, "chunks", None)
        if chunks is None:
            return None
        if chunks and isinstance(chunks[0], tuple):  # dask: tuple of tuples
            return tuple(int(c[0]) for c in chunks)
        return tuple(int(c) for c in chunks)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes when loaded."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    # --- access --------------------------------------------------------------------------
    def _key(self, box: Box | None) -> tuple[slice, ...]:
        if box is None:
            return tuple(slice(None) for _ in self.axes)
        if box.ndim != self.spatial_ndim:
            raise ValueError(f"box has {box.ndim} axes, layer has {self.spatial_ndim} spatial")
        if not self.box.contains(box):
            raise ValueError(f"box {box} lies outside layer {self.name!r} ({self.box})")
        spatial = iter(box.to_slices(relative_to=self.box))
        return tuple(next(spatial) if a in "zyx" else slice(None) for a in self.axes)

    def read(self, box: Box | None = None) -> NDArray[Any]:
        """Read the voxels in ``box`` (dataset voxel coordinates; all when None) as NumPy."""
        return np.asarray(self.data[self._key(box)])

    def write(self, box: Box | None, values: NDArray[Any]) -> None:
        """Write ``values`` into ``box``; refused when the layer is read-only."""
        if self.read_only:
            raise ReadOnlyLayerError(
                f"layer {self.name!r} is open read-only; vemkit never modifies inputs — "
                "write results to a new layer or dataset"
            )
        self.data[self._key(box)] = values  # type: ignore[index]

    def to_dask(self, chunks: tuple[int, ...] | str | None = None) -> Any:
        """Return the data as a Dask array (storage chunks unless ``chunks`` is given)."""
        import dask.array as da

        if isinstance(self.data, da.Array):
            return self.data if chunks is None else self.data.rechunk(chunks)
        return da.from_array(
            self.data,
            chunks=chunks if chunks is not None else (self.chunks or "auto"),
            asarray=True,
            lock=False,
        )

    def with_data(self, data: ArrayLike, **changes: Any) -> Layer:
        """Return a copy of this layer with other data (and any other fields changed)."""
        return replace(self, data=data, **changes)

    def __repr__(self) -> str:
        return (
            f"Layer(name={self.name!r}, kind={self.kind!r}, axes={self.axes!r}, "
            f"shape={self.shape}, dtype={self.dtype}, voxel_size={self.voxel_size})"
        )
