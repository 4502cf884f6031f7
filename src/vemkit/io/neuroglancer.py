"""Neuroglancer viewer states for vemkit datasets served over HTTP.

Neuroglancer reads OME-Zarr (NGFF 0.4) multiscale groups directly from a URL with the
``zarr://`` data source (``zarr2://`` forces Zarr v2 in recent versions). A dataset is
made viewable by serving the folder that contains it, with CORS enabled, e.g.::

    npx http-server --cors -p 8000 /data     # /data/cell.zarr -> http://localhost:8000/cell.zarr

and opening the state written by :func:`neuroglancer_state` in a neuroglancer viewer
(paste the JSON into the state editor, or open :func:`neuroglancer_url`).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any, Literal

from vemkit.errors import ConfigError, LayerNotFoundError
from vemkit.io.dataset import Dataset

__all__ = ["DEFAULT_VIEWER", "neuroglancer_state", "neuroglancer_url"]

logger = logging.getLogger(__name__)

#: Public neuroglancer build used by :func:`neuroglancer_url` unless another is given.
DEFAULT_VIEWER = "https://neuroglancer-demo.appspot.com/"

Scheme = Literal["zarr", "zarr2"]


def _join_url(base_url: str, *parts: str) -> str:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return base + "/".join(urllib.parse.quote(p) for p in parts)


def neuroglancer_state(
    dataset: str | os.PathLike[str] | Dataset,
    *,
    base_url: str,
    layers: Sequence[str] | None = None,
    dataset_url: str | None = None,
    scheme: Scheme = "zarr",
    layout: str = "4panel",
) -> dict[str, Any]:
    """Build a neuroglancer viewer state showing a dataset's raw and label layers.

    Parameters
    ----------
    dataset : path or Dataset
        A vemkit OME-Zarr dataset.
    base_url : str
        URL under which the folder *containing* the dataset is served, e.g.
        ``http://localhost:8000/``; the dataset is expected at ``base_url + NAME.zarr``.
    layers : sequence of str, optional
        Layers to show: ``"raw"``, image names and label names (``"nuclei"`` or
        ``"labels/nuclei"``). Default: raw (when stored in the dataset) and every label
        layer.
    dataset_url : str, optional
        Full URL of the dataset itself; overrides ``base_url + NAME``.
    scheme : {"zarr", "zarr2"}
        Data source prefix: ``zarr`` (auto-detects the Zarr version; every neuroglancer
        version) or ``zarr2`` (explicit Zarr v2, recent versions).
    layout : str
        Neuroglancer layout (``"4panel"``, ``"xy"``, ``"xy-3d"``, ``"3d"``, ...).

    Returns
    -------
    dict
        JSON-ready state: ``dimensions`` (x, y, z in metres from the raw voxel size),
        ``position`` (volume centre, voxels), ``layers`` (raw as ``image``, labels as
        ``segmentation``), ``layout`` and ``selectedLayer``.

    Raises
    ------
    ConfigError
        ``base_url`` is not an http(s) URL, or ``scheme`` is unknown.
    LayerNotFoundError
        A requested layer does not exist or is not stored inside the dataset (raw in
        reference mode stays at its source and cannot be served from the dataset).
    """
    if scheme not in ("zarr", "zarr2"):
        raise ConfigError(f"scheme must be 'zarr' or 'zarr2', got {scheme!r}")
    target = dataset_url or base_url
    parsed = urllib.parse.urlparse(target)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"the URL must start with http:// or https:// and name a host, got {target!r} "
            "(e.g. http://localhost:8000/)"
        )
    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    root_url = (
        dataset_url.rstrip("/") + "/" if dataset_url else _join_url(base_url, ds.path.name) + "/"
    )
    names = ds.layer_names()
    stored_raw = (ds.path / "raw").is_dir()
    if layers is None:
        chosen = (["raw"] if stored_raw else []) + [n for n in names if n.startswith("labels/")]
        if not stored_raw and "raw" in names:
            logger.warning(
                "raw is referenced from %s, not stored in the dataset; it is left out of the "
                "neuroglancer state (serve it separately or convert with --copy)",
                ds.record.get("raw", {}).get("source"),
            )
    else:
        chosen = []
        for name in layers:
            key = name.strip("/")
            if key not in names and f"labels/{key}" in names:
                key = f"labels/{key}"
            if key not in names:
                raise LayerNotFoundError(
                    f"dataset {str(ds.path)!r} has no layer {name!r}; it has: {', '.join(names)}"
                )
            if key == "raw" and not stored_raw:
                raise LayerNotFoundError(
                    f"raw of {str(ds.path)!r} is a reference to its source, not stored in the "
                    "dataset, so it cannot be served from there; leave it out or copy it in"
                )
            chosen.append(key)
    reference = ds.layer("raw") if "raw" in names else ds.layer(chosen[0]) if chosen else None
    if reference is None:
        raise LayerNotFoundError(f"dataset {str(ds.path)!r} has no layers to show")
    vz, vy, vx = reference.voxel_size.as_tuple()
    shape = reference.spatial_shape
    state_layers: list[dict[str, Any]] = []
    for key in chosen:
        layer = ds.layer(key)
        source = f"{scheme}://{root_url}{'/'.join(urllib.parse.quote(p) for p in key.split('/'))}"
        if layer.kind == "labels":
            state_layers.append(
                {"type": "segmentation", "source": source, "name": key.split("/")[-1]}
            )
        else:
            state_layers.append({"type": "image", "source": source, "name": key})
    return {
        "dimensions": {
            "x": [vx * 1e-9, "m"],
            "y": [vy * 1e-9, "m"],
            "z": [vz * 1e-9, "m"],
        },
        "position": [shape[-1] / 2.0, shape[-2] / 2.0, shape[-3] / 2.0],
        "layers": state_layers,
        "layout": layout,
        "selectedLayer": {"layer": state_layers[0]["name"], "visible": True}
        if state_layers
        else {"visible": False},
    }


def neuroglancer_url(state: dict[str, Any], *, viewer: str = DEFAULT_VIEWER) -> str:
    """Return a viewer URL that opens ``state`` (the state JSON in the URL fragment)."""
    fragment = urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")
    return f"{viewer.rstrip('/')}/#!{fragment}"
