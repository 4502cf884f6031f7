"""Property tests for vemkit.geometry: boxes, block grids and voxel sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vemkit.errors import VoxelSizeError
from vemkit.geometry import BlockGrid, Box, VoxelSize

FAST = settings(max_examples=60, deadline=None)

ndims = st.integers(min_value=1, max_value=3)


@st.composite
def boxes(draw: st.DrawFn, ndim: int | None = None, max_size: int = 12) -> Box:
    n = draw(ndims) if ndim is None else ndim
    offset = draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n))
    shape = draw(st.lists(st.integers(0, max_size), min_size=n, max_size=n))
    return Box(tuple(offset), tuple(shape))


@st.composite
def box_pairs(draw: st.DrawFn) -> tuple[Box, Box]:
    n = draw(ndims)
    return draw(boxes(n)), draw(boxes(n))


@st.composite
def grids(draw: st.DrawFn) -> BlockGrid:
    box = draw(boxes(max_size=14))
    block = draw(st.lists(st.integers(1, 6), min_size=box.ndim, max_size=box.ndim))
    return BlockGrid(box, tuple(block))


positive_nm = st.floats(min_value=0.01, max_value=1e4, allow_nan=False, allow_infinity=False)
voxel_sizes = st.builds(VoxelSize, positive_nm, positive_nm, positive_nm)


# --- BlockGrid -------------------------------------------------------------------------------
@FAST
@given(grids())
def test_blocks_tile_the_box_exactly_without_overlap(grid: BlockGrid) -> None:
    box = grid.box
    coverage = np.zeros(box.shape, dtype=np.int32)
    blocks = list(grid)
    assert len(blocks) == len(grid)
    for block in blocks:
        assert box.contains(block)
        coverage[block.to_slices(relative_to=box)] += 1
    assert (coverage == 1).all()
    assert sum(b.size for b in blocks) == box.size


@FAST
@given(grids())
def test_blocks_are_at_most_block_shape_and_only_clipped_at_the_far_edge(grid: BlockGrid) -> None:
    for index in grid.indices():
        block = grid.block(index)
        for axis, (size, limit) in enumerate(zip(block.shape, grid.block_shape, strict=True)):
            assert size <= limit
            if index[axis] < grid.grid_shape[axis] - 1:
                assert size == limit


# --- Box -------------------------------------------------------------------------------------
@FAST
@given(box_pairs())
def test_intersection_is_inside_both_and_symmetric(pair: tuple[Box, Box]) -> None:
    a, b = pair
    both = a.intersect(b)
    assert both.size == b.intersect(a).size
    if not both.is_empty:
        assert both == b.intersect(a)
        assert a.contains(both)
        assert b.contains(both)
    assert a.intersect(a) == a or a.is_empty


@FAST
@given(box_pairs())
def test_intersection_matches_voxel_sets(pair: tuple[Box, Box]) -> None:
    a, b = pair
    origin = tuple(min(x, y) for x, y in zip(a.offset, b.offset, strict=True))
    stop = tuple(max(x, y) for x, y in zip(a.stop, b.stop, strict=True))
    frame = Box.from_bounds(origin, stop)
    mask_a = np.zeros(frame.shape, bool)
    mask_b = np.zeros(frame.shape, bool)
    mask_a[a.to_slices(relative_to=frame)] = True
    mask_b[b.to_slices(relative_to=frame)] = True
    assert a.intersect(b).size == int((mask_a & mask_b).sum())


@FAST
@given(boxes(), st.integers(0, 5))
def test_grow_then_shrink_round_trips(box: Box, amount: int) -> None:
    grown = box.grow(amount)
    assert grown.contains(box)
    assert grown.shape == tuple(s + 2 * amount for s in box.shape)
    assert grown.grow(-amount) == box


@FAST
@given(boxes(), st.integers(-5, 5))
def test_shift_keeps_shape(box: Box, delta: int) -> None:
    moved = box.shift((delta,) * box.ndim)
    assert moved.shape == box.shape
    assert moved.shift((-delta,) * box.ndim) == box


# --- VoxelSize -------------------------------------------------------------------------------
@FAST
@given(voxel_sizes, st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=3, max_size=3))
def test_voxel_to_nm_to_voxel_round_trips(size: VoxelSize, index: list[float]) -> None:
    nm = size.to_nm(index)
    back = tuple(value / step for value, step in zip(nm, size.as_tuple(), strict=True))
    np.testing.assert_allclose(back, index, rtol=1e-9, atol=1e-9)


@FAST
@given(voxel_sizes, st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_subnormal=False))
def test_length_in_voxels_times_size_is_the_length(size: VoxelSize, length_nm: float) -> None:
    voxels = size.to_voxels(length_nm)
    np.testing.assert_allclose(
        [v * s for v, s in zip(voxels, size.as_tuple(), strict=True)], [length_nm] * 3, rtol=1e-9
    )


@FAST
@given(voxel_sizes)
def test_parse_of_the_printed_numbers_round_trips(size: VoxelSize) -> None:
    text = ",".join(repr(v) for v in size.as_tuple())
    assert VoxelSize.parse(text) == size
    assert VoxelSize.coerce(size.as_tuple()) == size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50,4.6,4.6", (50.0, 4.6, 4.6)),
        ("4", (4.0, 4.0, 4.0)),
        ("50x4.6x4.6", (50.0, 4.6, 4.6)),
        ("0.05,0.0046,0.0046um", (50.0, 4.6, 4.6)),
        (" 50, 4.6, 4.6 nm ", (50.0, 4.6, 4.6)),
    ],
)
def test_voxel_size_parse_accepts(text: str, expected: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(VoxelSize.parse(text).as_tuple(), expected, rtol=1e-12)


@pytest.mark.parametrize("text", ["a,b,c", "0,1,1", "-1", "1,2", "", "1,2,3,4", "inf"])
def test_voxel_size_parse_rejects(text: str) -> None:
    with pytest.raises(VoxelSizeError, match="voxel size"):
        VoxelSize.parse(text)
