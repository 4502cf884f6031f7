"""Instance labels across blocks: label each block, merge objects across faces, relabel.

:func:`label_blockwise` runs a function that returns *instance labels* for one block
(connected components, a watershed, ...) over a whole volume and stitches the blocks so
that an object cut by block faces gets one id. Three passes, each one Dask task per block
(:mod:`vemkit.blockwise.execute`), each resumable:

1. **Label.** ``fn`` runs on every block with its halo. The labels of the block's core are
   renumbered ``1..n`` and written to a scratch array (``uint32``); block ``b``'s local id
   ``l`` stands for the provisional global id ``offset[b] + l``, where ``offset`` is the
   running sum of ``n`` over the blocks in C order — globally unique ``uint64`` ids with no
   coordination between workers. With ``merge="overlap"`` the block's labels in its halo
   (those of objects that reach its core, in the same local ids) are kept as well.
2. **Match.** For each block, label pairs that belong together across its faces are
   collected (see "Merge rules"); all pairs go to a union–find
   (:func:`scipy.sparse.csgraph.connected_components`) that yields the final ids:
   ``1..K`` in the order of the objects' first provisional id (so the result does not
   depend on the scheduler).
3. **Relabel.** Each block reads its local ids and writes ``final[offset[b] + l]`` to the
   target; a block receives only its own slice of the mapping (``n + 1`` values).

Merge rules
-----------
- ``"adjacency"`` (the default when the halo is 0): two labels merge when any of their
  voxels touch across a block face, edge or corner under ``connectivity`` (6, 18 or 26 in
  3D; 4 or 8 in 2D). For connected components of a foreground mask with the same
  connectivity this is exact: the result is the same partition as a single-block run.
  It is not suited to functions that *split* touching objects (watersheds): their pieces
  touch across faces and would be merged again.
- ``"overlap"`` (the default when every halo is > 0): every block's labels in its halo are
  compared with its neighbours' (all 26 neighbours in 3D) core labels over the overlap of
  the two blocks' read regions; a pair merges when its intersection over union there is
  greater than ``iou_threshold`` (0.5 by default, which lets each label match at most one
  label of a neighbour). When every object is smaller than the halo, each block sees the
  whole of every object that reaches its core, the two blocks agree, the IoU is 1 and the
  result equals a single-block run for any deterministic, local ``fn`` (e.g. a seeded
  watershed of separated blobs).

Scratch data (the local-id array and halo labels) lives in the run's state folder (see
:mod:`vemkit.blockwise.state`) and is removed when the run completes.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import fastremap
import numcodecs
import numpy as np
import zarr
from numpy.typing import ArrayLike, DTypeLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from vemkit.blockwise.engine import (
    BlockFunction,
    as_sources,
    block_key,
    build_target_pyramid,
    call_block_function,
    check_alignment,
    check_runner,
    check_writable,
    common_box,
    describe_target,
    function_name,
    layer_identity,
    make_tiling,
    resolve_target,
    run_state,
)
from vemkit.blockwise.execute import open_runner
from vemkit.blockwise.state import (
    BlockLog,
    RunState,
    begin_run,
    describe_callable,
    fingerprint_value,
)
from vemkit.blockwise.tiling import Block, PadMode, Tiling
from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import Box
from vemkit.io.formats.ome_zarr import open_ome_zarr
from vemkit.io.layer import Layer
from vemkit.progress import Progress

__all__ = ["MergeMode", "label_blockwise", "same_partition"]

logger = logging.getLogger(__name__)

MergeMode = Literal["auto", "adjacency", "overlap"]
_LOCAL_KEY = "local-ids.zarr"
_LOCAL_DTYPE = np.uint32
_CODEC = numcodecs.Zstd(level=1)


def label_blockwise(
    fn: BlockFunction,
    sources: Layer | Sequence[Layer],
    target: Layer | str | os.PathLike[str],
    *,
    block_shape: Sequence[int] | int | Tiling,
    halo_vox: Sequence[int] | int = 0,
    halo_nm: Sequence[float] | float | None = None,
    pad_mode: PadMode | None = None,
    merge: MergeMode = "auto",
    connectivity: int | None = None,
    iou_threshold: float = 0.5,
    dtype: DTypeLike = np.uint32,
    with_box: bool = False,
    scheduler: Any = "threads",
    n_workers: int | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    fn_kwargs: dict[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    pyramid: bool = True,
) -> Layer:
    """Run an instance-labelling ``fn`` blockwise and stitch its labels across blocks.

    Parameters
    ----------
    fn : callable
        ``fn(*arrays, **fn_kwargs) -> labels``: integer labels (0 = background) of the
        shape it was given (block plus halo; or of the block core with ``"adjacency"``).
        Same calling contract as :func:`~vemkit.blockwise.engine.map_layer`.
    sources : Layer or sequence of Layer
        Inputs covering the same voxels.
    target : Layer, str or path
        A writable label Layer of an unsigned integer dtype whose chunks tile the blocks,
        or the path of an OME-Zarr label image to create (or resume).
    block_shape : int, sequence of int or Tiling
        Core block shape in voxels.
    halo_vox, halo_nm : int, float or sequences, optional
        Context read around each block (voxels or nm).
    pad_mode : {None, "reflect", "symmetric", "edge", "constant"}
        Edge policy at the volume border (None clips the halo).
    merge : {"auto", "adjacency", "overlap"}
        How labels are matched across blocks (see "Merge rules" in the module docs);
        ``"auto"`` is ``"overlap"`` when every halo is positive, else ``"adjacency"``.
    connectivity : int, optional
        Neighbourhood for ``"adjacency"``: 6, 18 or 26 in 3D (default 26), 4 or 8 in 2D
        (default 8). Use the connectivity ``fn`` labels with.
    iou_threshold : float
        ``"overlap"`` merges pairs whose IoU over the blocks' shared region is above it.
    dtype : dtype-like
        Label dtype of a target created from a path (default ``uint32``).
    with_box, scheduler, n_workers, progress, resume, fn_kwargs, state_dir, pyramid
        As in :func:`~vemkit.blockwise.engine.map_layer`. ``progress`` receives three tasks
        (label, match, relabel), one step per block each, then the pyramid's.

    Returns
    -------
    Layer
        The target, labels ``1..K`` without gaps (a path target: reopened read-only).

    Raises
    ------
    ConfigError
        Bad tiling or merge settings, misaligned chunks, a signed or float target, or more
        objects than the target's dtype can number (use ``uint64``).
    InvalidVolumeError
        ``fn`` returns non-integer, negative or wrongly shaped labels.
    ResumeMismatchError
        ``resume`` and the target holds blocks of a run with other settings.

    Examples
    --------
    >>> import cc3d, numpy as np
    >>> from vemkit.io import Layer
    >>> from vemkit.geometry import VoxelSize
    >>> mask = np.random.default_rng(1).random((16, 16, 16)) > 0.7
    >>> source = Layer(mask, VoxelSize(8, 8, 8))
    >>> out = Layer(np.zeros(mask.shape, np.uint32), VoxelSize(8, 8, 8), kind="labels",
    ...             read_only=False)
    >>> _ = label_blockwise(cc3d.connected_components, source, out, block_shape=5,
    ...                     fn_kwargs={"connectivity": 26}, scheduler="synchronous")
    >>> same_partition(out.data, cc3d.connected_components(mask, connectivity=26))
    True
    """
    layers = as_sources(sources)
    kwargs = dict(fn_kwargs or {})
    target_layer, created_path = resolve_target(
        target,
        layers,
        block_shape=block_shape,
        dtype=dtype,
        out_channels=None,
        kind="labels",
        resume=resume,
    )
    box = common_box(layers, target_layer)
    tiling = make_tiling(block_shape, halo_vox, halo_nm, pad_mode, layers, box)
    if "c" in target_layer.axes or not np.issubdtype(target_layer.dtype, np.unsignedinteger):
        raise ConfigError(
            f"the label target {target_layer.name!r} must be an unsigned integer volume "
            f"without channels, got {target_layer.dtype} with axes {target_layer.axes!r}"
        )
    mode = _merge_mode(merge, tiling)
    order = _connectivity_order(connectivity, tiling.ndim) if mode == "adjacency" else 0
    if mode == "overlap" and not 0.0 <= iou_threshold < 1.0:
        raise ConfigError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    if (
        math.prod(b + 2 * h for b, h in zip(tiling.block_shape, tiling.halo_vox, strict=True))
        >= 2**32
    ):
        raise ConfigError("blocks with halo must hold fewer than 2**32 voxels")
    check_writable(target_layer)
    check_alignment(target_layer, tiling)
    state = run_state(target_layer, state_dir)
    where = describe_target(target_layer)
    fingerprint = {
        "operation": "label_blockwise",
        "version": 1,
        "fn": describe_callable(fn),
        "fn_kwargs": fingerprint_value(kwargs),
        "sources": [layer_identity(layer) for layer in layers],
        "tiling": [list(tiling.block_shape), list(tiling.halo_vox), tiling.pad_mode],
        "merge": [mode, order, float(iou_threshold) if mode == "overlap" else None],
        "dtype": str(target_layer.dtype),
        "with_box": with_box,
    }
    with open_runner(scheduler, n_workers=n_workers) as runner:
        check_runner(runner, state, target_layer)
        resuming = begin_run(state, fingerprint, resume=resume, where=where)
        if resuming and state.read("complete.json") is not None:
            logger.info("%s: blockwise labels already complete", where)
            _remove_scratch(state)  # in case a crash interrupted the clean-up
        else:
            _run_stages(
                runner=runner,
                state=state,
                resuming=resuming,
                context=_LabelContext(
                    fn=fn,
                    fn_kwargs=kwargs,
                    sources=tuple(layers),
                    target=target_layer,
                    tiling=tiling,
                    box=box,
                    with_box=with_box,
                    merge=mode,
                    order=order,
                    iou_threshold=float(iou_threshold),
                    state=state,
                    local=None,
                ),
                progress=progress,
            )
        if pyramid:
            build_target_pyramid(target_layer, runner, progress)
    if created_path is not None:
        return open_ome_zarr(created_path)
    return target_layer


def same_partition(first: ArrayLike, second: ArrayLike) -> bool:
    """Whether two label images are equal up to renaming the labels.

    True when there is a bijection between the ids of ``first`` and ``second`` that maps one
    image onto the other, with background (0) mapped to background.

    Parameters
    ----------
    first, second : ndarray of int
        Label images of the same shape.

    Examples
    --------
    >>> same_partition([[1, 1, 0, 2]], [[7, 7, 0, 3]])
    True
    >>> same_partition([[1, 1, 0, 2]], [[7, 7, 0, 7]])
    False
    """
    a = np.asarray(first)
    b = np.asarray(second)
    if a.shape != b.shape:
        return False
    if not np.array_equal(a == 0, b == 0):
        return False
    if a.size == 0:
        return True
    ra, _ = fastremap.renumber(np.ascontiguousarray(a).reshape(-1), preserve_zero=True)
    rb, _ = fastremap.renumber(np.ascontiguousarray(b).reshape(-1), preserve_zero=True)
    keys = ra.astype(np.uint64) * np.uint64(int(rb.max()) + 1) + rb.astype(np.uint64)
    n_pairs = len(fastremap.unique(keys))
    return n_pairs == len(fastremap.unique(ra)) == len(fastremap.unique(rb))


# --- the three passes ------------------------------------------------------------------------
@dataclass(frozen=True)
class _LabelContext:
    fn: BlockFunction
    fn_kwargs: dict[str, Any]
    sources: tuple[Layer, ...]
    target: Layer
    tiling: Tiling
    box: Box
    with_box: bool
    merge: str
    order: int
    iou_threshold: float
    state: Any
    local: Any  # the scratch array of local ids (zarr)
    offsets: NDArray[np.int64] | None = None  # C-order block index -> first provisional id - 1
    counts: NDArray[np.int64] | None = None


def _run_stages(
    *, runner: Any, state: RunState, resuming: bool, context: _LabelContext, progress: Any
) -> None:
    tiling, box = context.tiling, context.box
    grid = tiling.grid(box)
    n_blocks = len(grid)
    context = replace(context, local=_scratch_array(state, box, tiling, resuming=resuming))

    # 1. label every block
    label_log = BlockLog(state, "label")
    done = label_log.done() if resuming else {}
    todo = [i for i in grid.indices() if block_key(i) not in done]
    results = runner.run(
        _label_block,
        context,
        todo,
        progress=progress,
        total=n_blocks,
        skipped=n_blocks - len(todo),
        description="labelling blocks",
    )
    counts = np.zeros(grid.grid_shape, dtype=np.int64)
    for key, info in done.items():
        counts[tuple(int(i) for i in key.split("."))] = int(info["n"])
    for index, n in results:
        counts[index] = n
    flat_counts = counts.reshape(-1)
    offsets = np.concatenate([[0], np.cumsum(flat_counts)[:-1]]).astype(np.int64)
    total = int(flat_counts.sum())
    context = replace(context, offsets=offsets, counts=flat_counts)

    # 2. match labels across block faces, union-find
    mapping = _load_array(state, "mapping.npy") if resuming else None
    if mapping is None or len(mapping) != total + 1:
        busy = [i for i in grid.indices() if counts[i] > 0]
        pairs = runner.run(
            _match_block,
            context,
            busy,
            progress=progress,
            total=n_blocks,
            skipped=n_blocks - len(busy),
            description="matching labels across blocks",
        )
        mapping = _final_ids(pairs, total)
        _save_array(state, "mapping.npy", mapping)
    n_objects = int(mapping.max()) if mapping.size else 0
    limit = int(np.iinfo(context.target.dtype).max)
    if n_objects > limit:
        raise ConfigError(
            f"{n_objects} objects do not fit the {context.target.dtype} target "
            f"{context.target.name!r}; create it with dtype uint64"
        )
    logger.info(
        "stitched %d block labels into %d objects over %d blocks", total, n_objects, n_blocks
    )

    # 3. write final ids
    relabel_log = BlockLog(state, "relabel")
    finished = set(relabel_log.done()) if resuming else set()
    remaining = [i for i in grid.indices() if block_key(i) not in finished]
    target_dtype = context.target.dtype

    def items() -> Iterator[tuple[tuple[int, ...], NDArray[Any]]]:
        for index in remaining:
            b = _linear(index, grid.grid_shape)
            start = int(offsets[b])
            lut = np.zeros(int(flat_counts[b]) + 1, dtype=target_dtype)
            lut[1:] = mapping[start + 1 : start + 1 + int(flat_counts[b])]
            yield index, lut

    runner.run(
        _relabel_block,
        replace(context, offsets=None, counts=None),
        items(),
        progress=progress,
        total=n_blocks,
        skipped=n_blocks - len(remaining),
        description="relabelling blocks",
    )
    state.write("complete.json", b"{}")
    _remove_scratch(state)


def _remove_scratch(state: RunState) -> None:
    """Remove the scratch data of a completed run (markers and fingerprint stay)."""
    for key in (_LOCAL_KEY, "faces", "views", "mapping.npy"):
        state.clear(key)


def _scratch_array(state: RunState, box: Box, tiling: Tiling, *, resuming: bool) -> Any:
    """Create (or, when resuming, reopen) the array of local ids: one chunk per block."""
    store = state.zarr_store(_LOCAL_KEY)
    if resuming:
        try:
            return zarr.open_array(store=store, mode="r+")
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            pass
    return zarr.create_array(
        store=store,
        shape=box.shape,
        chunks=tuple(min(b, s) for b, s in zip(tiling.block_shape, box.shape, strict=True)),
        dtype=_LOCAL_DTYPE,
        fill_value=0,
        compressors=numcodecs.Zstd(level=1),  # scratch data: speed over size
        zarr_format=2,
        overwrite=True,
    )


def _label_block(context: _LabelContext, index: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    block = context.tiling.block(context.box, index)
    result = call_block_function(
        context.fn,
        context.sources,
        block,
        context.tiling,
        fn_kwargs=context.fn_kwargs,
        with_box=context.with_box,
    )
    labels = _check_labels(result, block, context)
    whole = labels.shape == block.padded.shape
    core = labels[block.crop()] if whole else labels
    local, remap = fastremap.renumber(np.ascontiguousarray(core), preserve_zero=True)
    n = int(local.max()) if local.size else 0
    local = local.astype(_LOCAL_DTYPE, copy=False)
    context.local[block.core.to_slices(relative_to=context.box)] = local
    if context.merge == "adjacency":
        _save_arrays(context.state, f"faces/{block.key}", _faces(local))
    else:
        # the block's own view of its surroundings in its local ids: labels that do not
        # reach the core become 0, and so does the core deeper than the halo (no other
        # block's halo reaches there)
        table = dict.fromkeys(fastremap.unique(labels).tolist(), 0)
        table.update({int(k): int(v) for k, v in remap.items()})
        seen = fastremap.remap(np.ascontiguousarray(labels), table, preserve_missing_labels=False)
        seen = seen[block.read.to_slices(relative_to=block.padded)].astype(_LOCAL_DTYPE)
        deep = block.core.grow([-h for h in context.tiling.halo_vox])
        if not deep.is_empty:
            seen[deep.to_slices(relative_to=block.read)] = 0
        _save_arrays(context.state, f"views/{block.key}", {"view": seen})
    BlockLog(context.state, "label").mark(block.key, {"n": n})
    return block.index, n


def _match_block(context: _LabelContext, index: tuple[int, ...]) -> NDArray[np.uint64]:
    if context.merge == "adjacency":
        return _adjacent_pairs(context, index)
    return _overlap_pairs(context, index)


def _relabel_block(context: _LabelContext, item: tuple[tuple[int, ...], NDArray[Any]]) -> None:
    index, lut = item
    block = context.tiling.block(context.box, index)
    local = np.asarray(context.local[block.core.to_slices(relative_to=context.box)])
    context.target.write(block.core, lut[local])
    BlockLog(context.state, "relabel").mark(block.key)


# --- matching --------------------------------------------------------------------------------
def _adjacent_pairs(context: _LabelContext, index: tuple[int, ...]) -> NDArray[np.uint64]:
    """Pairs of labels touching across a face, edge or corner shared with a later block.

    For a neighbour ``delta`` away, two voxels can touch only if both lie on the sides
    facing each other along every axis where ``delta`` is non-zero; along the other axes
    the blocks share their extent and the voxels may be shifted by one where the
    connectivity allows. So each block's faces (first and last planes) are all it takes.
    """
    assert context.offsets is not None
    assert context.counts is not None
    tiling, box = context.tiling, context.box
    grid_shape = tiling.grid(box).grid_shape
    own = _load_arrays(context.state, f"faces/{block_key(index)}")
    own_offset = np.uint64(context.offsets[_linear(index, grid_shape)])
    found = []
    for delta in _forward_neighbours(tiling.ndim):
        crossed = [axis for axis, d in enumerate(delta) if d]
        if len(crossed) > context.order:
            continue
        other_index = tuple(i + d for i, d in zip(index, delta, strict=True))
        if any(not 0 <= i < n for i, n in zip(other_index, grid_shape, strict=True)):
            continue
        other_linear = _linear(other_index, grid_shape)
        if context.counts[other_linear] == 0:
            continue
        other = _load_arrays(context.state, f"faces/{block_key(other_index)}")
        mine = _boundary(own, delta, toward=True)
        theirs = _boundary(other, delta, toward=False)
        free = tiling.ndim - len(crossed)
        keys = []
        for shift in _shifts(free, context.order - len(crossed)):
            a, b = _shifted(mine, theirs, shift)
            touching = (a != 0) & (b != 0)
            if touching.any():
                keys.append(_pair_keys(a[touching], b[touching]))
        if keys:
            pairs = _split_keys(fastremap.unique(np.concatenate(keys)))
            pairs[:, 0] += own_offset
            pairs[:, 1] += np.uint64(context.offsets[other_linear])
            found.append(pairs)
    return _stack_pairs(found)


def _overlap_pairs(context: _LabelContext, index: tuple[int, ...]) -> NDArray[np.uint64]:
    """Pairs of labels of this block and a later neighbour with IoU above the threshold.

    Compared over the voxels both blocks read where one of them owns the core: this
    block's halo over the neighbour's core and the neighbour's halo over this core.
    """
    assert context.offsets is not None
    assert context.counts is not None
    tiling, box = context.tiling, context.box
    grid_shape = tiling.grid(box).grid_shape
    block = tiling.block(box, index)
    own = _load_arrays(context.state, f"views/{block.key}")["view"]
    own_offset = np.uint64(context.offsets[_linear(index, grid_shape)])
    found = []
    for delta in _forward_neighbours(tiling.ndim):
        other_index = tuple(i + d for i, d in zip(index, delta, strict=True))
        if any(not 0 <= i < n for i, n in zip(other_index, grid_shape, strict=True)):
            continue
        other_linear = _linear(other_index, grid_shape)
        if context.counts[other_linear] == 0:
            continue
        other = tiling.block(box, other_index)
        regions = [
            region
            for region in (block.read.intersect(other.core), other.read.intersect(block.core))
            if not region.is_empty
        ]
        if not regions:
            continue
        theirs_view = _load_arrays(context.state, f"views/{other.key}")["view"]
        mine = np.concatenate(
            [own[r.to_slices(relative_to=block.read)].reshape(-1) for r in regions]
        )
        theirs = np.concatenate(
            [theirs_view[r.to_slices(relative_to=other.read)].reshape(-1) for r in regions]
        )
        pairs = _iou_pairs(mine, theirs, context.iou_threshold)
        if len(pairs):
            pairs[:, 0] += own_offset
            pairs[:, 1] += np.uint64(context.offsets[other_linear])
            found.append(pairs)
    return _stack_pairs(found)


def _iou_pairs(
    mine: NDArray[np.uint32], theirs: NDArray[np.uint32], threshold: float
) -> NDArray[np.uint64]:
    """Local id pairs ``(mine, theirs)`` whose IoU over the given voxels exceeds threshold."""
    unique, counts = np.unique(_pair_keys(mine, theirs), return_counts=True)
    a, b = _split_keys(unique).T
    inverse_a = np.unique(a, return_inverse=True)[1]
    inverse_b = np.unique(b, return_inverse=True)[1]
    size_a = np.bincount(inverse_a, weights=counts)[inverse_a]
    size_b = np.bincount(inverse_b, weights=counts)[inverse_b]
    iou = counts / (size_a + size_b - counts)
    keep = (a != 0) & (b != 0) & (iou > threshold)
    return np.stack([a[keep], b[keep]], axis=1).astype(np.uint64)


def _final_ids(pairs: Sequence[NDArray[np.uint64]], total: int) -> NDArray[np.uint64]:
    """Map every provisional id (0..total) to its object's final id (0 for background)."""
    edges = [p for p in pairs if len(p)]
    if edges:
        stacked = np.concatenate(edges)
        graph = coo_matrix(
            (np.ones(len(stacked), dtype=np.int8), (stacked[:, 0], stacked[:, 1])),
            shape=(total + 1, total + 1),
        )
        _, component = connected_components(graph, directed=False)
    else:
        component = np.arange(total + 1)
    # number the objects by their first provisional id: background (id 0) gets 0
    _, first, inverse = np.unique(component, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.uint64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first), dtype=np.uint64)
    return rank[inverse]


# --- helpers ---------------------------------------------------------------------------------
def _merge_mode(merge: str, tiling: Tiling) -> str:
    if merge not in ("auto", "adjacency", "overlap"):
        raise ConfigError(f"merge must be 'auto', 'adjacency' or 'overlap', got {merge!r}")
    if merge == "auto":
        return "overlap" if all(h > 0 for h in tiling.halo_vox) else "adjacency"
    if merge == "overlap" and not all(h > 0 for h in tiling.halo_vox):
        raise ConfigError(
            f"merge='overlap' compares labels in the halo, so it needs a halo along every "
            f"axis; got halo {tiling.halo_vox} (use merge='adjacency' or a larger halo)"
        )
    return merge


def _connectivity_order(connectivity: int | None, ndim: int) -> int:
    """How many coordinates two neighbouring voxels may differ in (1 = faces only)."""
    allowed = {3: {6: 1, 18: 2, 26: 3}, 2: {4: 1, 8: 2}}.get(ndim, {})
    if connectivity is None:
        return ndim
    if connectivity not in allowed:
        raise ConfigError(
            f"connectivity must be one of {sorted(allowed)} for {ndim}-D volumes, "
            f"got {connectivity}"
        )
    return allowed[connectivity]


def _shifts(n_axes: int, max_moved: int) -> list[tuple[int, ...]]:
    """Offsets by -1, 0 or 1 along ``n_axes`` axes, moving along at most ``max_moved``."""
    return [
        shift
        for shift in itertools.product((-1, 0, 1), repeat=n_axes)
        if sum(1 for s in shift if s) <= max_moved
    ]


def _faces(local: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """First (``lo{axis}``) and last (``hi{axis}``) planes of a block along every axis."""
    faces = {}
    for axis in range(local.ndim):
        faces[f"lo{axis}"] = np.ascontiguousarray(np.take(local, 0, axis=axis))
        faces[f"hi{axis}"] = np.ascontiguousarray(np.take(local, -1, axis=axis))
    return faces


def _boundary(faces: Any, delta: tuple[int, ...], *, toward: bool) -> NDArray[Any]:
    """Return a block's voxels on its sides facing ``delta`` (``toward``) or facing back.

    The result spans the axes where ``delta`` is 0, in axis order (a plane for a face
    neighbour, a line for an edge neighbour, one voxel for a corner neighbour).
    """
    crossed = [axis for axis, d in enumerate(delta) if d]
    first = crossed[0]
    high = (delta[first] > 0) == toward
    array = faces[f"{'hi' if high else 'lo'}{first}"]
    # the plane has lost axis `first`; index the other crossed axes at their far side
    key: list[Any] = []
    for axis in range(len(delta)):
        if axis == first:
            continue
        if delta[axis]:
            key.append(-1 if (delta[axis] > 0) == toward else 0)
        else:
            key.append(slice(None))
    return array[tuple(key)]


def _shifted(
    below: NDArray[Any], above: NDArray[Any], shift: tuple[int, ...]
) -> tuple[NDArray[Any], NDArray[Any]]:
    """``below[p]`` and ``above[p + shift]`` for every ``p`` where both exist."""
    first, second = [], []
    for n, s in zip(below.shape, shift, strict=True):
        first.append(slice(max(0, -s), n - max(0, s)))
        second.append(slice(max(0, s), n - max(0, -s)))
    return below[tuple(first)], above[tuple(second)]


def _forward_neighbours(ndim: int) -> list[tuple[int, ...]]:
    """Neighbour offsets whose first non-zero step is +1: each pair of blocks once."""
    return [
        delta
        for delta in itertools.product((-1, 0, 1), repeat=ndim)
        if any(delta) and next(d for d in delta if d) == 1
    ]


def _pair_keys(first: NDArray[Any], second: NDArray[Any]) -> NDArray[np.uint64]:
    """Encode pairs of local ids (each below 2**32) as one uint64 per pair."""
    return (first.astype(np.uint64) << np.uint64(32)) | second.astype(np.uint64)


def _split_keys(keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Decode :func:`_pair_keys` into an ``(n, 2)`` array."""
    return np.stack([keys >> np.uint64(32), keys & np.uint64(0xFFFFFFFF)], axis=1)


def _stack_pairs(found: list[NDArray[np.uint64]]) -> NDArray[np.uint64]:
    # pairs with different neighbours differ in their second id: no duplicates across
    if not found:
        return np.zeros((0, 2), dtype=np.uint64)
    return np.concatenate(found)


def _check_labels(result: Any, block: Block, context: _LabelContext) -> NDArray[Any]:
    labels = np.asarray(result)
    expected = block.padded.shape
    shapes = (expected,) if context.merge == "overlap" else (expected, block.core.shape)
    if labels.shape not in shapes:
        hint = (
            " (merge='overlap' needs the labels of the halo too)"
            if context.merge == "overlap"
            else ""
        )
        raise InvalidVolumeError(
            f"{function_name(context.fn)} returned labels of shape {labels.shape} for a block it "
            f"was given as {expected}; return labels of the shape it was given{hint}"
        )
    if labels.dtype == np.bool_:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidVolumeError(
            f"{function_name(context.fn)} returned {labels.dtype} values; instance labels must be "
            "integers (0 = background)"
        )
    if np.issubdtype(labels.dtype, np.signedinteger):
        if labels.size and labels.min() < 0:
            raise InvalidVolumeError(
                f"{function_name(context.fn)} returned negative labels; use 0 for background and "
                "positive ids for objects"
            )
        return labels.astype(np.uint64)
    return labels


def _linear(index: Sequence[int], grid_shape: Sequence[int]) -> int:
    return int(np.ravel_multi_index(tuple(index), tuple(grid_shape)))


def _save_array(state: Any, key: str, array: NDArray[Any]) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    state.write(key, bytes(_CODEC.encode(buffer.getvalue())))


def _load_array(state: Any, key: str) -> NDArray[Any] | None:
    raw = state.read(key)
    if raw is None:
        return None
    return np.load(io.BytesIO(bytes(_CODEC.decode(raw))), allow_pickle=False)


def _save_arrays(state: Any, key: str, arrays: dict[str, NDArray[Any]]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    state.write(key, bytes(_CODEC.encode(buffer.getvalue())))


def _load_arrays(state: Any, key: str) -> Any:
    """Load the arrays saved by :func:`_save_arrays` (lazily: name → ndarray)."""
    raw = state.read(key)
    if raw is None:
        raise FileNotFoundError(
            f"blockwise state {key!r} is missing; the run's state folder was changed — "
            "run again with resume=False"
        )
    return np.load(io.BytesIO(bytes(_CODEC.decode(raw))), allow_pickle=False)
