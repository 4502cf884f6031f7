"""Losses that only count annotated voxels.

Every loss is an ``nn.Module`` called as ``loss(prediction, target, valid=None)``:

* ``prediction`` — ``(N, C, *spatial)`` raw network output (logits / raw values);
* ``target`` — ``(N, C, *spatial)`` float (class indices ``(N, *spatial)`` for
  :class:`CrossEntropyLoss`);
* ``valid`` — boolean, ``(N, *spatial)``, ``(N, 1, *spatial)`` or per channel
  ``(N, C, *spatial)``; voxels where it is false contribute nothing, and the gradient
  with respect to the prediction there is exactly zero.

Losses apply the activation they need (sigmoid, softmax, optional tanh) themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vemkit.errors import ConfigError, InvalidVolumeError

__all__ = [
    "BCEDiceLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "LossTerm",
    "RegressionLoss",
    "masked_mean",
]


def _expand_valid(valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Bring ``valid`` to the shape of ``like`` (N, C, *spatial) as a bool tensor."""
    if valid is None:
        return None
    mask = valid.to(device=like.device, dtype=torch.bool)
    if mask.ndim == like.ndim - 1:
        mask = mask.unsqueeze(1)
    if mask.ndim != like.ndim:
        raise InvalidVolumeError(
            f"valid mask of shape {tuple(valid.shape)} does not fit a prediction of shape "
            f"{tuple(like.shape)}"
        )
    try:
        return mask.expand_as(like)
    except RuntimeError:
        raise InvalidVolumeError(
            f"valid mask of shape {tuple(valid.shape)} does not fit a prediction of shape "
            f"{tuple(like.shape)}"
        ) from None


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over voxels where ``valid`` (same shape, bool) is true.

    Returns 0 (still connected to the graph, with zero gradient) when nothing is valid.
    """
    if valid is None:
        return values.mean()
    total = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return total.sum() / valid.sum().clamp(min=1).to(values.dtype)


def _check_shapes(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise InvalidVolumeError(
            f"prediction shape {tuple(prediction.shape)} and target shape "
            f"{tuple(target.shape)} differ"
        )


class BCEDiceLoss(nn.Module):
    """Binary cross-entropy plus soft Dice on sigmoid probabilities, per channel.

    Parameters
    ----------
    bce_weight, dice_weight : float
        Weights of the two terms.
    smooth : float
        Added to numerator and denominator of the Dice ratio (per channel).
    """

    def __init__(
        self, *, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0
    ) -> None:
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.smooth = smooth

    def forward(  # noqa: D102
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        _check_shapes(prediction, target)
        prediction = prediction.float()
        mask = _expand_valid(valid, prediction)
        zero = torch.zeros((), dtype=prediction.dtype, device=prediction.device)
        target = target.to(prediction.dtype)
        if mask is not None:
            target = torch.where(mask, target, zero)
        loss = zero
        if self.bce_weight:
            bce = F.binary_cross_entropy_with_logits(prediction, target, reduction="none")
            loss = loss + self.bce_weight * masked_mean(bce, mask)
        if self.dice_weight:
            probability = torch.sigmoid(prediction)
            if mask is not None:
                probability = torch.where(mask, probability, zero)
            dims = [0, *range(2, prediction.ndim)]
            intersection = (probability * target).sum(dims)
            denominator = probability.sum(dims) + target.sum(dims)
            dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
            loss = loss + self.dice_weight * (1 - dice).mean()
        return loss


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over class indices, averaged over valid voxels.

    Parameters
    ----------
    class_weights : sequence of float, optional
        Weight per class (multiplies each voxel's loss).

    Notes
    -----
    ``target`` holds class indices, ``(N, *spatial)`` or ``(N, 1, *spatial)``, any
    numeric dtype with integer values; ``valid`` is ``(N, *spatial)`` or
    ``(N, 1, *spatial)``.
    """

    def __init__(self, *, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = (
            None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(  # noqa: D102
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        prediction = prediction.float()
        if target.ndim == prediction.ndim:
            target = target[:, 0]
        if target.shape != prediction.shape[:1] + prediction.shape[2:]:
            raise InvalidVolumeError(
                f"class-index target of shape {tuple(target.shape)} does not fit prediction "
                f"{tuple(prediction.shape)}"
            )
        target = target.long()
        mask = None
        if valid is not None:
            mask = valid.to(device=prediction.device, dtype=torch.bool)
            if mask.ndim == prediction.ndim:
                mask = mask[:, 0]
            mask = mask.expand_as(target)
            target = torch.where(mask, target, torch.zeros_like(target))
        weight = self.class_weights
        assert weight is None or isinstance(weight, torch.Tensor)
        loss = F.cross_entropy(prediction, target, weight=weight, reduction="none")
        return masked_mean(loss, mask)


class RegressionLoss(nn.Module):
    """MSE, L1 or smooth-L1 regression (e.g. of normalised signed distances).

    Parameters
    ----------
    kind : {"mse", "l1", "smooth_l1"}
        Elementwise loss.
    beta : float
        Transition point of the smooth-L1 loss.
    activation : {"none", "tanh"}
        Applied to the prediction first; ``"tanh"`` suits targets in [-1, 1] such as
        ``signed_distance_target(..., normalize=True)``.
    """

    def __init__(
        self,
        *,
        kind: Literal["mse", "l1", "smooth_l1"] = "mse",
        beta: float = 1.0,
        activation: Literal["none", "tanh"] = "none",
    ) -> None:
        super().__init__()
        if kind not in ("mse", "l1", "smooth_l1"):
            raise ConfigError(f"regression loss kind must be mse, l1 or smooth_l1, got {kind!r}")
        if activation not in ("none", "tanh"):
            raise ConfigError(f"activation must be 'none' or 'tanh', got {activation!r}")
        self.kind = kind
        self.beta = beta
        self.activation = activation

    def forward(  # noqa: D102
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        _check_shapes(prediction, target)
        prediction = prediction.float()
        if self.activation == "tanh":
            prediction = torch.tanh(prediction)
        mask = _expand_valid(valid, prediction)
        target = target.to(prediction.dtype)
        if mask is not None:
            target = torch.where(mask, target, torch.zeros((), device=target.device))
        if self.kind == "mse":
            loss = F.mse_loss(prediction, target, reduction="none")
        elif self.kind == "l1":
            loss = F.l1_loss(prediction, target, reduction="none")
        else:
            loss = F.smooth_l1_loss(prediction, target, reduction="none", beta=self.beta)
        return masked_mean(loss, mask)


@dataclass(frozen=True)
class LossTerm:
    """One loss applied to some channels of a multi-channel prediction.

    Parameters
    ----------
    loss : nn.Module
        A loss of this module.
    channels : sequence of int
        Prediction channels the loss sees.
    target_channels : sequence of int, optional
        Target (and per-channel ``valid``) channels; defaults to ``channels``.
    weight : float
        Weight of this term in the sum.
    """

    loss: nn.Module
    channels: tuple[int, ...]
    target_channels: tuple[int, ...] | None = None
    weight: float = 1.0


class CombinedLoss(nn.Module):
    """Weighted sum of losses on channel groups.

    For example BCE-Dice on foreground and boundary channels plus smooth-L1 on a
    distance channel:

    Examples
    --------
    >>> loss = CombinedLoss([
    ...     LossTerm(BCEDiceLoss(), channels=(0, 1)),
    ...     LossTerm(RegressionLoss(kind="smooth_l1", activation="tanh"), channels=(2,)),
    ... ])
    >>> float(loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))) > 0
    True
    """

    def __init__(self, terms: Sequence[LossTerm]) -> None:
        super().__init__()
        if not terms:
            raise ConfigError("CombinedLoss needs at least one LossTerm")
        self.terms = tuple(terms)
        self.losses = nn.ModuleList(term.loss for term in self.terms)

    def forward(  # noqa: D102
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        total = torch.zeros((), device=prediction.device)
        per_channel_valid = (
            valid is not None and valid.ndim == prediction.ndim and valid.shape[1] > 1
        )
        for term, loss in zip(self.terms, self.losses, strict=True):
            target_channels = list(term.target_channels or term.channels)
            term_valid = valid
            if per_channel_valid:
                assert valid is not None
                term_valid = valid[:, target_channels]
            total = total + term.weight * loss(
                prediction[:, list(term.channels)], target[:, target_channels], term_valid
            )
        return total
