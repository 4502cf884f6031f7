"""Orthogonal slice views (xy, xz, yz) with label outlines, drawn at true physical aspect."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from vemkit.geometry import VoxelSize

__all__ = ["label_colors", "save_orthoslices"]

_PALETTE = ("#ff4d4d", "#33c3ff", "#ffd11a", "#7dff5c", "#ff66ff", "#ff9933")


def label_colors(names: Sequence[str]) -> dict[str, str]:
    """Give each label layer name a distinct colour, stable for a given order."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}


def _outline(labels: NDArray[np.integer]) -> NDArray[np.bool_]:
    """Voxels whose 4-neighbourhood holds another label (2D slice)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    return edge & (labels > 0)


def save_orthoslices(
    path: str | os.PathLike[str],
    raw: NDArray[np.generic],
    labels: Mapping[str, NDArray[np.integer]],
    *,
    voxel_size: VoxelSize,
    center: Sequence[int] | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> None:
    """Save a PNG with the xy, xz and yz planes through ``center`` and label outlines.

    Parameters
    ----------
    path : path
        Output PNG file.
    raw : (Z, Y, X) ndarray
        Intensity volume.
    labels : mapping of name to (Z, Y, X) ndarray of int
        Label volumes drawn as coloured outlines, one colour per name.
    voxel_size : VoxelSize
        Used to draw every plane at its physical aspect ratio.
    center : (z, y, x), optional
        Where the planes cross; the volume centre by default.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D

    if raw.ndim != 3:
        raise ValueError(f"raw must be a (z, y, x) volume, got shape {raw.shape}")
    cz, cy, cx = center if center is not None else tuple(s // 2 for s in raw.shape)
    vz, vy, vx = voxel_size.as_tuple()
    planes = [
        (f"xy (z = {cz})", np.s_[cz, :, :], vy / vx),
        (f"xz (y = {cy})", np.s_[:, cy, :], vz / vx),
        (f"yz (x = {cx})", np.s_[:, :, cx], vz / vy),
    ]
    lo, hi = np.percentile(raw, (0.5, 99.5))
    colors = label_colors(list(labels))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8), constrained_layout=True)
    for ax, (name, key, aspect) in zip(axes, planes, strict=True):
        plane = raw[key].astype(np.float32)
        rgb = np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1)[..., None].repeat(3, axis=-1)
        for label_name, volume in labels.items():
            edge = _outline(np.asarray(volume[key]))
            rgb[edge] = to_rgb(colors[label_name])
        ax.imshow(rgb, aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color=c, lw=3, label=n) for n, c in colors.items()]
    if handles:
        # below the planes: at the top a long title and a wide legend overlapped
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(os.fspath(path), dpi=dpi)
    plt.close(fig)
