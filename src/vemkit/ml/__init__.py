"""Deep learning on arrays: networks, targets, losses, sampling, training, prediction.

``vemkit.ml`` works on NumPy arrays and torch modules only; it never opens image files
(model checkpoints are the exception) and does not import the io, segmentation,
measure, synth or blockwise packages.
"""

from vemkit.ml.augment import Augmenter
from vemkit.ml.checkpoint import load_model, read_model_info, save_model
from vemkit.ml.losses import (
    BCEDiceLoss,
    CombinedLoss,
    CrossEntropyLoss,
    LossTerm,
    RegressionLoss,
    masked_mean,
)
from vemkit.ml.networks import (
    MissingDependencyError,
    UNet,
    UNetConfig,
    build_network,
    count_parameters,
    freeze_encoder,
    unfreeze,
)
from vemkit.ml.normalize import Normalization, fit_normalization, normalize
from vemkit.ml.predict import (
    context_stack,
    predict_array,
    predict_triaxis,
    resample_labels,
    resample_to_shape,
)
from vemkit.ml.sampling import Patch, PatchDataset, PatchSampler
from vemkit.ml.sparse import sparse_plane_mask
from vemkit.ml.targets import (
    Target,
    binary_target,
    boundary_target,
    foreground_boundary_target,
    semantic_target,
    signed_distance_target,
)
from vemkit.ml.train import EpochRecord, TrainingError, TrainResult, train

__all__ = [
    "Augmenter",
    "BCEDiceLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "EpochRecord",
    "LossTerm",
    "MissingDependencyError",
    "Normalization",
    "Patch",
    "PatchDataset",
    "PatchSampler",
    "RegressionLoss",
    "Target",
    "TrainResult",
    "TrainingError",
    "UNet",
    "UNetConfig",
    "binary_target",
    "boundary_target",
    "build_network",
    "context_stack",
    "count_parameters",
    "fit_normalization",
    "foreground_boundary_target",
    "freeze_encoder",
    "load_model",
    "masked_mean",
    "normalize",
    "predict_array",
    "predict_triaxis",
    "read_model_info",
    "resample_labels",
    "resample_to_shape",
    "save_model",
    "semantic_target",
    "signed_distance_target",
    "sparse_plane_mask",
    "train",
    "unfreeze",
]
