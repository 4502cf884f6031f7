"""The model zoo for front ends: a summary row per shipped model and each model's card."""

from __future__ import annotations

import json
import os
from typing import Any

from vemkit.ml.zoo import list_models, read_zoo_info, resolve_model

__all__ = ["key_metrics", "model_card", "model_summaries"]

# Held-out metrics shown in `vemkit models list`, in this order, when a card has them.
_KEY_METRICS = (
    ("foreground_iou", "IoU"),
    ("foreground_dice", "Dice"),
    ("boundary_f1", "boundary F1"),
    ("foreground_f1_tolerant", "F1 ±2px"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
)


def key_metrics(card: dict[str, Any]) -> dict[str, float]:
    """Pick the headline held-out metrics of a model card (label -> value)."""
    held_out = (card.get("metrics") or {}).get("held_out") or {}
    found: dict[str, float] = {}
    for key, label in _KEY_METRICS:
        value = held_out.get(key)
        if isinstance(value, int | float):
            found[label] = float(value)
    for threshold, value in (held_out.get("object_f1_at") or {}).items():
        if threshold == "0.5" and isinstance(value, int | float):
            found["F1@0.5"] = float(value)
    return found


def model_summaries() -> list[dict[str, Any]]:
    """One row per shipped model: name, task, target, voxel size (nm), key metrics."""
    rows = []
    for name in list_models():
        config, card = read_zoo_info(name)
        rows.append(
            {
                "name": name,
                "task": card.get("task", ""),
                "target": (card.get("target") or {}).get("type", ""),
                "dims": config.dims,
                "voxel_size_nm": card.get("voxel_size_nm"),
                "metrics": key_metrics(card),
            }
        )
    return rows


def model_card(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the card of a shipped model (by name) or of a model folder, with its location.

    A ``crossval.json`` next to the model (the report of ``vemkit crossval`` on its
    recipe) adds ``cross_validation``: its headline numbers
    (:func:`~vemkit.pipelines.crossval.summarise_crossval`); a ``leave_one_out.json``
    (``vemkit crossval --by-dataset``) adds ``leave_one_out``: the scores of each test
    region when its dataset was left out of training, beside the in-domain ones
    (:func:`~vemkit.pipelines.leave_out.summary_rows`).
    """
    config, card = read_zoo_info(name_or_path)
    folder = resolve_model(name_or_path)
    result = {**card, "network": config.to_dict(), "path": str(folder)}
    # crossval pulls in the training pipeline and matplotlib: only when there is a report
    report = folder / "crossval.json"
    if report.is_file():
        from vemkit.pipelines.crossval import summarise_crossval

        result["cross_validation"] = summarise_crossval(
            json.loads(report.read_text(encoding="utf-8"))
        )
    left_out = folder / "leave_one_out.json"
    if left_out.is_file():
        from vemkit.pipelines.leave_out import summary_rows

        report_data = json.loads(left_out.read_text(encoding="utf-8"))
        result["leave_one_out"] = {
            "reference": report_data.get("reference"),
            "date": report_data.get("date"),
            "rows": summary_rows(report_data),
        }
    return result
