"""`vemkit train` through Typer's runner: a tiny recipe, its output and its epoch log."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tifffile
import torch
import yaml
from typer.testing import CliRunner

from vemkit.cli.main import app

runner = CliRunner()
LOGGERS = ("vemkit.ml.train", "vemkit.pipelines.train")


@pytest.fixture(autouse=True)
def _isolate():
    previous_threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    yield
    torch.set_num_threads(previous_threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def tiny_recipe(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((5, 48, 48), np.uint8)
    labels[:, 10:22, 12:30] = 1
    labels[:, 30:42, 28:40] = 1
    image = (180 - 100 * labels + rng.normal(0, 10, labels.shape)).clip(0, 255)
    tifffile.imwrite(tmp_path / "raw.tif", image.astype(np.uint8))
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    source = {
        "image": str(tmp_path / "raw.tif"),
        "labels": str(tmp_path / "labels.tif"),
        "voxel_size": [50, 10, 10],
    }
    recipe = {
        "name": "tiny-cli",
        "task": "blobs",
        "train": [{**source, "z_range": [0, 3]}],
        "validation": [{**source, "z_range": [3, 5]}],
        "target": {"type": "binary"},
        "network": {"dims": 2, "depth": 2, "base_channels": 4},
        "patch_shape": [32, 32],
        "batch_size": 4,
        "epochs": 2,
        "samples_per_epoch": 8,
        "validation_samples": 4,
        "prediction": {"tile": 48},
        "output": str(tmp_path / "out"),
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_train_logs_one_line_per_epoch_without_a_terminal(tiny_recipe, caplog):
    result = runner.invoke(app, ["train", str(tiny_recipe), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "trained tiny-cli" in result.output
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epochs) == 2
    assert epochs[0].startswith("epoch 1/2: train loss ")
    assert "ETA 0:0" in epochs[0]
    assert epochs[1].endswith("ETA 0:00)")
    assert (tiny_recipe.parent / "out" / "model" / "model.json").is_file()


def test_train_quiet_logs_no_epochs(tiny_recipe, caplog):
    result = runner.invoke(app, ["train", str(tiny_recipe), "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if r.getMessage().startswith("epoch ")]


def test_train_an_ensemble_reports_its_networks(tiny_recipe, caplog):
    recipe = yaml.safe_load(tiny_recipe.read_text())
    tiny_recipe.write_text(yaml.safe_dump({**recipe, "ensemble": 2, "epochs": 1}))
    caplog.set_level(logging.INFO, logger="vemkit.pipelines.train")
    result = runner.invoke(app, ["train", str(tiny_recipe), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "(2 networks, 2 epochs, best 1/1)" in result.output
    messages = [r.getMessage() for r in caplog.records]
    assert "training network 2 of 2 (seed 1)" in messages
    shown = runner.invoke(app, ["models", "show", str(tiny_recipe.parent / "out" / "model")])
    assert shown.exit_code == 0, shown.output
    assert "ensemble of 2 networks (maps averaged)" in shown.output
    assert "training: 2 networks, 2 epochs" in shown.output


def test_train_in_bfloat16_records_it_and_scores_in_either_precision(tiny_recipe):
    recipe = yaml.safe_load(tiny_recipe.read_text())
    test = {**recipe["validation"][0], "z_range": [3, 5]}
    tiny_recipe.write_text(yaml.safe_dump({**recipe, "test": [test], "epochs": 1}))
    command = ["train", str(tiny_recipe), "--threads", "1", "--precision", "bfloat16"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    model = tiny_recipe.parent / "out" / "model"
    card = json.loads((model / "model.json").read_text())["card"]
    assert card["training"]["precision"] == "bfloat16"
    assert card["command"].endswith("--precision bfloat16 --threads 1")
    assert yaml.safe_load(card["recipe"]).get("precision") is None  # the file, unchanged
    shown = runner.invoke(app, ["models", "show", str(model)])
    assert shown.exit_code == 0, shown.output
    assert " threads, " in shown.output
    assert ", bfloat16)" in shown.output
    scored = runner.invoke(app, ["models", "score", str(model), "--precision", "bfloat16"])
    assert scored.exit_code == 0, scored.output
    assert "held-out data in bfloat16" in scored.output
    as_json = runner.invoke(app, ["models", "score", str(model), "--json"])
    assert json.loads(as_json.output)["precision"] == "float32"
