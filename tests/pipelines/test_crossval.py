"""`vemkit crossval`: fold plans, pooled scoring and a tiny end-to-end run with resume."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from scipy import ndimage
from typer.testing import CliRunner

from vemkit.cli.main import app
from vemkit.errors import ConfigError
from vemkit.geometry import VoxelSize
from vemkit.measure.metrics import evaluate
from vemkit.ml.checkpoint import load_model
from vemkit.pipelines.crossval import (
    CROSSVAL_FILE,
    compare_crossval,
    load_crossval_report,
    plan_folds,
    pool_regions,
    run_crossval,
    summarise_crossval,
    with_fold_teachers,
)
from vemkit.pipelines.train import SegmentedRegion, parse_train_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- fold plans ------------------------------------------------------------------------------
def test_folds_cover_every_section_once():
    plan = plan_folds((2, 17), 4, validation_sections=2)
    tested = [z for fold in plan for z in range(*fold.test)]
    assert tested == list(range(2, 17))
    assert [fold.test for fold in plan] == [(2, 6), (6, 10), (10, 14), (14, 17)]
    for fold in plan:
        used = [
            z for ranges in (fold.validation, fold.train) for a, b in ranges for z in range(a, b)
        ]
        # train + validation + test = the span, without overlap
        assert sorted(used + list(range(*fold.test))) == list(range(2, 17))


def test_validation_sits_before_the_test_block_or_after_it_at_the_start():
    plan = plan_folds((0, 10), 5, validation_sections=3)
    assert plan[0].test == (0, 2)
    assert plan[0].validation == ((2, 5),)  # nothing before: after the block
    assert plan[1].test == (2, 4)
    assert plan[1].validation == ((0, 2), (4, 5))  # 2 before, the third after
    assert plan[3].validation == ((3, 6),)
    assert plan[3].train == ((0, 3), (8, 10))


def test_no_validation_sections():
    plan = plan_folds((0, 6), 3, validation_sections=0)
    assert all(fold.validation == () for fold in plan)
    assert plan[1].train == ((0, 2), (4, 6))


@pytest.mark.parametrize(
    ("folds", "validation", "words"),
    [
        (1, 1, "at least 2 folds"),
        (9, 1, "at least 9 labelled sections"),
        (2, 2, "no section is left to train on"),
        (2, -1, "validation_sections"),
    ],
)
def test_bad_fold_plans_are_refused(folds, validation, words):
    with pytest.raises(ConfigError, match=words):
        plan_folds((0, 4), folds, validation_sections=validation)


# --- pooling ---------------------------------------------------------------------------------
def _region(objects, truth_objects, ignore=None):
    objects = np.asarray(objects, np.uint32)
    truth_objects = np.asarray(truth_objects, np.uint32)
    known = truth_objects != ignore if ignore is not None else np.ones(objects.shape, bool)
    truth = ((truth_objects > 0) & known).astype(np.uint8)
    if ignore is not None:
        truth[~known] = 2
    return SegmentedRegion(
        predicted=(objects > 0).astype(np.uint8),
        truth=truth,
        ignore_label=2 if ignore is not None else None,
        objects=objects,
        truth_objects=truth_objects,
        objects_ignore=ignore,
    )


def test_pooled_objects_stay_apart_and_pooled_f1_sums_the_matches():
    # two one-section regions, both with objects numbered 1 and 2
    a = np.zeros((1, 8, 8), np.uint32)
    a[0, :3, :3] = 1
    a[0, 5:, 5:] = 2
    truth_a = a.copy()
    b = np.zeros((1, 8, 8), np.uint32)
    b[0, :3, 5:] = 1  # a false positive
    truth_b = np.zeros((1, 8, 8), np.uint32)
    truth_b[0, 5:, :3] = 1  # a miss
    truth_b[0, 4, 4] = 9  # unannotated
    regions = [_region(a, truth_a, ignore=9), _region(b, truth_b, ignore=9)]
    pooled = pool_regions(regions)
    assert pooled.objects.shape == (2, 8, 8)
    assert len(np.unique(pooled.objects)) == 4  # 0 + three distinct objects
    assert pooled.objects_ignore == 4  # three true objects, then the ignore value
    assert np.count_nonzero(pooled.truth_objects == pooled.objects_ignore) == 1

    def object_scores(region):
        return evaluate(
            region.objects,
            region.truth_objects,
            voxel_size=VoxelSize.coerce((50.0, 10.0, 10.0)),
            instance=True,
            thresholds=(0.5,),
            ignore_label=region.objects_ignore,
        )

    pooled_scores = object_scores(pooled)
    tp = n = 0
    for region in regions:
        scores = object_scores(region)
        tp += scores["instances"][0]["tp"]
        n += scores["n_pred"] + scores["n_gt"]
    assert tp == 2
    assert pooled_scores["f1_at"]["0.5"] == pytest.approx(2 * tp / n)


def test_pooling_without_objects_stacks_the_masks():
    region = SegmentedRegion(
        predicted=np.ones((2, 4, 4), np.uint8),
        truth=np.zeros((2, 4, 4), np.uint8),
        ignore_label=None,
    )
    pooled = pool_regions([region, region, region])
    assert pooled.predicted.shape == (6, 4, 4)
    assert pooled.objects is None


# --- recipes ---------------------------------------------------------------------------------
def tube_volume(shape=(8, 48, 48), seed=1):
    """Dark tubes running along z (objects crossing fold borders) on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.indices(shape[1:])
    for index in range(1, 7):
        cy, cx = rng.integers(8, 40, size=2)
        first, last = sorted(rng.integers(0, shape[0] + 1, size=2))
        radius = rng.uniform(3.5, 6.0)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        for z in range(first, max(last, first + 2)):
            if z < shape[0]:
                labels[z][disc & (labels[z] == 0)] = index
    image = 170.0 - 90.0 * (labels > 0) + rng.normal(0, 10, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def tubes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tubes")
    image, labels = tube_volume()
    tifffile.imwrite(folder / "raw.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    return folder


def tube_recipe(folder, **changes):
    source = {
        "image": str(folder / "raw.tif"),
        "labels": str(folder / "labels.tif"),
        "voxel_size": [50, 10, 10],
    }
    data = {
        "name": "tiny-tubes",
        "task": "tubes",
        "train": [{**source, "z_range": [0, 5]}],
        "validation": [{**source, "z_range": [5, 6]}],
        "test": [{**source, "z_range": [6, 8]}],
        "target": {"type": "foreground_boundary", "boundary_width_nm": 20},
        "network": {"dims": 2, "depth": 2, "base_channels": 4, "norm": "batch"},
        "patch_shape": [32, 32],
        "batch_size": 4,
        "epochs": 10,
        "samples_per_epoch": 32,  # enough to learn the tubes (pooled IoU ~0.7)
        "validation_samples": 4,
        "prediction": {"tile": 64},
        "evaluation": {"calibrate_thresholds": True, "min_size_nm3": 1000},
        "optimizer": {"learning_rate": 0.01},
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"test": []}, "test data"),
        (
            {"test": [{"image": "other.tif", "labels": "l.tif", "z_range": [0, 2]}]},
            "no test source",
        ),
        ({"test": [{"image": "X", "labels": "Y"}]}, "z_range"),
        ("gap", "in no split"),
        ("overlap", "overlap"),
    ],
)
def test_recipes_that_cannot_be_folded(tubes, tmp_path, change, words):
    data = tube_recipe(tubes)
    if change == "gap":
        data["test"][0]["z_range"] = [7, 8]
    elif change == "overlap":
        data["test"][0]["z_range"] = [4, 8]
    else:
        for key, value in change.items():
            data[key] = [{**data["train"][0], **s} if "image" not in s else s for s in value]
            if key == "test" and value and "z_range" not in value[0]:
                data[key] = [{k: v for k, v in data["train"][0].items() if k != "z_range"}]
    with pytest.raises(ConfigError, match=words):
        run_crossval(parse_train_config(data), folds=2, output=tmp_path / "cv")
    assert not (tmp_path / "cv" / CROSSVAL_FILE).exists()


@pytest.fixture(scope="module")
def crossval(tubes, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cv") / "tubes-crossval"
    config = parse_train_config(tube_recipe(tubes))
    return config, run_crossval(config, folds=3, output=out, command="vemkit crossval tubes.yaml")


def test_every_section_is_predicted_by_a_model_that_never_saw_it(crossval):
    _, result = crossval
    report = result.report
    assert report["folds"] == 3
    assert report["sections"] == [0, 8]
    assert [f["test"] for f in report["per_fold"]] == [[0, 3], [3, 6], [6, 8]]
    for fold in report["per_fold"]:
        model_json = result.output / f"fold-{fold['fold']}" / "model" / "model.json"
        card = json.loads(model_json.read_text())["card"]
        trained = {z for entry in card["training_data"] for z in range(*entry["z_range"])}
        validated = {z for entry in card["validation_data"] for z in range(*entry["z_range"])}
        assert not trained & set(range(*fold["test"]))
        assert not validated & set(range(*fold["test"]))
        assert len(validated) == 1  # as many validation sections as the recipe
        assert fold["thresholds"]["foreground"] == card["instances"]["foreground_threshold"]
        assert not fold["reused"]
    assert json.loads((result.output / CROSSVAL_FILE).read_text())["pooled"] == report["pooled"]
    assert (result.output / report["figure"]).read_bytes()[:4] == b"\x89PNG"


def test_each_fold_learns_from_the_teacher_of_its_own_fold(crossval, tubes, tmp_path):
    _, teachers = crossval
    image, _ = tube_volume(seed=7)
    tifffile.imwrite(tmp_path / "unlabelled.tif", image)
    source = {"image": str(tmp_path / "unlabelled.tif"), "voxel_size": [50, 10, 10]}
    per_fold = {
        "teacher": str(teachers.output / "fold-{fold}" / "model"),
        "sources": [source],
        "confidence": 0.6,  # tiny teachers
    }
    config = parse_train_config(tube_recipe(tubes, epochs=1, pseudo_labels=per_fold))
    result = run_crossval(config, folds=3, output=tmp_path / "students")
    for fold in result.report["per_fold"]:
        index = fold["fold"]
        card = json.loads((result.output / f"fold-{index}" / "model" / "model.json").read_text())[
            "card"
        ]
        assert card["pseudo_labels"]["teacher"] == str(teachers.output / f"fold-{index}" / "model")
    # One teacher for every fold has seen the test blocks of the others: refused.
    one = {**per_fold, "teacher": str(teachers.output / "fold-0" / "model")}
    with pytest.raises(ConfigError, match="leak"):
        run_crossval(
            parse_train_config(tube_recipe(tubes, epochs=1, pseudo_labels=one)),
            folds=3,
            output=tmp_path / "leaky",
        )
    assert not (tmp_path / "leaky").exists()  # refused before any fold trained
    # `vemkit crossval --teachers DIR` sets the same per-fold teachers: the folds are reused
    path = tmp_path / "student.yaml"
    path.write_text(yaml.safe_dump(tube_recipe(tubes, epochs=1, pseudo_labels=one)))
    args = ["crossval", str(path), "-k", "3", "-o", str(result.output), "-q"]
    shown = CliRunner().invoke(app, [*args, "--teachers", str(teachers.output)])
    assert shown.exit_code == 0, shown.output
    assert (
        json.loads((result.output / CROSSVAL_FILE).read_text())["pooled"]
        == (result.report["pooled"])
    )
    assert "--teachers" in json.loads((result.output / CROSSVAL_FILE).read_text())["command"]
    for wrong, words in ((tmp_path, "not a vemkit crossval output"),):
        bad = CliRunner().invoke(app, [*args, "--teachers", str(wrong)])
        assert bad.exit_code == 2
        assert words in bad.output
    # a recipe that starts from its teacher starts each fold from the fold's teacher too
    starts = parse_train_config(
        tube_recipe(tubes, epochs=1, pseudo_labels=one, init_from=one["teacher"])
    )
    folded = with_fold_teachers(starts, teachers.output)
    assert folded.init_from == folded.pseudo_labels.teacher == per_fold["teacher"]
    other = starts.model_copy(update={"init_from": str(teachers.output / "fold-1" / "model")})
    assert with_fold_teachers(other, teachers.output).init_from == other.init_from
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(tube_recipe(tubes)))
    bad = CliRunner().invoke(app, ["crossval", str(plain), "--teachers", str(teachers.output)])
    assert bad.exit_code == 2
    assert "needs a recipe with pseudo_labels" in bad.output


def test_pooled_scores_are_the_folds_together(crossval):
    _, result = crossval
    pooled, folds = result.report["pooled"], result.report["per_fold"]
    assert pooled["n_gt"] == sum(f["scores"]["n_gt"] for f in folds)
    assert pooled["n_pred"] == sum(f["scores"]["n_pred"] for f in folds)
    matches = sum(
        (f["scores"]["object_f1_at"]["0.5"] or 0.0)
        * (f["scores"]["n_pred"] + f["scores"]["n_gt"])
        / 2
        for f in folds
    )
    assert round(matches) == pytest.approx(matches, abs=1e-3)
    denominator = pooled["n_pred"] + pooled["n_gt"]
    assert pooled["object_f1_at"]["0.5"] == pytest.approx(2 * round(matches) / denominator)
    assert 0.0 <= pooled["foreground_iou"] <= 1.0
    assert pooled["confidence_intervals"]["n_blocks"] >= 3  # the folds are bootstrap blocks
    assert "instance_thresholds" not in pooled
    masks = pooled["mask_confidence_intervals"]
    assert masks["iou"]["value"] == pytest.approx(pooled["foreground_iou"], abs=1e-6)
    assert set(result.report["spread"]) >= {"foreground_iou", "object_f1@0.5"}


def test_settings_chosen_on_the_other_folds_validation_sections(crossval):
    """No fold's settings are chosen on a section of its own test block."""
    _, result = crossval
    report = result.report
    choice = report["pooled_validation_choice"]
    # validation sections: fold 0 -> 3, fold 1 -> 2, fold 2 -> 5 (tests 0-2, 3-5, 6-7)
    assert [f["validation"] for f in report["per_fold"]] == [[[3, 4]], [[2, 3]], [[5, 6]]]
    assert [f["chosen_on_sections"] for f in choice["per_fold"]] == [2, 1, 3]
    assert choice["recipe_settings_chosen_on_sections"] == 3
    assert choice["pooled"]["n_gt"] == report["pooled"]["n_gt"]
    for fold in choice["per_fold"]:
        assert set(fold["settings"]) == {"foreground_threshold", "boundary_threshold"}
    assert set(choice["recipe_settings"]) == {"foreground_threshold", "boundary_threshold"}
    summary = summarise_crossval(report)["pooled_validation_choice"]
    assert summary["metrics"]["object_f1@0.5"]["value"] == choice["pooled"]["object_f1_at"]["0.5"]


def test_a_rerun_reuses_finished_folds_and_a_changed_recipe_is_refused(crossval, tubes):
    config, first = crossval
    fold_model = first.output / "fold-1" / "model" / "model.safetensors"
    stamp = fold_model.stat().st_mtime_ns
    again = run_crossval(config, folds=3, output=first.output)
    assert all(f["reused"] for f in again.report["per_fold"])
    assert fold_model.stat().st_mtime_ns == stamp
    assert again.report["pooled"] == first.report["pooled"]
    other = parse_train_config(tube_recipe(tubes, epochs=1))
    with pytest.raises(ConfigError, match="another recipe"):
        run_crossval(other, folds=3, output=first.output)
    with pytest.raises(ConfigError, match="another recipe"):
        run_crossval(config, folds=2, output=first.output)


@pytest.mark.parametrize("interrupted", ["after training", "in the last epoch"])
def test_an_unfinished_fold_goes_on_from_its_checkpoints(crossval, tmp_path, interrupted, caplog):
    config, first = crossval
    copy = tmp_path / "copy"
    shutil.copytree(first.output, copy)
    shutil.rmtree(copy / "fold-2" / "model")
    if interrupted == "in the last epoch":
        (copy / "fold-2" / "checkpoints" / "network.json").unlink()
    caplog.set_level(logging.INFO, logger="vemkit.ml.train")
    resumed = run_crossval(config, folds=3, output=copy)
    assert [f["reused"] for f in resumed.report["per_fold"]] == [True, True, False]
    # no epoch trained again: the fold's model is the one the first run trained
    assert not [r for r in caplog.records if r.getMessage().startswith("epoch ")]
    again = load_model(copy / "fold-2" / "model")[0].state_dict()
    for key, value in load_model(first.output / "fold-2" / "model")[0].state_dict().items():
        assert torch.equal(again[key], value), key


def test_recipes_written_by_an_older_vemkit_still_resume(crossval, tmp_path):
    """A field added since (stored without it) is not a change, nor are name, device, notes."""
    config, first = crossval
    copy = tmp_path / "copy"
    shutil.copytree(first.output, copy)
    plan = json.loads((copy / "folds.json").read_text())
    del plan["recipe"]["evaluation"]["instance_candidates"]
    (copy / "folds.json").write_text(json.dumps(plan))
    fold_recipe = copy / "fold-0" / "recipe.yaml"
    stored = yaml.safe_load(fold_recipe.read_text())
    del stored["evaluation"]["instance_candidates"]
    fold_recipe.write_text(yaml.safe_dump(stored))
    reworded = config.model_copy(
        update={"name": "renamed", "device": "cpu:0", "notes": ["a new note"]}
    )
    resumed = run_crossval(reworded, folds=3, output=copy)
    assert all(f["reused"] for f in resumed.report["per_fold"])
    assert resumed.report["recipe_name"] == "renamed"
    assert resumed.report["pooled"] == first.report["pooled"]


def test_new_evaluation_settings_reuse_the_trained_folds(crossval, tubes, tmp_path):
    config, first = crossval
    copy = tmp_path / "copy"
    shutil.copytree(first.output, copy)
    cards = {p: p.read_bytes() for p in copy.glob("fold-*/model/model.json")}
    data = tube_recipe(tubes)
    data["evaluation"] = {
        **data["evaluation"],
        "instance_candidates": ["boundary_watershed_3d", "connected_components_3d"],
        "min_seed_size_nm3": 2000,
    }
    changed = run_crossval(parse_train_config(data), folds=3, output=copy)
    folds = changed.report["per_fold"]
    assert all(f["reused"] and f["evaluation_recalibrated"] for f in folds)
    assert all(
        f["scores"]["instance_method"] in data["evaluation"]["instance_candidates"] for f in folds
    )
    assert {p: p.read_bytes() for p in copy.glob("fold-*/model/model.json")} == cards
    # the plan now records the new settings, and the same command again reuses as before
    plan = json.loads((copy / "folds.json").read_text())
    assert plan["recipe"]["evaluation"]["min_seed_size_nm3"] == 2000
    again = run_crossval(parse_train_config(data), folds=3, output=copy)
    assert again.report["pooled"] == changed.report["pooled"]
    # back to the original settings: the folds' own cards serve again
    original = run_crossval(config, folds=3, output=copy)
    assert not any(f["evaluation_recalibrated"] for f in original.report["per_fold"])
    assert original.report["pooled"] == first.report["pooled"]


def test_fixed_evaluation_settings_replace_those_the_folds_chose(crossval, tubes, tmp_path):
    """A recipe that stops calibrating scores every reused fold with its own thresholds."""
    _, first = crossval
    copy = tmp_path / "copy"
    shutil.copytree(first.output, copy)
    data = tube_recipe(tubes)
    data["evaluation"] = {
        **data["evaluation"],
        "calibrate_thresholds": False,
        "foreground_threshold": 0.9,
        "boundary_threshold": 0.2,
    }
    fixed = run_crossval(parse_train_config(data), folds=3, output=copy)
    folds = fixed.report["per_fold"]
    assert all(f["reused"] and not f["evaluation_recalibrated"] for f in folds)
    assert [f["thresholds"] for f in folds] == [{"foreground": 0.9, "boundary": 0.2}] * 3
    assert [f["thresholds"] for f in first.report["per_fold"]] != [
        {"foreground": 0.9, "boundary": 0.2}
    ] * 3


def test_tta_reuses_the_trained_folds_and_predicts_with_flips(crossval, tmp_path, monkeypatch):
    import vemkit.pipelines.train as train_module

    config, first = crossval
    copy = tmp_path / "copy"
    shutil.copytree(first.output, copy)
    calls = []
    original = train_module.predict_block

    def recording(*args, **kwargs):
        calls.append(kwargs.get("tta"))
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "predict_block", recording)
    result = run_crossval(config, folds=3, output=copy, tta=True)
    folds = result.report["per_fold"]
    assert result.report["tta"] is True
    assert all(f["reused"] and f["evaluation_recalibrated"] for f in folds)
    # per fold: its validation section (to choose the settings) and its test block
    assert calls == [True] * 6
    assert result.report["pooled"]["n_gt"] == first.report["pooled"]["n_gt"]
    assert summarise_crossval(result.report)["tta"] is True
    assert first.report["tta"] is False


def test_other_folders_are_never_overwritten(crossval, tmp_path):
    config, _ = crossval
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.tif").write_bytes(b"data")
    with pytest.raises(ConfigError, match="not a vemkit crossval output"):
        run_crossval(config, folds=3, output=folder, overwrite=True)
    assert (folder / "precious.tif").read_bytes() == b"data"


def test_cli_crossval(tubes, tmp_path):
    path = tmp_path / "tubes.yaml"
    path.write_text(yaml.safe_dump(tube_recipe(tubes, epochs=1)))
    out = tmp_path / "cv"
    result = CliRunner().invoke(
        app, ["crossval", str(path), "--folds", "2", "-o", str(out), "--threads", "1", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "2-fold cross-validation of tiny-tubes over sections 0-7" in result.output
    assert "all folds together (95% CI over" in result.output
    assert "object F1@0.5: " in result.output
    assert "each fold's settings chosen on the other folds' validation sections" in result.output
    assert "settings chosen on all 2 validation sections: foreground_threshold" in result.output
    assert (out / CROSSVAL_FILE).is_file()
    bad = CliRunner().invoke(app, ["crossval", str(path), "--folds", "1", "-o", str(out)])
    assert bad.exit_code == 2
    assert "at least 2 folds" in bad.output
    # another seed: every fold trains with it (training noise, for crossval-compare)
    seeded = tmp_path / "cv-seed"
    again = CliRunner().invoke(
        app, ["crossval", str(path), "--folds", "2", "-o", str(seeded), "--seed", "3", "-q"]
    )
    assert again.exit_code == 0, again.output
    assert yaml.safe_load((seeded / "fold-1" / "recipe.yaml").read_text())["seed"] == 3
    report = json.loads((seeded / CROSSVAL_FILE).read_text())
    assert report["command"].endswith("--seed 3")
    weights = "fold-1/model/model.safetensors"
    assert (seeded / weights).read_bytes() != (out / weights).read_bytes()


def test_semantic_targets_report_pixel_f1_with_its_interval(tubes, tmp_path, one_torch_thread):
    data = tube_recipe(tubes, epochs=1, target={"type": "binary"})
    data["evaluation"] = {
        "calibrate_thresholds": True,
        "instances": "none",
        "boundary_dilation_px": 2,
    }
    result = run_crossval(parse_train_config(data), folds=2, output=tmp_path / "cv")
    metrics = summarise_crossval(result.report)["metrics"]
    iou, f1 = metrics["foreground_iou"], metrics["foreground_f1"]
    assert f1["value"] == pytest.approx(2 * iou["value"] / (1 + iou["value"]), abs=1e-6)
    assert f1["low"] <= f1["value"] <= f1["high"]
    assert "foreground_f1_tolerant" in metrics
    assert not any(key.startswith("object_f1") for key in metrics)


def test_multiclass_targets_get_intervals_and_are_compared_paired(tubes, tmp_path):
    # the tubes as three classes: background, tube inside, tube rim (a thin, rarer class)
    image = tifffile.imread(tubes / "raw.tif")
    tubes_in = tifffile.imread(tubes / "labels.tif") > 0
    inside = ndimage.binary_erosion(tubes_in, structure=np.ones((1, 3, 3), bool))
    tifffile.imwrite(tmp_path / "raw.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", np.where(tubes_in, np.where(inside, 1, 2), 0))
    target = {
        "type": "multiclass",
        "classes": {0: 0, 1: 1, 2: 2},
        "class_names": ["background", "tube", "rim"],
    }
    data = tube_recipe(tmp_path, epochs=2, target=target)
    data["evaluation"] = {"instances": "none"}
    config = parse_train_config(data)
    a = run_crossval(config, folds=2, output=tmp_path / "a").report
    b = run_crossval(config, folds=2, output=tmp_path / "b", tta=True).report
    pooled = a["pooled"]
    intervals = pooled["confidence_intervals"]
    assert intervals["n_blocks"] == 2 * 16
    assert intervals["weighted_f1"]["value"] == pytest.approx(pooled["weighted_f1"])
    metrics = summarise_crossval(a)["metrics"]
    assert list(metrics) == ["weighted_f1", "macro_f1", "background_f1", "tube_f1", "rim_f1"]
    for name, entry in metrics.items():
        assert entry["low"] <= entry["value"] <= entry["high"], name
    assert metrics["rim_f1"]["value"] == pooled["per_class"]["rim"]["f1"]

    same = compare_crossval(a, a)["volumes"][0]
    assert list(same["metrics"]) == list(metrics)
    assert same["n_blocks"] == 32
    assert all(m["difference"] == 0.0 for m in same["metrics"].values())
    result = compare_crossval(a, b)["volumes"][0]["metrics"]
    macro = result["macro_f1"]
    assert macro["a"] == pytest.approx(a["pooled"]["macro_f1"])
    assert macro["b"] == pytest.approx(b["pooled"]["macro_f1"])
    assert macro["low"] <= macro["difference"] <= macro["high"]
    assert result["rim_f1"]["b"] == pytest.approx(b["pooled"]["per_class"]["rim"]["f1"])
    shown = CliRunner().invoke(app, ["crossval-compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert shown.exit_code == 0, shown.output
    assert "rim F1" in shown.output


@pytest.fixture(scope="module")
def several_volumes(tubes, tmp_path_factory):
    """Tube volume A (8 sections) and B (6 sections), C trains only, D is tested only."""
    folder = tmp_path_factory.mktemp("volumes")
    for name, shape, seed in (("b", (6, 48, 48), 2), ("c", (4, 48, 48), 3), ("d", (4, 48, 48), 4)):
        image, labels = tube_volume(shape, seed)
        tifffile.imwrite(folder / f"{name}-raw.tif", image, photometric="minisblack")
        tifffile.imwrite(folder / f"{name}-labels.tif", labels, photometric="minisblack")
    data = tube_recipe(tubes)

    def source(name, z_range=None):
        entry = {
            "image": str(folder / f"{name}-raw.tif"),
            "labels": str(folder / f"{name}-labels.tif"),
            "voxel_size": [50, 10, 10],
        }
        return {**entry, "z_range": z_range} if z_range else entry

    data["train"] += [source("b", [0, 4]), source("c")]
    data["validation"] += [source("b", [4, 5])]
    data["test"] += [source("b", [5, 6]), source("d")]
    return data


def test_several_volumes_are_folded_side_by_side(several_volumes, tmp_path, one_torch_thread):
    config = parse_train_config(several_volumes)
    result = run_crossval(config, folds=2, output=tmp_path / "cv")
    report = result.report
    a, b = "raw.tif", "b-raw.tif"
    assert [v["volume"] for v in report["volumes"]] == [a, b]
    assert [v["sections"] for v in report["volumes"]] == [[0, 8], [0, 6]]
    assert [[v["test"] for v in f["volumes"]] for f in report["per_fold"]] == [
        [[0, 4], [0, 3]],
        [[4, 8], [3, 6]],
    ]
    assert report["fixed_sources"]["train"][0]["image"].endswith("c-raw.tif")
    assert len(report["left_out"]) == 1
    assert report["left_out"][0]["image"].endswith("d-raw.tif")
    for fold in report["per_fold"]:
        card = json.loads((result.output / fold["model"] / "model.json").read_text())["card"]
        tested = {(v["volume"], z) for v in fold["volumes"] for z in range(*v["test"])}
        seen = {
            (Path(entry["image"]).name, z)
            for entry in card["training_data"] + card["validation_data"]
            if entry.get("z_range")
            for z in range(*entry["z_range"])
        }
        assert seen
        assert not seen & tested
        assert any(entry["image"].endswith("c-raw.tif") for entry in card["training_data"])
        assert len(card["test_data"]) == 2  # one block per folded volume, not D
    for index, volume in enumerate(report["volumes"]):
        folds = [f["volumes"][index]["scores"] for f in report["per_fold"]]
        assert volume["pooled"]["n_gt"] == sum(s["n_gt"] for s in folds)
    summary = summarise_crossval(report)
    assert summary["sections"] is None
    mean = np.mean([v["metrics"]["foreground_iou"]["value"] for v in summary["volumes"]])
    assert summary["metrics"]["foreground_iou"]["value"] == pytest.approx(mean, abs=1e-4)
    # fold 0 tests A 0-3 and B 0-2: fold 1's validation (A 3, B 2) is inside them, so
    # fold 0 chooses on its own validation only (A 4, B 3): 2 sections; fold 1 likewise.
    choice = report["pooled_validation_choice"]
    assert [f["chosen_on_sections"] for f in choice["per_fold"]] == [2, 2]
    assert [v["volume"] for v in choice["volumes"]] == [a, b]
    assert (result.output / "crossval.png").read_bytes()[:4] == b"\x89PNG"
    again = run_crossval(config, folds=2, output=tmp_path / "cv")
    assert all(f["reused"] for f in again.report["per_fold"])
    assert again.report["volumes"] == report["volumes"]
    compared = compare_crossval(report, again.report, settings="other_folds")
    assert [v["volume"] for v in compared["volumes"]] == [a, b]
    assert all(m["difference"] == 0.0 for v in compared["volumes"] for m in v["metrics"].values())
    # a model shipped with this report shows each volume's cross-validated scores
    model = tmp_path / "model"
    shutil.copytree(result.output / report["per_fold"][0]["model"], model)
    shutil.copy(result.output / CROSSVAL_FILE, model / CROSSVAL_FILE)
    shown = CliRunner().invoke(app, ["models", "show", str(model)])
    assert shown.exit_code == 0, shown.output
    assert "recipe cross-validated (2 folds over raw.tif sections 0-7, 95%" in shown.output
    assert "recipe cross-validated (2 folds over b-raw.tif sections 0-5, 95%" in shown.output


def test_cli_crossval_of_several_volumes(several_volumes, tmp_path):
    path = tmp_path / "several.yaml"
    path.write_text(yaml.safe_dump({**several_volumes, "epochs": 1}))
    result = CliRunner().invoke(
        app, ["crossval", str(path), "--folds", "2", "-o", str(tmp_path / "cv"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "2-fold cross-validation of tiny-tubes over 2 volumes" in result.output
    assert " b-raw.tif:" in result.output
    assert "left out (the recipe never trains on its volume)" in result.output
    assert "mean over the volumes: foreground IoU: " in result.output


def test_a_model_shipped_with_its_crossval_report_shows_it(crossval, tmp_path):
    from vemkit.pipelines.models import model_card

    _, result = crossval
    model = tmp_path / "model"
    shutil.copytree(result.output / result.report["per_fold"][0]["model"], model)
    assert "cross_validation" not in model_card(model)
    shutil.copy(result.output / CROSSVAL_FILE, model / CROSSVAL_FILE)
    summary = model_card(model)["cross_validation"]
    report = json.loads((model / CROSSVAL_FILE).read_text())
    assert summary == summarise_crossval(report)
    pooled = report["pooled"]
    assert summary["metrics"]["object_f1@0.5"]["value"] == pooled["object_f1_at"]["0.5"]
    assert summary["metrics"]["foreground_iou"]["low"] <= pooled["foreground_iou"]
    shown = CliRunner().invoke(app, ["models", "show", str(model)])
    assert shown.exit_code == 0, shown.output
    assert "recipe cross-validated (3 folds over sections 0-7, 95% intervals on" in shown.output


def test_two_cross_validations_of_the_same_folds_are_compared_paired(crossval, tmp_path):
    config, first = crossval
    copy = tmp_path / "b"
    shutil.copytree(first.output, copy)
    other = run_crossval(config, folds=3, output=copy, tta=True)  # the same folds, with TTA
    a, b = first.report, other.report

    same = compare_crossval(a, a)
    metrics = same["volumes"][0]["metrics"]
    assert list(metrics) == ["foreground_iou", "foreground_dice", "object_f1@0.5", "object_f1@0.75"]
    assert all(m["difference"] == 0.0 and m["p_better"] == 0.5 for m in metrics.values())
    assert same["volumes"][0]["n_blocks"] == 3 * 16

    result = compare_crossval(a, b)
    f1 = result["volumes"][0]["metrics"]["object_f1@0.5"]
    assert (f1["a"], f1["b"]) == (
        a["pooled"]["object_f1_at"]["0.5"],
        b["pooled"]["object_f1_at"]["0.5"],
    )
    assert f1["low"] <= f1["difference"] <= f1["high"]
    iou = result["volumes"][0]["metrics"]["foreground_iou"]
    assert iou["a"] == pytest.approx(a["pooled"]["foreground_iou"])
    assert iou["b"] == pytest.approx(b["pooled"]["foreground_iou"])
    assert iou["difference"] != 0.0  # flips change the maps
    chosen = compare_crossval(a, b, settings="other_folds")["volumes"][0]["metrics"]
    assert (
        chosen["object_f1@0.5"]["a"]
        == a["pooled_validation_choice"]["pooled"]["object_f1_at"]["0.5"]
    )

    # several runs on a side (seeds of one recipe) are pooled, and resampled too
    several = compare_crossval([a, b], a)
    assert [run["tta"] for run in several["a"]] == [False, True]
    pooled_iou = several["volumes"][0]["metrics"]["foreground_iou"]
    assert (pooled_iou["runs_a"], pooled_iou["runs_b"]) == (2, 1)
    assert min(iou["a"], iou["b"]) <= pooled_iou["a"] <= max(iou["a"], iou["b"])

    moved = json.loads(json.dumps(b))
    moved["plan"][0]["test"] = [0, 2]
    with pytest.raises(ConfigError, match="did not test the same sections"):
        compare_crossval(a, moved)
    old = json.loads(json.dumps(b))
    del old["pooled"]["confidence_intervals"]["block_counts"]
    with pytest.raises(ConfigError, match="older vemkit"):
        compare_crossval(a, old, labels=("A", "old"))

    runner = CliRunner()
    args = ["crossval-compare", str(first.output), str(copy)]
    outputs = ["--plot", str(tmp_path / "diff.png"), "--json", str(tmp_path / "diff.json")]
    shown = runner.invoke(app, args + outputs)
    assert shown.exit_code == 0, shown.output
    assert "B - A, paired block bootstrap, 95% interval" in shown.output
    assert "object F1@0.5" in shown.output
    assert "P(B > A)" in shown.output
    assert (tmp_path / "diff.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        json.loads((tmp_path / "diff.json").read_text())["volumes"][0]["metrics"]
        == (result["volumes"][0]["metrics"])
    )
    again = runner.invoke(app, args + outputs)
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert runner.invoke(app, [*args, *outputs, "--overwrite"]).exit_code == 0
    pooled = runner.invoke(app, ["crossval-compare", f"{first.output},{copy}", str(copy)])
    assert pooled.exit_code == 0, pooled.output
    assert "runs pooled and resampled (2 + 1)" in pooled.output
    assert load_crossval_report("mito-em")["recipe_name"] == "mito-em"  # the shipped report
    missing = runner.invoke(app, ["crossval-compare", str(first.output), str(tmp_path)])
    assert missing.exit_code == 2
    assert "holds no crossval.json" in missing.output


# --- leave one dataset out -------------------------------------------------------------------
def test_each_dataset_is_left_out_of_training_and_tested(several_volumes, tmp_path):
    from vemkit.pipelines.leave_out import run_leave_one_dataset_out, summary_rows
    from vemkit.pipelines.train import run_training

    config = parse_train_config({**several_volumes, "epochs": 2})
    full = run_training(config, output=tmp_path / "full")  # the reference: every dataset
    result = run_leave_one_dataset_out(config, output=tmp_path / "lodo", reference=full.model)
    report = result.report
    # A (raw.tif) and B are trained and tested; C is trained only; D is tested only
    assert [d["left_out"] for d in report["datasets"]] == ["raw.tif", "b-raw.tif"]
    assert report["only_tested"] == ["d-raw.tif"]
    for entry in report["datasets"]:
        card = json.loads((result.output / entry["model"] / "model.json").read_text())["card"]
        seen = {Path(s["image"]).name for s in card["training_data"] + card["validation_data"]}
        assert entry["left_out"] not in seen
        assert "c-raw.tif" in seen
        assert {Path(s["image"]).name for s in card["test_data"]} == {entry["left_out"]}
        assert entry["trained_on"] == sorted(seen)
        # the in-domain scores are the reference's card scores of the same region
        (scored,), (reference,) = entry["per_source"], entry["in_domain"]
        assert reference["data"] == scored["data"]
        assert reference["foreground_iou"] in [
            s["foreground_iou"] for s in full.card["metrics"]["per_source"]
        ]
    rows = summary_rows(report)
    assert [r["metric"] for r in rows] == ["foreground_iou", "object_f1@0.5"] * 2
    assert all(r["in_domain"] is not None for r in rows)
    # a model shipped with this report shows the unseen and in-domain scores
    shipped = tmp_path / "shipped"
    shutil.copytree(full.model, shipped)
    shutil.copy(result.output / "leave_one_out.json", shipped / "leave_one_out.json")
    shown = CliRunner().invoke(app, ["models", "show", str(shipped)])
    assert shown.exit_code == 0, shown.output
    assert "on datasets left out of training" in shown.output
    assert "    b-raw.tif z 5: foreground IoU " in shown.output
    assert "(in-domain " in shown.output
    assert (result.output / "leave_one_out.png").read_bytes()[:4] == b"\x89PNG"
    again = run_leave_one_dataset_out(config, output=tmp_path / "lodo")
    assert all(d["reused"] for d in again.report["datasets"])
    assert again.report["reference"] is None
    assert [d["per_source"] for d in again.report["datasets"]] == [
        d["per_source"] for d in report["datasets"]
    ]


def test_leaving_out_needs_two_trained_datasets(tubes, tmp_path):
    from vemkit.pipelines.leave_out import run_leave_one_dataset_out

    with pytest.raises(ConfigError, match="trains on one dataset only"):
        run_leave_one_dataset_out(parse_train_config(tube_recipe(tubes)), output=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_leaving_out_refuses_pseudo_labels(several_volumes, tmp_path):
    from vemkit.pipelines.leave_out import run_leave_one_dataset_out

    pseudo = {"teacher": "mito-em", "sources": [{"image": several_volumes["train"][0]["image"]}]}
    config = parse_train_config({**several_volumes, "pseudo_labels": pseudo})
    with pytest.raises(ConfigError, match="bring the left-out dataset back"):
        run_leave_one_dataset_out(config, output=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_crossval_by_dataset(several_volumes, tmp_path):
    path = tmp_path / "several.yaml"
    path.write_text(yaml.safe_dump({**several_volumes, "epochs": 1}))
    out = tmp_path / "lodo"
    args = ["crossval", str(path), "--by-dataset", "-o", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tiny-tubes: each of 2 datasets left out of training" in result.output
    assert " without b-raw.tif (trained on c-raw.tif, raw.tif):" in result.output
    assert "d-raw.tif: never trained on" in result.output
    assert (out / "leave_one_out.json").is_file()
    bad = CliRunner().invoke(app, [*args, "--folds", "3"])
    assert bad.exit_code == 2
    assert "takes no --folds" in bad.output
