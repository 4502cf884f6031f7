"""Segmentation networks built explicitly from a config: 2D, 3D and anisotropic U-Nets.

The built-in :class:`UNet` is small and fast on a CPU. Optional MONAI backends
(``SegResNet``, ``SwinUNETR``) are available behind ``backend="monai"`` when MONAI is
installed (``pip install 'vemkit[monai]'``).

Networks output raw scores (logits or unbounded regression values); activations belong
to the losses (:mod:`vemkit.ml.losses`) and to prediction (``activation=`` of
:func:`vemkit.ml.predict.predict_array`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vemkit.errors import ConfigError, InvalidVolumeError, MissingDependencyError

__all__ = [
    "Ensemble",
    "MissingDependencyError",
    "UNet",
    "UNetConfig",
    "build_network",
    "count_parameters",
    "ensemble_members",
    "freeze_encoder",
    "unfreeze",
]

logger = logging.getLogger(__name__)

NormKind = Literal["group", "batch", "instance"]
MAX_ENSEMBLE = 16
Backend = Literal["vemkit", "monai"]
Architecture = Literal["unet", "segresnet", "swinunetr"]

_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "vemkit": ("unet",),
    "monai": ("segresnet", "swinunetr"),
}


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a network; stored next to the weights in checkpoints.

    Parameters
    ----------
    dims : {2, 3}
        Spatial dimensionality of the network (2D slices or 3D patches).
    in_channels, out_channels : int
        Input image channels and output channels (targets) of the network.
    depth : int
        Number of resolution levels (``depth - 1`` poolings by 2).
    base_channels : int
        Feature channels at the finest level.
    channel_growth : float
        Factor by which the number of channels grows per level.
    norm : {"group", "batch", "instance"} or None
        Normalisation after each convolution. Group and instance statistics are
        computed per patch, so predictions depend somewhat on the tiling: predict with
        windows at least as large as the training patches, and avoid tiny training
        patches. ``"batch"`` (running statistics at prediction) and ``None`` make
        predictions independent of the tiling but want batches of several patches.
    norm_groups : int
        Upper bound on the number of groups for group normalisation (the largest
        divisor of the channel count not above it is used).
    residual : bool
        Use residual convolution blocks.
    anisotropic_levels : int
        For anisotropic 3D data (z step several times the xy pixel): the number of
        finest levels that convolve (kernel ``(1, 3, 3)``) and pool (``(1, 2, 2)``) in
        yx only. Choose about ``round(log2(z_nm / xy_nm))``. Must be 0 for 2D.
    dropout : float
        Channel dropout probability after each block (0 disables it).
    backend : {"vemkit", "monai"}
        ``"vemkit"`` builds :class:`UNet`; ``"monai"`` builds a MONAI network.
    architecture : {"unet", "segresnet", "swinunetr"}
        ``"unet"`` for the vemkit backend; ``"segresnet"`` or ``"swinunetr"`` for MONAI.
    patch_shape : tuple of int or None
        Training patch shape; only needed by MONAI versions whose ``SwinUNETR``
        requires ``img_size``.
    ensemble : int
        Number of independently trained networks of this architecture in the model
        (1: a single network). More than one builds an :class:`Ensemble`, whose
        members' maps prediction averages.

    Notes
    -----
    The network has no final activation: it returns logits (or raw regression
    values). Losses and :func:`~vemkit.ml.predict.predict_array` apply activations.

    Examples
    --------
    >>> cfg = UNetConfig(dims=3, depth=4, anisotropic_levels=2)
    >>> cfg.shape_divisor()
    (2, 8, 8)
    >>> UNetConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    dims: Literal[2, 3] = 2
    in_channels: int = 1
    out_channels: int = 1
    depth: int = 4
    base_channels: int = 16
    channel_growth: float = 2.0
    norm: NormKind | None = "group"
    norm_groups: int = 8
    residual: bool = False
    anisotropic_levels: int = 0
    dropout: float = 0.0
    backend: Backend = "vemkit"
    architecture: Architecture = "unet"
    patch_shape: tuple[int, ...] | None = None
    ensemble: int = 1

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int = 1) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"UNetConfig.{name} must be an integer >= {minimum}, got {value!r}"
                )
            return value

        if self.dims not in (2, 3):
            raise ConfigError(f"UNetConfig.dims must be 2 or 3, got {self.dims!r}")
        positive_int("in_channels", self.in_channels)
        positive_int("out_channels", self.out_channels)
        positive_int("depth", self.depth)
        positive_int("base_channels", self.base_channels)
        positive_int("norm_groups", self.norm_groups)
        positive_int("anisotropic_levels", self.anisotropic_levels, minimum=0)
        positive_int("ensemble", self.ensemble)
        if self.ensemble > MAX_ENSEMBLE:
            raise ConfigError(
                f"UNetConfig.ensemble must be at most {MAX_ENSEMBLE}, got {self.ensemble}"
            )
        if self.depth > 8:
            raise ConfigError(f"UNetConfig.depth must be at most 8, got {self.depth}")
        if not (isinstance(self.channel_growth, int | float) and self.channel_growth >= 1.0):
            raise ConfigError(
                f"UNetConfig.channel_growth must be a number >= 1, got {self.channel_growth!r}"
            )
        if self.norm not in (*get_args(NormKind), None):
            raise ConfigError(
                f"UNetConfig.norm must be 'group', 'batch', 'instance' or None, got {self.norm!r}"
            )
        if not isinstance(self.residual, bool):
            raise ConfigError(f"UNetConfig.residual must be true or false, got {self.residual!r}")
        if not (isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.dims == 2 and self.anisotropic_levels:
            raise ConfigError(
                "UNetConfig.anisotropic_levels applies to 3D networks only; "
                f"got {self.anisotropic_levels} with dims=2"
            )
        if self.anisotropic_levels > self.depth - 1:
            raise ConfigError(
                f"UNetConfig.anisotropic_levels ({self.anisotropic_levels}) must not exceed "
                f"depth - 1 ({self.depth - 1}), the number of poolings"
            )
        if self.backend not in _ARCHITECTURES:
            raise ConfigError(
                f"UNetConfig.backend must be 'vemkit' or 'monai', got {self.backend!r}"
            )
        if self.architecture not in _ARCHITECTURES[self.backend]:
            raise ConfigError(
                f"architecture {self.architecture!r} is not available with backend "
                f"{self.backend!r}; choose one of {_ARCHITECTURES[self.backend]}"
            )
        if self.patch_shape is not None:
            shape = tuple(int(s) for s in self.patch_shape)
            if len(shape) != self.dims or any(s <= 0 for s in shape):
                raise ConfigError(
                    f"UNetConfig.patch_shape must be {self.dims} positive integers, "
                    f"got {self.patch_shape!r}"
                )
            object.__setattr__(self, "patch_shape", shape)
        object.__setattr__(self, "channel_growth", float(self.channel_growth))
        object.__setattr__(self, "dropout", float(self.dropout))

    def level_channels(self) -> tuple[int, ...]:
        """Return the number of feature channels at each level, finest first."""
        return tuple(
            round(self.base_channels * self.channel_growth**level) for level in range(self.depth)
        )

    def pool_factors(self) -> tuple[tuple[int, ...], ...]:
        """Pooling factor per spatial axis between consecutive levels, finest first."""
        factors: list[tuple[int, ...]] = []
        for level in range(self.depth - 1):
            if self.dims == 3 and level < self.anisotropic_levels:
                factors.append((1, 2, 2))
            else:
                factors.append((2,) * self.dims)
        return tuple(factors)

    def shape_divisor(self) -> tuple[int, ...]:
        """Patch sizes divisible by these numbers pass the network without padding."""
        divisor = [1] * self.dims
        for factor in self.pool_factors():
            divisor = [d * f for d, f in zip(divisor, factor, strict=True)]
        return tuple(divisor)

    def member(self) -> UNetConfig:
        """Return the config of one network of the ensemble (``ensemble=1``)."""
        return dataclasses.replace(self, ensemble=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary (round-trips through :meth:`from_dict`)."""
        data = dataclasses.asdict(self)
        if data["patch_shape"] is not None:
            data["patch_shape"] = list(data["patch_shape"])
        if data["ensemble"] == 1:
            # A single network is described exactly as before ensembles existed, so its
            # model.json stays readable by older vemkit versions.
            del data["ensemble"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UNetConfig:
        """Rebuild a config from :meth:`to_dict` output, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown network config keys {unknown}; known keys are {sorted(known)}"
            )
        values = dict(data)
        if values.get("patch_shape") is not None:
            values["patch_shape"] = tuple(values["patch_shape"])
        return cls(**values)


def _norm_layer(kind: NormKind | None, dims: int, channels: int, groups: int) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, groups), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)
    return (
        nn.InstanceNorm2d(channels, affine=True)
        if dims == 2
        else nn.InstanceNorm3d(channels, affine=True)
    )


def _conv(dims: int, cin: int, cout: int, kernel: Sequence[int], *, bias: bool) -> nn.Module:
    # torch's stubs want fixed-length tuples; lengths match ``dims`` by construction.
    size: Any = tuple(kernel)
    padding: Any = tuple(k // 2 for k in kernel)
    conv_cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv_cls(cin, cout, size, padding=padding, bias=bias)


class ConvBlock(nn.Module):
    """Two convolutions with normalisation and ReLU, optionally residual."""

    def __init__(
        self,
        dims: int,
        cin: int,
        cout: int,
        *,
        kernel: Sequence[int],
        norm: NormKind | None,
        norm_groups: int,
        residual: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        bias = norm is None
        self.conv1 = _conv(dims, cin, cout, kernel, bias=bias)
        self.norm1 = _norm_layer(norm, dims, cout, norm_groups)
        self.conv2 = _conv(dims, cout, cout, kernel, bias=bias)
        self.norm2 = _norm_layer(norm, dims, cout, norm_groups)
        self.act = nn.ReLU(inplace=True)
        self.residual = residual
        self.skip: nn.Module = (
            _conv(dims, cin, cout, (1,) * dims, bias=False)
            if residual and cin != cout
            else nn.Identity()
        )
        drop_cls = nn.Dropout2d if dims == 2 else nn.Dropout3d
        self.drop: nn.Module = drop_cls(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.residual:
            y = y + self.skip(x)
        return self.drop(self.act(y))


class DecoderLevel(nn.Module):
    """Upsample (transposed convolution), concatenate the skip, convolve."""

    def __init__(
        self,
        dims: int,
        cin: int,
        cout: int,
        *,
        factor: Sequence[int],
        block: ConvBlock,
    ) -> None:
        super().__init__()
        up_cls = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        size: Any = tuple(factor)
        self.up = up_cls(cin, cout, kernel_size=size, stride=size)
        self.block = block

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """A 2D or (anisotropic) 3D U-Net; build it with :func:`build_network`.

    Input ``(N, in_channels, *spatial)`` float; output ``(N, out_channels, *spatial)``
    raw scores. Spatial sizes that are not multiples of
    :meth:`UNetConfig.shape_divisor` are padded (edge values) and cropped back.

    Attributes
    ----------
    encoder : nn.ModuleList
        One :class:`ConvBlock` per level, the last one is the bottleneck.
    decoder : nn.ModuleList
        One :class:`DecoderLevel` per level above the bottleneck, coarsest first.
    head : nn.Module
        Final 1×1 convolution to ``out_channels``.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder_frozen = False
        dims = config.dims
        channels = config.level_channels()
        factors = config.pool_factors()
        kernels = [
            (1, 3, 3) if dims == 3 and level < config.anisotropic_levels else (3,) * dims
            for level in range(config.depth)
        ]

        def block(cin: int, cout: int, level: int) -> ConvBlock:
            return ConvBlock(
                dims,
                cin,
                cout,
                kernel=kernels[level],
                norm=config.norm,
                norm_groups=config.norm_groups,
                residual=config.residual,
                dropout=config.dropout,
            )

        self.encoder = nn.ModuleList()
        previous = config.in_channels
        for level, c in enumerate(channels):
            self.encoder.append(block(previous, c, level))
            previous = c
        pool_cls = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        self.pools = nn.ModuleList(pool_cls(f, stride=f) for f in factors)
        self.decoder = nn.ModuleList(
            DecoderLevel(
                dims,
                channels[level + 1],
                channels[level],
                factor=factors[level],
                block=block(2 * channels[level], channels[level], level),
            )
            for level in reversed(range(config.depth - 1))
        )
        self.head = _conv(dims, channels[0], config.out_channels, (1,) * dims, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on ``(N, C, *spatial)``; see the class docstring."""
        dims = self.config.dims
        if x.ndim != dims + 2 or x.shape[1] != self.config.in_channels:
            raise InvalidVolumeError(
                f"this {dims}D network expects input (N, {self.config.in_channels}, "
                f"{', '.join('ZYX'[-dims:])}), got shape {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        divisor = self.config.shape_divisor()
        padded = tuple(math.ceil(s / d) * d for s, d in zip(spatial, divisor, strict=True))
        if padded != spatial:
            pad: list[int] = []
            for s, p in zip(reversed(spatial), reversed(padded), strict=True):
                pad += [0, p - s]
            x = F.pad(x, pad, mode="replicate")
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < len(self.pools):
                skips.append(x)
                x = self.pools[level](x)
        for decoder_level, skip in zip(self.decoder, reversed(skips), strict=True):
            x = decoder_level(x, skip)
        x = self.head(x)
        if padded != spatial:
            x = x[(slice(None), slice(None), *(slice(0, s) for s in spatial))]
        return x

    def train(self, mode: bool = True) -> UNet:
        """Set training mode; a frozen encoder stays in eval mode (fixed norm statistics)."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self


class Ensemble(nn.Module):
    """Several networks of one architecture, trained independently, used as one model.

    Averaging the maps of networks trained with different seeds is the cheapest
    measured accuracy gain for few labelled sections (BENCHMARKS.md, mito-em: +0.014
    foreground IoU and +0.038 object F1 over the members' mean), at the members' cost
    in prediction. :func:`~vemkit.ml.predict.predict_array` applies the activation to
    each member's output and averages the maps; :meth:`forward` averages raw outputs.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        Networks built from ``config.member()``.
    config : UNetConfig
        The ensemble's config (``ensemble == len(members)``).

    Attributes
    ----------
    members : nn.ModuleList
        The networks; their weights are stored under ``members.<i>.`` in the state dict.
    """

    def __init__(self, members: Sequence[nn.Module], config: UNetConfig) -> None:
        super().__init__()
        if len(members) != config.ensemble:
            raise ConfigError(
                f"an ensemble of {config.ensemble} networks needs {config.ensemble} members, "
                f"got {len(members)}"
            )
        self.members = nn.ModuleList(members)
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average the members' raw outputs for ``(N, C, *spatial)``."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def ensemble_members(model: nn.Module) -> list[nn.Module]:
    """Return the networks of an :class:`Ensemble`, or ``[model]`` for a single network."""
    if isinstance(model, Ensemble):
        return list(model.members)
    return [model]


def _build_monai(config: UNetConfig) -> nn.Module:
    try:
        from monai.networks import nets
    except ImportError as error:
        raise MissingDependencyError(
            f"the {config.architecture!r} network needs MONAI, which is not installed; "
            "install it with: pip install 'vemkit[monai]'"
        ) from error
    if config.anisotropic_levels:
        raise ConfigError("anisotropic_levels is supported by the vemkit U-Net only")
    if config.architecture == "segresnet":
        blocks_down = (1, 2, 2, 4, 4, 4, 4, 4)[: config.depth]
        return nets.SegResNet(
            spatial_dims=config.dims,
            init_filters=config.base_channels,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            dropout_prob=config.dropout or None,
            blocks_down=blocks_down,
            blocks_up=(1,) * (config.depth - 1),
        )
    import inspect

    kwargs: dict[str, Any] = {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "feature_size": config.base_channels,
        "spatial_dims": config.dims,
        "drop_rate": config.dropout,
    }
    if "img_size" in inspect.signature(nets.SwinUNETR).parameters:
        if config.patch_shape is None:
            raise ConfigError(
                "this MONAI version's SwinUNETR needs the patch shape; set UNetConfig.patch_shape"
            )
        kwargs["img_size"] = config.patch_shape
    return nets.SwinUNETR(**kwargs)


def build_network(config: UNetConfig, *, seed: int | None = None) -> nn.Module:
    """Build the network described by ``config``.

    Parameters
    ----------
    config : UNetConfig
        The network description (saved in checkpoints to rebuild it).
    seed : int, optional
        Seed for the weight initialisation; the global torch random state is left
        untouched. ``None`` draws from the current global state.

    Returns
    -------
    torch.nn.Module
        A network on the CPU in training mode. Input ``(N, in_channels, *spatial)``,
        output ``(N, out_channels, *spatial)`` raw scores. An :class:`Ensemble` when
        ``config.ensemble > 1`` (member ``i`` initialised with ``seed + i``).

    Raises
    ------
    MissingDependencyError
        ``config.backend == "monai"`` and MONAI is not installed.

    Examples
    --------
    >>> net = build_network(UNetConfig(dims=2, depth=2, base_channels=4), seed=0)
    >>> net(torch.zeros(1, 1, 16, 16)).shape
    torch.Size([1, 1, 16, 16])
    """
    if not isinstance(config, UNetConfig):
        raise ConfigError(f"build_network needs a UNetConfig, got {type(config).__name__}")
    if config.ensemble > 1:
        member = config.member()
        members = [
            build_network(member, seed=None if seed is None else seed + index)
            for index in range(config.ensemble)
        ]
        return Ensemble(members, config)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        network = UNet(config) if config.backend == "vemkit" else _build_monai(config)
    logger.debug("built %s with %d parameters", config, count_parameters(network))
    return network


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Count the (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _encoder_of(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(
            f"{type(model).__name__} has no 'encoder' submodule; freezing the encoder is "
            "supported for vemkit U-Nets (build_network with backend='vemkit')"
        )
    return encoder


def freeze_encoder(model: nn.Module) -> int:
    """Freeze the encoder of a U-Net for decoder-only fine-tuning (transfer learning).

    Encoder parameters stop receiving gradients, and the encoder stays in eval mode so
    its normalisation statistics and dropout are fixed too. Build the optimizer from
    ``[p for p in model.parameters() if p.requires_grad]`` afterwards.

    Returns
    -------
    int
        Number of parameters frozen (over all members of an :class:`Ensemble`).
    """
    frozen = 0
    for member in ensemble_members(model):
        encoder = _encoder_of(member)
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
            frozen += parameter.numel()
        if isinstance(member, UNet):
            member.encoder_frozen = True
        encoder.eval()
    return frozen


def unfreeze(model: nn.Module) -> None:
    """Undo :func:`freeze_encoder`: every parameter trains again."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    for member in ensemble_members(model):
        if isinstance(member, UNet):
            member.encoder_frozen = False
            member.train(member.training)
