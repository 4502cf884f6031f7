"""Numeric precision of network passes: float32, or autocast to bfloat16 / float16.

``precision="auto"`` keeps what vemkit always did: float16 autocast (with gradient
scaling in training) on CUDA, float32 on the CPU, so a model card's metrics are
reproduced exactly on the CPU. ``"bfloat16"`` autocasts convolutions to bfloat16 on any
device. On CPUs with native bfloat16 instructions (x86 AVX512-BF16 or AMX: recent Xeon,
AMD Zen 4 and later) it about halves training and prediction time with oneDNN
(BENCHMARKS.md); elsewhere PyTorch emulates it and it is slower than float32, so
vemkit warns. bfloat16 keeps float32's exponent range, so training needs no gradient
scaling. ``"float32"`` never autocasts (also on CUDA).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from vemkit.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "Autocast",
    "Precision",
    "cpu_bfloat16_native",
    "faster_precision_hint",
    "resolve_precision",
]

log = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def cpu_bfloat16_native() -> bool | None:
    """Tell whether this CPU computes bfloat16 in hardware.

    Returns
    -------
    bool or None
        ``True`` on x86 CPUs with AVX512-BF16 or AMX tiles, ``False`` on other x86 CPUs,
        ``None`` where PyTorch cannot tell (e.g. ARM).
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return None
    checks = [
        getattr(torch.cpu, name, None)
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    available = [check for check in checks if check is not None]
    if not available:
        return None
    return any(bool(check()) for check in available)


@dataclass(frozen=True)
class Autocast:
    """How network passes run on one device (see :func:`resolve_precision`).

    Attributes
    ----------
    device_type : str
        ``"cpu"`` or ``"cuda"``.
    dtype : torch.dtype or None
        The autocast type; ``None`` for float32 (no autocast).
    """

    device_type: str
    dtype: torch.dtype | None

    @property
    def scales_gradients(self) -> bool:
        """Whether training needs gradient scaling (float16 only)."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        """The precision in words: ``"float32"``, ``"bfloat16"`` or ``"float16"``."""
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        """Run the enclosed network passes in this precision."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield


def resolve_precision(precision: str, device: str | torch.device) -> Autocast:
    """Choose the autocast for ``precision`` on ``device``.

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"``: float16 on CUDA, float32 elsewhere.
    device : str or torch.device
        Where the network runs.

    Returns
    -------
    Autocast

    Raises
    ------
    ConfigError
        An unknown precision, or bfloat16 on a CUDA device without it.

    Examples
    --------
    >>> resolve_precision("auto", "cpu").name
    'float32'
    >>> resolve_precision("auto", "cuda").name
    'float16'
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    device = torch.device(device)
    if precision == "float32" or (precision == "auto" and device.type != "cuda"):
        return Autocast(device.type, None)
    if precision == "auto":
        return Autocast(device.type, torch.float16)
    if device.type == "cuda":
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"{device} does not support bfloat16; use precision auto")
    elif device.type == "cpu" and cpu_bfloat16_native() is False:
        _warn_emulated_bfloat16()
    return Autocast(device.type, torch.bfloat16)


@functools.cache
def _warn_emulated_bfloat16() -> None:
    """Warn once per process (blockwise and tri-axis prediction resolve once per call)."""
    log.warning(
        "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX); PyTorch emulates "
        "bfloat16 and it will be slower than float32 (precision float32 or auto)"
    )


def faster_precision_hint(precision: str, device: str | torch.device) -> str | None:
    """Suggest bfloat16 where float32 runs on a CPU that computes bfloat16 natively.

    Returns
    -------
    str or None
        One sentence for the log, or ``None`` when there is nothing to suggest.
    """
    if precision != "auto" or torch.device(device).type != "cpu" or not cpu_bfloat16_native():
        return None
    return (
        "this CPU computes bfloat16 natively: --precision bfloat16 predicts about 1.5-2x "
        "faster with the same held-out scores on the shipped models (BENCHMARKS.md)"
    )
