"""`vemkit demo` end to end on a small phantom."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vemkit.cli.main import app
from vemkit.io import Dataset, open_layer


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--output", str(out), "--size", "64", "--epochs", "4", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "nuclei" in result.stdout
    assert "mitochondria" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    for name in ("nuclei", "mitochondria"):
        for method in ("classical", "sparse_unet"):
            scores = summary["scores"][name][method]
            assert scores["n_gt"] > 0
            assert 0.0 <= scores["dice"] <= 1.0
    # Even a few epochs from every 10th plane must segment mitochondria well, and
    # better than the classical baseline on the same phantom.
    mito = summary["scores"]["mitochondria"]
    assert mito["sparse_unet"]["dice"] >= 0.7
    assert mito["sparse_unet"]["dice"] > mito["classical"]["dice"]

    truth = Dataset.open(out / "phantom.zarr")
    assert set(truth.layer_names()) >= {"raw", "labels/nuclei", "labels/mitochondria"}
    seg = Dataset.open(out / "segmentation.zarr")
    assert {"labels/nuclei", "labels/mitochondria"} <= set(seg.layer_names())
    assert open_layer(out / "segmentation.zarr" / "labels" / "nuclei").shape == (64, 64, 64)
    assert (out / "preview.png").stat().st_size > 10_000
    # the trained models ran through both organelle pipelines (`vemkit segment`)
    nuclei = Dataset.open(out / "segment" / "nuclei.zarr")
    assert "labels/nuclei" in nuclei.layer_names()
    assert (out / "segment" / "nuclei.zarr" / "seeds" / "nuclei.nml").is_file()
    mito = Dataset.open(out / "segment" / "mitochondria.zarr")
    assert "labels/mitochondria" in mito.layer_names()
    assert (out / "segment" / "mitochondria.zarr" / "tables" / "mitochondria.csv").is_file()


def test_demo_refuses_existing_output(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    result = CliRunner().invoke(app, ["demo", "--output", str(out), "--size", "32", "--no-train"])
    assert result.exit_code == 2
    assert "--overwrite" in result.stderr
