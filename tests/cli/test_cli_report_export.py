"""`vemkit report` and `vemkit export neuroglancer|nml` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vemkit.cli.main import app
from vemkit.geometry import VoxelSize
from vemkit.io import Dataset, Layer
from vemkit.io.webknossos import read_nml

runner = CliRunner()
VOXEL = VoxelSize(20, 10, 10)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def seg(tmp_path):
    shape = (12, 32, 32)
    labels = np.zeros(shape, np.uint32)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for label, (z, y, x, r) in {4: (6, 10, 10, 6), 9: (6, 22, 22, 8)}.items():
        labels[(4 * (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) <= r**2] = label
    raw = (80 + 100 * (labels > 0)).astype(np.uint8)
    ds = Dataset.create(tmp_path / "seg.zarr", Layer(raw, VOXEL, name="raw"))
    ds.add_layer("mito", labels, kind="labels")
    ds.add_layer("empty", np.zeros(shape, np.uint32), kind="labels")
    return tmp_path / "seg.zarr"


def test_report_command(seg, tmp_path):
    out = tmp_path / "report.html"
    result = run("report", seg, "-o", out, "--labels", "mito", "--max-meshes", "1")
    assert result.exit_code == 0, result.output
    assert "mito: 2 objects, 1 in the 3D view" in result.output
    text = out.read_text(encoding="utf-8")
    assert "Labels: mito" in text
    assert "Labels: empty" not in text
    assert text.count("data:image/png;base64,") == 5
    again = run("report", seg, "-o", out)
    assert again.exit_code == 2
    assert "already exists" in again.output
    missing = run("report", seg, "-o", tmp_path / "x.html", "--labels", "golgi")
    assert missing.exit_code == 2
    assert "golgi" in missing.output
    bad_table = run(
        "report", seg, "-o", tmp_path / "x.html", "--table", "a.csv", "--table", "b.csv"
    )
    assert bad_table.exit_code == 2
    assert "NAME=TABLE" in bad_table.output


def test_export_neuroglancer_command(seg, tmp_path):
    out = tmp_path / "state.json"
    result = run("export", "neuroglancer", seg, "--url", "http://localhost:8000/", "-o", out)
    assert result.exit_code == 0, result.output
    state = json.loads(out.read_text(encoding="utf-8"))
    assert [(layer["name"], layer["type"]) for layer in state["layers"]] == [
        ("raw", "image"),
        ("mito", "segmentation"),
        ("empty", "segmentation"),
    ]
    assert "neuroglancer-demo.appspot.com/#!" in result.output
    bad = run("export", "neuroglancer", seg, "--url", "ftp://x", "-o", tmp_path / "s2.json")
    assert bad.exit_code == 2


def test_export_nml_command(tmp_path):
    table = pd.DataFrame(
        {
            "label": [4, 9],
            "centroid_z_um": [0.12, 0.2],
            "centroid_y_um": [0.1, 0.3],
            "centroid_x_um": [0.1, 0.22],
            "volume_um3": [0.001, 0.004],
        }
    )
    table.to_csv(tmp_path / "seeds.csv", index=False)
    out = tmp_path / "seeds.nml"
    result = run(
        "export", "nml", tmp_path / "seeds.csv", "-o", out, "--voxel-size", "20,10,10",
        "--name-prefix", "mito",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    skeleton = read_nml(out)
    assert skeleton.ids.tolist() == [4, 9]
    assert skeleton.names == ["mito 4", "mito 9"]
    np.testing.assert_allclose(skeleton.points_vox, [[6, 10, 10], [10, 30, 22]])
    assert skeleton.voxel_size == VOXEL
    expected_r = np.cbrt(3 * 0.001 / (4 * np.pi)) * 1000
    assert skeleton.radii_nm[0] == pytest.approx(expected_r, rel=1e-5)
    no_size = run("export", "nml", tmp_path / "seeds.csv", "-o", tmp_path / "b.nml")
    assert no_size.exit_code == 2
    assert "--voxel-size" in no_size.output
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    bad = run("export", "nml", tmp_path / "bad.csv", "-o", tmp_path / "b.nml", "--voxel-size", "10")
    assert bad.exit_code == 2
    assert "point columns" in bad.output
