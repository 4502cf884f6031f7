"""Per-source label conversion of training recipes (``labels_as``): masks and instance borders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.pipelines.train import (
    _tolerant_scores,
    convert_labels,
    load_source,
    parse_train_config,
    run_training,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- convert_labels on hand-made arrays --------------------------------------------------------
def test_mask_default_is_any_positive_value():
    labels = np.array([[[0, 1, 2, 0]]], np.uint8)
    out = convert_labels(labels, labels_as="mask", voxel_size=(50, 4, 4))
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 1, 1, 0]]]


def test_mask_foreground_values_pick_the_polarity():
    # A mask that marks membrane with 0 (like the original ISBI PNGs).
    labels = np.array([[[0, 255, 255, 0]]], np.uint8)
    out = convert_labels(labels, labels_as="mask", voxel_size=(50, 4, 4), foreground_values=[0])
    assert out.tolist() == [[[1, 0, 0, 1]]]


def test_mask_keeps_unannotated_voxels():
    labels = np.array([[[0, 1, 7, 1]]], np.uint8)
    out = convert_labels(labels, labels_as="mask", voxel_size=(1, 1, 1), ignore_value=7)
    assert out.tolist() == [[[0, 1, 7, 1]]]
    wide = convert_labels(labels.astype(np.int32), labels_as="mask", voxel_size=1, ignore_value=-1)
    assert wide.dtype.kind == "i"
    assert wide.tolist() == [[[0, 1, 1, 1]]]


def test_labels_are_returned_unchanged():
    labels = np.arange(6, dtype=np.uint16).reshape(1, 2, 3)
    assert convert_labels(labels, labels_as="labels", voxel_size=(1, 1, 1)) is labels


def test_missing_foreground_value_is_a_clear_error():
    labels = np.array([[[0, 255, 255, 0]]], np.uint8)
    with pytest.raises(InvalidVolumeError, match=r"none of the foreground_values \[1\].*0, 255"):
        convert_labels(
            labels, labels_as="mask", voxel_size=1, foreground_values=[1], name="labels 'm'"
        )


def test_instance_boundaries_band_width_in_nm():
    # Two neurons separated by a 1-voxel 0-line (a watershed ground truth), 10 nm voxels.
    row = [1, 1, 1, 0, 2, 2, 2]
    labels = np.array([[row, row, row]], np.uint8)
    thin = convert_labels(
        labels, labels_as="instance_boundaries", voxel_size=(10, 10, 10), boundary_width_nm=30
    )
    assert thin[0, 1].tolist() == [0, 0, 1, 1, 1, 0, 0]
    wide = convert_labels(
        labels, labels_as="instance_boundaries", voxel_size=(10, 10, 10), boundary_width_nm=50
    )
    assert wide[0, 1].tolist() == [0, 1, 1, 1, 1, 1, 0]
    # Touching instances without a 0-line get a border too; the volume edge is no border.
    touching = np.array([[[1, 1, 2, 2]] * 2], np.uint8)
    out = convert_labels(
        touching, labels_as="instance_boundaries", voxel_size=1, boundary_width_nm=1
    )
    assert out[0].tolist() == [[0, 1, 1, 0]] * 2


def test_instance_boundaries_2d_or_3d():
    # Section 0 is one neuron, section 1 another: a border only across z.
    labels = np.stack([np.full((3, 3), 1), np.full((3, 3), 2)]).astype(np.uint8)
    in_3d = convert_labels(
        labels, labels_as="instance_boundaries", voxel_size=(50, 5, 5), boundary_width_nm=10
    )
    in_2d = convert_labels(
        labels,
        labels_as="instance_boundaries",
        voxel_size=(50, 5, 5),
        boundary_width_nm=10,
        boundary_dims=2,
    )
    assert in_3d.all()
    assert not in_2d.any()


def test_instance_boundaries_with_unannotated_voxels():
    row = [1, 1, 1, 9, 9, 2, 2]
    labels = np.array([[row]], np.uint8)
    out = convert_labels(
        labels,
        labels_as="instance_boundaries",
        voxel_size=1,
        boundary_width_nm=1,
        ignore_value=9,
        boundary_dims=2,
    )
    # Next to unannotated voxels the answer is unknown, so those voxels are ignored too.
    assert out[0, 0].tolist() == [0, 0, 9, 9, 9, 9, 0]


def test_convert_labels_option_errors():
    labels = np.ones((1, 2, 2), np.uint8)
    with pytest.raises(ConfigError, match="boundary_width_nm"):
        convert_labels(labels, labels_as="instance_boundaries", voxel_size=1)
    with pytest.raises(ConfigError, match="ignore_value 1"):
        convert_labels(labels, labels_as="mask", voxel_size=1, ignore_value=1)
    with pytest.raises(ConfigError, match="unknown labels_as"):
        convert_labels(labels, labels_as="outline", voxel_size=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidVolumeError, match="integer volume"):
        convert_labels(labels.astype(np.float32), labels_as="mask", voxel_size=1)


def test_tolerant_scores_accept_a_shifted_line():
    truth = np.zeros((1, 8, 8), bool)
    truth[0, :, 3] = True
    shifted = np.roll(truth, 1, axis=2)
    precision, recall, f1 = _tolerant_scores(shifted, truth, radius_px=1)
    assert (precision, recall, f1) == (1.0, 1.0, 1.0)
    precision, recall, f1 = _tolerant_scores(np.roll(truth, 3, axis=2), truth, radius_px=2)
    assert (precision, recall, f1) == (0.0, 0.0, 0.0)


# --- recipes ----------------------------------------------------------------------------------
def _config(**source_changes):
    source = {"image": "raw.tif", "labels": "labels.tif", "voxel_size": [10, 10, 10]}
    source.update(source_changes)
    return {"name": "t", "task": "membranes", "train": [source], "target": {"type": "binary"}}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"labels_as": "outline"}, "train.0.labels_as"),
        ({"foreground_values": [1]}, "foreground_values applies to labels_as: mask only"),
        (
            {"labels_as": "mask", "boundary_width_nm": 30},
            "boundary_width_nm apply to labels_as: instance_boundaries only",
        ),
        ({"labels_as": "instance_boundaries"}, "needs boundary_width_nm"),
        ({"labels_as": "instance_boundaries", "boundary_width_nm": -3}, "boundary_width_nm"),
        ({"labels_as": "instance_boundaries", "boundary_width_nm": 30, "boundary_dims": 4}, "2"),
        ({"labels_as": "mask", "ignore_value": 1}, "clashes with the converted labels"),
        ({"labels_as": "mask", "foreground_values": []}, "foreground_values"),
        ({"labels_as": "mask", "foreground_values": [2, 2]}, "duplicates"),
        (
            {"labels_as": "mask", "foreground_values": [5], "ignore_value": 5},
            "also in foreground_values",
        ),
    ],
)
def test_recipe_rejects_bad_label_conversion(changes, words):
    with pytest.raises(ConfigError, match="invalid training config") as error:
        parse_train_config(_config(**changes))
    assert words in str(error.value)


def test_recipe_accepts_label_conversion():
    config = parse_train_config(
        _config(labels_as="instance_boundaries", boundary_width_nm=30, boundary_dims=2)
    )
    source = config.train[0]
    assert source.labels_as == "instance_boundaries"
    assert source.describe()["boundary_width_nm"] == 30
    plain = parse_train_config(_config()).train[0]
    assert "labels_as" not in plain.describe()  # cards of existing recipes stay the same


# --- loading and training from converted sources -----------------------------------------------
def _membrane_volume(shape=(6, 48, 48), seed=0):
    """Cells (instances) separated by 0-lines; dark membranes in the image."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    cells = (yy // 12) * 4 + (xx // 12) + 1 + (zz >= 3) * 16
    cells[(yy % 12 == 0) | (xx % 12 == 0)] = 0
    membrane = convert_labels(
        cells.astype(np.uint8),
        labels_as="instance_boundaries",
        voxel_size=(50, 10, 10),
        boundary_width_nm=30,
        boundary_dims=2,
    )
    image = 200.0 - 120.0 * membrane + rng.normal(0, 10, shape)
    return np.clip(image, 0, 255).astype(np.uint8), cells.astype(np.uint8)


@pytest.fixture(scope="module")
def membrane_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("membranes")
    image, cells = _membrane_volume()
    tifffile.imwrite(folder / "raw.tif", image)
    tifffile.imwrite(folder / "cells.tif", cells)
    tifffile.imwrite(folder / "mask.tif", (255 * (cells > 0)).astype(np.uint8))
    return folder


def test_z_range_boundaries_match_the_whole_volume(membrane_files):
    config = parse_train_config(
        _config(
            image=str(membrane_files / "raw.tif"),
            labels=str(membrane_files / "cells.tif"),
            voxel_size=[50, 10, 10],
            labels_as="instance_boundaries",
            boundary_width_nm=30,
            z_range=[1, 3],
        )
    )
    part = load_source(config.train[0], native=True).labels
    whole = load_source(config.train[0].model_copy(update={"z_range": None}), native=True).labels
    np.testing.assert_array_equal(part, whole[1:3])
    assert part[1].all()  # section 2 touches other cells in section 3: all border in 3D


def test_training_from_a_mask_and_instances_reports_tolerant_f1(membrane_files, tmp_path):
    raw = str(membrane_files / "raw.tif")
    mask = {
        "image": raw,
        "labels": str(membrane_files / "mask.tif"),
        "voxel_size": [50, 10, 10],
        "labels_as": "mask",
        "foreground_values": [0],  # 0 = membrane in this file
    }
    cells = {
        "image": raw,
        "labels": str(membrane_files / "cells.tif"),
        "voxel_size": [50, 10, 10],
        "labels_as": "instance_boundaries",
        "boundary_width_nm": 30,
        "boundary_dims": 2,
    }
    config = parse_train_config(
        {
            "name": "tiny-membranes",
            "task": "membranes",
            "train": [{**mask, "z_range": [0, 4]}, {**cells, "z_range": [0, 4]}],
            "validation": [{**cells, "z_range": [4, 5]}],
            "test": [{**mask, "z_range": [5, 6]}, {**cells, "z_range": [5, 6]}],
            "target": {"type": "binary"},
            "network": {"dims": 2, "depth": 2, "base_channels": 4, "norm": "batch"},
            "patch_shape": [32, 32],
            "batch_size": 4,
            "epochs": 2,
            "samples_per_epoch": 8,
            "validation_samples": 4,
            "prediction": {"tile": 64},
            "evaluation": {
                "instances": "none",
                "calibrate_thresholds": True,
                "boundary_dilation_px": 1,
            },
        }
    )
    outcome = run_training(config, output=tmp_path / "out")
    per_source = outcome.card["metrics"]["per_source"]
    assert len(per_source) == 2
    for scores in per_source:
        assert scores["boundary_tolerance_px"] == 1
        assert 0.0 <= scores["foreground_f1"] <= scores["foreground_f1_tolerant"] <= 1.0
    assert per_source[0]["data"]["labels_as"] == "mask"
    assert per_source[0]["data"]["foreground_values"] == [0]
    assert outcome.card["training_data"][1]["boundary_width_nm"] == 30
    assert "foreground_f1_tolerant" in outcome.metrics
