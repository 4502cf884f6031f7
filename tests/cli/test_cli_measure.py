"""`vemkit measure / evaluate / mesh / stats` end to end on small hand-made volumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vemkit.cli.main import app
from vemkit.geometry import VoxelSize
from vemkit.io import Dataset, Layer

runner = CliRunner()
VOXEL = VoxelSize(20, 10, 10)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _ball(shape, center, radius_vox):
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        (zz - center[0]) ** 2 / (radius_vox / 2) ** 2
        + (yy - center[1]) ** 2 / radius_vox**2
        + (xx - center[2]) ** 2 / radius_vox**2
    ) <= 1


@pytest.fixture
def seg(tmp_path):
    """A dataset with 3 'mitochondria', one 'nucleus' and raw; plus a shifted prediction."""
    shape = (24, 64, 64)
    truth = np.zeros(shape, np.uint32)
    for i, c in enumerate([(8, 16, 16), (12, 40, 20), (16, 20, 48)], start=1):
        truth[_ball(shape, c, 7)] = i
    nucleus = _ball(shape, (12, 44, 48), 10).astype(np.uint32)
    raw = (100 + 50 * (truth > 0)).astype(np.uint8)
    pred = np.roll(truth, 1, axis=2)
    ds = Dataset.create(tmp_path / "seg.zarr", Layer(raw, VOXEL, name="raw"))
    ds.add_layer("mitochondria", truth, kind="labels")
    ds.add_layer("prediction", pred, kind="labels")
    ds.add_layer("nucleus", nucleus, kind="labels")
    return tmp_path / "seg.zarr", truth, pred


def test_evaluate_json_has_the_documented_keys(seg):
    path, truth, pred = seg
    result = run("evaluate", f"{path}/labels/prediction", f"{path}/labels/mitochondria", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    for key in (
        "dice",
        "iou",
        "precision",
        "recall",
        "f1_at",
        "hausdorff_mean_nm",
        "hausdorff_95_nm",
        "vi_split",
        "vi_merge",
        "adapted_rand_error",
    ):
        assert key in scores, key
    overlap = np.logical_and(truth > 0, pred > 0).sum()
    expected_dice = 2 * overlap / ((truth > 0).sum() + (pred > 0).sum())
    assert scores["dice"] == pytest.approx(expected_dice)
    assert scores["f1_at"]["0.5"] == pytest.approx(1.0)
    assert scores["n_gt"] == 3


def test_evaluate_human_output(seg):
    path, _, _ = seg
    result = run("evaluate", f"{path}/labels/prediction", f"{path}/labels/mitochondria")
    assert result.exit_code == 0, result.output
    assert "object F1 at IoU" in result.stdout


def test_evaluate_ci_adds_bootstrap_intervals(seg):
    path, _, _ = seg
    args = ("evaluate", f"{path}/labels/prediction", f"{path}/labels/mitochondria", "--ci")
    result = run(*args, "--resamples", 200, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    intervals = scores["confidence_intervals"]
    assert intervals["n_resamples"] == 200
    assert intervals["iou"]["value"] == pytest.approx(scores["iou"])
    assert intervals["f1_at"]["0.5"]["value"] == pytest.approx(scores["f1_at"]["0.5"])
    assert intervals["iou"]["low"] <= scores["iou"] <= intervals["iou"]["high"]
    human = run(*args)
    assert human.exit_code == 0, human.output
    assert "95% CI" in human.stdout
    assert "block bootstrap" in human.stdout


def test_evaluate_ci_on_masks_and_multiclass_maps(seg, tmp_path):
    path, truth, pred = seg
    ds = Dataset.open(path)
    ds.add_layer("pred_mask", (pred > 0).astype(np.uint8), kind="labels")
    ds.add_layer("true_mask", (truth > 0).astype(np.uint8), kind="labels")
    ds.add_layer("classes", np.minimum(truth, 2).astype(np.uint8), kind="labels")
    ds.add_layer("pred_classes", np.minimum(pred, 2).astype(np.uint8), kind="labels")
    masks = run(
        "evaluate", f"{path}/labels/pred_mask", f"{path}/labels/true_mask", "--ci", "--json"
    )
    assert masks.exit_code == 0, masks.output
    intervals = json.loads(masks.stdout)["confidence_intervals"]
    assert intervals["n_gt"] == 3  # the connected components of the mask
    classes = f"{path}/labels/classes"
    args = ("evaluate", f"{path}/labels/pred_classes", classes, "--mode", "semantic", "--ci")
    multiclass = run(*args, "--resamples", 200, "--json")
    assert multiclass.exit_code == 0, multiclass.output
    scores = json.loads(multiclass.stdout)
    intervals = scores["confidence_intervals"]
    assert intervals["dice"]["value"] == pytest.approx(scores["dice"])  # the macro Dice
    assert intervals["weighted_f1"]["value"] == pytest.approx(scores["weighted_f1"])
    assert set(intervals["per_class"]) == {"1", "2"}  # as evaluate(): background is not a class
    for name, entry in intervals["per_class"].items():
        assert entry["value"] == pytest.approx(scores["per_class"][name]["f1"])
    human = run(*args)
    assert human.exit_code == 0, human.output
    assert "class 2 F1" in human.stdout


def test_evaluate_shape_mismatch_is_a_clear_error(seg, tmp_path):
    path, _, _ = seg
    other = Dataset.create(tmp_path / "o.zarr", Layer(np.zeros((8, 8, 8), np.uint8), VOXEL))
    other.add_layer("x", np.zeros((8, 8, 8), np.uint32), kind="labels")
    result = run("evaluate", f"{tmp_path}/o.zarr/labels/x", f"{path}/labels/mitochondria")
    assert result.exit_code == 2
    assert "same voxel grid" in result.stderr


def test_measure_writes_table_with_distances(seg, tmp_path):
    path, truth, _ = seg
    out = tmp_path / "mito.csv"
    result = run(
        "measure",
        f"{path}/labels/mitochondria",
        "-o",
        out,
        "--raw",
        f"{path}/raw",
        "--ref",
        f"nucleus={path}/labels/nucleus",
        "--k",
        "1",
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 3
    voxels = np.bincount(truth.ravel())[1:]
    np.testing.assert_allclose(table["volume_um3"], voxels * VOXEL.volume_nm3 / 1e9, rtol=1e-6)
    assert (table["intensity_mean"] == 150).all()
    assert "dist_surface_to_nucleus_um" in table.columns
    assert (table["dist_surface_to_nucleus_um"] >= 0).all()


def test_measure_per_cell_volume_fractions(seg, tmp_path):
    path, truth, _ = seg
    cells = np.zeros(truth.shape, np.uint16)
    cells[:, :32] = 1  # mitochondria 1 and 3 (centres at y 16 and 20)
    cells[:, 32:] = 2  # mitochondrion 2 (y 40) and the nucleus
    nucleus = Dataset.open(path).layer("nucleus").read() > 0
    Dataset.open(path).add_layer("cells", cells, kind="labels")
    out = tmp_path / "mito.csv"
    result = run(
        "measure",
        f"{path}/labels/mitochondria",
        "-o",
        out,
        "--cells",
        f"{path}/labels/cells",
        "--exclude",
        f"{path}/labels/nucleus",
    )
    assert result.exit_code == 0, result.output
    assert "2 cells" in result.stdout
    table = pd.read_csv(out)
    assert table["cell"].tolist() == [1, 2, 1]
    per_cell = pd.read_csv(tmp_path / "mito.cells.csv")
    assert per_cell["cell"].tolist() == [1, 2]
    for cell in (1, 2):
        inside = cells == cell
        row = per_cell.iloc[cell - 1]
        expected = np.count_nonzero(truth[inside]) / np.count_nonzero(inside)
        assert row["volume_fraction"] == pytest.approx(expected)
        cytoplasm = inside & ~nucleus
        expected = np.count_nonzero(truth[cytoplasm]) / np.count_nonzero(cytoplasm)
        assert row["volume_fraction_cytoplasm"] == pytest.approx(expected)
    # --exclude alone is refused, and nothing is written
    lone = run(
        "measure",
        f"{path}/labels/mitochondria",
        "-o",
        tmp_path / "x.csv",
        "--exclude",
        f"{path}/labels/nucleus",
    )
    assert lone.exit_code == 2
    assert "--cells" in lone.stderr
    assert not (tmp_path / "x.csv").exists()


def test_measure_refuses_bad_ref_and_existing_output(seg, tmp_path):
    path, _, _ = seg
    out = tmp_path / "t.csv"
    out.write_text("keep")
    result = run("measure", f"{path}/labels/mitochondria", "-o", out, "--ref", "oops")
    assert result.exit_code == 2
    assert "NAME=LABELS" in result.stderr
    result = run("measure", f"{path}/labels/mitochondria", "-o", out)
    assert result.exit_code == 2
    assert out.read_text() == "keep"


@pytest.mark.parametrize("fmt", ["obj", "neuroglancer"])
def test_mesh_command(seg, tmp_path, fmt):
    path, _, _ = seg
    out = tmp_path / f"meshes-{fmt}"
    result = run("mesh", f"{path}/labels/mitochondria", "-o", out, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "wrote 3 meshes" in result.stdout
    if fmt == "obj":
        assert sorted(p.name for p in out.iterdir()) == ["1.obj", "2.obj", "3.obj"]
    else:
        assert json.loads((out / "info").read_text())["@type"] == "neuroglancer_legacy_mesh"


def test_stats_compare_and_correlate(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "volume_um3": np.r_[rng.normal(1, 0.1, 20), rng.normal(2, 0.1, 20)],
            "cell": ["a"] * 20 + ["b"] * 20,
        }
    )
    table["area"] = table["volume_um3"] * 3
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    result = run("stats", path, "--value", "volume_um3", "--group", "cell")
    assert result.exit_code == 0, result.output
    assert "mann" in result.stdout.lower()
    result = run("stats", path, "--value", "volume_um3", "--against", "area")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rho" if "rho" in result.stdout else "r"] == pytest.approx(1.0)
    result = run("stats", path, "--value", "nope", "--group", "cell")
    assert result.exit_code == 2
    assert "no column" in result.stderr
