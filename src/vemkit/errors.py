"""Errors a user can fix.

Every error raised because of bad input derives from :class:`VemkitError` *and*
from the matching builtin, so callers may catch either. The message always says
what was wrong and what to do; the CLI prints it as one line and exits with 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptFileError",
    "InvalidVolumeError",
    "LayerNotFoundError",
    "MemoryBudgetError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "OutputExistsError",
    "OutputNotWritableError",
    "ReadOnlyLayerError",
    "TrainingError",
    "UnknownFormatError",
    "VemkitError",
    "VolumeNotFoundError",
    "VoxelSizeError",
]


class VemkitError(Exception):
    """Base class of all errors caused by input the user can correct."""


class VolumeNotFoundError(VemkitError, FileNotFoundError):
    """An input path (volume, dataset, layer file) does not exist."""


class UnknownFormatError(VemkitError, ValueError):
    """A path exists but no reader recognises its format."""


class CorruptFileError(VemkitError, OSError):
    """A file has a known format but cannot be read (truncated, damaged)."""


class InvalidVolumeError(VemkitError, ValueError):
    """Data has the wrong dimensionality, is empty, or contains only NaN."""


class VoxelSizeError(VemkitError, ValueError):
    """A voxel size is missing, malformed, non-positive or has the wrong length."""


class OutputExistsError(VemkitError, FileExistsError):
    """An output path already exists and overwriting was not requested."""


class OutputNotWritableError(VemkitError, PermissionError):
    """An output location cannot be written (permissions, missing parent, read-only)."""


class ReadOnlyLayerError(VemkitError, PermissionError):
    """A write was attempted on a layer opened read-only (inputs are never modified)."""


class LayerNotFoundError(VemkitError, LookupError):
    """A dataset has no layer of the requested name."""


class ModelNotFoundError(VemkitError, LookupError):
    """No shipped or saved model of the requested name exists."""


class ConfigError(VemkitError, ValueError):
    """A configuration file or option is invalid."""


class MissingDependencyError(VemkitError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


class TrainingError(VemkitError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


class MemoryBudgetError(VemkitError, MemoryError):
    """An in-memory step would need more memory than the configured budget."""
