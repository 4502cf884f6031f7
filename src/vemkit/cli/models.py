"""``vemkit models list`` and ``vemkit models show NAME``: the shipped models."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vemkit.cli.common import (
    OverwriteOption,
    PrecisionOption,
    ThreadsOption,
    handle_errors,
    set_threads,
)

models_app = typer.Typer(
    name="models",
    help="Shipped pretrained models: list them, show a model card.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _voxel(value: Any) -> str:
    return "×".join(f"{v:g}" for v in value) if value else "input grid"


@models_app.command("list")
@handle_errors
def models_list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """Table of the shipped models: name, task, voxel size (nm) and held-out metrics."""
    from vemkit.pipelines.models import model_summaries

    rows = model_summaries()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no shipped models")
        return
    header = f"{'name':16s} {'task':30s} {'target':20s} {'voxel size nm':16s} held-out metrics"
    typer.echo(header)
    for row in rows:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in row["metrics"].items()) or "-"
        typer.echo(
            f"{row['name']:16s} {_clip(row['task'], 30):30s} {row['target']:20s} "
            f"{_voxel(row['voxel_size_nm']):16s} {metrics}"
        )


@models_app.command("show")
@handle_errors
def models_show_command(
    name: Annotated[str, typer.Argument(help="Shipped model name or model folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False,
) -> None:
    """Show a model card: task, target, voxel size, data, metrics, license, recipe."""
    from vemkit.pipelines.models import key_metrics, model_card

    card = model_card(name)
    if as_json:
        typer.echo(json.dumps(card, indent=2))
        return
    target = card.get("target") or {}
    lines = [
        f"{card.get('name', name)} — {card.get('task', '')}",
        f"  {card.get('description', '')}".rstrip(),
        f"  path: {card['path']}",
        f"  target: {target.get('type')}; channels: {', '.join(card.get('channels') or [])}",
        f"  voxel size: {_voxel(card.get('voxel_size_nm'))} nm (inputs are resampled to it)",
        f"  network: {card['network'].get('dims')}D U-Net, depth {card['network'].get('depth')}, "
        f"{card['network'].get('base_channels')} base channels, norm {card['network'].get('norm')}"
        + (
            f"; 2.5D input: {card['context_sections']} neighbouring section(s) on each side"
            if card.get("context_sections")
            else ""
        )
        + (
            f"; ensemble of {card['network']['ensemble']} networks (maps averaged)"
            if card["network"].get("ensemble", 1) > 1
            else ""
        )
        + ("; weights stored as float16" if card.get("weights_dtype") == "float16" else ""),
    ]
    for entry in card.get("training_data") or []:
        lines.append(f"  trained on: {json.dumps(entry)}")
    pseudo = card.get("pseudo_labels") or {}
    teacher = pseudo.get("teacher")
    teacher_name = pseudo.get("teacher_name") or teacher
    for entry in pseudo.get("images", []):
        where = {k: v for k, v in entry.items() if k in ("dataset", "image", "z_range")}
        lowered = {
            name: needed
            for name, needed in (entry.get("class_confidence") or {}).items()
            if needed < pseudo.get("confidence", 0)
        }
        below = "".join(f", {name} from {needed:.2f}" for name, needed in lowered.items())
        lines.append(
            f"  pseudo-labelled by {teacher_name}"
            + (f" ({teacher})" if teacher != teacher_name else "")
            + f" (confidence {pseudo.get('confidence')}{below}, "
            + ("its objects, " if pseudo.get("instances") else "")
            + f"{pseudo.get('share', 0):.0%} of the patches): {json.dumps(where)}"
        )
    for entry in card.get("test_data") or []:
        lines.append(f"  held out: {json.dumps(entry)}")
    instances = card.get("instances") or {}
    if instances.get("instances") not in (None, "none"):
        calibrated = (
            " (thresholds chosen on validation data)" if instances.get("calibrated_on") else ""
        )
        lines.append(
            f"  instances: {instances['instances']}, foreground > "
            f"{instances.get('foreground_threshold')}, boundary < "
            f"{instances.get('boundary_threshold')}, min size "
            f"{instances.get('min_size_nm3', 0):g} nm³"
            + (
                f", seeds of at least {instances['min_seed_size_nm3']:g} nm³"
                if instances.get("min_seed_size_nm3")
                else ""
            )
            + calibrated
        )
    metrics = key_metrics(card)
    if metrics:
        lines.append("  held-out metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    cross = card.get("cross_validation")
    if cross or card.get("leave_one_out"):
        from vemkit.pipelines.crossval import metric_label
    if cross:
        tta = ", predicted with --tta" if cross.get("tta") else ""
        for volume in cross.get("volumes") or [cross]:
            first, stop = volume["sections"]
            name = f"{volume['volume']} " if volume.get("volume") else ""
            parts = [
                f"{metric_label(key)} "
                + _scored((entry["value"], entry.get("low"), entry.get("high")))
                for key, entry in volume["metrics"].items()
            ]
            objects = f" on {volume['n_gt']} true objects" if volume.get("n_gt") else ""
            # older reports have no intervals for multi-class scores
            intervals = any(e.get("low") is not None for e in volume["metrics"].values())
            small = volume.get("without_small_truth") or {}
            if isinstance(small.get("object_f1@0.5"), float):
                f1 = _scored((small["object_f1@0.5"], small.get("low"), small.get("high")))
                parts.append(
                    f"F1@0.5 {f1} without the {small['left_out']} true objects below the "
                    "minimum object size"
                )
            lines.append(
                f"  recipe cross-validated ({cross['folds']} folds over {name}sections "
                f"{first}-{stop - 1}{tta}{', 95% intervals' if intervals else ''}{objects}): "
                + ", ".join(parts)
            )
    left_out = card.get("leave_one_out")
    if left_out:
        lines.append(
            "  on datasets left out of training (vemkit crossval --by-dataset, 95% intervals):"
        )
        for row in left_out["rows"]:
            metric = metric_label(row["metric"])
            line = f"    {row['source']}: {metric} {_scored(row['unseen'])}"
            if row.get("in_domain"):
                line += f" (in-domain {_scored(row['in_domain'])})"
            lines.append(line)
    training = card.get("training") or {}
    if training:
        machine = training.get("machine") or {}
        networks = training.get("ensemble")
        # cards from before the precision option trained in the default (float32 on the CPU)
        precision = training.get("precision")
        lines.append(
            f"  training: {f'{networks} networks, ' if networks else ''}"
            f"{training.get('epochs_run')} epochs in "
            f"{training.get('train_seconds', 0) / 60:.1f} min on {machine.get('device')} "
            f"({machine.get('torch_threads')} threads, {machine.get('processor')}"
            f"{f', {precision}' if precision else ''})"
        )
    for license_text in (card.get("license") or {}).get("training_data", []):
        lines.append(f"  training-data license: {license_text}")
    for note in card.get("notes") or []:
        lines.append(f"  note: {note}")
    if card.get("command"):
        lines.append(f"  command: {card['command']}")
    typer.echo("\n".join(line for line in lines if line.strip()))


def _scored(entry: list[float | None] | tuple[float | None, ...]) -> str:
    value, low, high = entry
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")


@models_app.command("score")
@handle_errors
def models_score_command(
    name: Annotated[str, typer.Argument(help="Shipped model name or model folder.")],
    tta: Annotated[bool, typer.Option("--tta", help="Average predictions over flips.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    precision: PrecisionOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-measure a model's held-out metrics here (needs the card's test data).

    Uses the test regions and thresholds of the card's recipe; prints the numbers next
    to the card's own, with this machine's prediction throughput.
    """
    from vemkit.pipelines.train import score_model

    result = score_model(name, tta=tta, device=device, precision=precision)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
        return
    card = result["card_held_out"]
    typer.echo(
        f"{result['model']} on its held-out data{' with --tta' if tta else ''}"
        f"{' in ' + result['precision'] if precision != 'auto' else ''} "
        f"({result['machine'].get('processor', '')}, {result['date']}):"
    )
    _comparison("metric", result["held_out"], "card", card)
    for source in result["per_source"]:
        _interval_line(source)


@models_app.command("recalibrate")
@handle_errors
def models_recalibrate_command(
    name: Annotated[str, typer.Argument(help="Shipped model name or model folder.")],
    recipe: Annotated[
        str, typer.Argument(help="The model's recipe with new evaluation settings (YAML).")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="New model folder.")],
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: ThreadsOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Re-choose a model's instance settings and re-measure it, without retraining.

    Only the recipe's evaluation section (and notes) may differ from the one the model
    was trained with. Thresholds (and the instance method, with instance_candidates) are
    chosen on the validation sources; the weights are copied unchanged to OUTPUT.
    """
    import shlex

    from vemkit.pipelines.train import load_train_config, recalibrate_model

    config, text = load_train_config(recipe)
    set_threads(threads)
    card = recalibrate_model(
        name,
        config,
        output=output,
        recipe_text=text,
        command=shlex.join(["vemkit", "models", "recalibrate", name, recipe, "-o", output]),
        overwrite=overwrite,
        device=device,
    )
    previous = card["recalibrations"][-1]["previous"]
    typer.echo(f"{card.get('name', name)} recalibrated into {output}")
    instances = card.get("instances") or {}
    typer.echo(
        "  instances: "
        + ", ".join(f"{k} {v}" for k, v in instances.items() if k != "calibrated_on")
    )
    _comparison("held-out metric", card["metrics"]["held_out"], "before", previous.get("held_out"))


def _interval_line(source: dict[str, Any]) -> None:
    """One line of 95% block-bootstrap intervals for a test source, if it has them."""
    intervals = source.get("confidence_intervals")
    if not intervals:
        return
    data = source.get("data") or {}
    where = " ".join(str(data[key]) for key in ("dataset", "image") if data.get(key))
    if data.get("z_range"):
        first, stop = data["z_range"]
        where += f" z {first}-{stop - 1}"
    parts = [
        f"{key} {entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"
        for key, entry in (
            ("IoU", intervals.get("iou")),
            ("Dice (= pixel F1)", intervals.get("dice")),
            *((f"F1@{t}", e) for t, e in (intervals.get("f1_at") or {}).items()),
            ("weighted F1", intervals.get("weighted_f1")),
            ("macro F1", intervals.get("macro_f1")),
            *((f"{c} F1", e) for c, e in (intervals.get("per_class") or {}).items()),
        )
        if entry and entry.get("low") is not None
    ]
    typer.echo(f"  95% CI ({intervals['n_blocks']}-block bootstrap) {where}: " + ", ".join(parts))


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _comparison(title: str, now: dict[str, Any], label: str, other: dict[str, Any] | None) -> None:
    """Print metrics now next to another set of them (a nested metric one row per key)."""
    other = other or {}
    typer.echo(f"  {title:34s} {'now':>9s} {label:>9s}")
    for key, value in now.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                _score_line(f"{key} {sub}", subvalue, (other.get(key) or {}).get(sub))
        else:
            _score_line(key, value, other.get(key))


def _score_line(name: str, now: Any, card: Any) -> None:
    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, (int, float)) else "-"

    typer.echo(f"  {name:34s} {fmt(now):>9s} {fmt(card):>9s}")
