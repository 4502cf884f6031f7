"""k-fold cross-validation of a training recipe along z (``vemkit crossval``).

With a few labelled sections, one held-out block holds few objects: the mito-em test
sections hold 21 mitochondria, and the 95% interval of their object F1 spans 0.3. The
recipe's accuracy is better measured on *every* labelled section, each predicted by a
model that never saw it: cut the labelled z span into ``K`` blocks; for each, train the
recipe on the other sections (a few next to the block validate, as in the recipe) and
predict the block. The pooled predictions are scored like one held-out region, with a
block bootstrap whose z blocks are the folds.

The folds are models of the recipe, not the shipped model; the pooled numbers estimate
what the recipe achieves with about ``(K - 1) / K`` of the sections for training.

A recipe trained on several labelled volumes (membrane-em: VNC, ISBI, FIB-SEM) has each
volume that is split into train/validation/test z ranges folded side by side; each is
pooled and scored on its own.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from vemkit.errors import ConfigError, ModelNotFoundError
from vemkit.geometry import VoxelSize
from vemkit.measure.uncertainty import (
    block_count,
    bootstrap_scores,
    default_blocks,
    paired_difference,
)
from vemkit.ml.checkpoint import CONFIG_FILE
from vemkit.ml.zoo import resolve_model
from vemkit.pipelines.predict import ModelSpec, load_predictor
from vemkit.pipelines.train import (
    MODEL_DIR,
    RECIPE_FILE,
    CandidateScores,
    DataSource,
    LoadedSource,
    SegmentedRegion,
    TrainConfig,
    _machine,
    _predict_source,
    calibrates,
    card_evaluation,
    check_source_models,
    choose_from_candidates,
    load_source,
    parse_train_config,
    recipe_changes,
    run_training,
    score_candidates,
    score_outputs,
    segment_outputs,
)
from vemkit.progress import Progress
from vemkit.segmentation.components import relabel_sequential
from vemkit.viz import plot_differences, plot_fold_scores

__all__ = [
    "CROSSVAL_FILE",
    "CrossValidation",
    "Fold",
    "compare_crossval",
    "fold_plan",
    "load_crossval_report",
    "metric_label",
    "metrics_with_intervals",
    "plan_folds",
    "plot_comparison",
    "pool_regions",
    "resumable",
    "run_crossval",
    "summarise_crossval",
    "with_fold_teachers",
]

log = logging.getLogger(__name__)

CROSSVAL_FILE = "crossval.json"
FIGURE_FILE = "crossval.png"
PLAN_FILE = "folds.json"

Range = tuple[int, int]


@dataclass(frozen=True)
class Fold:
    """Which sections ``[start, stop)`` train, validate and test one fold's model."""

    index: int
    test: Range
    validation: tuple[Range, ...]
    train: tuple[Range, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "fold": self.index,
            "test": list(self.test),
            "validation": [list(r) for r in self.validation],
            "train": [list(r) for r in self.train],
        }


def _ranges(sections: Sequence[int]) -> tuple[Range, ...]:
    """Sorted section indices as half-open contiguous ranges."""
    out: list[list[int]] = []
    for z in sorted(sections):
        if out and out[-1][1] == z:
            out[-1][1] = z + 1
        else:
            out.append([z, z + 1])
    return tuple((a, b) for a, b in out)


def plan_folds(span: Range, folds: int, *, validation_sections: int) -> list[Fold]:
    """Cut the sections ``[start, stop)`` into ``folds`` test blocks with their splits.

    Each block is tested by a model trained on the other sections, of which the
    ``validation_sections`` nearest before the block (after it, for blocks too near the
    start) validate; the rest train.

    Parameters
    ----------
    span : (int, int)
        The labelled sections, half-open.
    folds : int
        Number of folds (at least 2).
    validation_sections : int
        Sections per fold for validation (0: none).

    Returns
    -------
    list of Fold
        In z order; the test blocks cover the span once, sizes differ by at most one.

    Raises
    ------
    ConfigError
        If a fold would have no section to train on.

    Examples
    --------
    >>> [f.test for f in plan_folds((0, 15), 4, validation_sections=2)]
    [(0, 4), (4, 8), (8, 12), (12, 15)]
    >>> plan_folds((0, 15), 4, validation_sections=2)[0].validation
    ((4, 6),)
    """
    start, stop = int(span[0]), int(span[1])
    n = stop - start
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    if folds > n:
        raise ConfigError(f"{folds} folds need at least {folds} labelled sections; there are {n}")
    if validation_sections < 0:
        raise ConfigError(f"validation_sections must be >= 0, got {validation_sections}")
    sections = np.arange(start, stop)
    plans = []
    for index, block in enumerate(np.array_split(sections, folds)):
        first, last = int(block[0]), int(block[-1]) + 1
        before = list(range(max(start, first - validation_sections), first))
        after = list(range(last, min(stop, last + validation_sections - len(before))))
        validation = before + after
        train = [z for z in range(start, stop) if not first <= z < last and z not in validation]
        if not train:
            raise ConfigError(
                f"fold {index} tests sections {first}-{last - 1} and validates on "
                f"{len(validation)}; no section is left to train on (use fewer folds or fewer "
                "validation sections)"
            )
        plans.append(Fold(index, (first, last), _ranges(validation), _ranges(train)))
    return plans


@dataclass(frozen=True)
class _Base:
    """A labelled volume whose train/validation/test splits are z ranges of it."""

    source: DataSource
    span: Range
    validation_sections: int
    instance_labels: str | None

    @property
    def name(self) -> str:
        """Short name: ``dataset/image`` or the image file's name."""
        source = self.source
        image = Path(str(source.image)).name
        return f"{source.dataset}/{image}" if source.dataset else image


@dataclass(frozen=True)
class _Folding:
    """How a recipe's sources are folded.

    ``bases`` are folded along z; ``fixed_train``/``fixed_validation`` (volumes without a
    test range) train and validate every fold; ``left_out`` are test sources of volumes
    the recipe never trains on, which cross-validation cannot score.
    """

    bases: tuple[_Base, ...]
    fixed_train: tuple[DataSource, ...] = ()
    fixed_validation: tuple[DataSource, ...] = ()
    left_out: tuple[DataSource, ...] = ()


def _volume(source: DataSource) -> DataSource:
    """Return the source without its z range: what identifies its labelled volume."""
    return source.model_copy(update={"z_range": None})


def _folding_of(config: TrainConfig) -> _Folding:
    """Group the recipe's sources by labelled volume and check those that can be folded."""
    if not config.test:
        raise ConfigError(
            "cross-validation needs a recipe with test data (its sections are folded)"
        )
    gt = config.evaluation.ground_truth_instances
    named = (
        [("train", s, None) for s in config.train]
        + [("validation", s, None) for s in config.validation]
        + [("test", s, gt[i] if gt else None) for i, s in enumerate(config.test)]
    )
    groups: list[tuple[DataSource, list[tuple[str, DataSource, str | None]]]] = []
    for role, source, truth in named:
        volume = _volume(source)
        for key, members in groups:
            if key == volume:
                members.append((role, source, truth))
                break
        else:
            groups.append((volume, [(role, source, truth)]))

    bases: list[_Base] = []
    fixed_train: list[DataSource] = []
    fixed_validation: list[DataSource] = []
    left_out: list[DataSource] = []
    for volume, members in groups:
        roles = {role for role, _, _ in members}
        if "test" not in roles:
            fixed_train += [s for role, s, _ in members if role == "train"]
            fixed_validation += [s for role, s, _ in members if role == "validation"]
            continue
        if roles == {"test"}:
            left_out += [s for _, s, _ in members]
            log.warning(
                "test source %s is a volume the recipe never trains on; cross-validation "
                "leaves it out (its score is the model card's)",
                volume.image,
            )
            continue
        ranges: list[Range] = []
        for role, source, _ in members:
            if source.z_range is None:
                raise ConfigError(
                    f"every source of a volume that is tested and trained on must name its "
                    f"z_range for cross-validation; a {role} source ({source.image}) has none"
                )
            ranges.append(source.z_range)
        ranges.sort()
        for (a0, a1), (b0, b1) in itertools.pairwise(ranges):
            if b0 < a1:
                raise ConfigError(f"z ranges {[a0, a1]} and {[b0, b1]} of {volume.image} overlap")
            if b0 > a1:
                raise ConfigError(
                    f"sections {a1}-{b0 - 1} of {volume.image} are in no split; the z "
                    "ranges of a volume must cover one contiguous span"
                )
        truths = {truth for role, _, truth in members if role == "test"}
        if len(truths) != 1:
            raise ConfigError(
                "evaluation.ground_truth_instances must name one file for all test sources "
                f"of a volume in cross-validation, got {sorted(map(str, truths))} for "
                f"{volume.image}"
            )
        validation = sum(
            s.z_range[1] - s.z_range[0] for role, s, _ in members if role == "validation"
        )
        bases.append(_Base(volume, (ranges[0][0], ranges[-1][1]), validation, truths.pop()))
    if not bases:
        raise ConfigError(
            "cross-validation folds a labelled volume along z, but no test source is a z "
            "range of a volume that the recipe also trains on"
        )
    return _Folding(tuple(bases), tuple(fixed_train), tuple(fixed_validation), tuple(left_out))


def fold_recipe(config: TrainConfig, folds: Sequence[Fold], folding: _Folding) -> TrainConfig:
    """Make the recipe of one fold: each folded volume's z ranges of that fold, and the rest.

    ``folds`` holds the fold of each of ``folding.bases``.
    """

    def sources(base: _Base, ranges: Sequence[Range]) -> list[dict[str, Any]]:
        return [
            base.source.model_copy(update={"z_range": r}).model_dump(mode="json", exclude_none=True)
            for r in ranges
        ]

    def fixed(kept: Sequence[DataSource]) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json", exclude_none=True) for s in kept]

    bases = folding.bases
    data = config.model_dump(mode="json")
    data.update(
        train=[x for b, f in zip(bases, folds, strict=True) for x in sources(b, f.train)]
        + fixed(folding.fixed_train),
        validation=[x for b, f in zip(bases, folds, strict=True) for x in sources(b, f.validation)]
        + fixed(folding.fixed_validation),
        test=[x for b, f in zip(bases, folds, strict=True) for x in sources(b, [f.test])],
        output="",
    )
    truths = [b.instance_labels for b in bases]
    if any(t is not None for t in truths) and None in truths:
        raise ConfigError(
            "evaluation.ground_truth_instances must name a file for every folded volume or for none"
        )
    data["evaluation"]["ground_truth_instances"] = truths if truths[0] is not None else None
    index = folds[0].index
    # Each fold's starting model and teacher, e.g. the fold's model of another crossval.
    if data.get("init_from"):
        data["init_from"] = data["init_from"].replace("{fold}", str(index))
    if data.get("pseudo_labels") is not None:
        teacher = data["pseudo_labels"]["teacher"]
        data["pseudo_labels"]["teacher"] = teacher.replace("{fold}", str(index))
    tested = "; ".join(
        (f"{b.name} " if len(bases) > 1 else "") + f"sections {f.test[0]}-{f.test[1] - 1}"
        for b, f in zip(bases, folds, strict=True)
    )
    data["notes"] = [*config.notes, f"cross-validation fold {index}: tests {tested}"]
    return parse_train_config(data, where=f"fold {index}")


def pool_regions(regions: Sequence[SegmentedRegion]) -> SegmentedRegion:
    """Stack segmented regions along z into one, keeping their objects apart.

    Predicted objects get disjoint ids; each region's true objects are renumbered and
    offset so that an object cut by a region border counts once per region, as it does
    when the regions are scored alone. Unannotated truth keeps one ignore value.

    Parameters
    ----------
    regions : sequence of SegmentedRegion
        Same target and yx shape; from :func:`~vemkit.pipelines.train.segment_outputs`.

    Returns
    -------
    SegmentedRegion
    """
    if not regions:
        raise ValueError("no regions to pool")
    first = regions[0]
    if any(r.ignore_label != first.ignore_label for r in regions):
        raise ValueError("regions differ in their ignore label")
    predicted = np.concatenate([r.predicted for r in regions])
    truth = np.concatenate([r.truth for r in regions])
    if first.objects is None or any(r.objects is None for r in regions):
        return SegmentedRegion(predicted=predicted, truth=truth, ignore_label=first.ignore_label)
    objects: list[NDArray[np.int64]] = []
    truths: list[NDArray[np.int64]] = []
    unknown: list[NDArray[np.bool_]] = []
    n_objects = n_truth = 0
    for region in regions:
        assert region.objects is not None
        assert region.truth_objects is not None
        found, count = relabel_sequential(region.objects)
        objects.append(np.where(found > 0, found.astype(np.int64) + n_objects, 0))
        n_objects += count
        true = np.asarray(region.truth_objects)
        ignored = (
            true == region.objects_ignore
            if region.objects_ignore is not None
            else np.zeros(true.shape, bool)
        )
        renumbered, count = relabel_sequential(np.where(ignored, 0, true))
        truths.append(np.where(renumbered > 0, renumbered.astype(np.int64) + n_truth, 0))
        unknown.append(ignored)
        n_truth += count
    truth_objects = np.concatenate(truths)
    ignore = None
    if any(region.objects_ignore is not None for region in regions):
        ignore = n_truth + 1
        truth_objects[np.concatenate(unknown)] = ignore
    return SegmentedRegion(
        predicted=predicted,
        truth=truth,
        ignore_label=first.ignore_label,
        objects=np.concatenate(objects),
        truth_objects=truth_objects,
        objects_ignore=ignore,
        instance_ground_truth=first.instance_ground_truth,
    )


@dataclass(frozen=True)
class CrossValidation:
    """What :func:`run_crossval` produced (``report`` is ``crossval.json``)."""

    output: Path
    report: dict[str, Any]
    seconds: float


def _same_recipe(stored: Any, config: TrainConfig, *, but_evaluation: bool = False) -> bool:
    """Whether a stored recipe (a mapping) trains what ``config`` trains.

    Both are compared as parsed recipes, so fields added to vemkit since (with their
    defaults) do not count as changes; ``name``, ``device``, ``output``, ``description``
    and ``notes`` never do (an experiment recipe copied under the shipped name trains the
    same networks), nor ``evaluation`` with ``but_evaluation`` (it is applied after
    training).
    """
    ignore = ("name", "device", "output", "description", "notes")
    try:
        return not recipe_changes(
            stored, config, ignore=(*ignore, "evaluation") if but_evaluation else ignore
        )
    except ConfigError:
        return False


def with_fold_teachers(config: TrainConfig, teachers: str | os.PathLike[str]) -> TrainConfig:
    """Point the recipe's ``pseudo_labels`` teacher at the fold models of a cross-validation.

    Fold ``k`` then learns from ``teachers/fold-k/model``, a model that never saw fold
    ``k``'s test sections when both runs fold the same sections. A recipe that also
    starts from its teacher (``init_from`` the same model as ``pseudo_labels.teacher``)
    starts each fold from that fold's teacher too.
    """
    if config.pseudo_labels is None:
        raise ConfigError("--teachers needs a recipe with pseudo_labels (a teacher to replace)")
    folder = Path(teachers)
    if not (folder / PLAN_FILE).is_file():
        raise ConfigError(
            f"{str(folder)!r} is not a vemkit crossval output (no {PLAN_FILE}); give the "
            "folder of the teacher recipe's cross-validation"
        )
    teacher = str(folder / "fold-{fold}" / MODEL_DIR)
    update: dict[str, Any] = {
        "pseudo_labels": config.pseudo_labels.model_copy(update={"teacher": teacher})
    }
    if config.init_from is not None and config.init_from == config.pseudo_labels.teacher:
        update["init_from"] = teacher
    return config.model_copy(update=update)


def fold_plan(
    config: TrainConfig, folds: int
) -> tuple[_Folding, list[tuple[Fold, ...]], list[TrainConfig], list[str]]:
    """Plan a cross-validation: the folding, the folds, each fold's recipe and its text.

    Fold ``k`` holds one :class:`Fold` per folded volume; its recipe text is what
    ``OUTPUT/fold-k/recipe.yaml`` holds.
    """
    folding = _folding_of(config)
    per_base = [
        plan_folds(b.span, folds, validation_sections=b.validation_sections) for b in folding.bases
    ]
    plan = list(zip(*per_base, strict=True))
    recipes = [fold_recipe(config, fold_set, folding) for fold_set in plan]
    texts = [yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False) for r in recipes]
    return folding, plan, recipes, texts


def _plan_record(bases: Sequence[_Base], plan: Sequence[tuple[Fold, ...]]) -> list[Any]:
    """Describe the fold plan as JSON: per fold one dict, with one entry per volume if several."""
    if len(bases) == 1:
        return [folds[0].to_dict() for folds in plan]
    return [
        {
            "fold": index,
            "volumes": [
                {"volume": b.name, **{k: v for k, v in f.to_dict().items() if k != "fold"}}
                for b, f in zip(bases, folds, strict=True)
            ],
        }
        for index, folds in enumerate(plan)
    ]


def _check_output(
    folder: Path, config: TrainConfig, plan_record: list[Any], *, overwrite: bool
) -> bool:
    """Prepare the output folder; return whether finished folds may be reused."""
    plan_file = folder / PLAN_FILE
    record = {"recipe": config.model_dump(mode="json"), "folds": plan_record}
    if folder.exists() and any(folder.iterdir()):
        if not plan_file.is_file():
            raise ConfigError(
                f"output folder {str(folder)!r} exists and is not a vemkit crossval output "
                f"(no {PLAN_FILE}); choose a new or empty folder"
            )
        if overwrite:
            shutil.rmtree(folder)
        else:
            stored = json.loads(plan_file.read_text(encoding="utf-8"))
            if stored.get("folds") != record["folds"] or not _same_recipe(
                stored.get("recipe"), config, but_evaluation=True
            ):
                raise ConfigError(
                    f"{str(folder)!r} holds a cross-validation of another recipe or fold "
                    "plan; choose another output or pass --overwrite"
                )
            _write_json(plan_file, record)  # evaluation settings may have changed
            return True
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(plan_file, record)
    return False


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a crash leaves the old file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _finished(fold_dir: Path, recipe: TrainConfig) -> str | None:
    """Tell what ``fold_dir`` holds of this fold.

    ``"same"``: a model of this recipe; ``"weights"``: a model of the same training with
    other evaluation settings; ``None``: nothing finished that serves.
    """
    path = fold_dir / RECIPE_FILE
    if not ((fold_dir / MODEL_DIR / CONFIG_FILE).is_file() and path.is_file()):
        return None
    try:
        stored = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    if _same_recipe(stored, recipe):
        return "same"
    return "weights" if _same_recipe(stored, recipe, but_evaluation=True) else None


def resumable(fold_dir: Path, recipe: TrainConfig) -> bool:
    """Whether ``fold_dir`` holds a (maybe interrupted) training of what ``recipe`` trains.

    :func:`~vemkit.pipelines.train.run_training` with ``resume`` then reuses its finished
    networks and continues an interrupted one instead of starting again.
    """
    path = fold_dir / RECIPE_FILE
    if not path.is_file():
        return False
    try:
        stored = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False
    return _same_recipe(stored, recipe, but_evaluation=True)


_SPREAD_KEYS = ("foreground_iou", "boundary_iou", "foreground_f1", "weighted_f1", "macro_f1")


def _spread(per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation, min and max of the main scores over the folds."""
    values: dict[str, list[float]] = {}
    for fold in per_fold:
        scores = fold["scores"]
        for key in _SPREAD_KEYS:
            if isinstance(scores.get(key), float):
                values.setdefault(key, []).append(scores[key])
        for t, v in (scores.get("object_f1_at") or {}).items():
            values.setdefault(f"object_f1@{t}", []).append(float(v or 0.0))
    return {
        key: {
            "mean": round(float(np.mean(v)), 4),
            "std": round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else None,
            "min": round(float(np.min(v)), 4),
            "max": round(float(np.max(v)), 4),
        }
        for key, v in values.items()
    }


_PLOTTED = {
    "foreground_iou": "foreground IoU",
    "foreground_f1": "pixel F1",
    "boundary_iou": "boundary IoU",
    "weighted_f1": "weighted F1",
    "macro_f1": "macro F1",
    "object_f1@0.5": "object F1@0.5",
}


def _fold_score(scores: dict[str, Any], key: str) -> float | None:
    """Look up a fold's score by a :func:`summarise_crossval` metric key."""
    if key.startswith("object_f1@"):
        return (scores.get("object_f1_at") or {}).get(key.removeprefix("object_f1@"))
    return scores.get(key)


def _plotted_of_volume(metrics: dict[str, Any]) -> dict[str, Any]:
    """One mask metric (pixel F1 where there is one) and object F1 of a volume, for plots."""
    mask = next(
        (
            k
            for k in ("foreground_f1", "foreground_iou", "boundary_iou", "weighted_f1")
            if k in metrics
        ),
        None,
    )
    return {k: v for k, v in metrics.items() if k in (mask, "object_f1@0.5")}


def _plot(report: dict[str, Any], path: Path) -> None:
    """Dot chart of the folds' main scores with the pooled score and its interval."""
    summary = summarise_crossval(report)
    # (label prefix, the folds' scores of that volume, its pooled metrics)
    if "volumes" in summary:
        names = [volume["volume"] for volume in summary["volumes"]]
        short = [name.split("/")[0] for name in names]  # the dataset, when that is unique
        if len(set(short)) == len(short):
            names = short
        panels = [
            (
                f"{name}: ",
                [f["volumes"][b]["scores"] for f in report["per_fold"]],
                _plotted_of_volume(volume["metrics"]),
            )
            for b, (name, volume) in enumerate(zip(names, summary["volumes"], strict=True))
        ]
        folds = [f"fold {fold['fold']}" for fold in report["per_fold"]]
        where = f"{len(panels)} volumes"
    else:
        panels = [("", [f["scores"] for f in report["per_fold"]], summary["metrics"])]
        folds = [f"{fold['test'][0]}-{fold['test'][1] - 1}" for fold in report["per_fold"]]
        first, stop = report["sections"]
        where = f"sections {first}-{stop - 1}"
    scores: dict[str, list[float | None]] = {}
    pooled: dict[str, tuple[float, float | None, float | None]] = {}
    for prefix, fold_scores, metrics in panels:
        for key, label in _PLOTTED.items():
            if key in metrics:
                entry = metrics[key]
                scores[prefix + label] = [_fold_score(f, key) for f in fold_scores]
                pooled[prefix + label] = (entry["value"] or 0.0, entry["low"], entry["high"])
    if not scores:
        return
    title = (
        f"{report['recipe_name']}: {report['folds']}-fold "
        f"{'CV' if len(panels) > 1 else 'cross-validation'}, {where}"
        f"{' (TTA)' if report.get('tta') else ''}"
    )
    plot_fold_scores(folds, scores, path, pooled=pooled, title=title)


def _headline(scores: dict[str, Any]) -> str:
    """One log line of a region's main scores."""
    return ", ".join(
        f"{key} {scores[key]:.3f}"
        for key in ("foreground_iou", "boundary_iou", "weighted_f1")
        if isinstance(scores.get(key), float)
    ) + (
        f", object F1@0.5 {(scores['object_f1_at'].get('0.5') or 0.0):.3f} "
        f"({scores['n_gt']} true objects)"
        if "object_f1_at" in scores
        else ""
    )


def _score_pooled(
    config: TrainConfig,
    regions: Sequence[SegmentedRegion],
    *,
    spec: ModelSpec,
    voxel_size: VoxelSize,
    folds: int,
) -> dict[str, Any]:
    """Score the folds' test blocks together, with block-bootstrap intervals (folds x yx).

    The folds chose their thresholds each (see their own scores), so the pooled scores
    carry none.
    """
    pooled_region = pool_regions(regions)
    yx_blocks = default_blocks(pooled_region.predicted.shape[1:], voxel_size.as_tuple()[1:])
    pooled = score_outputs(
        config,
        pooled_region,
        spec=spec,
        voxel_size=voxel_size,
        evaluation=config.evaluation,
        blocks=(folds, *yx_blocks),
        block_counts=True,
    )
    pooled.pop("instance_thresholds", None)
    if pooled_region.objects is not None:
        # the intervals above are of the instances; add those of the thresholded maps
        pooled["mask_confidence_intervals"] = bootstrap_scores(
            pooled_region.predicted,
            pooled_region.truth,
            instance=False,
            blocks=(folds, *yx_blocks),
            ignore_label=pooled_region.ignore_label,
            block_counts=True,
        )
    return pooled


@dataclass
class _FoldPredictions:
    """One fold's validation and test predictions, kept for the pooled-validation choice."""

    index: int
    recipe: TrainConfig
    validation: list[DataSource]
    validation_sections: list[int]
    candidates: list[CandidateScores]  # of each validation source, scored once
    tests: list[LoadedSource]  # one per folded volume
    test_maps: list[NDArray[np.float32]]


def _overlaps(a: DataSource, b: DataSource) -> bool:
    """Whether two sources share sections of one labelled volume."""
    if _volume(a) != _volume(b):
        return False
    if a.z_range is None or b.z_range is None:
        return True
    return a.z_range[0] < b.z_range[1] and b.z_range[0] < a.z_range[1]


def _pooled_validation_choice(
    config: TrainConfig,
    kept: Sequence[_FoldPredictions],
    *,
    bases: Sequence[_Base],
    spec: ModelSpec,
) -> dict[str, Any]:
    """Choose the instance settings on many validation sections instead of each fold's few.

    Each fold's settings are chosen on the validation predictions of every fold (each by
    the model that validated on them) that lie outside this fold's test blocks, so no
    test section helps choose its own settings. The settings for the recipe are chosen
    on all folds' validation sections together.
    """
    regions: list[list[SegmentedRegion]] = [[] for _ in bases]
    per_fold: list[dict[str, Any]] = []
    for this in kept:
        candidates: list[CandidateScores] = []
        sections = 0
        for other in kept:
            for source, n, scored in zip(
                other.validation, other.validation_sections, other.candidates, strict=True
            ):
                if not any(_overlaps(source, t.source) for t in this.tests):
                    candidates.append(scored)
                    sections += n
        chosen = choose_from_candidates(candidates, spec=spec, evaluation=config.evaluation)
        evaluation = config.evaluation.model_copy(update=chosen)
        volumes = []
        for b, (base, test, found) in enumerate(
            zip(bases, this.tests, this.test_maps, strict=True)
        ):
            region = segment_outputs(
                this.recipe,
                found,
                test,
                spec=spec,
                evaluation=evaluation,
                instance_labels=base.instance_labels,
            )
            scores = score_outputs(
                this.recipe, region, spec=spec, voxel_size=test.voxel_size, evaluation=evaluation
            )
            scores.pop("instance_thresholds", None)
            regions[b].append(region)
            volumes.append({"volume": base.name, "scores": scores})
            log.info(
                "fold %d, settings chosen on %d validation sections %s: %s%s",
                this.index,
                sections,
                chosen,
                f"{base.name}: " if len(bases) > 1 else "",
                _headline(scores),
            )
        entry: dict[str, Any] = {
            "fold": this.index,
            "chosen_on_sections": sections,
            "settings": chosen,
        }
        if len(bases) == 1:
            entry["scores"] = volumes[0]["scores"]
        else:
            entry["volumes"] = volumes
        per_fold.append(entry)
    pooled = [
        _score_pooled(config, found, spec=spec, voxel_size=found_at, folds=len(kept))
        for found, found_at in zip(
            regions, [test.voxel_size for test in kept[0].tests], strict=True
        )
    ]
    every_section = sum(n for k in kept for n in k.validation_sections)
    recipe_settings = choose_from_candidates(
        [c for k in kept for c in k.candidates], spec=spec, evaluation=config.evaluation
    )
    log.info("settings chosen on all %d validation sections: %s", every_section, recipe_settings)
    result: dict[str, Any] = {"per_fold": per_fold}
    if len(bases) == 1:
        result["pooled"] = pooled[0]
    else:
        result["volumes"] = [
            {"volume": b.name, "pooled": p} for b, p in zip(bases, pooled, strict=True)
        ]
    result["recipe_settings"] = recipe_settings
    result["recipe_settings_chosen_on_sections"] = every_section
    return result


def run_crossval(
    config: TrainConfig,
    *,
    folds: int,
    output: str | os.PathLike[str],
    recipe_path: str | None = None,
    command: str | None = None,
    overwrite: bool = False,
    tta: bool = False,
    progress: Progress | None = None,
) -> CrossValidation:
    """Cross-validate a recipe over the z sections of its labelled volume.

    Each fold is trained with :func:`~vemkit.pipelines.train.run_training` into
    ``OUTPUT/fold-K`` (a complete training output with its model); a fold whose model
    exists with the same recipe is reused, so an interrupted run resumes. A recipe that
    changes only ``evaluation:`` reuses the trained folds too: their instance settings
    are chosen again on their validation sections (the fold folders are not changed).
    The results go to ``OUTPUT/crossval.json``.

    Parameters
    ----------
    config : TrainConfig
        A recipe whose test sources are z ranges of labelled volumes that it also trains
        (and validates) on, the z ranges of each volume together one contiguous span.
        Each such volume is folded along z, side by side: fold ``k`` tests block ``k``
        of every volume. Volumes without a test range train and validate in every fold;
        test sources of volumes the recipe never trains on are left out.
    folds : int
        Number of folds.
    output : path-like
        Output folder.
    recipe_path : str, optional
        The recipe file (recorded).
    command : str, optional
        The command line (recorded).
    overwrite : bool
        Start afresh in an existing cross-validation folder.
    tta : bool
        Predict the validation and test sections with test-time augmentation (averaged
        over flips); each fold's instance settings are then chosen again on its
        validation sections predicted the same way. Training is not affected, so the
        folds of a run without it are reused.
    progress : Progress, optional
        Epoch progress of each fold's training.

    Returns
    -------
    CrossValidation
        ``report``: ``plan``, ``per_fold`` (ranges, training summary, thresholds and
        scores of each fold), ``pooled`` (the scores of all test blocks together, with
        95% block-bootstrap intervals over folds x yx blocks), ``spread`` (over folds),
        ``pooled_validation_choice`` (the same with each fold's settings chosen on the
        other folds' validation sections), ``machine``, ``date``. With several folded
        volumes, ``per_fold`` entries hold ``volumes`` and ``pooled``/``spread`` are
        given per volume under ``volumes``.

    Raises
    ------
    ConfigError
        If the recipe cannot be folded or the output folder holds something else.
    """
    start = time.perf_counter()
    folding, plan, recipes, texts = fold_plan(config, folds)
    for recipe in recipes:  # every fold's init_from and teacher, before any training
        check_source_models(recipe)
    bases = folding.bases
    folder = Path(output)
    record = _plan_record(bases, plan)
    resume = _check_output(folder, config, record, overwrite=overwrite)

    regions: list[list[SegmentedRegion]] = [[] for _ in bases]
    voxel_sizes: list[VoxelSize] = []
    per_fold: list[dict[str, Any]] = []
    kept: list[_FoldPredictions] = []
    for index, (fold_set, recipe, text) in enumerate(zip(plan, recipes, texts, strict=True)):
        fold_dir = folder / f"fold-{index}"
        found = _finished(fold_dir, recipe) if resume else None
        reused = found is not None
        log.info(
            "fold %d/%d: tests %s%s",
            index + 1,
            len(plan),
            "; ".join(
                (f"{b.name} " if len(bases) > 1 else "") + f"sections {f.test[0]}-{f.test[1] - 1}"
                for b, f in zip(bases, fold_set, strict=True)
            ),
            {
                None: "",
                "same": " (trained before, reused)",
                "weights": " (trained before; new evaluation settings)",
            }[found],
        )
        if not reused:
            run_training(
                recipe,
                recipe_text=text,
                command=command,
                output=fold_dir,
                overwrite=True,
                resume=resume and resumable(fold_dir, recipe),
                progress=progress,
            )
        network, spec, card = load_predictor(fold_dir / MODEL_DIR, device=recipe.device)
        candidates: list[CandidateScores] = []
        validation_sections: list[int] = []
        if calibrates(recipe):
            for source in recipe.validation:
                loaded = load_source(source, native=True, context=spec.context)
                maps = _predict_source(network, spec, loaded, device=recipe.device, tta=tta)
                candidates.append(
                    score_candidates(maps, loaded, spec=spec, evaluation=recipe.evaluation)
                )
                validation_sections.append(int(loaded.labels.shape[0]))
            del maps, loaded
        recalibrated = bool(found == "weights" or tta) and bool(candidates)
        if recalibrated:
            # trained with other evaluation settings, or predicted otherwise than in
            # training: choose this recipe's settings on validation, predicted as the test
            chosen = choose_from_candidates(candidates, spec=spec, evaluation=recipe.evaluation)
            log.info("chosen on the validation data: %s", chosen)
            evaluation = recipe.evaluation.model_copy(update=chosen)
        elif found == "weights":
            # trained with other evaluation settings and this recipe chooses none: its own
            # fixed settings apply, not those the fold's card chose
            evaluation = recipe.evaluation
        else:
            evaluation = card_evaluation(card, recipe.evaluation)
        tests: list[LoadedSource] = []
        test_maps: list[NDArray[np.float32]] = []
        volumes: list[dict[str, Any]] = []
        thresholds = None
        for b, (base, fold, source) in enumerate(zip(bases, fold_set, recipe.test, strict=True)):
            loaded = load_source(source, native=True, context=spec.context)
            maps = _predict_source(network, spec, loaded, device=recipe.device, tta=tta)
            region = segment_outputs(
                recipe,
                maps,
                loaded,
                spec=spec,
                evaluation=evaluation,
                instance_labels=base.instance_labels,
            )
            scores = score_outputs(
                recipe, region, spec=spec, voxel_size=loaded.voxel_size, evaluation=evaluation
            )
            thresholds = scores.pop("instance_thresholds", None)
            regions[b].append(region)
            if index == 0:
                voxel_sizes.append(loaded.voxel_size)
            if candidates:
                tests.append(loaded)
                test_maps.append(maps)
            del maps
            log.info(
                "fold %d/%d scores: %s%s",
                index + 1,
                len(plan),
                f"{base.name}: " if len(bases) > 1 else "",
                _headline(scores),
            )
            volumes.append(
                {
                    "volume": base.name,
                    **{k: v for k, v in fold.to_dict().items() if k != "fold"},
                    "scores": scores,
                }
            )
        if candidates:
            kept.append(
                _FoldPredictions(
                    index,
                    recipe,
                    list(recipe.validation),
                    validation_sections,
                    candidates,
                    tests,
                    test_maps,
                )
            )
        training = card.get("training") or {}
        entry: dict[str, Any] = {
            "model": f"{fold_dir.name}/{MODEL_DIR}",  # relative to the output folder
            "reused": reused,
            "evaluation_recalibrated": recalibrated,
            "validation_sections": sum(validation_sections),
            "epochs_run": training.get("epochs_run"),
            "best_epoch": training.get("best_epoch"),
            "train_seconds": training.get("train_seconds"),
            "thresholds": thresholds,
        }
        if len(bases) == 1:
            per_fold.append({**fold_set[0].to_dict(), **entry, "scores": volumes[0]["scores"]})
        else:
            per_fold.append({"fold": index, **entry, "volumes": volumes})

    pooled = [
        _score_pooled(config, found, spec=spec, voxel_size=size, folds=len(plan))
        for found, size in zip(regions, voxel_sizes, strict=True)
    ]
    spread = [
        _spread([{"scores": f["volumes"][b]["scores"]} for f in per_fold])
        if len(bases) > 1
        else _spread(per_fold)
        for b in range(len(bases))
    ]
    choice = (
        _pooled_validation_choice(config, kept, bases=bases, spec=spec)
        if len(kept) == len(plan)
        else None
    )
    del kept
    report: dict[str, Any] = {
        "recipe_name": config.name,
        "recipe_file": recipe_path,
        "command": command,
        "folds": len(plan),
    }
    if len(bases) == 1:
        report.update(
            sections=list(bases[0].span),
            data=bases[0].source.describe(),
            voxel_size_nm=list(voxel_sizes[0].as_tuple()),
        )
    report.update(plan=record, tta=tta, per_fold=per_fold)
    if len(bases) == 1:
        report.update(pooled=pooled[0], spread=spread[0])
    else:
        report["volumes"] = [
            {
                "volume": b.name,
                "data": b.source.describe(),
                "sections": list(b.span),
                "voxel_size_nm": list(size.as_tuple()),
                "pooled": p,
                "spread": sp,
            }
            for b, size, p, sp in zip(bases, voxel_sizes, pooled, spread, strict=True)
        ]
    report.update(
        fixed_sources={
            "train": [s.describe() for s in folding.fixed_train],
            "validation": [s.describe() for s in folding.fixed_validation],
        },
        left_out=[s.describe() for s in folding.left_out],
        pooled_validation_choice=choice,
        seconds=round(time.perf_counter() - start, 1),
        machine=_machine(config.device),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    _plot(report, folder / FIGURE_FILE)
    report["figure"] = FIGURE_FILE
    _write_json(folder / CROSSVAL_FILE, report)
    return CrossValidation(output=folder, report=report, seconds=time.perf_counter() - start)


def metrics_with_intervals(pooled: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Headline metrics of scores (pooled, or a card's per source) with their intervals.

    Returns ``{"value", "low", "high"}`` per metric; the interval of a mask metric comes
    from the intervals of the thresholded map (none where only those of the objects are
    known), that of object F1 from the objects'.
    """
    objects = pooled.get("confidence_intervals") or {}
    masks = pooled.get("mask_confidence_intervals") or (
        objects if "object_f1_at" not in pooled else {}
    )
    metrics: dict[str, dict[str, float | None]] = {}
    keys = ["foreground_iou", "boundary_iou", "weighted_f1", "macro_f1"]
    if "object_f1_at" not in pooled:  # semantic targets (membranes): pixel F1 = Dice too
        keys[1:1] = ["foreground_f1", "foreground_f1_tolerant"]
    for key in keys:
        if isinstance(pooled.get(key), float):
            interval = None
            if key.endswith("_iou"):
                interval = masks.get("iou")
            elif key == "foreground_f1":
                interval = masks.get("dice")
            elif key in ("weighted_f1", "macro_f1"):
                interval = masks.get(key)
            metrics[key] = {
                "value": pooled[key],
                "low": (interval or {}).get("low"),
                "high": (interval or {}).get("high"),
            }
    for name, entry in (pooled.get("per_class") or {}).items():  # multi-class targets
        if isinstance((entry or {}).get("f1"), float):
            interval = (masks.get("per_class") or {}).get(name) or {}
            metrics[f"{name}_f1"] = {
                "value": entry["f1"],
                "low": interval.get("low"),
                "high": interval.get("high"),
            }
    for threshold, value in (pooled.get("object_f1_at") or {}).items():
        interval = (objects.get("f1_at") or {}).get(threshold) or {}
        metrics[f"object_f1@{threshold}"] = {
            "value": value,
            "low": interval.get("low"),
            "high": interval.get("high"),
        }
    return metrics


def _mean_metrics(
    volumes: Sequence[dict[str, dict[str, float | None]]],
) -> dict[str, dict[str, float | None]]:
    """Mean over volumes of the metrics every volume has (no interval)."""
    keys = [k for k in volumes[0] if all(k in v for v in volumes)]
    return {
        key: {
            "value": round(float(np.mean([v[key]["value"] or 0.0 for v in volumes])), 4),
            "low": None,
            "high": None,
        }
        for key in keys
    }


def summarise_crossval(report: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of a ``crossval.json`` report (for model cards and listings).

    Returns
    -------
    dict
        ``folds``, ``sections``, ``tta``, ``command``, ``date``, ``processor``, ``n_pred``,
        ``n_gt`` and, per headline metric (``foreground_iou``, ``object_f1@0.5``, ...),
        ``{"value", "low", "high"}`` (``low``/``high`` ``None`` without an interval);
        ``pooled_validation_choice`` (``metrics`` with the settings chosen on the other
        folds' validation sections together, and ``recipe_settings``) when the report
        has it; ``without_small_truth`` (``left_out``, ``object_f1@0.5``: object F1 without
        the true objects below ``min_size_nm3``, and its interval ``low``/``high``, ``None``
        in reports written before it had one) when it left some out. A cross-validation
        of several volumes has ``volumes`` (name, sections, object counts and metrics of
        each) and, as ``metrics``, their mean without intervals; ``sections`` is then
        ``None``.
    """
    summary: dict[str, Any] = {
        "folds": report.get("folds"),
        "sections": report.get("sections"),
        "tta": bool(report.get("tta")),
        "command": report.get("command"),
        "date": report.get("date"),
        "processor": (report.get("machine") or {}).get("processor"),
    }
    choice = report.get("pooled_validation_choice")
    if "volumes" in report:
        volumes = [
            {
                "volume": v["volume"],
                "sections": v["sections"],
                "n_pred": v["pooled"].get("n_pred"),
                "n_gt": v["pooled"].get("n_gt"),
                "metrics": metrics_with_intervals(v["pooled"]),
            }
            for v in report["volumes"]
        ]
        summary.update(
            n_pred=None,
            n_gt=None,
            volumes=volumes,
            metrics=_mean_metrics([v["metrics"] for v in volumes]),
        )
        if choice:
            chosen = [
                {"volume": v["volume"], "metrics": metrics_with_intervals(v["pooled"])}
                for v in choice["volumes"]
            ]
            summary["pooled_validation_choice"] = {
                "metrics": _mean_metrics([v["metrics"] for v in chosen]),
                "volumes": chosen,
                "recipe_settings": choice["recipe_settings"],
            }
        return summary
    pooled = report.get("pooled") or {}
    summary.update(
        n_pred=pooled.get("n_pred"), n_gt=pooled.get("n_gt"), metrics=metrics_with_intervals(pooled)
    )
    if pooled.get("small_true_objects_left_out"):
        interval = (
            (pooled.get("confidence_intervals_without_small_truth") or {}).get("f1_at") or {}
        ).get("0.5") or {}
        summary["without_small_truth"] = {
            "left_out": pooled["small_true_objects_left_out"],
            "object_f1@0.5": (pooled.get("object_f1_at_without_small_truth") or {}).get("0.5"),
            "low": interval.get("low"),
            "high": interval.get("high"),
        }
    if choice:
        summary["pooled_validation_choice"] = {
            "metrics": metrics_with_intervals(choice["pooled"]),
            "recipe_settings": choice["recipe_settings"],
            "n_pred": choice["pooled"].get("n_pred"),
        }
    return summary


def load_crossval_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``crossval.json``, the cross-validation folder holding one, or a model's.

    A model (a shipped name such as ``mito-em``, or a model folder) serves when its
    ``crossval.json`` lies next to it: compare a recipe of your own against the shipped
    recipe's cross-validation.

    Raises
    ------
    ConfigError
        If there is no report there or it cannot be read.
    """
    where = Path(path)
    file = where / CROSSVAL_FILE if where.is_dir() else where
    if not file.is_file() and not where.exists():
        with contextlib.suppress(ModelNotFoundError):  # then the error below names the path
            file = resolve_model(path) / CROSSVAL_FILE
    if not file.is_file():
        raise ConfigError(
            f"{str(where)!r} holds no {CROSSVAL_FILE}: give a folder written by vemkit crossval "
            "(or its crossval.json)"
        )
    try:
        report = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {str(file)!r}: {error}") from error
    if not isinstance(report, dict) or "per_fold" not in report or "plan" not in report:
        raise ConfigError(f"{str(file)!r} is not a vemkit crossval report")
    return report


def _tested(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """Which sections of which volume each fold tested (what a comparison must share)."""
    if "volumes" in report:
        return [(v["volume"], v["test"]) for fold in report["plan"] for v in fold["volumes"]]
    data = report.get("data") or {}
    name = "/".join(str(data[k]) for k in ("dataset", "image", "labels") if data.get(k))
    return [(name, fold["test"]) for fold in report["plan"]]


def _folds_text(tested: list[tuple[str, Any]]) -> str:
    """``volume: sections 0-3, 4-7, ...`` per volume, for messages."""
    by_volume: dict[str, list[str]] = {}
    for name, (start, stop) in tested:
        by_volume.setdefault(name, []).append(f"{start}-{stop - 1}")
    return "; ".join(f"{name}: {', '.join(ranges)}" for name, ranges in by_volume.items())


def _pooled_of_volumes(
    report: dict[str, Any], settings: str, label: str
) -> list[tuple[str, dict[str, Any]]]:
    """(volume name, pooled scores) of each volume, with the per-fold or other-folds settings."""
    source = report
    if settings == "other_folds":
        source = report.get("pooled_validation_choice") or {}
        if not source:
            raise ConfigError(
                f"cross-validation {label} has no scores with settings chosen on the other folds "
                "(its recipe does not choose instance settings on validation sections)"
            )
    if "volumes" in source:
        return [(v["volume"], v["pooled"]) for v in source["volumes"]]
    return [("", source["pooled"])]


def _paired_counts(
    pooled: dict[str, Any], label: str
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Block counts of pooled scores, and where each headline metric lies in them.

    Returns ``({"masks": counts, "objects": counts}, {metric: (counts name, score)})``;
    ``objects`` only where objects are scored.
    """
    objects = (pooled.get("confidence_intervals") or {}).get("block_counts")
    if objects is not None and "classes" in objects:  # a multi-class target
        metrics = {key: ("masks", key) for key in ("weighted_f1", "macro_f1")}
        metrics.update({f"{name}_f1": ("masks", f"f1_{name}") for name in objects["classes"]})
        return {"masks": objects}, metrics
    has_objects = "object_f1_at" in pooled
    masks = (
        (pooled.get("mask_confidence_intervals") or {}).get("block_counts")
        if has_objects
        else objects
    )
    if masks is None or (has_objects and objects is None):
        raise ConfigError(
            f"cross-validation {label} was written by an older vemkit without the block counts "
            "that a paired comparison needs: run the same vemkit crossval command again (the "
            "trained folds are reused; only the evaluation is repeated)"
        )
    key = "boundary" if "boundary_iou" in pooled else "foreground"
    counts = {"masks": masks}
    metrics = {
        f"{key}_iou": ("masks", "iou"),
        f"{key}_dice" if has_objects else f"{key}_f1": ("masks", "dice"),
    }
    if has_objects:
        counts["objects"] = objects
        for threshold in objects.get("matched") or {}:
            metrics[f"object_f1@{threshold}"] = ("objects", f"f1_at_{threshold}")
        # object F1 without the true objects below min_size_nm3, where some were left out
        # (reports written before it had intervals lack its counts)
        without = (pooled.get("confidence_intervals_without_small_truth") or {}).get("block_counts")
        if pooled.get("small_true_objects_left_out") and without is not None:
            counts["objects_without_small_truth"] = without
            for threshold in objects.get("matched") or {}:
                metrics[f"object_f1@{threshold}_without_small_truth"] = (
                    "objects_without_small_truth",
                    f"f1_at_{threshold}",
                )
    return counts, metrics


def compare_crossval(
    a: dict[str, Any] | Sequence[dict[str, Any]],
    b: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    settings: str = "per_fold",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
) -> dict[str, Any]:
    """Is recipe B better than recipe A? Paired comparison of cross-validations.

    Both must have tested the same sections of the same volumes in the same folds (say
    two recipes that differ in augmentation, or one run with ``--tta``). The same blocks
    of the pooled test sections are resampled for both, so the interval of the
    difference leaves out the sampling error the two share; it is far narrower than the
    two separate intervals (:func:`~vemkit.measure.uncertainty.paired_difference`).
    Training noise is only in it when a side has several runs (the recipe trained with
    several seeds, ``vemkit crossval --seed``): each side is then pooled over its runs
    and the runs are resampled too.

    Parameters
    ----------
    a, b : dict or sequence of dict
        ``crossval.json`` reports (:func:`load_crossval_report`), one or several per side.
    settings : {"per_fold", "other_folds"}
        Compare the scores with each fold's instance settings chosen on its own
        validation sections, or on the other folds' (``pooled_validation_choice``).
    n_resamples, confidence, seed
        Of the paired block bootstrap.
    labels : (str, str)
        Names of A and B in error messages.

    Returns
    -------
    dict
        ``a`` and ``b`` (recipe, command, TTA, date of each run), ``settings``,
        ``method``, ``n_resamples``, ``confidence`` and ``volumes``: per volume its
        ``volume`` name, ``n_blocks`` and ``metrics`` (``foreground_iou``,
        ``object_f1@0.5``, ...: ``a``, ``b``, ``difference``, ``low``, ``high``,
        ``p_better``, ``runs_a``, ``runs_b``).

    Raises
    ------
    ConfigError
        If the runs did not all test the same sections, lack the block counts (reports
        of an older vemkit: rerun them, the folds are reused), or for an unknown
        ``settings``.
    """
    if settings not in ("per_fold", "other_folds"):
        raise ConfigError(f"settings must be 'per_fold' or 'other_folds', got {settings!r}")
    sides = [[a] if isinstance(a, dict) else list(a), [b] if isinstance(b, dict) else list(b)]
    if not all(sides):
        raise ConfigError("give at least one cross-validation on each side")
    tested = _tested(sides[0][0])
    for label, runs in zip(labels, sides, strict=True):
        for index, run in enumerate(runs):
            if _tested(run) != tested:
                name = label if len(runs) == 1 else f"{label} (run {index + 1})"
                raise ConfigError(
                    f"cross-validation {name} did not test the same sections as "
                    f"{labels[0]} ({_folds_text(_tested(run))} against "
                    f"{_folds_text(tested)}); a paired comparison needs "
                    "the same folds of the same volumes (same --folds and the same z ranges "
                    "in both recipes)"
                )
    # per side, per run: (volume name, its block counts, the metrics in them) of each volume
    counted = [
        [
            [
                (name, *_paired_counts(pooled, label))
                for name, pooled in _pooled_of_volumes(run, settings, label)
            ]
            for run in runs
        ]
        for label, runs in zip(labels, sides, strict=True)
    ]
    volumes = []
    for v, (name, first, metric_map) in enumerate(counted[0][0]):
        differences = {
            part: paired_difference(
                [run[v][1][part] for run in counted[0]],
                [run[v][1][part] for run in counted[1]],
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
            )
            for part in first
            if all(part in run[v][1] for side in counted for run in side)
        }
        metrics = {
            metric: differences[part][score]
            for metric, (part, score) in metric_map.items()
            if part in differences
            and all(metric in run[v][2] for side in counted for run in side)
            and score in differences[part]
        }
        n_blocks = block_count(first["masks"])
        volumes.append({"volume": name, "n_blocks": n_blocks, "metrics": metrics})
    return {
        "a": [_about(run) for run in sides[0]],
        "b": [_about(run) for run in sides[1]],
        "settings": settings,
        "method": "paired spatial block bootstrap (percentile interval of B - A); runs of a "
        "side resampled too where it has several",
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
        "volumes": volumes,
    }


def _about(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "recipe_name": report.get("recipe_name"),
        "command": report.get("command"),
        "tta": bool(report.get("tta")),
        "folds": report.get("folds"),
        "date": report.get("date"),
    }


def metric_label(metric: str) -> str:
    """Name a metric for people: ``object_f1@0.5`` -> ``object F1@0.5``, ``_iou`` -> `` IoU``."""
    metric = metric.replace("_without_small_truth", ", small true objects left out")
    for key, label in (("_iou", " IoU"), ("_f1", " F1"), ("_dice", " Dice")):
        metric = metric.replace(key, label)
    return metric.replace("_", " ")


def plot_comparison(
    comparison: dict[str, Any], path: str | os.PathLike[str], *, names: tuple[str, str]
) -> None:
    """Forest plot of a :func:`compare_crossval` result (one row per volume and metric)."""
    several = len(comparison["volumes"]) > 1
    rows = {
        (f"{v['volume'].split('/')[0]}: " if several else "") + metric_label(metric): (
            entry["difference"],
            entry["low"],
            entry["high"],
        )
        for v in comparison["volumes"]
        for metric, entry in v["metrics"].items()
        if entry["difference"] is not None
    }
    title = f"B: {names[1]} - A: {names[0]}"
    title += (
        " (settings chosen on the other folds)" if comparison["settings"] == "other_folds" else ""
    )
    plot_differences(rows, path, title=title, xlabel="difference (B - A), 95% paired interval")
