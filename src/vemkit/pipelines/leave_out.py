"""How does a recipe do on a dataset it never saw? Leave-one-dataset-out training.

A shipped model is always used on someone else's volume: another lab, another tissue,
another microscope. Cross-validation along z (:mod:`vemkit.pipelines.crossval`) scores
sections of volumes the model trained on; here every dataset the recipe trains on is
left out in turn: the recipe is trained on the other datasets (their train and
validation sources) and tested on the left-out dataset's test sources, the same regions
the model card scores in-domain. The gap between the two is what a user's own labels
(fine-tuning) could win back.

Outputs: ``OUTPUT/without-<dataset>/`` (a complete training output each), and
``OUTPUT/leave_one_out.json`` + ``OUTPUT/leave_one_out.png`` (the report and a chart of
in-domain against unseen scores per test region).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vemkit.errors import ConfigError, VemkitError
from vemkit.pipelines.crossval import (
    _check_output,
    _finished,
    _write_json,
    metric_label,
    metrics_with_intervals,
    resumable,
)
from vemkit.pipelines.predict import load_predictor
from vemkit.pipelines.train import (
    MODEL_DIR,
    DataSource,
    TrainConfig,
    _machine,
    parse_train_config,
    run_training,
)
from vemkit.progress import Progress
from vemkit.viz import plot_transfer

__all__ = [
    "LEAVE_OUT_FILE",
    "LeaveOneOut",
    "dataset_of",
    "headline_metric",
    "run_leave_one_dataset_out",
    "summary_rows",
]

log = logging.getLogger(__name__)

LEAVE_OUT_FILE = "leave_one_out.json"
FIGURE_FILE = "leave_one_out.png"


@dataclass(frozen=True)
class LeaveOneOut:
    """Result of :func:`run_leave_one_dataset_out`: output folder, report, wall time."""

    output: Path
    report: dict[str, Any]
    seconds: float


def dataset_of(source: DataSource) -> str:
    """Name the dataset a source belongs to: its shared dataset, or its image file."""
    return source.dataset or Path(str(source.image)).name


def _folder_name(dataset: str) -> str:
    return "without-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)


def _without(config: TrainConfig, dataset: str) -> TrainConfig:
    """Make the recipe without ``dataset``, tested on that dataset's test sources only."""
    data = config.model_dump(mode="json")
    keep = [dataset_of(s) != dataset for s in config.test]
    data.update(
        train=[
            s.model_dump(mode="json", exclude_none=True)
            for s in config.train
            if dataset_of(s) != dataset
        ],
        validation=[
            s.model_dump(mode="json", exclude_none=True)
            for s in config.validation
            if dataset_of(s) != dataset
        ],
        test=[
            s.model_dump(mode="json", exclude_none=True)
            for s, k in zip(config.test, keep, strict=True)
            if not k
        ],
        output="",
    )
    truths = config.evaluation.ground_truth_instances
    if truths is not None:
        data["evaluation"]["ground_truth_instances"] = [
            t for t, k in zip(truths, keep, strict=True) if not k
        ]
    data["notes"] = [*config.notes, f"leave-one-dataset-out: trained without {dataset}"]
    return parse_train_config(data, where=f"without {dataset}")


def _plan(config: TrainConfig) -> tuple[list[str], list[str]]:
    """Datasets to leave out in turn, and those the recipe only tests on (skipped)."""
    if config.pseudo_labels is not None:
        # The teacher learnt from the datasets (and its images may be of them): a left-out
        # dataset would come back through its pseudo-labels.
        raise ConfigError(
            "leaving datasets out of a recipe with pseudo_labels is not supported: the "
            "teacher and its images would bring the left-out dataset back; drop "
            "pseudo_labels for this measurement"
        )
    trained = {dataset_of(s) for s in config.train}
    tested: list[str] = []
    for source in config.test:
        name = dataset_of(source)
        if name not in tested:
            tested.append(name)
    if not tested:
        raise ConfigError("leaving datasets out needs a recipe with test data")
    folds = [d for d in tested if d in trained]
    if len(trained) < 2:
        raise ConfigError(
            f"the recipe trains on one dataset only ({', '.join(sorted(trained))}): leaving it "
            "out leaves nothing to train on; use vemkit crossval along z instead"
        )
    if not folds:
        raise ConfigError("the recipe tests on no dataset that it also trains on")
    return folds, [d for d in tested if d not in trained]


def _reference_scores(
    reference: str | os.PathLike[str] | None, config: TrainConfig
) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Per test source (by its description), the scores of a model trained on everything."""
    if reference is None:
        return None, {}
    _, _, card = load_predictor(reference, device="cpu")
    per_source = (card.get("metrics") or {}).get("per_source") or []
    by_data = {yaml.safe_dump(entry.get("data"), sort_keys=True): entry for entry in per_source}
    found = {}
    for source in config.test:
        key = yaml.safe_dump(source.describe(), sort_keys=True)
        if key in by_data:
            found[key] = by_data[key]
    if not found:
        raise ConfigError(
            f"model {str(reference)!r} was not scored on any of the recipe's test sources; "
            "give the model this recipe trained on every dataset"
        )
    return str(card.get("name", reference)), found


def run_leave_one_dataset_out(
    config: TrainConfig,
    *,
    output: str | os.PathLike[str],
    reference: str | os.PathLike[str] | None = None,
    recipe_path: str | None = None,
    command: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> LeaveOneOut:
    """Train a recipe once without each of its datasets and test on the one left out.

    Parameters
    ----------
    config : TrainConfig
        A recipe that trains on two or more datasets (sources of one shared dataset, or
        of one image file, are one dataset) and tests on some of them.
    output : path-like
        Output folder; ``OUTPUT/without-<dataset>`` holds each training.
    reference : str or path, optional
        A model trained by this recipe on every dataset (e.g. the shipped one); its card's
        scores of the same test sources are reported beside the unseen ones.
    recipe_path, command : str, optional
        Recorded in the report.
    overwrite : bool
        Start afresh in an existing output folder of this kind.
    progress : Progress, optional
        Epoch progress of each training.

    Returns
    -------
    LeaveOneOut
        ``report``: ``datasets`` (per left-out dataset: the datasets it trained on, the
        model, training summary, instance settings and ``per_source`` scores with 95%
        block-bootstrap intervals, and ``in_domain`` scores of the reference where it has
        them), ``only_tested`` (datasets the recipe never trains on: its own test scores
        are already out-of-dataset), ``reference``, ``machine``, ``date``.

    Raises
    ------
    ConfigError
        If the recipe trains on fewer than two datasets, the reference does not match,
        or the output folder holds something else.
    """
    start = time.perf_counter()
    folds, only_tested = _plan(config)
    reference_name, in_domain = _reference_scores(reference, config)
    recipes = [_without(config, d) for d in folds]
    folder = Path(output)
    record = [
        {
            "left_out": d,
            "train": sorted({dataset_of(s) for s in r.train}),
            "test": [s.model_dump(mode="json", exclude_none=True) for s in r.test],
        }
        for d, r in zip(folds, recipes, strict=True)
    ]
    resume = _check_output(folder, config, record, overwrite=overwrite)
    datasets = []
    for index, (dataset, recipe) in enumerate(zip(folds, recipes, strict=True)):
        fold_dir = folder / _folder_name(dataset)
        found = _finished(fold_dir, recipe) if resume else None
        reused = found == "same"
        log.info(
            "%d/%d: trained without %s%s",
            index + 1,
            len(folds),
            dataset,
            " (trained before, reused)" if reused else "",
        )
        if not reused:
            run_training(
                recipe,
                recipe_text=yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False),
                command=command,
                output=fold_dir,
                overwrite=True,
                resume=resume and resumable(fold_dir, recipe),
                progress=progress,
            )
        _, _, card = load_predictor(fold_dir / MODEL_DIR, device="cpu")
        per_source = (card.get("metrics") or {}).get("per_source") or []
        training = card.get("training") or {}
        datasets.append(
            {
                "left_out": dataset,
                "trained_on": record[index]["train"],
                "model": f"{fold_dir.name}/{MODEL_DIR}",
                "reused": reused,
                "epochs_run": training.get("epochs_run"),
                "best_epoch": training.get("best_epoch"),
                "train_seconds": training.get("train_seconds"),
                "instances": card.get("instances"),
                "per_source": per_source,
                "in_domain": [
                    in_domain.get(yaml.safe_dump(s.describe(), sort_keys=True)) for s in recipe.test
                ],
            }
        )
    report: dict[str, Any] = {
        "recipe_name": config.name,
        "recipe_file": recipe_path,
        "command": command,
        "mode": "leave one dataset out",
        "reference": reference_name,
        "datasets": datasets,
        "only_tested": only_tested,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": _machine(config.device),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    try:
        _plot(report, folder / FIGURE_FILE)
        report["figure"] = FIGURE_FILE
    except VemkitError as error:  # nothing plottable: the report still stands
        log.warning("no figure: %s", error)
    _write_json(folder / LEAVE_OUT_FILE, report)
    return LeaveOneOut(output=folder, report=report, seconds=time.perf_counter() - start)


def headline_metric(entry: dict[str, Any]) -> str | None:
    """Name the score a region is summed up by: pixel F1 of masks, IoU where objects count."""
    keys = ["foreground_f1", "foreground_iou", "boundary_iou", "weighted_f1"]
    if "object_f1_at" in entry:
        keys.remove("foreground_f1")
    return next((key for key in keys if isinstance(entry.get(key), float)), None)


def _score_of(entry: dict[str, Any], key: str) -> tuple[float, float | None, float | None] | None:
    """Look up a source's score (``foreground_iou``, ``object_f1@0.5``, ...) and 95% interval."""
    found = metrics_with_intervals(entry).get(key)
    if found is None or not isinstance(found["value"], float):
        return None
    return found["value"], found["low"], found["high"]


def _region_name(entry: dict[str, Any], *, image: bool = True) -> str:
    """``dataset/image z 11-14`` of a scored source (``image=False``: without the image)."""
    data = entry.get("data") or {}
    z = data.get("z_range")
    where = "" if not z else f" z {z[0]}" if z[1] - z[0] == 1 else f" z {z[0]}-{z[1] - 1}"
    file = Path(str(data.get("image", "?"))).name
    if not data.get("dataset"):
        return file + where
    return f"{data['dataset']}/{file}{where}" if image else f"{data['dataset']}{where}"


def _plot(report: dict[str, Any], path: Path) -> None:
    rows: dict[str, dict[str, tuple[float, float | None, float | None]]] = {}
    metric = None
    for row in summary_rows(report):
        if metric is None:
            metric = row["metric"]
        if row["metric"] != metric:
            continue  # one metric per chart: the first region's headline
        name = row["region"]  # the dataset and sections: the image name is long on a chart
        rows[name] = {"dataset left out of training": row["unseen"]}
        if row["in_domain"] is not None:
            rows[name]["reference, trained on every dataset"] = row["in_domain"]
    if not rows or metric is None:
        raise ConfigError("no scores to plot")
    plot_transfer(
        rows,
        path,
        title=f"{report['recipe_name']}: test regions in-domain and with their dataset left out",
        xlabel=metric_label(metric),
    )


def summary_rows(report: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """Flatten a report to rows: left-out dataset, test region, metric, unseen, in-domain.

    ``source`` names the region with its image, ``region`` without (shorter, for charts).

    Each region gives its headline metric (:func:`headline_metric`) and, where objects
    are scored, object F1 at IoU 0.5; ``unseen`` / ``in_domain`` are (value, low, high),
    ``in_domain`` ``None`` without a reference.
    """
    rows = []
    for entry in report["datasets"]:
        for scored, reference in zip(entry["per_source"], entry["in_domain"], strict=True):
            headline = headline_metric(scored)
            metrics = [headline] if headline else []
            if "object_f1_at" in scored:
                metrics.append("object_f1@0.5")
            for metric in metrics:
                unseen = _score_of(scored, metric)
                if unseen is None:
                    continue
                rows.append(
                    {
                        "left_out": entry["left_out"],
                        "source": _region_name(scored),
                        "region": _region_name(scored, image=False),
                        "metric": metric,
                        "unseen": unseen,
                        "in_domain": _score_of(reference, metric) if reference else None,
                    }
                )
    return rows
