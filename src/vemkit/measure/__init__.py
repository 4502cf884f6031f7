"""Measurements on label arrays: morphometrics, distances, statistics, meshes, metrics.

Pure functions on NumPy arrays plus physical parameters (voxel size in nm); this
package never imports ``vemkit.io``, ``ml``, ``segmentation``, ``synth`` or
``blockwise``.
"""

from vemkit.measure.composition import composition_by_region, volume_fractions
from vemkit.measure.density import kernel_density
from vemkit.measure.distances import (
    gap_distance_map,
    object_to_mask_distances,
    point_to_mask_distances,
)
from vemkit.measure.hausdorff import hausdorff_distances, surface_distances
from vemkit.measure.matching import (
    DEFAULT_THRESHOLDS,
    InstanceScores,
    OverlapTable,
    ThresholdScores,
    match_instances,
    overlap_table,
)
from vemkit.measure.meshes import (
    Mesh,
    mask_smoothing_sigma_vox,
    mesh_objects,
    read_neuroglancer_fragment,
    write_neuroglancer_precomputed,
    write_obj,
    write_ply,
    write_stl,
)
from vemkit.measure.metrics import (
    Averages,
    ClassScores,
    SemanticScores,
    adapted_rand_error,
    evaluate,
    semantic_scores,
    variation_of_information,
)
from vemkit.measure.morphology import measure_regions, principal_axis_lengths
from vemkit.measure.neighbours import knn_distances, knn_mean_distances
from vemkit.measure.spatial import clark_evans_expectation, spatial_distribution
from vemkit.measure.statistics import (
    compare_groups,
    conover_posthoc,
    correlate,
    holm_correction,
)
from vemkit.measure.uncertainty import (
    bootstrap_class_scores,
    bootstrap_scores,
    default_blocks,
    paired_difference,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Averages",
    "ClassScores",
    "InstanceScores",
    "Mesh",
    "OverlapTable",
    "SemanticScores",
    "ThresholdScores",
    "adapted_rand_error",
    "bootstrap_class_scores",
    "bootstrap_scores",
    "clark_evans_expectation",
    "compare_groups",
    "composition_by_region",
    "conover_posthoc",
    "correlate",
    "default_blocks",
    "evaluate",
    "gap_distance_map",
    "hausdorff_distances",
    "holm_correction",
    "kernel_density",
    "knn_distances",
    "knn_mean_distances",
    "mask_smoothing_sigma_vox",
    "match_instances",
    "measure_regions",
    "mesh_objects",
    "object_to_mask_distances",
    "overlap_table",
    "paired_difference",
    "point_to_mask_distances",
    "principal_axis_lengths",
    "read_neuroglancer_fragment",
    "semantic_scores",
    "spatial_distribution",
    "surface_distances",
    "variation_of_information",
    "volume_fractions",
    "write_neuroglancer_precomputed",
    "write_obj",
    "write_ply",
    "write_stl",
]
