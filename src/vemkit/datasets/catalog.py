"""Read the ``dataset.json`` catalogue of the shared real datasets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vemkit.errors import ConfigError, LayerNotFoundError, VolumeNotFoundError
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer

__all__ = [
    "DatasetInfo",
    "FileInfo",
    "data_root",
    "dataset_info",
    "list_datasets",
    "load_layer",
]

# Roles whose files hold images; every other role holds labels.
_IMAGE_ROLES = frozenset({"raw", "raw_unlabelled"})


@dataclass(frozen=True)
class FileInfo:
    """One array file of a dataset."""

    name: str
    path: Path
    role: str
    shape: tuple[int, ...]
    dtype: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"image"`` for raw data, ``"labels"`` for ground truth."""
        return "image" if self.role in _IMAGE_ROLES else "labels"

    @property
    def stem(self) -> str:
        """File name without ``.tif``: the name used by :func:`load_layer`."""
        return self.name.removesuffix(".tiff").removesuffix(".tif")


@dataclass(frozen=True)
class DatasetInfo:
    """Facts from one ``dataset.json``."""

    name: str
    path: Path
    modality: str
    voxel_size: VoxelSize | None
    files: dict[str, FileInfo]
    label_values: dict[str, Any]
    license: str
    citation: str
    description: str
    raw_json: dict[str, Any]

    def file(self, key: str) -> FileInfo:
        """Find a file by stem (``"test_raw"``), file name or unique role (``"membranes"``)."""
        for info in self.files.values():
            if key in (info.stem, info.name):
                return info
        by_role = [f for f in self.files.values() if f.role == key]
        if len(by_role) == 1:
            return by_role[0]
        choices = ", ".join(sorted(f.stem for f in self.files.values()))
        why = "is ambiguous" if by_role else "matches no file"
        raise LayerNotFoundError(
            f"{key!r} {why} in dataset {self.name!r}; choose one of: {choices}"
        )


def data_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """Locate the shared data folder, or None when it is absent.

    An explicit ``root`` is used alone, then ``$VEMKIT_DATA`` alone when it is set (a wrong
    setting is not silently replaced by another folder); otherwise ``./../shared/data`` and
    the ``shared/data`` folder beside the source checkout are tried.
    """
    if root is not None:
        candidates = [Path(root)]
    elif os.environ.get("VEMKIT_DATA"):
        candidates = [Path(os.environ["VEMKIT_DATA"])]
    else:
        candidates = [Path.cwd().parent / "shared" / "data"]
        candidates += [p / "shared" / "data" for p in Path(__file__).resolve().parents[3:5]]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*/dataset.json")):
            return candidate.resolve()
    return None


def _require_root(root: str | os.PathLike[str] | None) -> Path:
    found = data_root(root)
    if found is None:
        raise VolumeNotFoundError(
            "no shared datasets found: set VEMKIT_DATA to the folder that holds the "
            "<name>/dataset.json folders (e.g. ../shared/data)"
        )
    return found


def list_datasets(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the datasets available (empty when the data folder is absent)."""
    found = data_root(root)
    if found is None:
        return []
    return sorted(p.parent.name for p in found.glob("*/dataset.json"))


def read_dataset_json(folder: Path) -> DatasetInfo:
    """Parse ``folder/dataset.json``."""
    path = folder / "dataset.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise VolumeNotFoundError(f"{str(folder)!r} has no dataset.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON: {exc}") from None
    voxel = meta.get("voxel_size_nm")
    files = {
        name: FileInfo(
            name=name,
            path=folder / name,
            role=str(entry.get("role", "unknown")),
            shape=tuple(entry.get("shape", ())),
            dtype=str(entry.get("dtype", "")),
            facts={k: v for k, v in entry.items() if k not in ("role", "shape", "dtype")},
        )
        for name, entry in meta.get("files", {}).items()
    }
    return DatasetInfo(
        name=str(meta.get("name", folder.name)),
        path=folder,
        modality=str(meta.get("modality", "")),
        voxel_size=VoxelSize.coerce(voxel) if voxel else None,
        files=files,
        label_values=dict(meta.get("label_values", {})),
        license=str(meta.get("license", "")),
        citation=str(meta.get("citation", "")),
        description=str(meta.get("description", "")),
        raw_json=meta,
    )


def dataset_info(name: str, *, root: str | os.PathLike[str] | None = None) -> DatasetInfo:
    """Facts of the dataset ``name`` (voxel size, files, label meanings, license)."""
    base = _require_root(root)
    folder = base / name
    if not (folder / "dataset.json").is_file():
        names = ", ".join(list_datasets(base)) or "none"
        raise LayerNotFoundError(f"no dataset named {name!r} in {str(base)!r}; available: {names}")
    return read_dataset_json(folder)


def layer_from_file(info: DatasetInfo, file: FileInfo) -> Layer:
    """Open one file of a dataset as a read-only Layer with the catalogue's facts."""
    layer = open_layer(
        file.path,
        voxel_size=info.voxel_size,
        name=file.role if file.kind == "labels" else file.stem,
        kind="labels" if file.kind == "labels" else "image",
    )
    layer.metadata["voxel_size_from"] = "dataset.json" if info.voxel_size else "unknown"
    layer.metadata.update(
        dataset=info.name,
        role=file.role,
        modality=info.modality,
        license=info.license,
        label_values=info.label_values.get(file.role),
    )
    return layer


def load_layer(name: str, key: str = "raw", *, root: str | os.PathLike[str] | None = None) -> Layer:
    """Open a file of a shared dataset as a read-only :class:`~vemkit.io.layer.Layer`.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"drosophila_vnc_sstem"``.
    key : str
        File stem (``"stack1_z00-14_raw"``), file name, or a role that is unique in the
        dataset (``"mitochondria_instances"``). ``"raw"`` picks the labelled raw volume
        when there is exactly one.
    root : path, optional
        Data folder; defaults to ``$VEMKIT_DATA`` or ``../shared/data``.
    """
    info = dataset_info(name, root=root)
    return layer_from_file(info, info.file(key))
