"""Cross-validate an ensemble of trained folds: average the maps of several runs' fold models.

Takes two or more ``vemkit crossval`` folders of the same folds (e.g. one recipe trained
with ``--seed 0`` and ``--seed 1``). For each fold it averages the probability maps of
that fold's models (none of which saw the fold's test block), chooses the instance
settings on the averaged validation maps as ``vemkit crossval`` does, scores the test
block, and pools the folds with block-bootstrap intervals. The report it writes is read
by ``vemkit crossval-compare`` (against any of the member runs).

Example (BENCHMARKS.md, mito-em)::

    python benchmarks/ensemble_crossval.py ens-s0-s1 mito-em-crossval mito-em-crossval-seed1
    vemkit crossval-compare mito-em-crossval ens-s0-s1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from vemkit.pipelines.crossval import _score_pooled, load_crossval_report
from vemkit.pipelines.predict import load_predictor
from vemkit.pipelines.train import (
    _predict_source,
    choose_from_candidates,
    load_source,
    parse_train_config,
    score_candidates,
    score_outputs,
    segment_outputs,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder for the ensemble's crossval.json")
    parser.add_argument("runs", type=Path, nargs="+", help="crossval folders of the same folds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error("give at least two cross-validation folders")
    torch.set_num_threads(args.threads)
    reports = [load_crossval_report(run) for run in args.runs]
    if any(r["plan"] != reports[0]["plan"] or "volumes" in r for r in reports):
        parser.error("the runs must be single-volume cross-validations of the same folds")
    base = reports[0]
    regions, per_fold = [], []
    for fold in range(base["folds"]):
        recipe_file = args.runs[0] / f"fold-{fold}" / "recipe.yaml"
        recipe = parse_train_config(yaml.safe_load(recipe_file.read_text()))
        models = [load_predictor(run / f"fold-{fold}" / "model") for run in args.runs]
        spec = models[0][1]

        def averaged(source, models=models, spec=spec):
            loaded = load_source(source, native=True, context=spec.context)
            maps = [_predict_source(net, s, loaded, device="cpu") for net, s, _ in models]
            return loaded, np.mean(maps, axis=0)

        candidates = []
        for source in recipe.validation:
            loaded, maps = averaged(source)
            candidates.append(
                score_candidates(maps, loaded, spec=spec, evaluation=recipe.evaluation)
            )
        chosen = choose_from_candidates(candidates, spec=spec, evaluation=recipe.evaluation)
        evaluation = recipe.evaluation.model_copy(update=chosen)
        loaded, maps = averaged(recipe.test[0])
        region = segment_outputs(recipe, maps, loaded, spec=spec, evaluation=evaluation)
        scores = score_outputs(
            recipe, region, spec=spec, voxel_size=loaded.voxel_size, evaluation=evaluation
        )
        scores.pop("instance_thresholds", None)
        print(f"fold {fold}: {chosen}, IoU {scores['foreground_iou']:.3f}", flush=True)
        regions.append(region)
        per_fold.append({"fold": fold, "thresholds": chosen, "scores": scores})
    recipe_file = args.runs[0] / "fold-0" / "recipe.yaml"
    config = parse_train_config(yaml.safe_load(recipe_file.read_text()))
    pooled = _score_pooled(
        config, regions, spec=spec, voxel_size=loaded.voxel_size, folds=base["folds"]
    )
    report = {
        "recipe_name": f"ensemble of {len(args.runs)} runs of {base['recipe_name']}",
        "command": "python benchmarks/ensemble_crossval.py "
        + " ".join(str(p) for p in [args.output, *args.runs]),
        "members": [r.get("command") for r in reports],
        "folds": base["folds"],
        "sections": base["sections"],
        "data": base["data"],
        "plan": base["plan"],
        "tta": False,
        "per_fold": per_fold,
        "pooled": pooled,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "crossval.json").write_text(json.dumps(report, indent=1, default=str))
    f1 = pooled["object_f1_at"].get("0.5")
    print(f"pooled: foreground IoU {pooled['foreground_iou']:.3f}, object F1@0.5 {f1:.3f}")


if __name__ == "__main__":
    main()
