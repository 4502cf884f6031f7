"""`vemkit train` recipes: config validation, a tiny end-to-end run, fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from safetensors.torch import load_file
from scipy import ndimage
from typer.testing import CliRunner

from vemkit.cli.models import models_app
from vemkit.errors import ConfigError
from vemkit.geometry import VoxelSize
from vemkit.ml.checkpoint import load_model
from vemkit.pipelines.train import (
    build_model,
    load_train_config,
    parse_train_config,
    run_training,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blob_volume(shape=(6, 64, 64), seed=0):
    """Dark round blobs (instances) on a bright noisy background, like mitochondria."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    zz, yy, xx = np.indices(shape)
    for index in range(1, 9):
        cz, cy, cx = rng.integers(0, shape[0]), rng.integers(8, 56), rng.integers(8, 56)
        radius = rng.uniform(4, 8)
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2 + (3 * (zz - cz)) ** 2) < radius**2
        labels[inside & (labels == 0)] = index
    image = 180.0 - 100.0 * (labels > 0) + rng.normal(0, 12, shape)
    image = ndimage.gaussian_filter(image, (0, 1, 1))
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    image, labels = blob_volume()
    tifffile.imwrite(folder / "raw.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    return folder


def recipe(folder, **changes):
    source = {
        "image": str(folder / "raw.tif"),
        "labels": str(folder / "labels.tif"),
        "voxel_size": [50, 10, 10],
    }
    data = {
        "name": "tiny-blobs",
        "task": "blobs",
        "train": [{**source, "z_range": [0, 4]}],
        "validation": [{**source, "z_range": [4, 5]}],
        "test": [{**source, "z_range": [5, 6]}],
        "target": {"type": "foreground_boundary", "boundary_width_nm": 20},
        "network": {"dims": 2, "depth": 2, "base_channels": 4, "norm": "batch"},
        "patch_shape": [32, 32],
        "batch_size": 4,
        "epochs": 2,
        "samples_per_epoch": 8,
        "validation_samples": 4,
        "prediction": {"tile": 64},
        "evaluation": {"calibrate_thresholds": True, "min_size_nm3": 1000},
        "optimizer": {"learning_rate": 0.01},
        "notes": ["synthetic test model"],
    }
    data.update(changes)
    return data


def test_config_loads_from_yaml(tmp_path, tiny_data):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(tiny_data)))
    config, text = load_train_config(path)
    assert config.name == "tiny-blobs"
    assert config.train[0].z_range == (0, 4)
    assert config.target.channels == ("foreground", "boundary")
    assert config.unet_config().out_channels == 2
    assert text == path.read_text()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"epochz": 3}, ["epochz", "unknown field"]),
        ({"target": {"type": "nuclei"}}, ["target.type"]),
        ({"patch_shape": [32, 32, 32]}, ["patch_shape"]),
        ({"target": {"type": "multiclass"}}, ["classes"]),
        ({"name": "Bad Name"}, ["name"]),
        ({"freeze_encoder": True}, ["init_from"]),
        ({"train": []}, ["train"]),
    ],
)
def test_config_rejects_bad_fields(tiny_data, change, words):
    with pytest.raises(ConfigError) as caught:
        parse_train_config(recipe(tiny_data, **change), where="test.yaml")
    message = str(caught.value)
    assert "test.yaml" in message
    for word in words:
        assert word in message


def test_config_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError):
        load_train_config(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(bad)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("train") / "tiny"
    config = parse_train_config(recipe(tiny_data, output=str(out)))
    return run_training(config, command="vemkit train tiny.yaml")


def test_train_end_to_end_writes_model_with_card(trained):
    assert (trained.output / "recipe.yaml").is_file()
    assert (trained.output / "metrics.json").is_file()
    model, config, card = load_model(trained.model)
    assert config.dims == 2
    assert config.out_channels == 2
    assert card["name"] == "tiny-blobs"
    assert card["target"]["type"] == "foreground_boundary"
    assert card["channels"] == ["foreground", "boundary"]
    assert card["voxel_size_nm"] == [50.0, 10.0, 10.0]
    assert card["normalization"]["low"] is not None
    assert card["architecture"]["norm"] == "batch"
    assert card["training_data"][0]["z_range"] == [0, 4]
    assert card["test_data"][0]["z_range"] == [5, 6]
    assert "tiny-blobs" in card["recipe"]
    assert card["command"] == "vemkit train tiny.yaml"
    assert card["license"]["training_data"]
    assert card["training"]["epochs_run"] == 2
    assert card["training"]["machine"]["torch_threads"] >= 1
    held_out = card["metrics"]["held_out"]
    for key in ("foreground_iou", "foreground_dice", "object_f1_at"):
        assert key in held_out
    assert 0.0 <= held_out["foreground_iou"] <= 1.0
    assert card["instances"]["calibrated_on"] == "validation"
    assert (
        card["metrics"]["per_source"][0]["instance_thresholds"]["boundary"]
        == (card["instances"]["boundary_threshold"])
    )
    assert json.loads((trained.output / "metrics.json").read_text())["held_out"] == held_out
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_existing_output_is_refused(trained, tiny_data):
    config = parse_train_config(recipe(tiny_data, output=str(trained.output)))
    with pytest.raises(ConfigError, match="already exists"):
        run_training(config)


def test_fine_tuning_starts_from_the_weights(trained, tiny_data, tmp_path):
    _, _, _ = load_model(trained.model)
    source = load_model(trained.model)[0].state_dict()
    config = parse_train_config(
        recipe(
            tiny_data,
            name="tiny-tuned",
            init_from=str(trained.model),
            freeze_encoder=True,
            epochs=3,
            max_train_minutes=1e-6,  # the budget is spent after the first epoch
            output=str(tmp_path / "tuned"),
        )
    )
    network, _, info = build_model(config)
    key = "encoder.0.conv1.weight"
    assert torch.equal(network.state_dict()[key], source[key])
    assert info["init"] == "from_model"
    outcome = run_training(config)
    tuned = load_model(outcome.model)[0].state_dict()
    # the encoder was frozen: its weights are those of the model fine-tuned from
    assert torch.equal(tuned[key], source[key])
    assert not torch.equal(tuned["head.weight"], source["head.weight"])
    assert outcome.card["training"]["init_from"] == str(trained.model)
    assert outcome.card["training"]["epochs_run"] == 1
    assert outcome.card["training"]["stopped_by_time_budget"]


def test_fine_tuning_needs_matching_channels(trained, tiny_data, tmp_path):
    config = parse_train_config(
        recipe(
            tiny_data,
            init_from=str(trained.model),
            target={"type": "binary"},
            output=str(tmp_path / "x"),
        )
    )
    with pytest.raises(ConfigError, match="output channels"):
        build_model(config)


@pytest.mark.parametrize(
    ("target", "channels", "metric"),
    [
        ({"type": "binary"}, ["foreground"], "foreground_iou"),
        ({"type": "boundary", "boundary_width_nm": 20}, ["boundary"], "boundary_f1"),
        ({"type": "signed_distance", "clip_nm": 100}, ["distance"], "foreground_iou"),
        (
            {
                "type": "multiclass",
                "classes": {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2},
                "class_names": ["bg", "a", "b"],
            },
            ["bg", "a", "b"],
            "weighted_f1",
        ),
    ],
)
def test_other_targets_train_and_score(tiny_data, tmp_path, target, channels, metric):
    config = parse_train_config(
        recipe(
            tiny_data,
            target=target,
            epochs=1,
            evaluation={"instances": "connected_components_3d"},
            sparse={"every_n_planes": 2, "fraction_painted": 0.8},
            output=str(tmp_path / "out"),
        )
    )
    outcome = run_training(config)
    card = load_model(outcome.model)[2]
    assert card["channels"] == channels
    assert metric in card["metrics"]["held_out"]


def test_the_method_chosen_on_validation_reaches_the_card_and_the_rescoring(tiny_data, tmp_path):
    from vemkit.pipelines.train import score_model

    candidates = ["boundary_watershed_3d", "connected_components_3d"]
    evaluation = {"calibrate_thresholds": True, "instance_candidates": candidates}
    config = parse_train_config(
        recipe(tiny_data, epochs=1, evaluation=evaluation, output=str(tmp_path / "out"))
    )
    card = load_model(run_training(config).model)[2]
    method = card["instances"]["instances"]
    assert method in candidates
    assert card["instances"]["calibrated_on"] == "validation"
    assert card["metrics"]["per_source"][0]["instance_method"] == method
    rescored = score_model(tmp_path / "out" / "model")
    assert rescored["per_source"][0]["instance_method"] == method
    assert rescored["held_out"]["object_f1_at"] == card["metrics"]["held_out"]["object_f1_at"]


def test_plane_resampling_matches_ml_resampling():
    from vemkit.ml import resample_to_shape
    from vemkit.pipelines.predict import resample_planes

    rng = np.random.default_rng(1)
    maps = rng.random((2, 3, 40, 50)).astype(np.float32)
    for shape in [(3, 80, 100), (3, 20, 25), (3, 33, 71), (5, 20, 25)]:
        expected = resample_to_shape(maps, shape, order=1)
        assert np.allclose(resample_planes(maps, shape), expected, atol=1e-4)


def test_rescoring_reproduces_the_card(trained):
    """`vemkit models score` re-measures exactly the card's held-out numbers."""
    from typer.testing import CliRunner

    from vemkit.cli.main import app
    from vemkit.pipelines.train import score_model

    card = load_model(trained.model)[2]
    result = score_model(trained.model)
    assert result["card_held_out"] == card["metrics"]["held_out"]
    for key, value in card["metrics"]["held_out"].items():
        if key == "prediction_mvoxel_per_s":
            continue
        assert result["held_out"][key] == pytest.approx(value, abs=1e-6), key
    assert result["machine"]["cpu_count"] >= 1
    intervals = result["per_source"][0]["confidence_intervals"]
    assert intervals["f1_at"]["0.5"]["value"] == pytest.approx(
        card["metrics"]["held_out"]["object_f1_at"]["0.5"], abs=1e-6
    )
    assert intervals["iou"]["low"] <= intervals["iou"]["value"] <= intervals["iou"]["high"]
    flipped = score_model(trained.model, tta=True)
    assert flipped["tta"] is True
    assert set(flipped["held_out"]) == set(result["held_out"])
    human = CliRunner().invoke(app, ["models", "score", str(trained.model)])
    assert human.exit_code == 0, human.output
    assert "95% CI (16-block bootstrap)" in human.output
    assert "Dice (= pixel F1)" in human.output
    cli = CliRunner().invoke(app, ["models", "score", str(trained.model), "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["held_out"]["foreground_iou"] == pytest.approx(
        card["metrics"]["held_out"]["foreground_iou"], abs=1e-6
    )


def test_rescoring_needs_a_vemkit_train_recipe():
    from vemkit.pipelines.train import score_model

    with pytest.raises(ConfigError, match="not trained by `vemkit train`"):
        score_model("nuclei-em")


# --- 2.5D: neighbouring sections as input channels ------------------------------------------
def next_section_volume(shape=(8, 64, 64), seed=0):
    """Dark squares per section; the label of section z is the squares of section z + 1.

    Only a network that sees the next section can solve it (the last section's label is its
    own squares, as the context repeats the edge section there).
    """
    rng = np.random.default_rng(seed)
    squares = np.zeros(shape, bool)
    for z in range(shape[0]):
        for _ in range(3):
            y, x = rng.integers(4, shape[1] - 16, 2)
            squares[z, y : y + 12, x : x + 12] = True
    labels = np.concatenate([squares[1:], squares[-1:]]).astype(np.uint8)
    image = 180.0 - 100.0 * squares + rng.normal(0, 10, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def test_a_2p5d_network_sees_the_neighbouring_sections(tmp_path):
    from vemkit.pipelines.predict import load_predictor, predict_block

    image, labels = next_section_volume()
    tifffile.imwrite(tmp_path / "raw.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    source = {"image": str(tmp_path / "raw.tif"), "labels": str(tmp_path / "labels.tif")}
    source["voxel_size"] = [50, 10, 10]

    def train(context, name):
        config = recipe(
            tmp_path,
            name=name,
            train=[{**source, "z_range": [0, 6]}],
            validation=[{**source, "z_range": [6, 7]}],
            test=[{**source, "z_range": [0, 8]}],
            target={"type": "binary"},
            network={"dims": 2, "depth": 2, "base_channels": 8, "context_sections": context},
            epochs=6,
            samples_per_epoch=32,
            evaluation={"instances": "none"},
            output=str(tmp_path / name),
        )
        return run_training(parse_train_config(config))

    flat, deep = train(0, "flat"), train(1, "context")
    card = deep.card
    assert card["context_sections"] == 1
    assert card["architecture"]["in_channels"] == 3
    assert flat.card["context_sections"] == 0
    # the 2D network cannot know where the next section's squares are; the 2.5D one can
    assert flat.metrics["foreground_iou"] < 0.4
    assert deep.metrics["foreground_iou"] > 0.7
    network, spec, _ = load_predictor(deep.model)
    assert spec.context == 1
    voxel = VoxelSize(50, 10, 10)
    maps = predict_block(network, image, spec=spec, voxel_size=voxel)
    assert maps.shape == (1, *image.shape)
    # the whole volume gives each section its true neighbours: as good as the held-out score
    iou = (
        np.logical_and(maps[0] > 0.5, labels > 0).sum()
        / np.logical_or(maps[0] > 0.5, labels > 0).sum()
    )
    assert iou > 0.7
    with pytest.raises(ConfigError, match=r"2\.5D"):
        predict_block(network, image, spec=spec, voxel_size=voxel, triaxis=True)


def test_context_sections_need_a_2d_network(tiny_data):
    network = {"dims": 3, "depth": 2, "context_sections": 1}
    with pytest.raises(ConfigError, match="context_sections applies to 2D networks only"):
        parse_train_config(recipe(tiny_data, network=network, patch_shape=[4, 32, 32]))


def test_context_margins_come_from_outside_the_z_range(tiny_data):
    from vemkit.pipelines.train import DataSource, load_source

    source = DataSource(
        image=str(tiny_data / "raw.tif"),
        labels=str(tiny_data / "labels.tif"),
        voxel_size=(50, 10, 10),
        z_range=(1, 3),
    )
    plain = load_source(source)
    loaded = load_source(source, context=2)
    assert plain.margin == (0, 0)
    assert loaded.margin == (1, 2)  # section 0 below; sections 3 and 4 above
    assert loaded.image.shape[0] == 5
    assert np.array_equal(loaded.labels, plain.labels)
    stack = loaded.network_input(2)
    assert stack.shape == (5, 2, 64, 64)
    raw = tifffile.imread(tiny_data / "raw.tif")
    assert np.array_equal(stack[:, 0], raw[[0, 0, 1, 2, 3]])  # section 1: 0 repeated below
    assert np.array_equal(stack[:, 1], raw[[0, 1, 2, 3, 4]])
    assert np.array_equal(loaded.network_input(0), plain.image)


def test_fine_tuning_a_2p5d_model_keeps_its_context(tiny_data, tmp_path):
    base = run_training(
        parse_train_config(
            recipe(
                tiny_data,
                name="base",
                epochs=1,
                network={"dims": 2, "depth": 2, "base_channels": 4, "context_sections": 1},
                output=str(tmp_path / "base"),
            )
        )
    )
    tuned = run_training(
        parse_train_config(
            recipe(tiny_data, epochs=1, init_from=str(base.model), output=str(tmp_path / "t"))
        )
    )
    assert tuned.card["context_sections"] == 1
    assert tuned.card["architecture"]["in_channels"] == 3


@pytest.mark.parametrize(
    ("sampling", "expected"), [("labelled_voxels", [30, 10]), ("equal", [20, 20])]
)
def test_source_sampling_shares_patches(tiny_data, sampling, expected):
    from vemkit.ml.normalize import Normalization
    from vemkit.pipelines.train import DataSource, _patch_datasets, load_source

    def source(z_range):
        return DataSource(
            image=str(tiny_data / "raw.tif"),
            labels=str(tiny_data / "labels.tif"),
            voxel_size=(50, 10, 10),
            z_range=z_range,
        )

    config = parse_train_config(recipe(tiny_data, source_sampling=sampling))
    sources = [load_source(source((0, 3))), load_source(source((3, 4)))]  # 3 : 1 sections
    mixed = _patch_datasets(
        config,
        sources,
        total=40,
        normalization=Normalization(low=0.0, high=255.0),
        training=True,
    )
    assert [len(part) for part in mixed.parts] == expected
    assert len(mixed) == 40


def test_source_sampling_rejects_unknown_modes(tiny_data):
    with pytest.raises(ConfigError, match="source_sampling"):
        parse_train_config(recipe(tiny_data, source_sampling="uniform"))


def test_float16_weights_are_what_the_card_scored(tiny_data, tmp_path):
    from vemkit.pipelines.train import score_model

    outcome = run_training(
        parse_train_config(
            recipe(tiny_data, output=str(tmp_path / "half"), weights_dtype="float16", epochs=1)
        )
    )
    card = load_model(outcome.model)[2]
    assert card["weights_dtype"] == "float16"
    stored = load_file(str(outcome.model / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    rescored = score_model(outcome.model)["held_out"]
    for key, value in card["metrics"]["held_out"].items():
        if key != "prediction_mvoxel_per_s":
            assert rescored[key] == pytest.approx(value, abs=1e-6), key


def test_recalibration_changes_the_card_not_the_model(trained, tiny_data, tmp_path):
    """New evaluation settings without retraining: a new folder, same weights."""
    from typer.testing import CliRunner

    from vemkit.cli.main import app
    from vemkit.pipelines.train import recalibrate_model, score_model

    original = (trained.model / "model.json").read_text()
    evaluation = {
        "calibrate_thresholds": True,
        "instance_candidates": ["boundary_watershed_3d", "connected_components_3d"],
        "min_size_nm3": 1000,
        "min_seed_size_nm3": 5000,
    }
    config = parse_train_config(
        recipe(tiny_data, output=str(trained.output), evaluation=evaluation)
    )
    out = tmp_path / "recalibrated"
    card = recalibrate_model(trained.model, config, output=out, command="test")
    assert (trained.model / "model.json").read_text() == original
    assert (out / "model.safetensors").read_bytes() == (
        trained.model / "model.safetensors"
    ).read_bytes()
    assert card["instances"]["min_seed_size_nm3"] == 5000
    assert card["instances"]["instances"] in evaluation["instance_candidates"]
    assert card["instances"]["calibrated_on"] == "validation"
    assert "instance_candidates" in card["recipe"]
    (step,) = card["recalibrations"]
    assert step["previous"]["held_out"] == trained.card["metrics"]["held_out"]
    assert load_model(out)[2]["metrics"]["held_out"] == card["metrics"]["held_out"]
    rescored = score_model(out)
    assert rescored["held_out"]["object_f1_at"] == card["metrics"]["held_out"]["object_f1_at"]

    retrained = parse_train_config(recipe(tiny_data, epochs=5, evaluation=evaluation))
    with pytest.raises(ConfigError, match="changes epochs"):
        recalibrate_model(trained.model, retrained, output=tmp_path / "x")
    with pytest.raises(ConfigError, match="new folder"):
        recalibrate_model(trained.model, config, output=trained.model)
    with pytest.raises(ConfigError, match="already exists"):
        recalibrate_model(trained.model, config, output=out)

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(tiny_data, evaluation=evaluation)))
    result = CliRunner().invoke(
        app, ["models", "recalibrate", str(trained.model), str(path), "-o", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, result.output
    assert "held-out metric" in result.output
    assert "min_seed_size_nm3 5000" in result.output


@pytest.fixture(scope="module")
def ensemble(tiny_data, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ensemble") / "pair"
    config = parse_train_config(recipe(tiny_data, output=str(out), ensemble=2, seed=3))
    return run_training(config, command="vemkit train pair.yaml")


def test_an_ensemble_recipe_trains_one_network_per_seed(ensemble, tiny_data, tmp_path):
    from vemkit.ml.networks import Ensemble, ensemble_members

    model, config, card = load_model(ensemble.model)
    assert isinstance(model, Ensemble)
    assert config.ensemble == 2
    assert card["architecture"]["ensemble"] == 2
    training = card["training"]
    assert training["ensemble"] == 2
    assert training["seeds"] == [3, 4]
    assert [n["seed"] for n in training["networks"]] == [3, 4]
    assert training["epochs_run"] == 4
    assert len(training["best_epoch"]) == 2
    assert len(ensemble.results) == 2
    for index in range(2):
        assert (ensemble.output / "checkpoints" / f"network-{index}" / "best").is_dir()
    # network 1 is exactly what the single-network recipe trains with seed 4
    single = run_training(
        parse_train_config(recipe(tiny_data, output=str(tmp_path / "single"), seed=4))
    )
    assert single.card["training"]["seed"] == 4
    alone = load_model(single.model)[0].state_dict()
    member = ensemble_members(model)[1].state_dict()
    for key, value in alone.items():
        assert torch.allclose(member[key], value, atol=1e-6), key
    assert not torch.equal(
        ensemble_members(model)[0].state_dict()["head.weight"], alone["head.weight"]
    )


def test_an_ensembles_card_scores_its_averaged_maps(ensemble):
    from vemkit.pipelines.train import score_model

    card = load_model(ensemble.model)[2]
    rescored = score_model(ensemble.model)["held_out"]
    for key, value in card["metrics"]["held_out"].items():
        if key != "prediction_mvoxel_per_s":
            assert rescored[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize(("networks", "sources"), [(1, [0]), (2, [0, 1]), (3, [0, 1, 0])])
def test_fine_tuning_an_ensemble_starts_each_network_from_one_of_its_members(
    ensemble, tiny_data, networks, sources
):
    from vemkit.ml.networks import ensemble_members

    members = ensemble_members(load_model(ensemble.model)[0])
    config = parse_train_config(recipe(tiny_data, init_from=str(ensemble.model), ensemble=networks))
    for index, source in enumerate(sources):
        network, unet, info = build_model(config, member=index)
        assert unet.ensemble == 1
        assert info["init_member"] == source
        for key, value in members[source].state_dict().items():
            assert torch.equal(network.state_dict()[key], value), key


def test_ensemble_size_is_checked(tiny_data):
    for bad in (0, 17):
        with pytest.raises(ConfigError, match="ensemble"):
            parse_train_config(recipe(tiny_data, ensemble=bad))


class SimulatedCrashError(Exception):
    pass


class CrashOnEpoch:
    """A progress reporter that raises when the n-th epoch of the whole run starts."""

    def __init__(self, epoch):
        self.epoch, self.started = epoch, 0

    def start(self, total, description):
        self.started += 1
        if self.started == self.epoch:
            raise SimulatedCrashError(description)

    def advance(self, steps=1):
        pass

    def finish(self):
        pass


def test_an_interrupted_ensemble_training_resumes_where_it_stopped(ensemble, tiny_data, tmp_path):
    from vemkit.ml.networks import ensemble_members

    config = parse_train_config(recipe(tiny_data, output=str(tmp_path / "run"), ensemble=2, seed=3))
    # network 0 trains its 2 epochs, network 1 one epoch; the crash comes in its second
    with pytest.raises(SimulatedCrashError, match="epoch 2/2"):
        run_training(config, progress=CrashOnEpoch(4))
    assert (tmp_path / "run" / "checkpoints" / "network-0" / "network.json").is_file()
    assert not (tmp_path / "run" / "checkpoints" / "network-1" / "network.json").is_file()
    assert not (tmp_path / "run" / "model").exists()
    with pytest.raises(ConfigError, match="--resume"):
        run_training(config)
    changed = parse_train_config(
        recipe(tiny_data, output=str(tmp_path / "run"), ensemble=2, seed=3, epochs=3)
    )
    with pytest.raises(ConfigError, match=r"recipe changed \(epochs\)"):
        run_training(changed, resume=True)

    counter = CrashOnEpoch(0)
    outcome = run_training(config, resume=True, progress=counter)
    assert counter.started == 1  # only network 1's second epoch was trained again
    assert outcome.results[0] is None
    assert [e["epoch"] for e in outcome.card["training"]["networks"][1]["history"]] == [1, 2]
    # the same weights and scores as the uninterrupted training of the same recipe
    resumed = load_model(outcome.model)[0]
    uninterrupted = load_model(ensemble.model)[0]
    for a, b in zip(ensemble_members(resumed), ensemble_members(uninterrupted), strict=True):
        for key, value in b.state_dict().items():
            assert torch.allclose(a.state_dict()[key], value, atol=1e-6), key
    for key, value in ensemble.metrics.items():
        if key != "prediction_mvoxel_per_s":
            assert outcome.metrics[key] == value, key


def test_resuming_elsewhere_starts_afresh_or_refuses(tiny_data, tmp_path):
    config = parse_train_config(recipe(tiny_data, output=str(tmp_path / "new"), epochs=1))
    assert run_training(config, resume=True).results[0] is not None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    other = parse_train_config(recipe(tiny_data, output=str(tmp_path / "other"), epochs=1))
    with pytest.raises(ConfigError, match="not a vemkit training output"):
        run_training(other, resume=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


# --- self-training: pseudo-labels from a teacher ---------------------------------------------
@pytest.fixture(scope="module")
def teacher(tiny_data, tmp_path_factory):
    """A model sure enough of itself to teach (the 2-epoch ``trained`` one is not)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    config = parse_train_config(recipe(tiny_data, epochs=15, samples_per_epoch=32, output=str(out)))
    return run_training(config)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unlabelled")
    image, _ = blob_volume(seed=3)
    tifffile.imwrite(folder / "raw.tif", image)
    return folder / "raw.tif"


def pseudo_settings(image, teacher, **changes):
    return {
        "teacher": str(teacher),
        "sources": [{"image": str(image), "voxel_size": [50, 10, 10]}],
        **changes,
    }


def student_config(data, image, teacher, output):
    """A one-epoch recipe that also learns from the teacher's pseudo-labels of ``image``."""
    return parse_train_config(
        recipe(data, epochs=1, output=str(output), pseudo_labels=pseudo_settings(image, teacher))
    )


def test_pseudo_labels_are_the_teachers_confident_voxels(teacher, tiny_data, unlabelled):
    from vemkit.pipelines.predict import load_predictor, predict_block
    from vemkit.pipelines.train import PSEUDO_IGNORE, load_pseudo_labelled

    network, spec, _ = load_predictor(teacher.model)
    image = tifffile.imread(unlabelled)
    foreground = predict_block(network, image, spec=spec, voxel_size=VoxelSize(50, 10, 10))[0]
    confidence = 0.8
    config = parse_train_config(
        recipe(
            tiny_data,
            pseudo_labels=pseudo_settings(unlabelled, teacher.model, confidence=confidence),
        )
    )
    sources, record = load_pseudo_labelled(config)
    (loaded,) = sources
    labels = loaded.labels
    assert np.array_equal(labels == 1, foreground >= confidence)
    assert np.array_equal(labels == 0, foreground <= 1 - confidence)
    ignored = labels == PSEUDO_IGNORE
    assert np.array_equal(ignored, (foreground > 1 - confidence) & (foreground < confidence))
    assert ignored.any()
    assert not ignored.all()
    assert loaded.source.ignore_value == PSEUDO_IGNORE
    assert np.array_equal(loaded.image, image)
    fractions = record["images"][0]["voxel_fractions"]
    assert fractions["ignored"] == pytest.approx(ignored.mean(), abs=1e-4)
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-3)
    assert record["teacher_name"] == "tiny-blobs"
    assert labels.max() == PSEUDO_IGNORE
    assert record["confidence"] == confidence


def test_instance_pseudo_labels_are_the_teachers_sure_objects(
    teacher, tiny_data, unlabelled, tmp_path
):
    from vemkit.ml.targets import foreground_boundary_target
    from vemkit.pipelines.predict import load_predictor, predict_block, segment_instances
    from vemkit.pipelines.train import PSEUDO_INSTANCE_IGNORE, load_pseudo_labelled

    network, spec, card = load_predictor(teacher.model)
    image = tifffile.imread(unlabelled)
    maps = predict_block(network, image, spec=spec, voxel_size=VoxelSize(50, 10, 10))
    settings = card["instances"]
    objects = segment_instances(
        maps,
        spec=spec,
        voxel_size=VoxelSize(50, 10, 10),
        method=settings["instances"],
        foreground_threshold=settings["foreground_threshold"],
        boundary_threshold=settings["boundary_threshold"],
        min_size_nm3=settings["min_size_nm3"],
        min_seed_size_nm3=settings.get("min_seed_size_nm3", 0.0),
    )
    pseudo = pseudo_settings(unlabelled, teacher.model, instances=True)
    config = parse_train_config(recipe(tiny_data, pseudo_labels=pseudo))
    (loaded,), record = load_pseudo_labelled(config)
    labels = loaded.labels
    assert labels.dtype == np.uint32
    assert loaded.source.ignore_value == PSEUDO_INSTANCE_IGNORE
    sure = maps[0] >= 0.8
    inside = sure & (objects > 0)
    assert np.array_equal(labels[inside], objects[inside])  # the teacher's object ids
    assert np.array_equal(labels == 0, maps[0] <= 0.2)
    assert np.array_equal(labels == PSEUDO_INSTANCE_IGNORE, ~inside & (maps[0] > 0.2))
    assert len(np.unique(labels[inside])) > 1
    fractions = record["images"][0]["voxel_fractions"]
    assert fractions["foreground"] == pytest.approx(inside.mean(), abs=1e-4)
    # the boundary target runs along the sure objects (and between touching ones)
    target = foreground_boundary_target(
        labels, width_nm=20, voxel_size=(50, 10, 10), ignore_value=PSEUDO_INSTANCE_IGNORE
    )
    assert target.target[1][target.valid & inside].any()
    # a training with them: the card records the setting and the saved labels are the ids
    student = recipe(tiny_data, epochs=1, output=str(tmp_path / "s"), pseudo_labels=pseudo)
    result = run_training(parse_train_config(student))
    assert result.card["pseudo_labels"]["instances"] is True
    shown = CliRunner().invoke(models_app, ["show", str(result.model)])
    assert "its objects, 50% of the patches" in shown.output
    saved = tifffile.imread(result.output / "pseudo-labels-0.tif")
    assert np.array_equal(saved, labels)
    with pytest.raises(ConfigError, match="foreground_boundary targets only"):
        parse_train_config(recipe(tiny_data, target={"type": "binary"}, pseudo_labels=pseudo))


def test_pseudo_labelled_patches_get_their_share_and_ignore_unsure_voxels(
    teacher, tiny_data, unlabelled
):
    from vemkit.ml.normalize import Normalization
    from vemkit.pipelines.train import (
        PSEUDO_IGNORE,
        _patch_datasets,
        load_pseudo_labelled,
        load_source,
    )

    config = parse_train_config(
        recipe(tiny_data, pseudo_labels=pseudo_settings(unlabelled, teacher.model, share=0.25))
    )
    pseudo, _ = load_pseudo_labelled(config)
    mixed = _patch_datasets(
        config,
        [load_source(config.train[0])],
        total=40,
        normalization=Normalization(low=0.0, high=255.0),
        training=True,
        pseudo=pseudo,
        pseudo_share=0.25,
    )
    assert [len(part) for part in mixed.parts] == [30, 10]
    sampler = mixed.parts[1].sampler
    assert np.array_equal(sampler.valid, pseudo[0].labels != PSEUDO_IGNORE)
    assert mixed.parts[1].augment is not None  # augmented like the labelled patches


def test_training_with_pseudo_labels_records_the_teacher(teacher, tiny_data, unlabelled, tmp_path):
    config = student_config(tiny_data, unlabelled, teacher.model, tmp_path / "student")
    outcome = run_training(config)
    card = outcome.card
    assert card["pseudo_labels"]["teacher"] == str(teacher.model)
    assert card["pseudo_labels"]["share"] == 0.5
    assert card["pseudo_labels"]["images"][0]["image"] == str(unlabelled)
    preview = outcome.output / card["pseudo_labels"]["images"][0]["preview"]
    assert preview.name == "pseudo-labels-0.png"
    assert preview.read_bytes()[:4] == b"\x89PNG"
    assert "user data (license not recorded)" in card["license"]["training_data"]
    assert "pseudo_labels" in yaml.safe_load((outcome.output / "recipe.yaml").read_text())
    shown = CliRunner().invoke(models_app, ["show", str(outcome.model)])
    assert shown.exit_code == 0, shown.output
    assert f"pseudo-labelled by tiny-blobs ({teacher.model}) (confidence 0.8, 50% of the" in (
        shown.output.replace("\n", " ")
    )


def test_a_teacher_that_saw_the_tested_sections_is_refused(teacher, tiny_data, unlabelled):
    from vemkit.pipelines.train import load_pseudo_labelled

    source = {"image": str(tiny_data / "raw.tif"), "labels": str(tiny_data / "labels.tif")}
    source["voxel_size"] = [50, 10, 10]
    config = parse_train_config(
        recipe(
            tiny_data,
            train=[{**source, "z_range": [4, 5]}],
            validation=[{**source, "z_range": [5, 6]}],
            test=[{**source, "z_range": [2, 4]}],  # the teacher trained on sections 0-3
            pseudo_labels=pseudo_settings(unlabelled, teacher.model),
        )
    )
    with pytest.raises(ConfigError, match=r"sections 2-3 \(it saw 0-3\).*leak"):
        load_pseudo_labelled(config)


def test_a_starting_model_that_saw_the_tested_sections_is_refused(trained, tiny_data, tmp_path):
    from vemkit.pipelines.crossval import fold_plan

    source = {"image": str(tiny_data / "raw.tif"), "labels": str(tiny_data / "labels.tif")}
    source["voxel_size"] = [50, 10, 10]
    leaky = recipe(
        tiny_data,
        train=[{**source, "z_range": [4, 5]}],
        validation=[{**source, "z_range": [5, 6]}],
        test=[{**source, "z_range": [0, 2]}],  # init_from trained on sections 0-3
        init_from=str(trained.model),
        output=str(tmp_path / "tuned"),
    )
    with pytest.raises(ConfigError, match=r"init_from .* sections 0-1 \(it saw 0-3\).*leak"):
        run_training(parse_train_config(leaky))
    assert not (tmp_path / "tuned").exists()
    per_fold = parse_train_config(recipe(tiny_data, init_from="runs/cv/fold-{fold}/model"))
    with pytest.raises(ConfigError, match=r"init_from .* crossval"):
        run_training(per_fold)
    *_, recipes, _ = fold_plan(per_fold, 2)
    assert [r.init_from for r in recipes] == ["runs/cv/fold-0/model", "runs/cv/fold-1/model"]


def test_pseudo_label_settings_are_checked(teacher, tiny_data, unlabelled):
    from vemkit.pipelines.crossval import fold_plan
    from vemkit.pipelines.train import load_pseudo_labelled

    for bad in ({"confidence": 0.5}, {"confidence": 1.0}, {"share": 1.0}, {"sources": []}):
        with pytest.raises(ConfigError, match="pseudo_labels"):
            parse_train_config(
                recipe(tiny_data, pseudo_labels=pseudo_settings(unlabelled, "m", **bad))
            )
    with pytest.raises(ConfigError, match="binary, foreground_boundary and multiclass"):
        parse_train_config(
            recipe(
                tiny_data,
                target={"type": "signed_distance", "clip_nm": 50},
                pseudo_labels=pseudo_settings(unlabelled, "m"),
            )
        )
    per_fold = pseudo_settings(unlabelled, "runs/cv/fold-{fold}/model")
    config = parse_train_config(recipe(tiny_data, pseudo_labels=per_fold))
    with pytest.raises(ConfigError, match="crossval"):
        load_pseudo_labelled(config)
    *_, recipes, _ = fold_plan(config, 2)
    assert [r.pseudo_labels.teacher for r in recipes] == [
        "runs/cv/fold-0/model",
        "runs/cv/fold-1/model",
    ]
    no_foreground = parse_train_config(
        recipe(tiny_data, pseudo_labels=pseudo_settings(unlabelled, "multiclass-em"))
    )
    with pytest.raises(ConfigError, match="no foreground channel"):
        load_pseudo_labelled(no_foreground)


def test_a_teacher_sure_of_nothing_is_refused(trained, tiny_data, unlabelled):
    from vemkit.pipelines.train import load_pseudo_labelled

    config = parse_train_config(
        recipe(tiny_data, pseudo_labels=pseudo_settings(unlabelled, trained.model))
    )
    with pytest.raises(ConfigError, match=r"sure \(confidence 0\.8\) of no .*lower"):
        load_pseudo_labelled(config)


# --- multiclass pseudo-labels ------------------------------------------------------------------
MULTICLASS = {
    "type": "multiclass",
    "classes": {255: 0, 1: 1, 2: 2},  # 255 is a class here, so pseudo-labels ignore 256
    "class_names": ["background", "blob", "rim"],
}


@pytest.fixture(scope="module")
def multiclass_data(tmp_path_factory):
    """The blobs as three classes: background 255, blob inside 1, blob rim 2."""
    folder = tmp_path_factory.mktemp("multiclass")
    image, instances = blob_volume()
    blobs = instances > 0
    inside = ndimage.binary_erosion(blobs, structure=np.ones((1, 5, 5), bool))
    labels = np.where(blobs, np.where(inside, 1, 2), 255).astype(np.uint8)
    tifffile.imwrite(folder / "raw.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    return folder


@pytest.fixture(scope="module")
def multiclass_teacher(multiclass_data, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("mc-teacher") / "teacher"
    config = parse_train_config(
        recipe(
            multiclass_data,
            name="tiny-classes",
            target=MULTICLASS,
            epochs=15,
            samples_per_epoch=32,
            output=str(out),
        )
    )
    return run_training(config)


def test_multiclass_cards_and_rescoring_carry_class_intervals(multiclass_teacher):
    card = multiclass_teacher.card
    (source,) = card["metrics"]["per_source"]
    intervals = source["confidence_intervals"]
    assert set(intervals["per_class"]) == {"background", "blob", "rim"}
    assert intervals["macro_f1"]["value"] == pytest.approx(source["macro_f1"])
    rim = intervals["per_class"]["rim"]
    assert rim["low"] <= source["per_class"]["rim"]["f1"] <= rim["high"]
    human = CliRunner().invoke(models_app, ["score", str(multiclass_teacher.model)])
    assert human.exit_code == 0, human.output
    assert "95% CI" in human.output
    assert "rim F1" in human.output


def test_multiclass_pseudo_labels_are_the_teachers_sure_classes(
    multiclass_teacher, multiclass_data, unlabelled
):
    from vemkit.pipelines.predict import load_predictor, predict_block
    from vemkit.pipelines.train import load_pseudo_labelled, pseudo_ignore_value

    network, spec, _ = load_predictor(multiclass_teacher.model)
    assert list(spec.channels) == ["background", "blob", "rim"]
    image = tifffile.imread(unlabelled)
    maps = predict_block(network, image, spec=spec, voxel_size=VoxelSize(50, 10, 10))
    config = parse_train_config(
        recipe(
            multiclass_data,
            target=MULTICLASS,
            pseudo_labels=pseudo_settings(unlabelled, multiclass_teacher.model, confidence=0.7),
        )
    )
    assert pseudo_ignore_value(config.target) == 256
    (loaded,), record = load_pseudo_labelled(config)
    labels = loaded.labels
    assert loaded.source.ignore_value == 256
    sure = maps.max(axis=0) >= 0.7
    assert np.array_equal(labels == 256, ~sure)
    # each sure voxel carries the recipe's label value of the teacher's most probable class
    expected = np.array([255, 1, 2])[maps.argmax(axis=0)]
    assert np.array_equal(labels[sure], expected[sure])
    assert set(np.unique(labels)) >= {1, 255, 256}
    fractions = record["images"][0]["voxel_fractions"]
    assert set(fractions) == {"background", "blob", "rim", "ignored"}
    assert fractions["ignored"] == pytest.approx(1 - sure.mean(), abs=1e-4)
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-3)


def test_training_with_multiclass_pseudo_labels(
    multiclass_teacher, multiclass_data, unlabelled, tmp_path
):
    from vemkit.pipelines.train import _foreground, load_pseudo_labelled

    config = parse_train_config(
        recipe(
            multiclass_data,
            target=MULTICLASS,
            epochs=1,
            output=str(tmp_path / "student"),
            pseudo_labels=pseudo_settings(
                unlabelled, multiclass_teacher.model, confidence=0.99, min_class_share=0.9
            ),
        )
    )
    (loaded,), _ = load_pseudo_labelled(config)
    centres = _foreground(config.target, loaded.labels, 256)
    # patches centre on sure blob and rim voxels only: not on background, not on unsure ones
    assert np.array_equal(centres, np.isin(loaded.labels, [1, 2]))
    outcome = run_training(config)
    record = outcome.card["pseudo_labels"]
    assert record["teacher_name"] == "tiny-classes"
    assert "rim" in record["images"][0]["voxel_fractions"]
    assert (outcome.output / record["images"][0]["preview"]).read_bytes()[:4] == b"\x89PNG"
    lowered = {k: v for k, v in record["images"][0]["class_confidence"].items() if v < 0.99}
    assert lowered  # the tiny teacher is not 0.99 sure of 90% of any class's voxels
    shown = CliRunner().invoke(models_app, ["show", str(outcome.model)]).output
    for name, needed in lowered.items():
        assert f"{name} from {needed:.2f}" in shown.replace("\n", " ")


def test_a_teacher_without_the_recipes_classes_is_refused(
    teacher, multiclass_teacher, multiclass_data, tiny_data, unlabelled
):
    from vemkit.pipelines.train import load_pseudo_labelled

    for model in (teacher.model, "multiclass-em"):  # binary; other class names
        config = parse_train_config(
            recipe(
                multiclass_data,
                target=MULTICLASS,
                pseudo_labels=pseudo_settings(unlabelled, model),
            )
        )
        with pytest.raises(ConfigError, match=r"background', 'blob', 'rim'\].*class_names"):
            load_pseudo_labelled(config)
    binary = parse_train_config(
        recipe(tiny_data, pseudo_labels=pseudo_settings(unlabelled, multiclass_teacher.model))
    )
    with pytest.raises(ConfigError, match="no foreground channel"):
        load_pseudo_labelled(binary)


def test_multiclass_patch_centres_ignore_unannotated_voxels():
    from vemkit.pipelines.train import TargetSettings, _foreground

    target = TargetSettings(type="multiclass", classes={0: 0, 1: 1, 2: 2})
    labels = np.full((2, 10, 10), 99, np.uint8)  # mostly unannotated (ignore value 99)
    labels[0, :3] = 0
    labels[0, 3, :4] = 1
    labels[1, 0, :2] = 2
    centres = _foreground(target, labels, 99)
    assert np.array_equal(centres, np.isin(labels, [1, 2]))  # the majority of known voxels: 0
    assert not _foreground(target, np.full((1, 4, 4), 99, np.uint8), 99).any()


def test_resuming_reuses_the_saved_pseudo_labels(
    teacher, tiny_data, unlabelled, tmp_path, monkeypatch
):
    import vemkit.pipelines.train as train_module

    config = student_config(tiny_data, unlabelled, teacher.model, tmp_path / "student")
    first = run_training(config)
    entry = first.card["pseudo_labels"]["images"][0]
    saved = tifffile.imread(first.output / entry["labels_file"])
    (made,), _ = train_module.load_pseudo_labelled(config)  # at the image's own voxel size
    assert np.array_equal(saved, made.labels)
    key = json.loads((first.output / "pseudo-labels-0.json").read_text())["key"]
    assert len(key) == 64

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher labelled again")

    monkeypatch.setattr(train_module, "_label_with_teacher", no_teacher)
    monkeypatch.setattr(train_module, "load_predictor", no_teacher)  # not even loaded
    resumed = run_training(config, resume=True)
    assert resumed.card["pseudo_labels"]["images"][0]["voxel_fractions"] == entry["voxel_fractions"]
    # labels made from something else (here: another confidence) are not reused
    other = parse_train_config(
        recipe(
            tiny_data,
            epochs=1,
            pseudo_labels=pseudo_settings(unlabelled, teacher.model, confidence=0.9),
        )
    )
    monkeypatch.undo()
    monkeypatch.setattr(train_module, "_label_with_teacher", no_teacher)
    with pytest.raises(AssertionError, match="labelled again"):
        train_module.load_pseudo_labelled(other, reuse_from=first.output)
    assert train_module.load_pseudo_labelled(config, reuse_from=first.output)[0][0].made[1] == key


def test_min_class_share_keeps_each_class_most_confident_voxels(
    multiclass_teacher, multiclass_data, unlabelled
):
    from vemkit.pipelines.predict import load_predictor, predict_block
    from vemkit.pipelines.train import load_pseudo_labelled

    network, spec, _ = load_predictor(multiclass_teacher.model)
    image = tifffile.imread(unlabelled)
    maps = predict_block(network, image, spec=spec, voxel_size=VoxelSize(50, 10, 10))
    best, top = maps.argmax(axis=0), maps.max(axis=0)
    values = np.array([255, 1, 2])

    def labelled(**settings):
        pseudo = pseudo_settings(unlabelled, multiclass_teacher.model, **settings)
        config = parse_train_config(
            recipe(multiclass_data, target=MULTICLASS, pseudo_labels=pseudo)
        )
        (loaded,), record = load_pseudo_labelled(config)
        return loaded.labels, record["images"][0]["class_confidence"]

    everything, needed = labelled(confidence=0.99, min_class_share=1.0)
    assert np.array_equal(everything, values[best])  # every voxel: the most probable class
    assert all(needed[name] <= 0.99 for name in ("background", "blob", "rim"))
    half, needed = labelled(confidence=0.99, min_class_share=0.5)
    for channel, name in enumerate(["background", "blob", "rim"]):
        own = best == channel
        threshold = min(0.99, np.quantile(top[own], 0.5))
        assert needed[name] == pytest.approx(threshold, abs=1e-4)
        kept = half[own] == values[channel]
        assert np.array_equal(kept, top[own] >= threshold)
        assert kept.mean() >= 0.5 - 1 / own.sum()  # at least the most confident half
    plain, needed = labelled(confidence=0.99)
    assert set(needed.values()) == {0.99}
    assert np.count_nonzero(plain != 256) < np.count_nonzero(half != 256)
    with pytest.raises(ConfigError, match="min_class_share applies to multiclass"):
        parse_train_config(
            recipe(
                multiclass_data,
                pseudo_labels=pseudo_settings(unlabelled, "m", min_class_share=0.5),
            )
        )


def test_3d_patches_carry_the_surroundings_their_targets_look_at():
    from vemkit.pipelines.train import TargetSettings, _target_halo

    boundary = TargetSettings(type="foreground_boundary", boundary_width_nm=27.6)
    # 13.8 nm each side: one face neighbour along 50 nm z, 2 voxels at 9.2 nm in-plane.
    assert _target_halo(boundary, (50.0, 9.2, 9.2), (4, 160, 160)) == (1, 2, 2)
    assert _target_halo(boundary, (50.0, 4.0, 9.2), (4, 160, 160)) == (1, 4, 4)  # y == x
    distance = TargetSettings(type="signed_distance", clip_nm=500.0)
    assert _target_halo(distance, (40.0, 10.0, 10.0), (16, 32, 32)) == (13, 32, 32)  # capped
    assert _target_halo(TargetSettings(type="binary"), (50.0, 9.2, 9.2), (4, 64, 64)) == ()
    # 2D patches keep their rim out of the loss (the shipped recipes reproduce their cards).
    assert _target_halo(boundary, (9.2, 9.2), (160, 160)) == ()


@pytest.mark.parametrize("seed", [0, 1])
def test_3d_foreground_boundary_model_learns_from_every_third_section(tmp_path, seed):
    # A painted section's foreground is known; its boundary mostly not (does the object go
    # on into the unpainted section next to it?). With one mask for both channels, 3D
    # patches kept ~2% of their voxels in the loss.
    rng = np.random.default_rng(0)
    shape = (20, 64, 64)
    labels = np.zeros(shape, np.uint16)
    zz, yy, xx = np.indices(shape)
    for index in range(1, 40):
        cz, cy, cx = rng.integers(0, 20), rng.integers(4, 60), rng.integers(4, 60)
        radius = rng.uniform(4, 8)
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2 + (5 * (zz - cz)) ** 2) < radius**2
        labels[inside & (labels == 0)] = index
    image = ndimage.gaussian_filter(180.0 - 100.0 * (labels > 0) + rng.normal(0, 25, shape), 1)
    tifffile.imwrite(tmp_path / "raw.tif", np.clip(image, 0, 255).astype(np.uint8))
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    source = {
        "image": str(tmp_path / "raw.tif"),
        "labels": str(tmp_path / "labels.tif"),
        "voxel_size": [50, 10, 10],
    }
    data = recipe(
        tmp_path,
        train=[{**source, "z_range": [0, 12]}],
        validation=[{**source, "z_range": [12, 15]}],
        test=[{**source, "z_range": [15, 20]}],
        network={
            "dims": 3,
            "depth": 2,
            "base_channels": 8,
            "norm": "batch",
            "anisotropic_levels": 1,
        },
        patch_shape=[4, 32, 32],
        epochs=15,
        samples_per_epoch=16,
        evaluation={"calibrate_thresholds": False, "min_size_nm3": 1000},
        sparse={"every_n_planes": 3},
        seed=seed,
        output=str(tmp_path / "model"),
    )
    held_out = run_training(parse_train_config(data)).metrics
    # Measured (one thread): IoU 0.82 / 0.84, F1@0.5 0.76 / 0.76 for seeds 0 / 1 (seeds 2
    # and 3: 0.79 / 0.82 and 0.76 / 0.82); with one mask, F1@0.5 0.23 / 0.13 (0.0 / 0.73).
    assert held_out["foreground_iou"] > 0.75
    assert held_out["object_f1_at"]["0.5"] > 0.7


RECIPES = sorted((Path(__file__).parents[2] / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_in_the_repository_is_valid(path):
    config, _ = load_train_config(path)
    assert config.test, "every recipe holds out test data for its card"
    if config.network.dims == 3:
        assert config.precision != "bfloat16"  # PyTorch's CPU bfloat16 Conv3d bug
