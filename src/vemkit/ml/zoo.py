"""Shipped pretrained models: find them by name inside the package.

Each shipped model is a folder ``vemkit/ml/zoo/<name>/`` in the
:mod:`vemkit.ml.checkpoint` format (``model.safetensors`` + ``model.json`` with the
model card). Models are trained by the project's recipes (``recipes/*.yaml``) and are
never downloaded at run time.

Examples
--------
>>> "mito-em" in list_models()  # doctest: +SKIP
True
>>> model, config, card = load_zoo_model("mito-em")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vemkit.errors import ModelNotFoundError
from vemkit.ml.checkpoint import CONFIG_FILE, load_model, read_model_info
from vemkit.ml.networks import UNetConfig

__all__ = ["list_models", "load_zoo_model", "read_zoo_info", "resolve_model", "zoo_folder"]

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def zoo_folder() -> Path:
    """Return the folder that holds the shipped model folders."""
    folder = importlib.resources.files("vemkit.ml") / "zoo"
    # The package is installed as plain files (wheel or editable), never zipped, so the
    # traversable is a real folder.
    return Path(str(folder))


def list_models() -> list[str]:
    """Names of the shipped models, sorted."""
    folder = zoo_folder()
    if not folder.is_dir():
        return []
    return sorted(
        child.name
        for child in folder.iterdir()
        if child.is_dir() and (child / CONFIG_FILE).is_file() and _MODEL_NAME.match(child.name)
    )


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Find the folder of a shipped model name or of a saved model path.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped model name (``"mito-em"``) or a folder written by ``vemkit train`` /
        :func:`~vemkit.ml.checkpoint.save_model`. A training output folder (with a
        ``model/`` subfolder) is accepted too.

    Raises
    ------
    ModelNotFoundError
        Neither a shipped model nor a model folder; the message lists the shipped ones.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    if _MODEL_NAME.match(text):
        shipped = zoo_folder() / text
        if (shipped / CONFIG_FILE).is_file():
            return shipped
    available = ", ".join(list_models()) or "none"
    raise ModelNotFoundError(
        f"no model {text!r}: it is neither a shipped model nor a model folder (with "
        f"{CONFIG_FILE}); shipped models: {available} (see `vemkit models list`)"
    )


def read_zoo_info(name_or_path: str | os.PathLike[str]) -> tuple[UNetConfig, dict[str, Any]]:
    """Read the network config and model card of a shipped or saved model (no weights)."""
    return read_model_info(resolve_model(name_or_path))


def load_zoo_model(
    name_or_path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, UNetConfig, dict[str, Any]]:
    """Load a shipped model by name, or a saved model folder, in eval mode on ``device``."""
    return load_model(resolve_model(name_or_path), device=device)
