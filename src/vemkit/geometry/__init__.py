"""Boxes, voxel sizes and block grids: the geometry every layer shares."""

from vemkit.geometry.block_grid import BlockGrid
from vemkit.geometry.box import Box
from vemkit.geometry.voxel_size import VoxelSize

__all__ = ["BlockGrid", "Box", "VoxelSize"]
