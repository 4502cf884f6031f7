"""``vemkit crossval RECIPE --folds K``: k-fold cross-validation of a recipe along z."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from vemkit.cli.common import (
    OverwriteOption,
    QuietOption,
    RecipeDeviceOption,
    RecipePrecisionOption,
    ThreadsOption,
    cli_progress,
    handle_errors,
    log_epochs_unless_tty,
    set_threads,
)


def _score(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    if entry.get("low") is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def _label(metric: str) -> str:
    """``object_f1@0.5`` -> ``object F1@0.5``, ``foreground_iou`` -> ``foreground IoU``."""
    from vemkit.pipelines.crossval import metric_label

    return metric_label(metric)


def _cell(value: object) -> str:
    if isinstance(value, list):  # an ensemble's networks, e.g. best epochs
        return "/".join(_cell(v) for v in value)
    return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)


@handle_errors
def crossval_command(
    config: Annotated[
        str, typer.Argument(help="Training recipe (YAML), e.g. recipes/mito-em.yaml.")
    ],
    folds: Annotated[
        int | None, typer.Option("--folds", "-k", help="Number of folds along z [default: 4].")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Output folder (default: the recipe's output + '-crossval')."
        ),
    ] = None,
    device: RecipeDeviceOption = None,
    precision: RecipePrecisionOption = None,
    threads: ThreadsOption = None,
    overwrite: OverwriteOption = False,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Predict validation and test sections averaged over flips (reuses trained "
            "folds; settings are chosen again on validation).",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help="Train every fold with this seed instead of the recipe's: compare the two "
            "runs with crossval-compare to see how far training noise alone moves the scores.",
        ),
    ] = None,
    teachers: Annotated[
        str | None,
        typer.Option(
            "--teachers",
            help="Another cross-validation's folder: fold k's pseudo_labels teacher is its "
            "fold-k model (a recipe with pseudo_labels; each fold's teacher never saw the "
            "fold's test sections).",
        ),
    ] = None,
    by_dataset: Annotated[
        bool,
        typer.Option(
            "--by-dataset",
            help="Leave one dataset out instead: train without each dataset the recipe "
            "trains on, test on its test sources (how the model does on data it never saw).",
        ),
    ] = False,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="--by-dataset: a model this recipe trained on every dataset (e.g. the "
            "shipped one); its scores of the same regions are shown beside.",
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Cross-validate a recipe: train K models, each tested on sections it never saw.

    The recipe's test sources must be z ranges of labelled volumes it also trains on;
    several such volumes are folded side by side and scored each on its own. Every
    section is predicted once, by the fold that left it out, and all are scored together
    (OUTPUT/crossval.json, OUTPUT/crossval.png). Rerun the same command to resume.
    With --by-dataset, each dataset is left out of training in turn instead
    (OUTPUT/leave_one_out.json, OUTPUT/leave_one_out.png).
    """
    from vemkit.errors import ConfigError
    from vemkit.pipelines.crossval import (
        CROSSVAL_FILE,
        run_crossval,
        summarise_crossval,
        with_fold_teachers,
    )
    from vemkit.pipelines.train import load_train_config

    recipe, _ = load_train_config(config)
    log_epochs_unless_tty(
        "vemkit.ml.train", "vemkit.pipelines.train", "vemkit.pipelines.crossval", quiet=quiet
    )
    if device is not None:
        recipe = recipe.model_copy(update={"device": device})
    if precision is not None:
        recipe = recipe.model_copy(update={"precision": precision})
    if seed is not None:
        recipe = recipe.model_copy(update={"seed": seed})
    if teachers is not None:
        if by_dataset:
            raise ConfigError("--teachers goes with folds along z, not --by-dataset")
        recipe = with_fold_teachers(recipe, teachers)
    set_threads(threads)
    # recorded in the report's command: where and how the trainings ran, and their seed
    machine_args = (
        (["--device", device] if device else [])
        + (["--precision", precision] if precision else [])
        + (["--threads", str(threads)] if threads else [])
    )
    seed_args = ["--seed", str(seed)] if seed is not None else []
    if by_dataset:
        if folds is not None or tta:
            raise ConfigError("--by-dataset leaves datasets out: it takes no --folds or --tta")
        _leave_datasets_out(
            recipe,
            config,
            output=output,
            reference=reference,
            command_args=machine_args + seed_args,
            overwrite=overwrite,
            quiet=quiet,
        )
        return
    if reference is not None:
        raise ConfigError("--reference goes with --by-dataset")
    folds = 4 if folds is None else folds
    folder = output or f"{recipe.output_folder()}-crossval" + (
        f"-seed{seed}" if seed is not None else ""
    )
    command = shlex.join(
        ["vemkit", "crossval", config, "--folds", str(folds)]
        + (["--output", output] if output else [])
        + machine_args
        + (["--tta"] if tta else [])
        + seed_args
        + (["--teachers", teachers] if teachers else [])
    )
    result = run_crossval(
        recipe,
        folds=folds,
        output=folder,
        recipe_path=config,
        command=command,
        overwrite=overwrite,
        tta=tta,
        progress=cli_progress(quiet=quiet),
    )
    report = result.report
    summary = summarise_crossval(report)
    reused = sum(f["reused"] for f in report["per_fold"])
    if "volumes" in report:
        where = f"{len(report['volumes'])} volumes"
        # (name, this volume's entry of each fold, its pooled scores, its pooled metrics)
        volumes = [
            (v["volume"], [f["volumes"][b] for f in report["per_fold"]], v["pooled"], m)
            for b, (v, m) in enumerate(zip(report["volumes"], summary["volumes"], strict=True))
        ]
    else:
        first, stop = report["sections"]
        where = f"sections {first}-{stop - 1}"
        volumes = [("", report["per_fold"], report["pooled"], summary)]
    typer.echo(
        f"{report['folds']}-fold cross-validation of {recipe.name} over {where}"
        f"{' with --tta' if tta else ''} in {result.seconds / 60:.1f} min"
        + (f" ({reused} folds trained before, reused)" if reused else "")
    )
    for name, folds_of_volume, pooled, entry in volumes:
        if name:
            typer.echo(f" {name}:")
        _print_volume(report, folds_of_volume, pooled, entry["metrics"])
    for item in report.get("left_out") or []:
        name = f"{item['dataset']}/{item['image']}" if item.get("dataset") else item["image"]
        typer.echo(f" left out (the recipe never trains on its volume): {name}")
    choice = summary.get("pooled_validation_choice")
    if choice:
        per_fold = report["pooled_validation_choice"]["per_fold"]
        counts = sorted({f["chosen_on_sections"] for f in per_fold})
        several = f"{counts[0]} to {counts[-1]}" if len(counts) > 1 else str(counts[0])
        own = report["per_fold"][0]["validation_sections"]
        typer.echo(
            "  each fold's settings chosen on the other folds' validation sections "
            f"({several} sections instead of {own}):"
        )
        mean = "mean over the volumes: " if "volumes" in choice else ""
        for label, metrics in [(mean, choice["metrics"])] + [
            (f"{v['volume']}: ", v["metrics"]) for v in choice.get("volumes", [])
        ]:
            for key, value in metrics.items():
                typer.echo(f"    {label}{_label(key)}: {_score(value)}")
        settings = ", ".join(f"{k} {v}" for k, v in choice["recipe_settings"].items())
        chosen_on = report["pooled_validation_choice"]["recipe_settings_chosen_on_sections"]
        typer.echo(f"  settings chosen on all {chosen_on} validation sections: {settings}")
    typer.echo(f"report: {Path(folder) / CROSSVAL_FILE}")


def _interval_text(value: float, low: float | None, high: float | None) -> str:
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")


def _leave_datasets_out(
    recipe: Any,
    config: str,
    *,
    output: str | None,
    reference: str | None,
    command_args: list[str],
    overwrite: bool,
    quiet: bool,
) -> None:
    """Run and print ``vemkit crossval RECIPE --by-dataset``."""
    from vemkit.pipelines.leave_out import LEAVE_OUT_FILE, run_leave_one_dataset_out, summary_rows

    folder = output or f"{recipe.output_folder()}-by-dataset"
    command = shlex.join(
        ["vemkit", "crossval", config, "--by-dataset"]
        + (["--output", output] if output else [])
        + (["--reference", reference] if reference else [])
        + command_args
    )
    result = run_leave_one_dataset_out(
        recipe,
        output=folder,
        reference=reference,
        recipe_path=config,
        command=command,
        overwrite=overwrite,
        progress=cli_progress(quiet=quiet),
    )
    report = result.report
    reused = sum(d["reused"] for d in report["datasets"])
    typer.echo(
        f"{recipe.name}: each of {len(report['datasets'])} datasets left out of training in "
        f"{result.seconds / 60:.1f} min" + (f" ({reused} trained before, reused)" if reused else "")
    )
    for entry in report["datasets"]:
        typer.echo(f" without {entry['left_out']} (trained on {', '.join(entry['trained_on'])}):")
        for row in (r for r in summary_rows(report) if r["left_out"] == entry["left_out"]):
            line = f"    {row['source']}: {_label(row['metric'])} {_interval_text(*row['unseen'])}"
            if row["in_domain"] is not None:
                line += f"; in-domain ({report['reference']}) {_interval_text(*row['in_domain'])}"
            typer.echo(line)
    for name in report["only_tested"]:
        typer.echo(
            f" {name}: never trained on, so its own test scores are already unseen-data scores"
        )
    typer.echo(f"report: {Path(folder) / LEAVE_OUT_FILE}")


def _print_volume(
    report: dict[str, Any],
    folds: list[dict[str, Any]],
    pooled: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Print one volume's table of folds and its pooled scores."""
    key = next(
        (k for k in ("foreground_iou", "boundary_iou", "weighted_f1") if k in pooled),
        None,
    )
    header = f"  {'fold':>4}  {'test':>7}  {'best epoch':>10}  {key or '':>15}"
    has_objects = "object_f1_at" in pooled
    if has_objects:
        header += f"  {'F1@0.5':>7}  {'objects':>7}"
    typer.echo(header)
    for index, (fold, entry) in enumerate(zip(report["per_fold"], folds, strict=True)):
        scores = entry["scores"]
        a, b = entry["test"]
        line = f"  {index:>4}  {f'{a}-{b - 1}':>7}  {_cell(fold['best_epoch']):>10}"
        line += f"  {_cell(scores.get(key)):>15}"
        if has_objects:
            line += f"  {_cell((scores.get('object_f1_at') or {}).get('0.5')):>7}"
            line += f"  {scores.get('n_gt', '-'):>7}"
        typer.echo(line)
    intervals = pooled.get("confidence_intervals") or {}
    masks = pooled.get("mask_confidence_intervals") or {}
    blocks = f"95% CI over {intervals.get('n_blocks', masks.get('n_blocks'))} blocks"
    typer.echo(f"  all folds together ({blocks}):")
    for name, entry in metrics.items():
        if not name.startswith("object_f1@"):
            typer.echo(f"    {_label(name)}: {_score(entry)}")
    if has_objects:
        typer.echo(f"    instances' foreground IoU: {_score(intervals.get('iou'))}")
        for name, entry in metrics.items():
            if name.startswith("object_f1@"):
                typer.echo(f"    {_label(name)}: {_score(entry)}")
        typer.echo(f"  objects: {pooled['n_pred']} predicted, {pooled['n_gt']} true")
        if pooled.get("small_true_objects_left_out"):
            without = pooled.get("object_f1_at_without_small_truth") or {}
            interval = (
                (pooled.get("confidence_intervals_without_small_truth") or {}).get("f1_at") or {}
            ).get("0.5") or {"value": without.get("0.5")}
            typer.echo(
                f"  without the {pooled['small_true_objects_left_out']} true objects below "
                f"min_size_nm3 (none of that size can be predicted): object F1@0.5 "
                f"{_score(interval)}"
            )


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


@handle_errors
def crossval_compare_command(
    a: Annotated[
        str,
        typer.Argument(
            help="Cross-validation A (folder or its crossval.json), or a shipped model whose "
            "recipe was cross-validated (mito-em); several runs (seeds) separated by commas."
        ),
    ],
    b: Annotated[
        str, typer.Argument(help="Cross-validation B of the same folds; several: commas.")
    ],
    settings: Annotated[
        str,
        typer.Option(
            "--settings",
            help="Compare the scores with the instance settings chosen per fold ('per-fold') "
            "or on the other folds' validation sections ('other-folds').",
        ),
    ] = "per-fold",
    plot: Annotated[
        str | None,
        typer.Option("--plot", help="Write a forest plot of the differences (.png/.svg/.pdf)."),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the comparison as JSON.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Is B better than A? Paired comparison of cross-validations of the same folds.

    Both must have tested the same sections (same --folds, same z ranges); the recipes may
    differ in anything else, or one may use --tta. The same blocks of the test sections
    are resampled for both, so the 95% interval of B - A leaves out the sampling error
    the two share and is far narrower than the two separate intervals. Training noise is
    in it only when a side lists several runs of its recipe (crossval --seed 1, 2, ...):
    each side is then pooled over its runs and the runs are resampled too.
    """
    from vemkit.errors import ConfigError
    from vemkit.io.atomic import atomic_output, check_output_path
    from vemkit.pipelines.crossval import (
        compare_crossval,
        load_crossval_report,
        plot_comparison,
    )

    choice = {"per-fold": "per_fold", "other-folds": "other_folds"}.get(settings)
    if choice is None:
        raise ConfigError(f"--settings must be 'per-fold' or 'other-folds', got {settings!r}")
    for path in (plot, json_out):
        if path is not None:
            check_output_path(path, overwrite=overwrite)
    paths = [[p for p in side.split(",") if p] for side in (a, b)]
    comparison = compare_crossval(
        [load_crossval_report(p) for p in paths[0]],
        [load_crossval_report(p) for p in paths[1]],
        settings=choice,
    )
    for label, side, about in (
        ("A", paths[0], comparison["a"]),
        ("B", paths[1], comparison["b"]),
    ):
        for path, run in zip(side, about, strict=True):
            typer.echo(
                f"{label}: {path} ({run['recipe_name']}, {run['folds']} folds"
                f"{', --tta' if run['tta'] else ''})"
            )
    where = "each fold's own" if choice == "per_fold" else "the other folds'"
    runs = (
        f"; runs pooled and resampled ({len(paths[0])} + {len(paths[1])})"
        if len(paths[0]) + len(paths[1]) > 2
        else ""
    )
    typer.echo(
        f"B - A, paired block bootstrap, 95% interval; settings chosen on {where} validation{runs}"
    )
    for volume in comparison["volumes"]:
        name = volume["volume"] or "the test sections of all folds"
        typer.echo(f" {name} ({volume['n_blocks']} blocks):")
        width = max([20] + [len(_label(metric)) for metric in volume["metrics"]])
        typer.echo(
            f"  {'metric':<{width}} {'A':>6} {'B':>6} {'B - A':>7}  {'95% interval':<18} P(B > A)"
        )
        for metric, entry in volume["metrics"].items():
            interval = f"[{_signed(entry['low'])}, {_signed(entry['high'])}]"
            better = "-" if entry["p_better"] is None else f"{entry['p_better']:.2f}"
            typer.echo(
                f"  {_label(metric):<{width}} {_cell(entry['a']):>6} {_cell(entry['b']):>6} "
                f"{_signed(entry['difference']):>7}  {interval:<18} {better:>8}"
            )
    if len(paths[0]) == 1 or len(paths[1]) == 1:
        typer.echo(
            "A side with one run leaves training noise out of the interval: cross-validate "
            "its recipe with --seed too and list the runs with commas."
        )
    if json_out is not None:
        with atomic_output(json_out, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(comparison, indent=2) + "\n")
        typer.echo(f"comparison: {json_out}")
    if plot is not None:
        names = tuple(", ".join(Path(p).name or p for p in side) for side in paths)
        plot_comparison(comparison, plot, names=(names[0], names[1]))
        typer.echo(f"plot: {plot}")
