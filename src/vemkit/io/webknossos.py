"""webKnossos NML skeletons: one tree per point (e.g. one seed per nucleus).

An NML file is XML::

    <things>
      <meta name="writer" content="vemkit" />
      <parameters>
        <experiment name="DATASET" description="..." />
        <scale x="4.6" y="4.6" z="50.0" />          voxel size in nm, x y z
        <offset x="0" y="0" z="0" />
        <editPosition x=".." y=".." z=".." />
      </parameters>
      <thing id="1" name="nucleus 7" color.r=".." color.g=".." color.b=".." color.a="1">
        <nodes><node id="1" radius="500.0" x="12" y="40" z="3" /></nodes>
        <edges />
      </thing>
      <branchpoints /> <comments /> <groups />
    </things>

Node positions are integer voxel coordinates (x, y, z) of the dataset whose voxel size is
``scale`` (webKnossos stores node positions as integer vectors); node radii are in nm.
"""

from __future__ import annotations

import colorsys
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vemkit.errors import CorruptFileError, InvalidVolumeError, VolumeNotFoundError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output

__all__ = ["NmlSkeleton", "read_nml", "write_nml"]


@dataclass(frozen=True)
class NmlSkeleton:
    """The content of an NML file that vemkit reads back: one node per tree.

    Attributes
    ----------
    dataset_name : str
        ``<experiment name>``: the webKnossos dataset the annotation belongs to.
    voxel_size : VoxelSize
        ``<scale>`` in nm.
    ids : (N,) ndarray of int64
        Tree ids.
    names : list of str
        Tree names.
    points_vox : (N, 3) ndarray of float64
        Position of each tree's first node in voxels, z, y, x.
    radii_nm : (N,) ndarray of float64
        Node radius in nm (NaN where the file has none).
    comments : dict of int to str
        Node comments keyed by tree id.
    description : str
        ``<experiment description>``.
    """

    dataset_name: str
    voxel_size: VoxelSize
    ids: NDArray[np.int64]
    names: list[str]
    points_vox: NDArray[np.float64]
    radii_nm: NDArray[np.float64]
    comments: dict[int, str] = field(default_factory=dict)
    description: str = ""

    @property
    def points_nm(self) -> NDArray[np.float64]:
        """Node positions in nm, z, y, x (voxel coordinates times the voxel size)."""
        return self.points_vox * np.asarray(self.voxel_size.as_tuple())


def _tree_color(index: int) -> tuple[float, float, float]:
    """Distinct, reproducible colours: golden-ratio steps around the hue circle."""
    hue = (index * 0.618033988749895) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.75, 0.95)


def _fmt(value: float) -> str:
    return f"{float(value):.6g}"


def write_nml(
    path: str | os.PathLike[str],
    points_nm: ArrayLike,
    *,
    voxel_size: VoxelSize,
    ids: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    radii_nm: ArrayLike | None = None,
    dataset_name: str = "vemkit",
    comment: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write points as a webKnossos NML skeleton, one single-node tree per point.

    Parameters
    ----------
    path : path
        Output ``.nml`` file; written atomically.
    points_nm : (N, 3) array_like of float
        Point positions in nm, z, y, x (e.g. object centroids).
    voxel_size : VoxelSize
        Voxel size of the webKnossos dataset (or pyramid level) the nodes refer to. Nodes
        are written at ``round(points_nm / voxel_size)`` in x, y, z order and the voxel
        size goes to ``<scale>`` in nm.
    ids : sequence of int, optional
        Object id of each point (e.g. the label value); ``1..N`` by default. Used as tree
        id and in the default tree name, so ids must be unique positive integers.
    names : sequence of str, optional
        Tree names; ``"object {id}"`` by default.
    radii_nm : (N,) array_like of float, optional
        Node radius in nm (webKnossos draws the node at that size), e.g. the equivalent
        sphere radius of each object. Defaults to four times the largest voxel edge.
    dataset_name : str
        ``<experiment name>``: webKnossos opens the annotation with the dataset of this name.
    comment : str, optional
        Free text stored as the experiment description and as a comment on every node.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InvalidVolumeError
        ``points_nm`` is not (N, 3), is not finite, or ``ids``/``names``/``radii_nm``
        do not match it.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    points = np.asarray(points_nm, dtype=np.float64)
    if points.ndim == 1 and points.size == 0:
        points = points.reshape(0, 3)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InvalidVolumeError(
            f"points_nm must have shape (N, 3) with z, y, x in nm, got shape {points.shape}"
        )
    if not np.all(np.isfinite(points)):
        raise InvalidVolumeError("points_nm contains NaN or infinite coordinates")
    n = len(points)
    tree_ids = [int(i) for i in ids] if ids is not None else list(range(1, n + 1))
    if len(tree_ids) != n:
        raise InvalidVolumeError(f"got {len(tree_ids)} ids for {n} points")
    if any(i <= 0 for i in tree_ids) or len(set(tree_ids)) != n:
        raise InvalidVolumeError("ids must be unique positive integers (webKnossos tree ids)")
    tree_names = list(names) if names is not None else [f"object {i}" for i in tree_ids]
    if len(tree_names) != n:
        raise InvalidVolumeError(f"got {len(tree_names)} names for {n} points")
    if radii_nm is None:
        radii = np.full(n, 4.0 * max(voxel_size.as_tuple()))
    else:
        radii = np.broadcast_to(np.asarray(radii_nm, dtype=np.float64), (n,))
        if not np.all(np.isfinite(radii)) or np.any(radii < 0):
            raise InvalidVolumeError("radii_nm must be finite and non-negative")
    voxels = np.rint(points / np.asarray(voxel_size.as_tuple())).astype(np.int64)

    root = ET.Element("things")
    ET.SubElement(root, "meta", name="writer", content="vemkit")
    params = ET.SubElement(root, "parameters")
    ET.SubElement(params, "experiment", name=str(dataset_name), description=comment or "")
    ET.SubElement(
        params,
        "scale",
        x=_fmt(voxel_size.x),
        y=_fmt(voxel_size.y),
        z=_fmt(voxel_size.z),
    )
    ET.SubElement(params, "offset", x="0", y="0", z="0")
    if n:
        z0, y0, x0 = voxels[0]
        ET.SubElement(params, "editPosition", x=str(x0), y=str(y0), z=str(z0))
    comments = ET.Element("comments")
    for index, (tree_id, name, (z, y, x), radius) in enumerate(
        zip(tree_ids, tree_names, voxels, radii, strict=True)
    ):
        r, g, b = _tree_color(index)
        thing = ET.SubElement(
            root,
            "thing",
            {
                "id": str(tree_id),
                "name": str(name),
                "color.r": _fmt(r),
                "color.g": _fmt(g),
                "color.b": _fmt(b),
                "color.a": "1",
            },
        )
        nodes = ET.SubElement(thing, "nodes")
        node_id = index + 1
        ET.SubElement(
            nodes,
            "node",
            id=str(node_id),
            radius=_fmt(radius),
            x=str(x),
            y=str(y),
            z=str(z),
        )
        ET.SubElement(thing, "edges")
        if comment:
            ET.SubElement(comments, "comment", node=str(node_id), content=comment)
    ET.SubElement(root, "branchpoints")
    root.append(comments)
    ET.SubElement(root, "groups")
    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)

    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n", encoding="utf-8")
    return Path(path).expanduser().absolute()


def _float(element: ET.Element, key: str, path: Path) -> float:
    value = element.get(key)
    if value is None:
        raise CorruptFileError(f"{str(path)!r}: <{element.tag}> has no {key!r} attribute")
    try:
        return float(value)
    except ValueError:
        raise CorruptFileError(
            f"{str(path)!r}: <{element.tag}> attribute {key}={value!r} is not a number"
        ) from None


def read_nml(path: str | os.PathLike[str]) -> NmlSkeleton:
    """Read an NML skeleton: the first node of every tree, in voxels and nm.

    Parameters
    ----------
    path : path
        An ``.nml`` file (as written by :func:`write_nml` or exported by webKnossos).

    Returns
    -------
    NmlSkeleton
        Tree ids, names, first-node positions (z, y, x voxels), radii and the scale.

    Raises
    ------
    VolumeNotFoundError
        ``path`` does not exist.
    CorruptFileError
        The file is not well-formed XML or lacks ``<parameters><scale>``.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise VolumeNotFoundError(f"NML file {str(source)!r} does not exist")
    try:
        root = ET.parse(source).getroot()
    except ET.ParseError as exc:
        raise CorruptFileError(f"{str(source)!r} is not a valid NML (XML) file: {exc}") from None
    if root.tag != "things":
        raise CorruptFileError(f"{str(source)!r}: root element is <{root.tag}>, not <things>")
    scale = root.find("parameters/scale")
    if scale is None:
        raise CorruptFileError(f"{str(source)!r} has no <parameters><scale> (voxel size in nm)")
    voxel_size = VoxelSize(
        _float(scale, "z", source), _float(scale, "y", source), _float(scale, "x", source)
    )
    experiment = root.find("parameters/experiment")
    node_comments = {
        int(_float(c, "node", source)): c.get("content", "") for c in root.iter("comment")
    }
    ids: list[int] = []
    names: list[str] = []
    points: list[tuple[float, float, float]] = []
    radii: list[float] = []
    comments: dict[int, str] = {}
    for thing in root.iter("thing"):
        node = thing.find("nodes/node")
        if node is None:
            continue
        tree_id = int(_float(thing, "id", source))
        ids.append(tree_id)
        names.append(thing.get("name") or thing.get("comment") or "")
        points.append(
            (_float(node, "z", source), _float(node, "y", source), _float(node, "x", source))
        )
        radii.append(_float(node, "radius", source) if node.get("radius") else float("nan"))
        node_id = int(_float(node, "id", source))
        if node_id in node_comments:
            comments[tree_id] = node_comments[node_id]
    return NmlSkeleton(
        dataset_name=experiment.get("name", "") if experiment is not None else "",
        voxel_size=voxel_size,
        ids=np.asarray(ids, dtype=np.int64),
        names=names,
        points_vox=np.asarray(points, dtype=np.float64).reshape(-1, 3),
        radii_nm=np.asarray(radii, dtype=np.float64),
        comments=comments,
        description=experiment.get("description", "") if experiment is not None else "",
    )
