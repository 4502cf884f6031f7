"""Instance segmentation on arrays: watersheds, components, Voronoi-Otsu, classical recipes.

Functions take NumPy arrays plus physical parameters (``voxel_size`` in nm, z, y, x;
sizes in nm / nm³) and return label images: unsigned integers, 0 = background, 1..N.
They know nothing about files, Dask or jobs; :mod:`vemkit.blockwise` lifts them to
volumes larger than memory.
"""

from vemkit.segmentation.components import (
    binary_closing_nm,
    binary_dilation_nm,
    binary_erosion_nm,
    binary_opening_nm,
    connected_components,
    ellipsoid_footprint,
    fill_holes,
    label_sizes,
    relabel_sequential,
    remove_small_objects,
)
from vemkit.segmentation.threshold import (
    otsu_threshold_mask,
    segment_mitochondria_classical,
    segment_nuclei_classical,
)
from vemkit.segmentation.voronoi_otsu import voronoi_otsu_labeling
from vemkit.segmentation.watershed import (
    boundary_watershed,
    distance_watershed,
    seeded_watershed,
)

__all__ = [
    "binary_closing_nm",
    "binary_dilation_nm",
    "binary_erosion_nm",
    "binary_opening_nm",
    "boundary_watershed",
    "connected_components",
    "distance_watershed",
    "ellipsoid_footprint",
    "fill_holes",
    "label_sizes",
    "otsu_threshold_mask",
    "relabel_sequential",
    "remove_small_objects",
    "seeded_watershed",
    "segment_mitochondria_classical",
    "segment_nuclei_classical",
    "voronoi_otsu_labeling",
]
