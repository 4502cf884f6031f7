"""float32 against bfloat16 autocast on this CPU: training steps, prediction, card metrics.

For each shipped model that `vemkit train` made (its card holds the recipe and test
regions): the time of one training step (forward + backward + AdamW on a batch of the
recipe's patch size), `vemkit models score` in both precisions (the held-out metrics the
card reports) and the prediction throughput on the card's first test region (best of two
after a warm-up). Best of ``--repeat`` timed training steps after two warm-up steps.
Prints a Markdown table.

    python benchmarks/bench_precision.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

PRECISIONS = ("float32", "bfloat16")


def step_seconds(model: str, precision: str, *, repeat: int) -> float:
    """Time one training step of ``model``'s architecture at its recipe's batch shape."""
    import torch
    import yaml

    from vemkit.ml.checkpoint import read_model_info
    from vemkit.ml.losses import BCEDiceLoss
    from vemkit.ml.networks import build_network
    from vemkit.ml.precision import resolve_precision
    from vemkit.ml.zoo import resolve_model

    config, card = read_model_info(resolve_model(model))
    recipe = yaml.safe_load(card["recipe"])
    member = config.member()
    network = build_network(member, seed=0).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    batch = int(recipe.get("batch_size", 8))
    shape = (batch, member.in_channels, *recipe["patch_shape"])
    image = torch.randn(shape).to(memory_format=torch.channels_last)
    target = (torch.rand(batch, member.out_channels, *shape[2:]) > 0.5).float()
    valid = torch.ones_like(target)
    loss_fn = BCEDiceLoss()
    autocast = resolve_precision(precision, "cpu")
    times = []
    for i in range(repeat + 2):
        start = time.perf_counter()
        with autocast():
            prediction = network(image)
        loss = loss_fn(prediction.float(), target, valid)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return min(times)


def predict_seconds(model: str, precision: str, *, repeat: int) -> tuple[float, int]:
    """Best time of ``vemkit predict``'s code path on the model's first test region."""
    import yaml

    from vemkit.pipelines.predict import load_predictor, predict_block
    from vemkit.pipelines.train import load_source, parse_train_config

    network, spec, card = load_predictor(model)
    config = parse_train_config(yaml.safe_load(card["recipe"]), where=model)
    loaded = load_source(config.test[0], native=True, context=spec.context)
    options = {"spec": spec, "voxel_size": loaded.voxel_size, "precision": precision}
    predict_block(network, loaded.image[:, :256, :256], **options)  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        predict_block(network, loaded.image, **options)
        times.append(time.perf_counter() - start)
    return min(times), int(loaded.image.size)


def main_metric(held_out: dict[str, Any]) -> str:
    """The card's headline numbers, as `vemkit models show` names them."""
    if "weighted_f1" in held_out:
        return f"weighted F1 {held_out['weighted_f1']:.4f}, macro F1 {held_out['macro_f1']:.4f}"
    text = f"IoU {held_out['foreground_iou']:.4f}, F1 {held_out['foreground_f1']:.4f}"
    objects = held_out.get("object_f1_at") or {}
    if "0.5" in objects:
        text += f", object F1@0.5 {objects['0.5']:.4f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="mito-em only, 3 timed steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()

    import torch

    from vemkit.datasets import data_root
    from vemkit.ml.precision import cpu_bfloat16_native
    from vemkit.pipelines.train import score_model

    torch.set_num_threads(args.threads)
    repeat = args.repeat or (3 if args.quick else 8)
    models = ["mito-em"] if args.quick else ["mito-em", "membrane-em", "multiclass-em"]
    native = {True: "yes", False: "no (emulated)", None: "unknown"}[cpu_bfloat16_native()]
    lines = [
        f"CPU bfloat16 instructions: {native}; {args.threads} threads; training step = "
        f"forward + backward + AdamW on one batch of the recipe's patches, best of {repeat}.",
        "",
        "| model | precision | training step | held-out (card regions) | predict MVoxel/s "
        "(first test region) |",
        "|---|---|---|---|---|",
    ]
    have_data = data_root() is not None
    for model in models:
        for precision in PRECISIONS:
            seconds = step_seconds(model, precision, repeat=repeat)
            scored = "(no ../shared/data)"
            speed = "–"
            if have_data:
                result = score_model(
                    model, precision="auto" if precision == "float32" else precision
                )
                scored = main_metric(result["held_out"])
                elapsed, voxels = predict_seconds(model, precision, repeat=2)
                speed = f"{voxels / elapsed / 1e6:.2f}"
            lines.append(
                f"| {model} | {precision} | {seconds * 1000:.0f} ms | {scored} | {speed} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
