"""The training loop, and nothing else: model, data, loss and optimizer are injected.

:func:`train` runs epochs of optimisation and validation, keeps the best and the last
checkpoint (:mod:`vemkit.ml.checkpoint` format plus the optimizer state in
``trainer.pt``), stops early when asked, resumes from a checkpoint, and reports
progress. Runs are reproducible: each epoch reseeds torch's random state from
``(seed, epoch)`` inside a forked random state (the caller's global state is restored
afterwards), and datasets with a ``set_epoch(epoch)`` method (such as
:class:`~vemkit.ml.sampling.PatchDataset`) get the epoch number, so a resumed run
continues exactly like an uninterrupted one.

Batches are ``(image, target)``, ``(image, target, valid)`` or a mapping with keys
``"image"``, ``"target"`` and optionally ``"valid"``; the loss is called as
``loss_fn(prediction, target, valid)`` (``valid`` may be ``None``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vemkit.errors import ConfigError, ModelNotFoundError, TrainingError
from vemkit.ml.checkpoint import CONFIG_FILE, load_weights, read_model_info, save_model
from vemkit.ml.networks import UNetConfig
from vemkit.ml.precision import Autocast, Precision, resolve_precision
from vemkit.progress import NullProgress, Progress

__all__ = ["TRAINER_STATE_FILE", "EpochRecord", "TrainResult", "TrainingError", "train"]

logger = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer.pt"

MetricFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], float | torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class EpochRecord:
    """What happened in one epoch (epochs are numbered from 1)."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_metric: float | None
    seconds: float
    learning_rate: float


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    history : tuple of EpochRecord
        Every epoch so far, including those before a resume.
    best_epoch : int
        Epoch of the best checkpoint.
    best_value : float
        Monitored value at ``best_epoch``.
    monitor : str
        ``"val_metric"`` (higher is better), ``"val_loss"`` or ``"train_loss"`` (lower).
    best_checkpoint, last_checkpoint : pathlib.Path
        Model folders, loadable with :func:`vemkit.ml.checkpoint.load_model`.
    stopped_early : bool
        Whether early stopping ended the run.
    stopped_by_time : bool
        Whether the ``max_seconds`` budget ended the run before ``epochs``.
    precision : str
        What the passes ran in: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """

    history: tuple[EpochRecord, ...]
    best_epoch: int
    best_value: float
    monitor: str
    best_checkpoint: Path
    last_checkpoint: Path
    stopped_early: bool
    stopped_by_time: bool = False
    precision: str = "float32"


def _unpack(
    batch: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, Mapping):
        image, target, valid = batch["image"], batch["target"], batch.get("valid")
    elif isinstance(batch, Sequence) and len(batch) in (2, 3):
        image, target = batch[0], batch[1]
        valid = batch[2] if len(batch) == 3 else None
    else:
        raise ConfigError(
            "each batch must be (image, target), (image, target, valid) or a mapping with "
            f"'image', 'target' and optionally 'valid'; got {type(batch).__name__}"
        )
    non_blocking = device.type == "cuda"
    image = image.to(device, non_blocking=non_blocking)
    target = target.to(device, non_blocking=non_blocking)
    if valid is not None:
        valid = valid.to(device, non_blocking=non_blocking)
    return image, target, valid


def _set_epoch(loader: Any, epoch: int) -> None:
    for part in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        set_epoch = getattr(part, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _format_seconds(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _eta(run_start: float, *, done: int, left: int) -> str:
    """Time left for ``left`` epochs at the mean pace of the ``done`` epochs since ``run_start``."""
    if not done:
        return "?"
    return _format_seconds((time.perf_counter() - run_start) / done * left)


def _loader_length(loader: Iterable[Any]) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 0


def _save_trainer_state(folder: Path, state: dict[str, Any]) -> None:
    path = folder / TRAINER_STATE_FILE
    temporary = folder / f".{TRAINER_STATE_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _resolve_resume(resume_from: str | os.PathLike[str]) -> Path:
    folder = Path(resume_from)
    if (folder / "last" / CONFIG_FILE).is_file():
        folder = folder / "last"
    if not (folder / TRAINER_STATE_FILE).is_file():
        raise ModelNotFoundError(
            f"cannot resume from {str(resume_from)!r}: no {TRAINER_STATE_FILE} there; give the "
            "checkpoint folder of an earlier train() call (or its 'last' subfolder)"
        )
    return folder


def _nonfinite_gradient(model: nn.Module) -> str | None:
    """Return the name of the first parameter whose gradient is not finite, if any."""
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all()):
            return name
    return None


def _gradient_message(name: str, epoch: int, precision: str) -> str:
    message = f"the gradient of {name} became NaN or infinite in epoch {epoch}"
    if precision == "bfloat16":
        # Measured with PyTorch 2.13 (BENCHMARKS.md): oneDNN's bfloat16 Conv3d weight
        # gradient is often NaN from finite inputs when z is 2 voxels deep (3-wide kernel).
        return (
            f"{message} in bfloat16 (the loss was finite): PyTorch's CPU bfloat16 3D "
            "convolutions give NaN weight gradients where z is 2 voxels deep; train with "
            "precision float32 (--resume --precision float32 goes on from the last epoch)"
        )
    return (
        f"{message} (the loss was finite); lower the learning rate, check the targets and the "
        "normalisation"
    )


def _evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: LossFn,
    *,
    metric_fn: MetricFn | None,
    device: torch.device,
    autocast: Autocast,
) -> tuple[float, float | None]:
    model.eval()
    loss_sum, metric_sum, count = 0.0, 0.0, 0
    with torch.inference_mode():
        for batch in loader:
            image, target, valid = _unpack(batch, device)
            with autocast():
                prediction = model(image)
            prediction = prediction.float()
            n = int(image.shape[0])
            loss_sum += float(loss_fn(prediction, target, valid)) * n
            if metric_fn is not None:
                metric_sum += float(metric_fn(prediction, target, valid)) * n
            count += n
    if count == 0:
        raise ConfigError("the validation loader yielded no batches")
    return loss_sum / count, (metric_sum / count if metric_fn is not None else None)


def train(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    checkpoint_dir: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    config: UNetConfig | None = None,
    card: Mapping[str, Any] | None = None,
    metric_fn: MetricFn | None = None,
    early_stopping_patience: int | None = None,
    scheduler: Any | None = None,
    precision: Precision = "auto",
    grad_clip_norm: float | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train ``model`` for ``epochs`` epochs, validating and checkpointing after each.

    Parameters
    ----------
    model : torch.nn.Module
        The network (e.g. from :func:`~vemkit.ml.networks.build_network` or
        :func:`~vemkit.ml.checkpoint.load_model` for fine-tuning).
    train_loader, val_loader : iterable of batches
        E.g. ``torch.utils.data.DataLoader`` over a
        :class:`~vemkit.ml.sampling.PatchDataset`. ``val_loader`` may be ``None``
        (the training loss is then monitored).
    loss_fn : callable
        ``loss_fn(prediction, target, valid) -> scalar tensor``, e.g. from
        :mod:`vemkit.ml.losses`.
    optimizer : torch.optim.Optimizer
        Built over ``model``'s (trainable) parameters.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    checkpoint_dir : path-like
        Receives ``best/`` and ``last/`` model folders; ``last/`` also holds the
        optimizer state for resuming.
    device : str or torch.device
        Where to train; the model is moved there.
    config : UNetConfig, optional
        The config ``model`` was built from, saved with the checkpoints. Defaults to the
        ``config`` attribute of vemkit networks.
    card : mapping, optional
        Model card saved with the checkpoints (add the normalisation, target type,
        voxel size...); training information is added under ``"training"``.
    metric_fn : callable, optional
        ``metric_fn(prediction, target, valid) -> float`` on validation batches, higher
        is better (e.g. IoU); averaged over samples. Without it the validation loss
        is monitored.
    early_stopping_patience : int, optional
        Stop after this many epochs without improvement of the monitored value.
    scheduler : optional
        A learning-rate scheduler stepped once per epoch (``ReduceLROnPlateau`` gets
        the monitored value as a loss, i.e. negated for metrics).
    precision : {"auto", "float32", "bfloat16"}
        Autocast of the forward passes (:func:`~vemkit.ml.precision.resolve_precision`):
        ``"auto"`` is float16 with gradient scaling on CUDA and float32 on the CPU;
        ``"bfloat16"`` about halves the time on CPUs with bfloat16 instructions.
    grad_clip_norm : float, optional
        Clip the gradient norm to this value.
    resume_from : path-like, optional
        A ``checkpoint_dir`` (or its ``last/``) of an earlier run: weights, optimizer,
        scheduler, history and early-stopping state are restored and training goes on
        from the next epoch.
    progress : Progress, optional
        Receives one task per epoch (one step per batch); its description holds the
        epoch, the last losses and the estimated time left.
    seed : int
        Seed of the random state of each epoch (dropout, shuffling, patch sampling).
    max_seconds : float, optional
        Wall-clock budget: no new epoch starts once this many seconds have passed since
        the call began (the current epoch finishes and is checkpointed).

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingError
        The loss became NaN or infinite.
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"max_seconds must be positive, got {max_seconds}")
    if early_stopping_patience is not None and early_stopping_patience < 1:
        raise ConfigError(
            f"early_stopping_patience must be at least 1, got {early_stopping_patience}"
        )
    if config is None:
        config = getattr(model, "config", None)
    if not isinstance(config, UNetConfig):
        raise ConfigError(
            "train() needs the UNetConfig the model was built from (config=...) so that "
            "checkpoints can rebuild the network"
        )
    device = torch.device(device)
    autocast = resolve_precision(precision, device)
    use_scaler = autocast.scales_gradients
    if autocast.dtype == torch.bfloat16 and device.type == "cpu" and config.dims == 3:
        logger.warning(
            "bfloat16 training of a 3D network on the CPU: PyTorch's bfloat16 Conv3d gives NaN "
            "weight gradients where a level's input is 2 voxels deep along z (training then "
            "stops with an error); float32 is the safe choice for 3D networks"
        )
    reporter = progress if progress is not None else NullProgress()
    checkpoint_path = Path(checkpoint_dir)
    checkpoint_path.mkdir(parents=True, exist_ok=True)
    best_dir, last_dir = checkpoint_path / "best", checkpoint_path / "last"
    monitor = (
        "val_metric"
        if val_loader is not None and metric_fn is not None
        else "val_loss"
        if val_loader is not None
        else "train_loss"
    )
    higher_is_better = monitor == "val_metric"

    model.to(device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    history: list[EpochRecord] = []
    best_value = -math.inf if higher_is_better else math.inf
    best_epoch, bad_epochs, start_epoch = 0, 0, 1

    if resume_from is not None:
        resume_dir = _resolve_resume(resume_from)
        saved_config, _ = read_model_info(resume_dir)
        if saved_config != config:
            raise ConfigError(
                f"cannot resume: the checkpoint was trained with {saved_config}, but the "
                f"model given has {config}"
            )
        load_weights(resume_dir, model)
        state = torch.load(resume_dir / TRAINER_STATE_FILE, map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        history = [EpochRecord(**record) for record in state["history"]]
        best_value, best_epoch = float(state["best_value"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        start_epoch = int(state["epoch"]) + 1
        previous_best = resume_dir.parent / "best"
        if previous_best.resolve() != best_dir.resolve() and previous_best.is_dir():
            shutil.copytree(previous_best, best_dir, dirs_exist_ok=True)
        if resume_dir.resolve() != last_dir.resolve():
            shutil.copytree(resume_dir, last_dir, dirs_exist_ok=True)
    stopped_early = stopped_by_time = False
    if resume_from is not None:
        if early_stopping_patience is not None and bad_epochs >= early_stopping_patience:
            # The run had stopped early (it was interrupted before reporting so).
            stopped_early, start_epoch = True, epochs + 1
        if start_epoch > epochs:
            logger.info("%s finished its training already; nothing to train", resume_dir)
        else:
            logger.info("resuming training at epoch %d from %s", start_epoch, resume_dir)
    n_batches = _loader_length(train_loader)
    devices = [device.index or 0] if device.type == "cuda" else []
    run_start = time.perf_counter()
    with torch.random.fork_rng(devices=devices):
        for epoch in range(start_epoch, epochs + 1):
            epoch_start = time.perf_counter()
            torch.manual_seed(_epoch_seed(seed, epoch))
            _set_epoch(train_loader, epoch)
            eta = _eta(run_start, done=epoch - start_epoch, left=epochs - epoch + 1)
            last = history[-1] if history else None
            description = f"epoch {epoch}/{epochs}"
            if last is not None:
                description += f" · loss {last.train_loss:.4g}"
                if last.val_loss is not None:
                    description += f" · val {last.val_loss:.4g}"
                if last.val_metric is not None:
                    description += f" · metric {last.val_metric:.4g}"
            description += f" · ETA {eta}"
            reporter.start(n_batches, description)

            model.train()
            loss_sum, count = 0.0, 0
            try:
                for batch in train_loader:
                    image, target, valid = _unpack(batch, device)
                    optimizer.zero_grad(set_to_none=True)
                    with autocast():
                        prediction = model(image)
                    loss = loss_fn(prediction.float(), target, valid)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"the training loss became {loss.item()} in epoch {epoch}; lower "
                            "the learning rate, check the targets and the normalisation"
                        )
                    scaler.scale(loss).backward()
                    # float16's scaler skips such steps itself; elsewhere one NaN gradient
                    # would silently turn the weights into NaN
                    bad = None if use_scaler else _nonfinite_gradient(model)
                    if bad is not None:
                        raise TrainingError(_gradient_message(bad, epoch, autocast.name))
                    if grad_clip_norm is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    n = int(image.shape[0])
                    loss_sum += float(loss.detach()) * n
                    count += n
                    reporter.advance(1)
            finally:
                reporter.finish()
            if count == 0:
                raise ConfigError("the training loader yielded no batches")
            train_loss = loss_sum / count

            val_loss = val_metric = None
            if val_loader is not None:
                val_loss, val_metric = _evaluate(
                    model,
                    val_loader,
                    loss_fn,
                    metric_fn=metric_fn,
                    device=device,
                    autocast=autocast,
                )
            value = {"val_metric": val_metric, "val_loss": val_loss, "train_loss": train_loss}[
                monitor
            ]
            assert value is not None
            if scheduler is not None:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(-value if higher_is_better else value)
                else:
                    scheduler.step()
            record = EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                val_loss=val_loss,
                val_metric=val_metric,
                seconds=time.perf_counter() - epoch_start,
                learning_rate=float(optimizer.param_groups[0]["lr"]),
            )
            history.append(record)
            improved = value > best_value if higher_is_better else value < best_value
            if improved:
                best_value, best_epoch, bad_epochs = float(value), epoch, 0
            else:
                bad_epochs += 1

            training_info = {
                "epoch": epoch,
                "monitor": monitor,
                "value": float(value),
                "precision": autocast.name,
                "history": [dataclasses.asdict(r) for r in history],
            }
            epoch_card = {**dict(card or {}), "training": training_info}
            save_model(last_dir, model, config, epoch_card)
            _save_trainer_state(
                last_dir,
                {
                    "epoch": epoch,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if use_scaler else None,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "history": [dataclasses.asdict(r) for r in history],
                    "best_value": best_value,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                },
            )
            if improved:
                save_model(best_dir, model, config, epoch_card)
            logger.info(
                "epoch %d/%d: train loss %.4g, val loss %s, val metric %s (%.1f s, ETA %s)",
                epoch,
                epochs,
                train_loss,
                "-" if val_loss is None else f"{val_loss:.4g}",
                "-" if val_metric is None else f"{val_metric:.4g}",
                record.seconds,
                _eta(run_start, done=epoch - start_epoch + 1, left=epochs - epoch),
            )
            if early_stopping_patience is not None and bad_epochs >= early_stopping_patience:
                logger.info(
                    "stopping early after epoch %d: no improvement of %s for %d epochs",
                    epoch,
                    monitor,
                    bad_epochs,
                )
                stopped_early = True
                break
            spent = time.perf_counter() - run_start
            if max_seconds is not None and epoch < epochs and spent > max_seconds:
                logger.warning(
                    "stopping after epoch %d: the %.0f s training budget is spent (%.0f s)",
                    epoch,
                    max_seconds,
                    spent,
                )
                stopped_by_time = True
                break

    return TrainResult(
        history=tuple(history),
        best_epoch=best_epoch,
        best_value=best_value,
        monitor=monitor,
        best_checkpoint=best_dir,
        last_checkpoint=last_dir,
        stopped_early=stopped_early,
        stopped_by_time=stopped_by_time,
        precision=autocast.name,
    )
