"""map_layer: run an array function over a volume larger than memory, block by block.

The function is an ordinary NumPy function, testable on one small array. The engine owns
the rest: cutting the volume into blocks (:class:`~vemkit.blockwise.tiling.Tiling`),
reading each block with its halo, the edge policy, cropping the halo off the result,
writing it, recording finished blocks so a re-run resumes, and running the blocks on Dask
(:mod:`vemkit.blockwise.execute`).

Contract of ``fn``
------------------
``fn(*arrays, **fn_kwargs)`` (plus ``box=`` the :class:`~vemkit.geometry.Box` of the arrays
when ``with_box=True``) receives one NumPy array per source covering the block grown by
the halo — ``(Z, Y, X)``, or ``(C, Z, Y, X)`` for sources with channels. At the volume
border the halo is clipped (the arrays are smaller) unless ``pad_mode`` pads it back; see
:mod:`vemkit.blockwise.tiling`. ``fn`` returns an array of the same spatial shape as it was
given (the engine crops the halo) — or, if it crops itself, of the block's core shape —
with a leading channel axis when the target has one. It must not depend on where the block
lies (use ``with_box`` if it must) and should be deterministic, so that a resumed run
equals an uninterrupted one.

GPUs and models
---------------
Nothing here forces the CPU: ``fn`` may run a network on a GPU when one is present. With
``scheduler="threads"`` every block runs in this process, so a model loaded once (held by
``fn``, e.g. a :func:`functools.partial` over a loaded network or a module-level cache) is
shared by all threads — keep ``n_workers`` small on one GPU. With processes or a cluster
each worker holds its own copy. See :mod:`vemkit.blockwise.cluster`.

Writes and chunks
-----------------
The target must be writable and its storage chunks (Zarr shards when sharded) must tile
the blocks: every block shape must be a multiple of the chunk shape along each axis, so no
two blocks ever write the same chunk and parallel writes need no lock. A NumPy target works
with the in-process schedulers ("threads", "synchronous") only, and cannot resume.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr
from numpy.typing import DTypeLike, NDArray
from zarr.storage import LocalStore

from vemkit.blockwise.execute import Runner, open_runner
from vemkit.blockwise.state import (
    STATE_FOLDER,
    BlockLog,
    DirectoryState,
    MemoryState,
    RunState,
    begin_run,
    describe_callable,
    fingerprint_value,
)
from vemkit.blockwise.tiling import Block, PadMode, Tiling
from vemkit.errors import ConfigError, InvalidVolumeError, ReadOnlyLayerError
from vemkit.geometry import Box
from vemkit.io.formats.ome_zarr import open_ome_zarr
from vemkit.io.layer import Layer, LayerKind
from vemkit.io.ome_zarr import build_pyramid, create_ome_zarr, open_ome_zarr_writable
from vemkit.progress import Progress

__all__ = ["map_layer"]

logger = logging.getLogger(__name__)

BlockFunction = Callable[..., Any]


def map_layer(
    fn: BlockFunction,
    sources: Layer | Sequence[Layer],
    target: Layer | str | os.PathLike[str],
    *,
    block_shape: Sequence[int] | int | Tiling,
    halo_vox: Sequence[int] | int = 0,
    halo_nm: Sequence[float] | float | None = None,
    pad_mode: PadMode | None = None,
    dtype: DTypeLike | None = None,
    out_channels: int | None = None,
    kind: LayerKind = "image",
    with_box: bool = False,
    scheduler: Any = "threads",
    n_workers: int | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    fn_kwargs: dict[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    pyramid: bool = True,
) -> Layer:
    """Apply ``fn`` to every block of ``sources`` (with halo) and write the results to ``target``.

    Parameters
    ----------
    fn : callable
        ``fn(*arrays, **fn_kwargs) -> ndarray``; see "Contract of fn" in the module docs.
    sources : Layer or sequence of Layer
        Inputs covering the same voxels (same box and voxel size); read block by block,
        never whole. May be empty for a generator ``fn`` (then ``with_box=True`` and a
        Layer ``target`` are needed).
    target : Layer, str or path
        A writable Layer (e.g. from :func:`vemkit.io.ome_zarr.create_ome_zarr`) covering the
        sources' box, or the path of an OME-Zarr image to create with chunks equal to the
        block shape (or to resume when it exists).
    block_shape : int, sequence of int or Tiling
        Core block shape in voxels (z, y, x); a multiple of the target's chunks. A
        :class:`Tiling` gives block shape, halo and pad mode at once.
    halo_vox : int or sequence of int
        Voxels of context read on each side of a block.
    halo_nm : float or sequence of float, optional
        The halo in nm instead (rounded up to voxels with the sources' voxel size).
    pad_mode : {None, "reflect", "symmetric", "edge", "constant"}
        Edge policy at the volume border: None clips the halo there (``fn`` gets smaller
        arrays), a mode pads it back with :func:`numpy.pad`.
    dtype : dtype-like, optional
        Output dtype: needed to create a target from a path; must equal a Layer target's
        dtype. ``fn``'s result is cast to it (``same_kind`` casting).
    out_channels : int, optional
        Number of output channels when ``fn`` returns ``(C, Z, Y, X)``.
    kind : {"image", "labels"}
        Kind of a target created from a path.
    with_box : bool
        Also pass ``box=`` (the :class:`~vemkit.geometry.Box` of the arrays ``fn`` receives,
        in the volume's voxel coordinates) to ``fn``.
    scheduler : str, distributed.Client or None
        ``"threads"`` (default), ``"synchronous"``, ``"processes"``, ``"local:N"``, a
        scheduler address, ``"slurm:N"``, ``"kubernetes:N"`` or a client; see
        :mod:`vemkit.blockwise.cluster`.
    n_workers : int, optional
        Threads (``"threads"``) or worker processes (local cluster).
    progress : Progress, optional
        One step per block (blocks done by an earlier run count at the start); then, when
        a pyramid is built, a second task with one step per chunk written.
    resume : bool
        Skip blocks an identical earlier run finished; False recomputes everything.
    fn_kwargs : dict, optional
        Keyword arguments of ``fn`` (part of the resume fingerprint).
    state_dir : str or path, optional
        Where to record finished blocks (default: ``.vemkit-blockwise`` in the target's
        Zarr group; in memory for NumPy targets, which then cannot resume).
    pyramid : bool
        When the target is level 0 of a multiscale OME-Zarr image, recompute its other
        levels from level 0 once all blocks are written.

    Returns
    -------
    Layer
        The target (for a path target: level 0 of the written image, opened read-only).

    Raises
    ------
    ConfigError
        Bad tiling, block shape not a multiple of the target's chunks, an in-memory target
        with a multi-process scheduler, or mismatched dtype / channels.
    InvalidVolumeError
        Sources that differ in box or voxel size, or ``fn`` returning a wrong shape.
    ResumeMismatchError
        ``resume`` and the target holds blocks of a run with other settings.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage as ndi
    >>> from vemkit.io import Layer
    >>> from vemkit.geometry import VoxelSize
    >>> raw = Layer(np.random.default_rng(0).random((20, 30, 30)), VoxelSize(8, 8, 8))
    >>> out = Layer(np.zeros((20, 30, 30)), VoxelSize(8, 8, 8), read_only=False)
    >>> _ = map_layer(ndi.uniform_filter, raw, out, block_shape=8, halo_vox=1,
    ...               fn_kwargs={"size": 3}, scheduler="synchronous")
    >>> bool(np.allclose(out.data, ndi.uniform_filter(raw.data, size=3)))
    True
    """
    layers = as_sources(sources)
    kwargs = dict(fn_kwargs or {})
    target_layer, created_path = resolve_target(
        target,
        layers,
        block_shape=block_shape,
        dtype=dtype,
        out_channels=out_channels,
        kind=kind,
        resume=resume,
    )
    box = common_box(layers, target_layer)
    tiling = make_tiling(block_shape, halo_vox, halo_nm, pad_mode, layers, box)
    out_dtype = _output_dtype(target_layer, dtype)
    channels = _output_channels(target_layer, out_channels)
    check_writable(target_layer)
    check_alignment(target_layer, tiling)
    state = run_state(target_layer, state_dir)
    where = describe_target(target_layer)
    fingerprint = {
        "operation": "map_layer",
        "version": 1,
        "fn": describe_callable(fn),
        "fn_kwargs": fingerprint_value(kwargs),
        "sources": [layer_identity(layer) for layer in layers],
        "tiling": [list(tiling.block_shape), list(tiling.halo_vox), tiling.pad_mode],
        "dtype": str(out_dtype),
        "out_channels": channels,
        "with_box": with_box,
    }
    with open_runner(scheduler, n_workers=n_workers) as runner:
        check_runner(runner, state, target_layer)
        resuming = begin_run(state, fingerprint, resume=resume, where=where)
        log = BlockLog(state, "map")
        done = set(log.done()) if resuming else set()
        context = _MapContext(
            fn=fn,
            fn_kwargs=kwargs,
            sources=tuple(layers),
            target=target_layer,
            tiling=tiling,
            box=box,
            dtype=out_dtype,
            channels=channels,
            with_box=with_box,
            log=log,
        )
        grid = tiling.grid(box)
        todo = [i for i in grid.indices() if block_key(i) not in done]
        logger.info(
            "map_layer %s -> %s: %d blocks of %s, halo %s (%d to do)",
            getattr(fn, "__name__", type(fn).__name__),
            where,
            len(grid),
            tiling.block_shape,
            tiling.halo_vox,
            len(todo),
        )
        runner.run(
            _map_block,
            context,
            todo,
            progress=progress,
            total=len(grid),
            skipped=len(grid) - len(todo),
            description=f"computing {target_layer.name}",
        )
        if pyramid:
            build_target_pyramid(target_layer, runner, progress)
    if created_path is not None:
        return open_ome_zarr(created_path)
    return target_layer


# --- per-block work --------------------------------------------------------------------------
@dataclass(frozen=True)
class _MapContext:
    fn: BlockFunction
    fn_kwargs: dict[str, Any]
    sources: tuple[Layer, ...]
    target: Layer
    tiling: Tiling
    box: Box
    dtype: np.dtype[Any]
    channels: int | None
    with_box: bool
    log: BlockLog


def _map_block(context: _MapContext, index: tuple[int, ...]) -> None:
    block = context.tiling.block(context.box, index)
    result = call_block_function(
        context.fn,
        context.sources,
        block,
        context.tiling,
        fn_kwargs=context.fn_kwargs,
        with_box=context.with_box,
    )
    core = crop_result(result, block, channels=context.channels, fn=context.fn)
    if not np.can_cast(core.dtype, context.dtype, casting="same_kind"):
        raise InvalidVolumeError(
            f"{function_name(context.fn)} returned {core.dtype} values but the target holds "
            f"{context.dtype}; convert inside the function or create the target with "
            f"dtype={core.dtype}"
        )
    context.target.write(block.core, core.astype(context.dtype, copy=False))
    context.log.mark(block.key)


def call_block_function(
    fn: BlockFunction,
    sources: Sequence[Layer],
    block: Block,
    tiling: Tiling,
    *,
    fn_kwargs: dict[str, Any],
    with_box: bool,
) -> Any:
    """Read ``block`` (with halo, padded per the edge policy) from every source and call fn."""
    arrays = [tiling.pad(source.read(block.read), block) for source in sources]
    if with_box:
        return fn(*arrays, box=block.padded, **fn_kwargs)
    return fn(*arrays, **fn_kwargs)


def crop_result(
    result: Any, block: Block, *, channels: int | None, fn: BlockFunction
) -> NDArray[Any]:
    """Return the core of ``fn``'s result for ``block``, after checking its shape."""
    array = np.asarray(result)
    lead = 1 if channels is not None else 0
    expected = block.padded.shape
    if (
        array.ndim != block.core.ndim + lead
        or (channels is not None and array.shape[0] != channels)
        or array.shape[lead:] not in (expected, block.core.shape)
    ):
        channel_text = f"({channels}, ...) " if channels is not None else ""
        raise InvalidVolumeError(
            f"{function_name(fn)} returned an array of shape {array.shape} for a block it was "
            f"given as {expected}; it must return {channel_text}the shape it was given "
            f"(the halo is cropped for it) or the block core {block.core.shape}"
        )
    if array.shape[lead:] == block.core.shape:
        return array
    return array[(slice(None),) * lead + block.crop()]


# --- checks and setup ------------------------------------------------------------------------
def as_sources(sources: Layer | Sequence[Layer]) -> list[Layer]:
    """Return the sources as a list of Layers (one Layer is a list of one)."""
    if isinstance(sources, Layer):
        return [sources]
    layers = list(sources)
    for layer in layers:
        if not isinstance(layer, Layer):
            raise ConfigError(
                f"sources must be Layers (e.g. from vemkit.io.open_layer), got "
                f"{type(layer).__name__}"
            )
    return layers


def common_box(sources: Sequence[Layer], target: Layer) -> Box:
    """Return the box all layers cover; raise when sources and target differ."""
    box = target.box
    for layer in sources:
        if layer.box != box:
            raise InvalidVolumeError(
                f"layer {layer.name!r} covers {layer.box} but {target.name!r} covers {box}; "
                "blockwise inputs and output must cover the same voxels (resample or crop "
                "them to one grid first)"
            )
        if not np.allclose(layer.voxel_size.as_tuple(), target.voxel_size.as_tuple(), rtol=1e-6):
            raise InvalidVolumeError(
                f"layer {layer.name!r} has voxel size {layer.voxel_size} but "
                f"{target.name!r} has {target.voxel_size}; use the pyramid level of matching "
                "voxel size"
            )
    return box


def make_tiling(  # noqa: PLR0917
    block_shape: Sequence[int] | int | Tiling,
    halo_vox: Sequence[int] | int,
    halo_nm: Sequence[float] | float | None,
    pad_mode: PadMode | None,
    sources: Sequence[Layer],
    box: Box,
) -> Tiling:
    """Build the tiling from map_layer's options (or take the Tiling given)."""
    if isinstance(block_shape, Tiling):
        if halo_nm is not None or pad_mode is not None or halo_vox not in (0, None):
            raise ConfigError("give halo and pad mode inside the Tiling, not as well outside it")
        tiling = block_shape
    else:
        voxel_size = sources[0].voxel_size if sources else None
        tiling = Tiling.create(
            block_shape,
            halo_vox=halo_vox,
            halo_nm=halo_nm,
            voxel_size=voxel_size,
            ndim=box.ndim,
            pad_mode=pad_mode,
        )
    tiling.grid(box)  # checks the number of axes
    return tiling


def resolve_target(
    target: Layer | str | os.PathLike[str],
    sources: Sequence[Layer],
    *,
    block_shape: Sequence[int] | int | Tiling,
    dtype: DTypeLike | None,
    out_channels: int | None,
    kind: LayerKind,
    resume: bool,
) -> tuple[Layer, Path | None]:
    """Return the target Layer, creating or reopening an OME-Zarr image for a path."""
    if isinstance(target, Layer):
        return target, None
    if not sources:
        raise ConfigError("with no sources, give the target as a Layer (its box is the volume)")
    if dtype is None:
        raise ConfigError(f"give dtype= to create the output {os.fspath(target)!r}")
    path = Path(target).expanduser().absolute()
    reference = sources[0]
    spatial = reference.spatial_shape
    shape = ((out_channels,) if out_channels else ()) + spatial
    axes = ("c" if out_channels else "") + ("zyx" if len(spatial) == 3 else "yx")
    blocks = (
        block_shape.block_shape
        if isinstance(block_shape, Tiling)
        else Tiling.create(block_shape, ndim=len(spatial)).block_shape
    )
    chunks = ((out_channels,) if out_channels else ()) + blocks
    if path.exists() and resume:
        layer = open_ome_zarr_writable(path)
        if layer.shape != shape or layer.dtype != np.dtype(dtype):
            raise ConfigError(
                f"{str(path)!r} exists with shape {layer.shape} and dtype {layer.dtype}, not "
                f"{shape} {np.dtype(dtype)}; write elsewhere or pass resume=False to replace it"
            )
        layer.offset = reference.offset
        return layer, path
    layer = create_ome_zarr(
        path,
        shape=shape,
        dtype=dtype,
        voxel_size=reference.voxel_size,
        kind=kind,
        axes=axes,
        chunks=chunks,
        overwrite=True,
    )
    layer.offset = reference.offset
    return layer, path


def _output_dtype(target: Layer, dtype: DTypeLike | None) -> np.dtype[Any]:
    if dtype is not None and np.dtype(dtype) != target.dtype:
        raise ConfigError(
            f"dtype={np.dtype(dtype)} differs from the target {target.name!r} ({target.dtype}); "
            "leave dtype out or create the target with that dtype"
        )
    return target.dtype


def _output_channels(target: Layer, out_channels: int | None) -> int | None:
    if "c" not in target.axes:
        if out_channels is not None:
            raise ConfigError(
                f"out_channels={out_channels} but the target {target.name!r} has axes "
                f"{target.axes!r}; create it with a channel axis ('czyx')"
            )
        return None
    channels = target.shape[target.axes.index("c")]
    if target.axes.index("c") != 0:
        raise ConfigError(
            f"the channel axis of {target.name!r} must come first, not {target.axes!r}"
        )
    if out_channels is not None and out_channels != channels:
        raise ConfigError(
            f"out_channels={out_channels} but the target {target.name!r} has {channels} channels"
        )
    return channels


def check_writable(target: Layer) -> None:
    """Raise :class:`ReadOnlyLayerError` for a read-only target."""
    if target.read_only:
        raise ReadOnlyLayerError(
            f"the target {target.name!r} is open read-only; create it with "
            "vemkit.io.ome_zarr.create_ome_zarr or open it with open_ome_zarr_writable"
        )


def write_unit(target: Layer) -> tuple[int, ...] | None:
    """Return the spatial shape of the target's smallest writable piece (None if unchunked)."""
    data = target.data
    unit = getattr(data, "shards", None) or getattr(data, "chunks", None)
    if unit is None or isinstance(data, np.ndarray):
        return None
    if unit and isinstance(unit[0], tuple):  # dask chunks
        unit = tuple(c[0] for c in unit)
    return tuple(int(c) for a, c in zip(target.axes, unit, strict=True) if a in "zyx")


def check_alignment(target: Layer, tiling: Tiling) -> None:
    """Raise when blocks would share a storage chunk (or shard) of the target."""
    unit = write_unit(target)
    if unit is None:
        return
    bad = [
        axis
        for axis, block, chunk, size in zip(
            target.spatial_axes, tiling.block_shape, unit, target.spatial_shape, strict=True
        )
        if block % chunk and block < size
    ]
    if bad:
        suggestion = tuple(
            max(c, round(b / c) * c) for b, c in zip(tiling.block_shape, unit, strict=True)
        )
        raise ConfigError(
            f"block shape {tiling.block_shape} is not a multiple of the storage chunks {unit} "
            f"of {target.name!r} along {', '.join(bad)}: parallel blocks would write into the "
            f"same chunk and corrupt it. Use a multiple of the chunks, e.g. {suggestion}, or "
            "create the target with chunks equal to the block shape"
        )


def run_state(target: Layer, state_dir: str | os.PathLike[str] | None) -> RunState:
    """Where the state of a blockwise run into ``target`` lives (see :mod:`.state`)."""
    if state_dir is not None:
        return DirectoryState(Path(state_dir).expanduser().absolute())
    array = target.data
    store = getattr(array, "store", None)
    root = getattr(store, "root", None)
    if not isinstance(array, zarr.Array) or not isinstance(store, LocalStore) or root is None:
        return MemoryState()
    root = Path(root)
    parent, _, leaf = str(array.path).strip("/").rpartition("/")
    if not leaf:  # the array is the store itself
        return DirectoryState(root.parent / f".{root.name}{STATE_FOLDER}")
    group_dir = root / parent if parent else root
    # a Zarr group, so that listing the target's group does not warn about a stray folder
    zarr.open_group(
        LocalStore(group_dir / STATE_FOLDER), mode="a", zarr_format=array.metadata.zarr_format
    )
    return DirectoryState(group_dir / STATE_FOLDER / leaf)


def layer_identity(layer: Layer) -> dict[str, Any]:
    """JSON-able identity of a layer for resume fingerprints (location, not contents)."""
    return {
        "shape": list(layer.shape),
        "dtype": str(layer.dtype),
        "axes": layer.axes,
        "offset": list(layer.offset or ()),
        "voxel_size_nm": list(layer.voxel_size.as_tuple()),
        "data": _data_identity(layer.data, layer.metadata),
    }


def _data_identity(data: Any, metadata: dict[str, Any]) -> Any:
    if isinstance(data, np.ndarray):
        return fingerprint_value(data)
    if isinstance(data, zarr.Array):
        return {"zarr": str(data.store), "path": str(data.path)}
    inner = getattr(data, "array", None)
    if inner is not None and hasattr(data, "drop"):  # a lazily squeezed view of an array
        return {"squeezed": _data_identity(inner, metadata), "drop": list(data.drop)}
    name = getattr(data, "name", None)
    if type(data).__module__.startswith("dask") and isinstance(name, str):
        return {"dask": name}
    return {"type": type(data).__qualname__, "source": str(metadata.get("source", ""))}


def check_runner(runner: Runner, state: RunState, target: Layer) -> None:
    """Raise when worker processes would have to write into this process's memory."""
    if runner.in_process:
        return
    if not state.is_shared or isinstance(target.data, np.ndarray):
        raise ConfigError(
            f"the target {target.name!r} lives in this process's memory, which worker "
            "processes cannot write; write to a Zarr target (vemkit.io.ome_zarr."
            "create_ome_zarr) or use scheduler='threads'"
        )


def build_target_pyramid(target: Layer, runner: Runner, progress: Progress | None) -> None:
    """Rebuild the pyramid of the target's OME-Zarr image when the target is its level 0."""
    meta = target.metadata
    if meta.get("format") != "ome-zarr" or meta.get("level") != 0 or meta.get("n_levels", 1) < 2:
        return
    location = Path(str(meta["path"]))
    inner = str(meta.get("inner", ""))
    with dask.config.set(scheduler=runner.dask_scheduler):
        build_pyramid(location / inner if inner else location, progress=progress)


def describe_target(target: Layer) -> str:
    """Name the target in messages (its location when it has one)."""
    source = target.metadata.get("source")
    return repr(str(source)) if source else f"layer {target.name!r}"


def block_key(index: Sequence[int]) -> str:
    """Return the marker name of the block at grid position ``index``."""
    return ".".join(str(i) for i in index)


def function_name(fn: BlockFunction) -> str:
    """Name the block function in messages."""
    name = getattr(fn, "__qualname__", None) or getattr(
        getattr(fn, "func", None), "__qualname__", type(fn).__qualname__
    )
    return f"the block function {name}"
