"""`vemkit predict` and `vemkit models list/show` through Typer's runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import typer
from typer.testing import CliRunner

from vemkit.cli.models import models_app
from vemkit.cli.predict import predict_command
from vemkit.io import Dataset
from vemkit.ml import Normalization, UNetConfig, build_network, save_model
from vemkit.ml.zoo import list_models, resolve_model

# The commands as the main app registers them (kept local so this file tests the
# command functions whatever else cli/main.py registers).
app = typer.Typer()
app.command("predict")(predict_command)
app.add_typer(models_app, name="models")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_model(tmp_path):
    config = UNetConfig(dims=2, out_channels=2, depth=2, base_channels=4, norm="batch")
    card = {
        "name": "tiny",
        "task": "test",
        "target": {"type": "foreground_boundary"},
        "channels": ["foreground", "boundary"],
        "voxel_size_nm": [50.0, 20.0, 20.0],
        "normalization": Normalization(low=0.0, high=255.0).to_dict(),
        "prediction": {"tile": 32, "overlap": 0.25, "batch_size": 2},
    }
    return save_model(tmp_path / "tiny-model", build_network(config, seed=0).eval(), config, card)


@pytest.fixture
def volume(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (5, 40, 44), dtype=np.uint8)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, data)
    return path, data


def test_predict_writes_one_layer_per_channel(tiny_model, volume, tmp_path):
    path, data = volume
    out = tmp_path / "out.zarr"
    result = run("predict", tiny_model, path, "-o", out, "--voxel-size", "50,10,10")
    assert result.exit_code == 0, result.output
    assert "tiny_foreground" in result.output
    dataset = Dataset.open(out)
    assert set(dataset.layer_names()) >= {"raw", "tiny_foreground", "tiny_boundary"}
    foreground = dataset.layer("tiny_foreground")
    assert foreground.shape == data.shape  # back on the input grid after resampling
    assert foreground.dtype == np.float32
    values = foreground.read()
    assert 0.0 <= values.min() <= values.max() <= 1.0
    assert dataset.record["provenance"][-1]["model"] == "tiny"


def test_predict_in_bfloat16_is_close_to_float32_and_says_so(tiny_model, volume, tmp_path):
    path, _ = volume
    maps = {}
    for precision in ("auto", "bfloat16"):
        out = tmp_path / f"{precision}.zarr"
        options = ["--voxel-size", "50,10,10", "--precision", precision]
        result = run("predict", tiny_model, path, "-o", out, *options)
        assert result.exit_code == 0, result.output
        dataset = Dataset.open(out)
        expected = "float32" if precision == "auto" else "bfloat16"
        assert dataset.record["provenance"][-1]["precision"] == expected
        maps[precision] = dataset.layer("tiny_foreground").read()
    difference = np.abs(maps["auto"] - maps["bfloat16"])
    assert 0 < difference.max() < 0.02
    result = run("predict", tiny_model, path, "-o", tmp_path / "x.zarr", "--precision", "half")
    assert result.exit_code != 0
    assert "half" in result.output


def test_predict_uint8_tta_and_reference(tiny_model, volume, tmp_path):
    path, _ = volume
    out = tmp_path / "out8.zarr"
    result = run(
        "predict",
        tiny_model,
        path,
        "-o",
        out,
        "--voxel-size",
        "50,10,10",
        "--dtype",
        "uint8",
        "--tta",
        "--reference",
    )
    assert result.exit_code == 0, result.output
    dataset = Dataset.open(out)
    assert dataset.mode == "reference"
    assert dataset.layer("tiny_boundary").dtype == np.uint8


def test_predict_triaxis(tiny_model, volume, tmp_path):
    path, data = volume
    result = run(
        "predict",
        tiny_model,
        path,
        "-o",
        tmp_path / "tri.zarr",
        "--voxel-size",
        "20,20,20",
        "--triaxis",
    )
    assert result.exit_code == 0, result.output
    assert Dataset.open(tmp_path / "tri.zarr").layer("tiny_foreground").shape == data.shape


def test_predict_user_errors(tiny_model, volume, tmp_path):
    path, _ = volume
    result = run(
        "predict",
        tiny_model,
        path,
        "-o",
        tmp_path / "a.zarr",
        "--voxel-size",
        "50,10,10",
        "--memory-budget-gb",
        "0.000001",
    )
    assert result.exit_code == 2
    assert "--memory-budget-gb" in result.stderr
    assert not (tmp_path / "a.zarr").exists()
    result = run("predict", "no-such-model", path, "-o", tmp_path / "b.zarr")
    assert result.exit_code == 2
    assert "vemkit models list" in result.stderr
    result = run("predict", tiny_model, path, "-o", tmp_path / "c.zarr")
    assert result.exit_code == 2
    assert "voxel" in result.stderr.lower()


def test_models_list_shows_the_shipped_zoo():
    names = list_models()
    assert "mito-em" in names
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    for name in names:
        assert name in result.output
    assert "membranes / cell boundaries (…" in result.output  # long tasks end in an ellipsis
    rows = json.loads(run("models", "list", "--json").output)
    mito = next(r for r in rows if r["name"] == "mito-em")
    assert mito["voxel_size_nm"][0] == 50.0
    assert "IoU" in mito["metrics"]


@pytest.mark.parametrize("name", list_models())
def test_models_show_each_card(name):
    result = run("models", "show", name)
    assert result.exit_code == 0, result.output
    assert name in result.output
    assert "voxel size" in result.output
    assert "license" in result.output
    card = json.loads(run("models", "show", name, "--json").output)
    assert card["path"] == str(resolve_model(name))
    assert card["metrics"]["held_out"]
    assert ("weights stored as float16" in result.output) == (
        card.get("weights_dtype") == "float16"
    )
    assert (resolve_model(name) / "model.safetensors").stat().st_size < 5_000_000  # a few MB
    # reports shipped next to a model are shown with it
    shipped_left_out = (resolve_model(name) / "leave_one_out.json").is_file()
    assert ("on datasets left out of training" in result.output) == shipped_left_out
    assert ("recipe cross-validated" in result.output) == (
        (resolve_model(name) / "crossval.json").is_file()
    )
    # mito-em's cross-validation left out true objects below its minimum object size
    assert ("true objects below the minimum object size" in result.output) == (name == "mito-em")


def test_models_show_unknown_name():
    result = run("models", "show", "no-such-model")
    assert result.exit_code == 2
    assert "shipped models" in result.stderr
