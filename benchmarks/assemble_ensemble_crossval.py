"""Lay out the cross-validation of an ensemble recipe from cross-validations of its seeds.

Network ``i`` of an ``ensemble: N`` recipe is trained exactly as the single-network recipe
with seed ``seed + i`` (same data, schedule and patch sampling; tested in
``tests/pipelines/test_train_pipeline.py``). So the folds of ``vemkit crossval RECIPE
--seed s`` runs are the ensemble's networks: this script copies their checkpoints into
``OUTPUT/fold-k/checkpoints/network-i`` next to the ensemble's fold recipes, and
``vemkit crossval ENSEMBLE_RECIPE --folds K --output OUTPUT`` then resumes: it reuses every
network and only chooses the settings and scores the averaged maps.

Example (BENCHMARKS.md, mito-em)::

    python benchmarks/assemble_ensemble_crossval.py mito-em-ens3.yaml ens3 \\
        cv-seed0 cv-seed1 cv-seed2
    vemkit crossval mito-em-ens3.yaml --folds 4 --output ens3
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from vemkit.pipelines.crossval import _check_output, _plan_record, fold_plan
from vemkit.pipelines.train import changed_fields, parse_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="the ensemble recipe (ensemble: N)")
    parser.add_argument("output", type=Path, help="the ensemble's crossval folder")
    parser.add_argument("runs", type=Path, nargs="+", help="crossval folders of seed, seed + 1, …")
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()
    config = parse_train_config(yaml.safe_load(args.recipe.read_text(encoding="utf-8")))
    if config.ensemble != len(args.runs):
        parser.error(f"the recipe has ensemble: {config.ensemble}; give that many runs")
    # the plan and fold recipes `vemkit crossval` makes, so that it resumes these folds
    folding, plan, recipes, texts = fold_plan(config, args.folds)
    _check_output(args.output, config, _plan_record(folding.bases, plan), overwrite=False)
    for k, (recipe, text) in enumerate(zip(recipes, texts, strict=True)):
        fold_dir = args.output / f"fold-{k}"
        fold_dir.mkdir(exist_ok=True)
        (fold_dir / "recipe.yaml").write_text(text, encoding="utf-8")
        for i, run in enumerate(args.runs):
            source = run / f"fold-{k}"
            stored = parse_train_config(yaml.safe_load((source / "recipe.yaml").read_text()))
            changed = changed_fields(stored, recipe, ignore=("notes", "evaluation", "output"))
            if stored.seed != config.seed + i or set(changed) - {"seed", "ensemble"}:
                parser.error(f"{source} is not network {i} of this recipe's fold {k}: {changed}")
            target = fold_dir / "checkpoints" / f"network-{i}"
            if not target.exists():
                shutil.copytree(source / "checkpoints", target)
        print(f"fold {k}: {len(args.runs)} networks", flush=True)


if __name__ == "__main__":
    main()
