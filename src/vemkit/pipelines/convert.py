"""Convert a volume in any readable format to an OME-Zarr dataset or a TIFF."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from vemkit.errors import OutputExistsError, UnknownFormatError
from vemkit.geometry import VoxelSize
from vemkit.io.dataset import Dataset
from vemkit.io.registry import open_layer, parse_location
from vemkit.io.tiff_writer import write_tiff
from vemkit.io.validate import require_finite, require_volume, require_voxel_size
from vemkit.progress import Progress

__all__ = ["convert_volume", "refuse_input_as_output"]

log = logging.getLogger(__name__)


def refuse_input_as_output(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """Refuse an output that is, contains or lies inside the input: inputs are never touched."""
    src = parse_location(source).path.expanduser().resolve()
    out = Path(output).expanduser().resolve()
    if out == src or src.is_relative_to(out) or out.is_relative_to(src):
        raise OutputExistsError(
            f"output {str(out)!r} would overwrite or nest inside the input {str(src)!r}; "
            "choose a different output path"
        )


def convert_volume(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    voxel_size: VoxelSize | str | None = None,
    mode: Literal["copy", "reference"] = "copy",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write ``source`` as a new OME-Zarr dataset (``.zarr``) or TIFF (``.tif``).

    Parameters
    ----------
    source : path
        Any location :func:`vemkit.io.registry.open_layer` reads.
    output : path
        ``*.zarr`` for an OME-Zarr dataset with a multiscale pyramid, ``*.tif``/``*.tiff``
        for a TIFF with the voxel size in its metadata.
    voxel_size : VoxelSize or str, optional
        Overrides the voxel size of the source (nm, z, y, x); required when the source
        does not record one.
    mode : {"copy", "reference"}
        For ``.zarr``: copy the voxels, or only reference the source (for huge inputs).
    overwrite : bool
        Replace an existing output.

    Returns
    -------
    Path
        The output written.
    """
    refuse_input_as_output(source, output)
    layer = require_voxel_size(require_volume(open_layer(source, voxel_size=voxel_size)))
    require_finite(layer)
    out = Path(output)
    suffix = "".join(out.suffixes[-2:]).lower() if out.suffix else ""
    if out.suffix.lower() == ".zarr":
        Dataset.create(out, layer, mode=mode, overwrite=overwrite, progress=progress)
    elif out.suffix.lower() in (".tif", ".tiff"):
        write_tiff(out, layer, voxel_size=layer.voxel_size, overwrite=overwrite)
    else:
        raise UnknownFormatError(
            f"cannot write {str(out)!r} (suffix {suffix or 'none'!r}); give an output ending in "
            ".zarr (OME-Zarr dataset) or .tif (TIFF)"
        )
    log.info("converted %s -> %s", source, out)
    return out
