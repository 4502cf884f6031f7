"""``vemkit segment nuclei|mitochondria``: from a raw volume to instances, table, seeds, meshes.

One job per organelle, blockwise from start to end so the volume never has to fit in
memory, on any Dask scheduler (``cluster``):

1. **Working grid.** The model was trained at a voxel size (card ``voxel_size_nm``). The
   input's pyramid level closest to it is picked (:func:`vemkit.io.pyramid.pick_level`);
   when that level is still finer than the model by 1.5× or more along an axis, it is
   mean-pooled by the integer factor that comes closest (anti-aliased), block by block.
   Nuclei work on this coarse grid (100 nm for ``nuclei-em``); mitochondria work at full
   resolution (the network sees its own voxel size inside each block; the maps come back
   on the input grid).
2. **Prediction** with :func:`vemkit.pipelines.predict.predict_block` on every block plus a
   halo (:func:`vemkit.blockwise.map_layer`), written as the image layer
   ``<model>_<channel>`` (signed distance in nm, or probabilities).
3. **Instances** with :func:`vemkit.blockwise.label_blockwise`: nuclei by the distance
   watershed with the model card's post-processing, mitochondria by the foreground +
   boundary watershed with the card's calibrated thresholds; labels are made unique and
   merged across block faces by overlap.
4. **Full resolution.** Nuclei labels are upsampled (nearest neighbour, exact integer
   mapping) to the input grid, written to ``OUT.zarr/labels/nuclei`` with a pyramid.
5. **Measurements** (:func:`vemkit.measure.measure_regions`) on the finest pyramid level of
   the labels that has at most ``measure_max_voxels`` voxels, written to
   ``OUT.zarr/tables/<organelle>.csv``; nucleus centroids as tracing seeds
   (``OUT.zarr/seeds/nuclei.csv`` and a webKnossos ``.nml`` skeleton); one mesh per object
   in ``OUT.zarr/meshes/<organelle>/``.

The input is never modified. A crashed run resumes with ``resume=True`` (``--resume``):
finished blocks of every step are skipped; the run's settings must be the same.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vemkit.blockwise import get_client, label_blockwise, map_layer
from vemkit.blockwise.cluster import is_local_scheduler
from vemkit.errors import (
    ConfigError,
    InvalidVolumeError,
    OutputExistsError,
    VemkitError,
    VoxelSizeError,
)
from vemkit.geometry import Box, VoxelSize
from vemkit.io.atomic import check_output_path
from vemkit.io.dataset import Dataset
from vemkit.io.layer import Layer
from vemkit.io.pyramid import downsample_image, pick_level
from vemkit.io.registry import open_layer
from vemkit.io.validate import require_volume, require_voxel_size
from vemkit.io.webknossos import write_nml
from vemkit.measure import measure_regions
from vemkit.measure.meshes import mesh_objects
from vemkit.ml.normalize import Normalization
from vemkit.ml.precision import Precision, faster_precision_hint
from vemkit.ml.zoo import resolve_model
from vemkit.pipelines.convert import refuse_input_as_output
from vemkit.pipelines.measure import spatial_summary, write_mesh_files, write_table
from vemkit.pipelines.predict import ModelSpec, load_predictor, predict_block, segment_instances
from vemkit.progress import Progress

__all__ = [
    "MitochondriaSettings",
    "NucleiSettings",
    "SegmentResult",
    "SegmentSettings",
    "WorkingGrid",
    "load_segment_settings",
    "plan_working_grid",
    "segment_mitochondria",
    "segment_nuclei",
    "segment_volume",
]

log = logging.getLogger(__name__)

Organelle = Literal["nuclei", "mitochondria"]

#: A model can be run on data up to this many times coarser than its voxel size.
MAX_COARSER = 2.0
#: Pool an axis when the chosen level is at least this many times finer than the model.
POOL_FROM = 1.5


# --- settings --------------------------------------------------------------------------------
class SegmentSettings(BaseModel):
    """Settings shared by both pipelines (loadable from YAML; unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="Shipped model name or model folder.")
    voxel_size: str | None = Field(
        default=None, description="Override of the input voxel size, 'Z,Y,X' in nm."
    )
    triaxis: bool | None = Field(
        default=None,
        description="2D models: average z, y and x planes. Default: on for near-isotropic "
        "data (z at most 2x the in-plane voxel), off for serial sections.",
    )
    tta: bool = Field(default=False, description="Average predictions over flips.")
    device: str = Field(default="cpu", description="cpu, cuda, cuda:N or auto.")
    precision: Precision = Field(
        default="auto",
        description="Autocast of the network: auto (float16 on CUDA, float32 on the CPU), "
        "float32, or bfloat16 (about 2x faster on CPUs with bfloat16 instructions).",
    )
    cluster: str = Field(
        default="threads",
        description="Dask scheduler: threads, synchronous, processes, local:N, tcp://host:port, "
        "slurm:N, kubernetes:N.",
    )
    n_workers: int | None = Field(default=None, ge=1, description="Workers / threads.")
    block_shape: tuple[int, int, int] | None = Field(
        default=None, description="Block shape in voxels of the working grid (z, y, x)."
    )
    halo_nm: float | None = Field(
        default=None, ge=0, description="Context around each block in nm (default per organelle)."
    )
    raw_mode: Literal["copy", "reference"] = Field(
        default="copy", description="Copy raw into the output dataset, or reference the input."
    )
    min_size_nm3: float | None = Field(
        default=None, ge=0, description="Drop objects smaller than this (nm^3); default: card."
    )
    measure: bool = Field(default=True, description="Write the measurement table.")
    measure_max_voxels: int = Field(
        default=128_000_000,
        ge=1,
        description="Measure on the finest labels pyramid level with at most this many voxels.",
    )
    meshes: bool = Field(default=True, description="Write one mesh per object.")
    mesh_format: Literal["ply", "obj", "stl"] = "ply"
    mesh_max_objects: int | None = Field(
        default=None, ge=1, description="Mesh only the largest N objects (default all)."
    )


class NucleiSettings(SegmentSettings):
    """``vemkit segment nuclei`` settings; ``None`` post-processing values come from the card."""

    model: str = "nuclei-em"
    seed_threshold_nm: float | None = Field(default=None, ge=0)
    mask_threshold_nm: float | None = None
    min_seed_size_nm3: float | None = Field(default=None, ge=0)
    smooth_sigma_nm: float | None = Field(default=None, ge=0)
    seeds: bool = Field(default=True, description="Write centroid seeds (CSV + webKnossos NML).")
    # Nuclei are at least a few µm: measuring them on a ~100 nm pyramid level of the labels
    # (not the full resolution) changes their volumes by well under 1 % and is much cheaper.
    measure_max_voxels: int = Field(
        default=32_000_000,
        ge=1,
        description="Measure on the finest labels pyramid level with at most this many voxels.",
    )


class MitochondriaSettings(SegmentSettings):
    """``vemkit segment mitochondria`` settings; ``None`` thresholds come from the card."""

    model: str = "mito-em"
    foreground_threshold: float | None = Field(default=None, gt=0, lt=1)
    boundary_threshold: float | None = Field(default=None, gt=0, lt=1)
    instances: (
        Literal["boundary_watershed_3d", "boundary_watershed_2d", "connected_components_3d"] | None
    ) = None


def load_segment_settings(
    organelle: Organelle, path: str | os.PathLike[str] | None = None, **overrides: Any
) -> SegmentSettings:
    """Build settings from an optional YAML file, then ``overrides`` (``None`` ignored).

    Raises
    ------
    ConfigError
        Unknown keys or invalid values, one line per problem.
    """
    import yaml

    cls = NucleiSettings if organelle == "nuclei" else MitochondriaSettings
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"no such settings file: {str(file)!r}")
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{str(file)!r} is not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{str(file)!r} must hold a mapping of settings")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors()
        ]
        raise ConfigError("invalid segment settings:\n  " + "\n  ".join(lines)) from None


# --- working grid ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkingGrid:
    """Where the network runs: a pyramid level of the input, pooled by integer factors.

    Attributes
    ----------
    level : int
        Pyramid level of the input that is read.
    level_voxel_size : VoxelSize
        Voxel size of that level (nm).
    factors : tuple of int
        Mean-pooling factors applied to that level.
    voxel_size : VoxelSize
        Voxel size of the working grid (``level_voxel_size * factors``).
    shape : tuple of int
        Shape of the working grid (``ceil(level_shape / factors)``).
    """

    level: int
    level_voxel_size: VoxelSize
    factors: tuple[int, int, int]
    voxel_size: VoxelSize
    shape: tuple[int, int, int]


def _levels_voxel_sizes(raw: Layer) -> list[VoxelSize]:
    """Voxel size of every pyramid level of ``raw`` (scaled by a user override)."""
    levels = raw.metadata.get("levels_voxel_size")
    if not levels:
        return [raw.voxel_size]
    sizes = [VoxelSize.coerce(tuple(float(v) for v in level)) for level in levels]
    first = np.asarray(sizes[0].as_tuple())
    scale = np.asarray(raw.voxel_size.as_tuple()) / first
    return [VoxelSize.coerce(tuple(np.asarray(s.as_tuple()) * scale)) for s in sizes]


def plan_working_grid(
    levels_voxel_size: Sequence[VoxelSize],
    levels_shape: Sequence[Sequence[int]],
    model_voxel_size: VoxelSize,
    *,
    planar: bool = False,
    pool: bool = True,
) -> WorkingGrid:
    """Choose the level and pooling factors that bring the data closest to the model.

    Parameters
    ----------
    levels_voxel_size : sequence of VoxelSize
        Voxel size of each input pyramid level, finest first.
    levels_shape : sequence of (Z, Y, X)
        Shape of each level.
    model_voxel_size : VoxelSize
        Voxel size the model was trained at.
    planar : bool
        A 2D model run section by section: z is never pooled or checked.
    pool : bool
        Pool the chosen level (False: the network resamples inside each block and the
        maps come back on the level's grid; used for full-resolution mitochondria).

    Raises
    ------
    VoxelSizeError
        Even the finest level is more than :data:`MAX_COARSER` times coarser than the
        model along an axis the model looks at.
    """
    finest = levels_voxel_size[0].as_tuple()
    wanted = model_voxel_size.as_tuple()
    axes = (1, 2) if planar else (0, 1, 2)
    for axis in axes:
        if finest[axis] > MAX_COARSER * wanted[axis] * (1 + 1e-6):
            name = "zyx"[axis]
            raise VoxelSizeError(
                f"the data ({finest[axis]:g} nm along {name}) is more than {MAX_COARSER:g}x "
                f"coarser than the model's {wanted[axis]:g} nm voxels; this model cannot be "
                "matched to it (check --voxel-size, or use a model trained at this resolution)"
            )
    if not pool:
        level = 0
    else:
        target = list(wanted)
        if planar:  # z is not resampled by a section-wise model: ignore it in the choice
            target[0] = finest[0]
        level = pick_level(levels_voxel_size, tuple(target))
    size = levels_voxel_size[level].as_tuple()
    factors = [1, 1, 1]
    if pool:
        for axis in axes:
            ratio = wanted[axis] / size[axis]
            if ratio >= POOL_FROM:
                factors[axis] = max(1, round(ratio))
    shape = tuple(math.ceil(n / f) for n, f in zip(levels_shape[level], factors, strict=True))
    voxel = VoxelSize.coerce(tuple(s * f for s, f in zip(size, factors, strict=True)))
    return WorkingGrid(
        level=level,
        level_voxel_size=levels_voxel_size[level],
        factors=(factors[0], factors[1], factors[2]),
        voxel_size=voxel,
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
    )


# --- block functions (picklable: they run on Dask workers) -----------------------------------
_MODEL_CACHE: dict[tuple[str, str], tuple[Any, ModelSpec]] = {}
_MODEL_LOCK = threading.Lock()


def _cached_predictor(model_path: str, device: str) -> tuple[Any, ModelSpec]:
    """Load the network of a model folder once per process (shared by its threads)."""
    key = (model_path, device)
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            network, spec, _ = load_predictor(model_path, device=device)
            _MODEL_CACHE[key] = (network, spec)
        return _MODEL_CACHE[key]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _BlockPredictor:
    """Read a working-grid box from the input level (pooling it), predict, return maps."""

    raw: Layer
    factors: tuple[int, int, int]
    voxel_size: VoxelSize
    model_path: str
    model_digest: str
    device: str
    triaxis: bool
    tta: bool
    squeeze: bool = False
    precision: Precision = "auto"

    def __call__(self, *, box: Box) -> NDArray[np.float32]:
        start = [o * f for o, f in zip(box.offset, self.factors, strict=True)]
        stop = [
            min((o + s) * f, n)
            for o, s, f, n in zip(box.offset, box.shape, self.factors, self.raw.shape, strict=True)
        ]
        block = self.raw.read(Box.from_bounds(start, stop))
        if any(f > 1 for f in self.factors):
            block = downsample_image(block.astype(np.float32), self.factors)
        network, spec = _cached_predictor(self.model_path, self.device)
        import torch

        with torch.inference_mode():
            maps = predict_block(
                network,
                block,
                spec=spec,
                voxel_size=self.voxel_size,
                tta=self.tta,
                triaxis=self.triaxis,
                device=self.device,
                precision=self.precision,
            )
        return maps[0] if self.squeeze else maps

    def __vemkit_fingerprint__(self) -> dict[str, Any]:
        return {
            "step": "predict",
            "raw": {
                "source": str(self.raw.metadata.get("source", "")),
                "shape": list(self.raw.shape),
                "level": int(self.raw.metadata.get("level", 0)),
            },
            "factors": list(self.factors),
            "voxel_size_nm": list(self.voxel_size.as_tuple()),
            "model_digest": self.model_digest,
            "triaxis": self.triaxis,
            "tta": self.tta,
            # only when set, so that jobs started before the option existed still resume
            **({"precision": self.precision} if self.precision != "auto" else {}),
        }


def _nuclei_block(distance: NDArray[np.float32], **params: Any) -> NDArray[np.uint32]:
    from vemkit.pipelines.nuclei_data import segment_nuclei_distance

    voxel_size = VoxelSize.coerce(params.pop("voxel_size_nm"))
    return segment_nuclei_distance(distance, voxel_size=voxel_size, **params)


def _mitochondria_block(maps: NDArray[np.float32], **params: Any) -> NDArray[np.uint32]:
    spec_channels = tuple(params.pop("channels"))
    voxel_size = VoxelSize.coerce(params.pop("voxel_size_nm"))
    spec = ModelSpec(
        name="mitochondria",
        target_type="foreground_boundary" if "boundary" in spec_channels else "binary",
        channels=spec_channels,
        voxel_size=None,
        normalization=Normalization(),
        dims=2,
    )
    return segment_instances(maps, spec=spec, voxel_size=voxel_size, **params)


@dataclass(frozen=True)
class _Upsampler:
    """Nearest-neighbour upsampling of working-grid labels onto the input's level-0 grid."""

    labels: Layer
    scale: tuple[float, float, float]  # working voxel size / level-0 voxel size, per axis

    def _indices(self, start: int, stop: int, axis: int) -> NDArray[np.int64]:
        centres = (np.arange(start, stop, dtype=np.float64) + 0.5) / self.scale[axis]
        index = np.floor(centres + 1e-9).astype(np.int64)
        return np.clip(index, 0, self.labels.shape[axis] - 1)

    def __call__(self, *, box: Box) -> NDArray[Any]:
        index = [
            self._indices(o, o + s, axis)
            for axis, (o, s) in enumerate(zip(box.offset, box.shape, strict=True))
        ]
        low = [int(i.min()) for i in index]
        high = [int(i.max()) + 1 for i in index]
        coarse = self.labels.read(Box.from_bounds(low, high))
        # one axis at a time: three contiguous gathers are several times faster than one
        # fancy-indexed np.ix_ gather on large blocks (same voxels)
        for axis, (i, lo) in enumerate(zip(index, low, strict=True)):
            coarse = np.take(coarse, i - lo, axis=axis)
        return coarse

    def __vemkit_fingerprint__(self) -> dict[str, Any]:
        return {"step": "upsample", "shape": list(self.labels.shape), "scale": list(self.scale)}


# --- the pipeline ----------------------------------------------------------------------------
@dataclass
class SegmentResult:
    """What a segment run wrote and how long each step took."""

    output: Path
    organelle: str
    labels_layer: str
    n_objects: int
    working_grid: WorkingGrid
    table: Path | None = None
    seeds_csv: Path | None = None
    seeds_nml: Path | None = None
    meshes: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """Wall time of the whole run."""
        return float(sum(self.seconds.values()))


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _default_block(shape: Sequence[int], preferred: Sequence[int]) -> tuple[int, int, int]:
    block = tuple(max(1, min(int(n), int(p))) for n, p in zip(shape, preferred, strict=True))
    return (block[0], block[1], block[2])


#: Storage chunks of the prediction maps, where they tile the block (see _map_chunks).
MAP_CHUNKS = (8, 128, 128)


def _map_chunks(block: Sequence[int]) -> tuple[int, int, int]:
    """Storage chunks of a layer that later steps read block by block *with a halo*.

    Zarr decodes whole chunks, so reading a block plus halo from chunks the size of the
    block decodes up to 27 blocks' worth of data (a 32×512×512 mitochondria block with its
    halo touched 27 chunks of 64 MiB): that was the peak memory and a third of the time
    of the instance step. Chunks of :data:`MAP_CHUNKS` that tile the block keep the
    over-read small; an axis the chunk does not divide keeps the block size (every block
    still writes whole chunks).
    """
    chunks = tuple(c if b % c == 0 else b for b, c in zip(block, MAP_CHUNKS, strict=True))
    return (chunks[0], chunks[1], chunks[2])


def _halo_vox(halo_nm: Sequence[float], voxel_size: VoxelSize) -> tuple[int, int, int]:
    halo = tuple(
        math.ceil(h / v - 1e-9) if h > 0 else 0
        for h, v in zip(halo_nm, voxel_size.as_tuple(), strict=True)
    )
    return (halo[0], halo[1], halo[2])


def _prepare_output(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    raw: Layer,
    *,
    raw_mode: str,
    overwrite: bool,
    resume: bool,
    progress: Progress | None,
) -> Dataset:
    refuse_input_as_output(source, output)
    target = Path(output).expanduser().absolute()
    if resume and target.exists():
        dataset = Dataset.open(target)
        log.info("resuming into %s", target)
        return dataset
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"output {str(target)!r} already exists; choose another path, pass --overwrite to "
            "replace it, or --resume to finish an interrupted run"
        )
    check_output_path(target, overwrite=True)
    return Dataset.create(target, raw, mode=raw_mode, overwrite=overwrite, progress=progress)  # type: ignore[arg-type]


def _measure_level(layer_levels: int, dataset: Dataset, name: str, max_voxels: int) -> int:
    for level in range(layer_levels):
        if int(np.prod(dataset.layer(name, level).shape, dtype=np.int64)) <= max_voxels:
            return level
    return layer_levels - 1


def segment_volume(
    organelle: Organelle,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: SegmentSettings | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
) -> SegmentResult:
    """Segment nuclei or mitochondria in ``source`` and write a new dataset ``output``.

    Parameters
    ----------
    organelle : {"nuclei", "mitochondria"}
        Which pipeline.
    source : str or path
        Any volume :func:`vemkit.io.open_layer` reads (3D, single channel).
    output : str or path
        New OME-Zarr dataset (``OUT.zarr``).
    settings : NucleiSettings or MitochondriaSettings, optional
        Defaults: the shipped model and its card's post-processing.
    overwrite : bool
        Replace an existing output.
    resume : bool
        Finish an interrupted run into the existing ``output`` (same settings).
    progress : Progress, optional
        Progress of every step (blocks, chunks).

    Returns
    -------
    SegmentResult

    Raises
    ------
    InvalidVolumeError
        A 2D image, several channels, or a volume too small at the model's voxel size.
    VoxelSizeError
        No voxel size known, or one the model cannot be matched to.
    OutputExistsError
        ``output`` exists and neither ``overwrite`` nor ``resume`` is set.
    """
    if organelle not in ("nuclei", "mitochondria"):
        raise ConfigError(f"organelle must be 'nuclei' or 'mitochondria', got {organelle!r}")
    settings = settings or load_segment_settings(organelle)
    expected = NucleiSettings if organelle == "nuclei" else MitochondriaSettings
    if not isinstance(settings, expected):
        raise ConfigError(f"{organelle} needs {expected.__name__}, got {type(settings).__name__}")
    with contextlib.ExitStack() as stack:
        return _segment(organelle, source, output, settings, stack, overwrite, resume, progress)


def _segment(  # noqa: PLR0917
    organelle: Organelle,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: SegmentSettings,
    stack: contextlib.ExitStack,
    overwrite: bool,
    resume: bool,
    progress: Progress | None,
) -> SegmentResult:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    raw = require_voxel_size(require_volume(open_layer(source, voxel_size=settings.voxel_size)))
    if raw.axes != "zyx":
        raise InvalidVolumeError(
            f"segmentation needs a single-channel 3D (Z, Y, X) volume; {str(source)!r} has "
            f"axes {raw.axes!r}"
        )
    device = _resolve_device(settings.device)
    hint = faster_precision_hint(settings.precision, device)
    if hint:
        log.info(hint)
    model_folder = resolve_model(settings.model)
    _, spec, card = load_predictor(model_folder, device="cpu")
    if spec.voxel_size is None:
        raise ConfigError(f"model {spec.name!r} does not record its voxel size")
    distance_model = spec.target_type == "signed_distance"
    if organelle == "mitochondria" and "foreground" not in spec.channels:
        raise ConfigError(
            f"the mitochondria pipeline needs a model with a 'foreground' channel; "
            f"{spec.name!r} has {', '.join(spec.channels)}"
        )
    if organelle == "nuclei" and not distance_model and "foreground" not in spec.channels:
        raise ConfigError(
            f"the nuclei pipeline needs a signed-distance model or one with a 'foreground' "
            f"channel; {spec.name!r} predicts {spec.target_type} ({', '.join(spec.channels)})"
        )
    iso = raw.voxel_size.z <= 2.0 * max(raw.voxel_size.y, raw.voxel_size.x)
    triaxis = settings.triaxis if settings.triaxis is not None else (spec.dims == 2 and iso)
    if triaxis and spec.dims != 2:
        raise ConfigError("tri-axis prediction needs a 2D model")
    planar = spec.dims == 2 and not triaxis

    levels = _levels_voxel_sizes(raw)
    level_layers = [raw] + [
        open_layer(source, voxel_size=None, level=i) for i in range(1, len(levels))
    ]
    grid = plan_working_grid(
        levels,
        [layer.shape for layer in level_layers],
        spec.voxel_size,
        planar=planar,
        pool=organelle == "nuclei",
    )
    min_extent = 4
    if any(
        n < min_extent for n, a in zip(grid.shape, "zyx", strict=True) if not (planar and a == "z")
    ):
        raise InvalidVolumeError(
            f"{str(source)!r} is only {grid.shape} voxels at the model's working voxel size "
            f"{grid.voxel_size} nm; it is too small for {spec.name!r} (at least {min_extent} "
            "voxels per axis)"
        )
    level_raw = level_layers[grid.level]
    level_raw.voxel_size = grid.level_voxel_size
    log.info(
        "%s: level %d (%s nm), pooled by %s -> working grid %s at %s nm",
        organelle,
        grid.level,
        grid.level_voxel_size,
        grid.factors,
        grid.shape,
        grid.voxel_size,
    )

    dataset = _prepare_output(
        source,
        output,
        raw,
        raw_mode=settings.raw_mode,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
    )
    timings["dataset"] = time.perf_counter() - clock

    # 1. prediction on the working grid
    clock = time.perf_counter()
    if organelle == "nuclei":
        preferred_block = (256, 256, 256)
        halo_nm = settings.halo_nm if settings.halo_nm is not None else 3200.0
    else:
        preferred_block = (32, 512, 512) if planar else (128, 256, 256)
        halo_nm = settings.halo_nm if settings.halo_nm is not None else 600.0
    block = _default_block(grid.shape, settings.block_shape or preferred_block)
    halo = list(_halo_vox((halo_nm,) * 3, grid.voxel_size))
    if planar:
        halo[0] = spec.context  # a 2.5D model reads its neighbouring sections
    predictor = _BlockPredictor(
        raw=level_raw,
        factors=grid.factors,
        voxel_size=grid.voxel_size,
        model_path=str(model_folder),
        model_digest=_file_digest(model_folder / "model.safetensors"),
        device=device,
        triaxis=triaxis,
        tta=settings.tta,
        squeeze=len(spec.channels) == 1,
        precision=settings.precision,
    )
    channels = list(spec.channels)
    single = len(channels) == 1
    maps_name = f"{spec.name}_{channels[0]}" if single else f"{spec.name}_maps"
    maps_layer = dataset.create_layer(
        maps_name,
        shape=grid.shape if single else (len(channels), *grid.shape),
        dtype=np.float32,
        kind="image",
        voxel_size=grid.voxel_size,
        chunks=_map_chunks(block) if single else (len(channels), *_map_chunks(block)),
        resume=resume,
    )
    # One client for every step: a local cluster starts (and loads torch) only once.
    client = stack.enter_context(get_client(settings.cluster, n_workers=settings.n_workers))
    scheduler = client if client is not None else settings.cluster
    in_process = is_local_scheduler(settings.cluster)
    predict_workers = settings.n_workers or (1 if in_process else None)
    map_layer(
        predictor,
        [],
        maps_layer,
        block_shape=block,
        halo_vox=halo,
        with_box=True,
        out_channels=None if single else len(channels),
        scheduler=scheduler,
        n_workers=predict_workers,
        progress=progress,
        resume=resume,
    )
    maps_layer = dataset.layer(maps_name)
    timings["predict"] = time.perf_counter() - clock

    # 2. instances on the working grid
    clock = time.perf_counter()
    instance_card = dict(card.get("instances") or {})
    params: dict[str, Any] = {"voxel_size_nm": list(grid.voxel_size.as_tuple())}
    if distance_model:
        assert isinstance(settings, NucleiSettings)
        fn: Any = _nuclei_block
        for key in (
            "seed_threshold_nm",
            "mask_threshold_nm",
            "min_seed_size_nm3",
            "min_size_nm3",
            "smooth_sigma_nm",
        ):
            value = getattr(settings, key)
            if value is None:
                value = instance_card.get(key)
            if value is not None:
                params[key] = float(value)
        seg_halo_nm = max(2000.0, 4.0 * float(params.get("smooth_sigma_nm", 0.0)))
    else:  # foreground (+ boundary) maps: boundary watershed, thresholds from the card
        fn = _mitochondria_block
        method = (
            getattr(settings, "instances", None)
            or instance_card.get("instances")
            or "boundary_watershed_3d"
        )
        if planar and method == "boundary_watershed_3d" and raw.voxel_size.z > 200:
            method = "boundary_watershed_2d"
        params.update(
            channels=channels,
            method=method,
            foreground_threshold=float(
                getattr(settings, "foreground_threshold", None)
                or instance_card.get("foreground_threshold", 0.5)
            ),
            boundary_threshold=float(
                getattr(settings, "boundary_threshold", None)
                or instance_card.get("boundary_threshold", 0.5)
            ),
            min_size_nm3=float(
                settings.min_size_nm3
                if settings.min_size_nm3 is not None
                else instance_card.get("min_size_nm3", 0.0)
            ),
            min_seed_size_nm3=float(instance_card.get("min_seed_size_nm3", 0.0)),
        )
        seg_halo_nm = 400.0
    seg_halo = list(_halo_vox((seg_halo_nm,) * 3, grid.voxel_size))
    seg_halo = [max(2, h) for h in seg_halo]
    labels_name = organelle
    if organelle == "nuclei":
        work_path = dataset.path / ".work" / f"{organelle}_working.zarr"
        work_path.parent.mkdir(exist_ok=True)
        from vemkit.io.ome_zarr import create_ome_zarr, open_ome_zarr_writable

        if resume and work_path.exists():
            labels_target = open_ome_zarr_writable(work_path)
        else:
            labels_target = create_ome_zarr(
                work_path,
                shape=grid.shape,
                dtype=np.uint32,
                voxel_size=grid.voxel_size,
                kind="labels",
                chunks=block,
                n_levels=1,
                overwrite=True,
            )
    else:
        labels_target = dataset.create_layer(
            labels_name,
            shape=grid.shape,
            dtype=np.uint32,
            kind="labels",
            voxel_size=grid.voxel_size,
            chunks=block,
            resume=resume,
        )
    working_labels = label_blockwise(
        fn,
        maps_layer,
        labels_target,
        block_shape=block,
        halo_vox=seg_halo,
        merge="overlap",
        scheduler=scheduler,
        n_workers=settings.n_workers,
        progress=progress,
        resume=resume,
        fn_kwargs=params,
        pyramid=organelle != "nuclei",
    )
    timings["instances"] = time.perf_counter() - clock

    # 3. nuclei: upsample to the input grid
    clock = time.perf_counter()
    if organelle == "nuclei":
        scale = tuple(
            w / r
            for w, r in zip(grid.voxel_size.as_tuple(), raw.voxel_size.as_tuple(), strict=True)
        )
        full_block = _default_block(
            raw.shape, tuple(b * max(1, round(s)) for b, s in zip(block, scale, strict=True))
        )
        full_block = _default_block(raw.shape, tuple(min(b, 512) for b in full_block))
        full = dataset.create_layer(
            labels_name,
            shape=raw.shape,
            dtype=np.uint32,
            kind="labels",
            voxel_size=raw.voxel_size,
            chunks=full_block,
            resume=resume,
        )
        map_layer(
            _Upsampler(labels=working_labels, scale=(scale[0], scale[1], scale[2])),
            [],
            full,
            block_shape=full_block,
            with_box=True,
            scheduler=scheduler,
            n_workers=settings.n_workers,
            progress=progress,
            resume=resume,
        )
    timings["upsample"] = time.perf_counter() - clock

    result = SegmentResult(
        output=dataset.path,
        organelle=organelle,
        labels_layer=f"labels/{labels_name}",
        n_objects=0,
        working_grid=grid,
        seconds=timings,
    )
    _finish(dataset, result, settings)
    dataset.add_provenance(
        {
            "step": f"segment {organelle}",
            "source": str(source),
            "model": spec.name,
            "model_path": str(model_folder),
            "model_digest": predictor.model_digest,
            "settings": json.loads(settings.model_dump_json()),
            "device": device,
            "triaxis": triaxis,
            "working_grid": {
                "level": grid.level,
                "factors": list(grid.factors),
                "voxel_size_nm": list(grid.voxel_size.as_tuple()),
                "shape": list(grid.shape),
            },
            "instances": {k: v for k, v in params.items() if k != "voxel_size_nm"},
            "layers": [maps_name, result.labels_layer],
            "n_objects": result.n_objects,
            "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
            "outputs": {
                key: str(value.relative_to(dataset.path))
                for key, value in (
                    ("table", result.table),
                    ("seeds_csv", result.seeds_csv),
                    ("seeds_nml", result.seeds_nml),
                    ("meshes", result.meshes),
                )
                if value is not None
            },
        }
    )
    if organelle == "nuclei":
        from vemkit.io.atomic import remove_path

        remove_path(dataset.path / ".work")
    return result


def _finish(
    dataset: Dataset,
    result: SegmentResult,
    settings: SegmentSettings,
) -> None:
    """Measurements, seeds and meshes from the labels (at a level that fits in memory)."""
    clock = time.perf_counter()
    name = result.labels_layer
    n_levels = int(dataset.layer(name).metadata.get("n_levels", 1))
    level = _measure_level(n_levels, dataset, name, settings.measure_max_voxels)
    labels_layer = dataset.layer(name, level)
    labels = labels_layer.read()
    ids = np.unique(labels)
    result.n_objects = int(np.count_nonzero(ids))
    result.summary["measured_level"] = level
    result.summary["measured_voxel_size_nm"] = list(labels_layer.voxel_size.as_tuple())
    table = None
    if settings.measure or (isinstance(settings, NucleiSettings) and settings.seeds):
        intensity = None
        try:  # raw at the same level: copied raw has a pyramid, a referenced file may not
            raw_layer = dataset.layer("raw", level)
            if raw_layer.shape == labels_layer.shape:
                intensity = raw_layer.read()
        except VemkitError:
            pass
        table = measure_regions(labels, voxel_size=labels_layer.voxel_size, intensity=intensity)
        table.attrs["voxel_size_nm"] = list(labels_layer.voxel_size.as_tuple())
        spatial = spatial_summary(table, labels_layer)
        if spatial is not None:
            result.summary["spatial"] = spatial
    if settings.measure and table is not None:
        tables = dataset.path / "tables"
        tables.mkdir(exist_ok=True)
        result.table = write_table(table, tables / f"{result.organelle}.csv", overwrite=True)
    if isinstance(settings, NucleiSettings) and settings.seeds and table is not None:
        _write_seeds(dataset, result, table)
    result.seconds["measure"] = time.perf_counter() - clock
    clock = time.perf_counter()
    if settings.meshes and result.n_objects:
        subset = None
        if settings.mesh_max_objects is not None and table is not None and len(table):
            largest = table.sort_values("volume_um3", ascending=False)["label"]
            subset = [int(v) for v in largest.head(settings.mesh_max_objects)]
        folder = dataset.path / "meshes" / result.organelle
        folder.parent.mkdir(exist_ok=True)
        meshes = mesh_objects(labels, voxel_size=labels_layer.voxel_size, labels_subset=subset)
        result.meshes = write_mesh_files(
            meshes, folder, mesh_format=settings.mesh_format, overwrite=True
        )
    result.seconds["meshes"] = time.perf_counter() - clock


def _write_seeds(dataset: Dataset, result: SegmentResult, table: Any) -> None:
    """Nucleus centroids as tracing seeds: CSV (nm and level-0 voxels) and webKnossos NML."""
    import pandas as pd

    raw_size = dataset.layer("raw").voxel_size
    folder = dataset.path / "seeds"
    folder.mkdir(exist_ok=True)
    points_nm = (
        table[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy(dtype=np.float64) * 1e3
    )
    voxels = points_nm / np.asarray(raw_size.as_tuple())  # voxel i is centred at i * size
    seeds = pd.DataFrame(
        {
            "label": table["label"].to_numpy(),
            "z_nm": points_nm[:, 0],
            "y_nm": points_nm[:, 1],
            "x_nm": points_nm[:, 2],
            "z_vox": np.rint(voxels[:, 0]).astype(np.int64),
            "y_vox": np.rint(voxels[:, 1]).astype(np.int64),
            "x_vox": np.rint(voxels[:, 2]).astype(np.int64),
            "volume_um3": table["volume_um3"].to_numpy(),
        }
    )
    result.seeds_csv = write_table(seeds, folder / f"{result.organelle}.csv", overwrite=True)
    result.seeds_nml = write_nml(
        folder / f"{result.organelle}.nml",
        points_nm,
        voxel_size=raw_size,
        ids=[int(v) for v in table["label"]],
        dataset_name=dataset.path.stem,
        comment=f"vemkit segment {result.organelle}: object centroids",
        overwrite=True,
    )


segment_nuclei = functools.partial(segment_volume, "nuclei")
segment_nuclei.__doc__ = "Run :func:`segment_volume` for nuclei."
segment_mitochondria = functools.partial(segment_volume, "mitochondria")
segment_mitochondria.__doc__ = "Run :func:`segment_volume` for mitochondria."
