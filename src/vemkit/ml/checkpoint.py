"""Save and load models: safetensors weights plus a JSON file with config and model card.

A saved model is a folder::

    model.safetensors   the network weights (state dict)
    model.json          {"format": "vemkit-model", "format_version": 1,
                         "network": <UNetConfig.to_dict()>, "card": {...}}

Loading rebuilds the network from ``network`` explicitly with
:func:`~vemkit.ml.networks.build_network` and then loads the weights. The card is free
JSON for the user: task, target type, voxel size, normalisation, training data, metrics.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from vemkit.errors import ConfigError, CorruptFileError, ModelNotFoundError
from vemkit.ml.networks import UNetConfig, build_network

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "load_model",
    "load_weights",
    "read_model_info",
    "round_to_float16",
    "save_model",
    "write_model_card",
]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
FORMAT = "vemkit-model"
FORMAT_VERSION = 1


def _replace_atomically(path: Path, write: Any) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _model_json(config: UNetConfig, card: Mapping[str, Any]) -> str:
    """Render the text of ``model.json``: format, the network config and the card."""
    try:
        text = json.dumps(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "network": config.to_dict(),
                "card": dict(card),
            },
            indent=2,
            sort_keys=True,
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model card is not JSON-serialisable: {error}") from None
    return text + "\n"


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: UNetConfig,
    card: Mapping[str, Any] | None = None,
    *,
    weights_dtype: str = "float32",
) -> Path:
    """Write ``model``'s weights, the config that builds it and a model card to a folder.

    Parameters
    ----------
    path : path-like
        Folder to write (created if needed; existing model files are replaced).
    model : torch.nn.Module
        The network, on any device.
    config : UNetConfig
        The config ``model`` was built from.
    card : mapping, optional
        JSON-serialisable model card.
    weights_dtype : {"float32", "float16"}
        Precision of the stored floating-point tensors. ``"float16"`` halves the file;
        :func:`load_weights` casts back to the network's precision, so a loaded model
        computes with the float16-rounded values (see :func:`round_to_float16`).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    if weights_dtype not in _WEIGHT_DTYPES:
        raise ConfigError(f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}")
    if not isinstance(config, UNetConfig):
        raise ConfigError(f"save_model needs the UNetConfig of the model, got {config!r}")
    text = _model_json(config, card or {})
    dtype = _WEIGHT_DTYPES[weights_dtype]
    if dtype == torch.float16:
        _check_float16_range(model)
    tensors = {
        name: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
        for name, value in model.state_dict().items()
    }
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    # Bytes through Python's open(), not save_file: its file is private (0600), and a
    # facility's colleagues must be able to read a shared model.
    _replace_atomically(folder / WEIGHTS_FILE, lambda p: p.write_bytes(save(tensors)))
    _replace_atomically(folder / CONFIG_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    logger.debug("saved model to %s", folder)
    return folder


def read_model_info(path: str | os.PathLike[str]) -> tuple[UNetConfig, dict[str, Any]]:
    """Read the config and card of a saved model without loading weights."""
    folder = Path(path)
    info_path = folder / CONFIG_FILE
    if not info_path.is_file():
        raise ModelNotFoundError(
            f"no saved model at {str(folder)!r} (missing {CONFIG_FILE}); give the folder "
            "written by save_model or by training"
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(
            f"cannot read model description {str(info_path)!r}: {error}"
        ) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CorruptFileError(f"{str(info_path)!r} is not a vemkit model description")
    if info.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"model {str(folder)!r} has format version {info.get('format_version')!r}; this "
            f"vemkit reads version {FORMAT_VERSION}; upgrade vemkit"
        )
    config = UNetConfig.from_dict(info.get("network", {}))
    card = info.get("card") or {}
    return config, dict(card)


def write_model_card(path: str | os.PathLike[str], card: Mapping[str, Any]) -> None:
    """Replace the card of a saved model, atomically; its weights and network stay as they are."""
    folder = Path(path)
    config, _ = read_model_info(folder)
    text = _model_json(config, card)
    _replace_atomically(folder / CONFIG_FILE, lambda p: p.write_text(text, encoding="utf-8"))


_WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _check_float16_range(model: nn.Module) -> None:
    for name, value in model.state_dict().items():
        if value.is_floating_point() and value.numel() and value.abs().max() > _FLOAT16_MAX:
            raise ConfigError(
                f"{name} holds values beyond float16's range ({_FLOAT16_MAX:g}); "
                "store these weights as float32"
            )


@torch.no_grad()
def round_to_float16(model: nn.Module) -> nn.Module:
    """Round ``model``'s floating-point weights and buffers to float16 values, in place.

    The model keeps its dtype; it then computes exactly as a model saved with
    ``weights_dtype="float16"`` and loaded again, so metrics measured on it are the
    metrics of the stored weights.

    Raises
    ------
    ConfigError
        If a value lies beyond float16's range.
    """
    _check_float16_range(model)
    for value in model.state_dict().values():
        if value.is_floating_point():
            value.copy_(value.to(torch.float16))
    return model


def load_weights(
    path: str | os.PathLike[str], model: nn.Module, *, strict: bool = True
) -> nn.Module:
    """Load the weights saved at ``path`` into an existing ``model`` (same architecture)."""
    weights_path = Path(path) / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelNotFoundError(f"no model weights at {str(weights_path)!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        state = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError) as error:
        raise CorruptFileError(
            f"cannot read model weights {str(weights_path)!r}: {error}"
        ) from None
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise ConfigError(
            f"weights at {str(weights_path)!r} do not fit this network: {error}"
        ) from None
    return model


def load_model(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, UNetConfig, dict[str, Any]]:
    """Rebuild a saved model.

    Parameters
    ----------
    path : path-like
        Folder written by :func:`save_model`.
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    model : torch.nn.Module
        The network in eval mode on ``device``.
    config : UNetConfig
        The config it was built from.
    card : dict
        The model card.
    """
    config, card = read_model_info(path)
    # Seeded so that loading leaves the caller's global random state untouched.
    model = build_network(config, seed=0)
    model.to(device)
    load_weights(path, model)
    model.eval()
    return model, config, card
