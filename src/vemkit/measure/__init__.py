"""Measurements on label arrays: evaluation metrics (and, later, morphometrics).

Pure functions on NumPy arrays plus physical parameters (voxel size in nm); this
package never imports ``vemkit.io``, ``ml``, ``segmentation``, ``synth`` or
``blockwise``.
"""

from vemkit.measure.hausdorff import hausdorff_distances, surface_distances
from vemkit.measure.matching import (
    DEFAULT_THRESHOLDS,
    InstanceScores,
    OverlapTable,
    ThresholdScores,
    match_instances,
    overlap_table,
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

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Averages",
    "ClassScores",
    "InstanceScores",
    "OverlapTable",
    "SemanticScores",
    "ThresholdScores",
    "adapted_rand_error",
    "evaluate",
    "hausdorff_distances",
    "match_instances",
    "overlap_table",
    "semantic_scores",
    "surface_distances",
    "variation_of_information",
]
