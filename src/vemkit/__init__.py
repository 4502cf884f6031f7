"""vemkit: segment and measure organelles in large 3D volume EM."""

from vemkit.errors import VemkitError
from vemkit.geometry import Box, VoxelSize

__version__ = "0.1.0"

__all__ = ["Box", "VemkitError", "VoxelSize", "__version__"]
