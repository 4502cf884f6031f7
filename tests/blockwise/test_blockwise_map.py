"""map_layer: halo and edge policy, chunk alignment, progress, outputs, errors."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit.blockwise import Tiling, map_layer
from vemkit.errors import ConfigError, InvalidVolumeError, ReadOnlyLayerError
from vemkit.geometry import Box, VoxelSize
from vemkit.io import Layer
from vemkit.io.formats.ome_zarr import open_ome_zarr
from vemkit.io.ome_zarr import create_ome_zarr, write_ome_zarr

VS = VoxelSize(8.0, 8.0, 8.0)


class RecordingProgress:
    def __init__(self) -> None:
        self.tasks: list[list[int]] = []  # [total, advanced] per started task

    def start(self, total: int, description: str) -> None:
        self.tasks.append([total, 0])

    def advance(self, steps: int = 1) -> None:
        self.tasks[-1][1] += steps

    def finish(self) -> None:
        pass


def _raw(shape: tuple[int, ...] = (20, 27, 31), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _memory_target(shape: tuple[int, ...], dtype: str = "float32") -> Layer:
    return Layer(np.zeros(shape, dtype), VS, read_only=False, name="out")


def mean3(block: np.ndarray) -> np.ndarray:
    return ndi.uniform_filter(block, size=3, mode="reflect")


@pytest.mark.parametrize("block_shape", [(8, 8, 8), (7, 10, 31), (20, 5, 13)])
def test_halo_one_mean_filter_equals_whole_volume(block_shape: tuple[int, int, int]) -> None:
    # clipped halo: fn sees the true volume edge, so even the border equals scipy's run
    raw = _raw()
    out = _memory_target(raw.shape)
    map_layer(
        mean3, Layer(raw, VS), out, block_shape=block_shape, halo_vox=1, scheduler="synchronous"
    )
    np.testing.assert_array_equal(out.data, mean3(raw))


def test_without_halo_only_the_seams_differ() -> None:
    raw = _raw()
    out = _memory_target(raw.shape)
    map_layer(mean3, Layer(raw, VS), out, block_shape=(10, 9, 31), scheduler="threads")
    differs = out.data != mean3(raw)
    assert differs.any()
    assert not differs[1:9, 1:8].any()  # inside the first block nothing changes


def test_symmetric_padding_equals_scipy_reflect() -> None:
    # numpy's "symmetric" padding is scipy's "reflect": a fn padding with zeros then
    # matches scipy's reflect mode on the whole volume, border included
    raw = _raw()
    out = _memory_target(raw.shape)
    seen_shapes: set[tuple[int, ...]] = set()

    def mean_zero_border(block: np.ndarray) -> np.ndarray:
        seen_shapes.add(block.shape)
        return ndi.uniform_filter(block, size=3, mode="constant")

    map_layer(
        mean_zero_border,
        Layer(raw, VS),
        out,
        block_shape=(10, 9, 31),
        halo_vox=1,
        pad_mode="symmetric",
        scheduler="synchronous",
    )
    np.testing.assert_allclose(out.data, mean3(raw), rtol=1e-6)
    assert seen_shapes == {(12, 11, 33)}  # always block + 2 * halo


def test_halo_nm_is_rounded_up_to_voxels_per_axis() -> None:
    tiling = Tiling.create((16, 64, 64), halo_nm=20.0, voxel_size=VoxelSize(50, 5, 5))
    assert tiling.halo_vox == (1, 4, 4)
    assert Tiling.create(8, halo_nm=16.0, voxel_size=VS).halo_vox == (2, 2, 2)
    with pytest.raises(ConfigError, match="halo_nm needs the voxel size"):
        Tiling.create(8, halo_nm=16.0)
    with pytest.raises(ConfigError, match="either in voxels"):
        Tiling.create(8, halo_vox=1, halo_nm=16.0, voxel_size=VS)


def test_halo_nm_through_map_layer_and_tiling_object() -> None:
    raw = _raw()
    for options in (
        {"block_shape": 8, "halo_nm": 8.0},
        {"block_shape": Tiling.create(8, halo_vox=1)},
    ):
        out = _memory_target(raw.shape)
        map_layer(mean3, Layer(raw, VS), out, scheduler="synchronous", **options)
        np.testing.assert_array_equal(out.data, mean3(raw))


def test_progress_counts_every_block(tmp_path: Path) -> None:
    raw = _raw()
    target = create_ome_zarr(
        tmp_path / "o.zarr",
        shape=raw.shape,
        dtype="float32",
        voxel_size=VS,
        chunks=(5, 9, 16),
        n_levels=1,
    )
    progress = RecordingProgress()
    map_layer(mean3, Layer(raw, VS), target, block_shape=(10, 9, 16), halo_vox=1, progress=progress)
    assert progress.tasks == [[2 * 3 * 2, 2 * 3 * 2]]
    np.testing.assert_array_equal(target.read(), mean3(raw))


def test_misaligned_chunks_are_refused(tmp_path: Path) -> None:
    raw = _raw()
    target = create_ome_zarr(
        tmp_path / "o.zarr", shape=raw.shape, dtype="float32", voxel_size=VS, chunks=(8, 8, 8)
    )
    with pytest.raises(ConfigError, match="not a multiple of the storage chunks"):
        map_layer(mean3, Layer(raw, VS), target, block_shape=(12, 16, 16))
    # one block along an axis never shares a chunk: allowed
    map_layer(mean3, Layer(raw, VS), target, block_shape=(20, 16, 16), halo_vox=1, pyramid=False)


def test_path_target_is_created_with_pyramid(tmp_path: Path) -> None:
    raw = (_raw((24, 80, 72)) * 200).astype(np.uint8)
    source = write_ome_zarr(tmp_path / "raw.zarr", raw, voxel_size=VS, name="raw")
    result = map_layer(
        ndi.maximum_filter,
        source,
        tmp_path / "max.zarr",
        block_shape=(12, 32, 32),
        halo_vox=1,
        dtype="uint8",
        fn_kwargs={"size": 3},
    )
    assert result.read_only
    assert result.chunks == (12, 32, 32)
    np.testing.assert_array_equal(result.read(), ndi.maximum_filter(raw, size=3))
    levels = result.metadata["n_levels"]
    assert levels > 1
    reference = write_ome_zarr(
        tmp_path / "ref.zarr",
        ndi.maximum_filter(raw, size=3),
        voxel_size=VS,
        name="ref",
        chunks=(12, 32, 32),
    )
    for level in range(1, levels):
        np.testing.assert_array_equal(
            open_ome_zarr(tmp_path / "max.zarr", level=level).read(),
            open_ome_zarr(tmp_path / "ref.zarr", level=level).read(),
        )
    assert reference.metadata["n_levels"] == levels


def test_generator_with_box_and_channels() -> None:
    # no sources: fn builds each block from its position (here: two coordinate channels)
    target = Layer(np.zeros((2, 9, 10, 11), np.int32), VS, axes="czyx", read_only=False)

    def coordinates(*, box: Box) -> np.ndarray:
        z, y, _ = np.indices(box.shape)
        return np.stack([z + box.offset[0], y + box.offset[1]])

    map_layer(
        coordinates,
        [],
        target,
        block_shape=4,
        halo_vox=2,
        with_box=True,
        out_channels=2,
        scheduler="synchronous",
    )
    z, y, _ = np.indices((9, 10, 11))
    np.testing.assert_array_equal(target.data, np.stack([z, y]))


def test_fn_may_return_the_core_but_no_other_shape() -> None:
    raw = _raw()
    out = _memory_target(raw.shape)
    map_layer(
        lambda b: mean3(b)[1:-1, 1:-1, 1:-1],
        Layer(raw, VS),
        out,
        block_shape=10,
        halo_vox=1,
        pad_mode="reflect",
        scheduler="synchronous",
    )
    inner = (slice(1, -1),) * 3
    np.testing.assert_allclose(out.data[inner], mean3(raw)[inner], rtol=1e-6)
    with pytest.raises(InvalidVolumeError, match=r"returned an array of shape \(11, "):
        map_layer(
            lambda b: b[:-1],
            Layer(raw, VS),
            out,
            block_shape=10,
            halo_vox=1,
            pad_mode="edge",
            scheduler="synchronous",
            resume=False,
        )


def test_bad_inputs_raise_clear_errors() -> None:
    raw = _raw()
    source = Layer(raw, VS)
    with pytest.raises(ReadOnlyLayerError, match="read-only"):
        map_layer(mean3, source, Layer(np.zeros_like(raw), VS), block_shape=8)
    with pytest.raises(InvalidVolumeError, match="cover the same voxels"):
        map_layer(mean3, source, _memory_target((20, 27, 30)), block_shape=8)
    with pytest.raises(InvalidVolumeError, match="voxel size"):
        map_layer(mean3, Layer(raw, VoxelSize(4, 4, 4)), _memory_target(raw.shape), block_shape=8)
    with pytest.raises(ConfigError, match="differs from the target"):
        map_layer(mean3, source, _memory_target(raw.shape), block_shape=8, dtype="uint8")
    with pytest.raises(ConfigError, match="block_shape"):
        map_layer(mean3, source, _memory_target(raw.shape), block_shape=(8, 8))
    with pytest.raises(ConfigError, match="pad_mode"):
        map_layer(mean3, source, _memory_target(raw.shape), block_shape=8, pad_mode="wrap")
    with pytest.raises(InvalidVolumeError, match="target holds uint8"):
        map_layer(
            mean3,
            source,
            _memory_target(raw.shape, "uint8"),
            block_shape=8,
            scheduler="synchronous",
        )
    with pytest.raises(ConfigError, match="unknown scheduler"):
        map_layer(mean3, source, _memory_target(raw.shape), block_shape=8, scheduler="gpu")


def test_two_sources_and_partial_fn() -> None:
    a, b = _raw(seed=1), _raw(seed=2)
    out = _memory_target(a.shape)
    fn = functools.partial(np.add, dtype=np.float32)
    map_layer(fn, [Layer(a, VS), Layer(b, VS)], out, block_shape=(7, 7, 7), n_workers=2)
    np.testing.assert_array_equal(out.data, a + b)
