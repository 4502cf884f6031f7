"""The HTML report: valid, self-contained, escaped, with every section."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from vemkit.errors import ConfigError, LayerNotFoundError, OutputExistsError
from vemkit.geometry import VoxelSize
from vemkit.io import Dataset, Layer
from vemkit.measure import measure_regions
from vemkit.pipelines.report import cell_composition, summarize_table, write_report

VOXEL = VoxelSize(20, 10, 10)
EVIL = '<script>alert("x")</script>'


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in {"meta", "img", "br", "hr", "link", "input"}:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _balls(shape, specs):
    labels = np.zeros(shape, np.uint32)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for label, (center, radius) in specs.items():
        inside = (
            4 * (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2
        ) <= radius**2
        labels[inside] = label
    return labels


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    shape = (16, 40, 40)
    mito = _balls(shape, {1: ((5, 10, 10), 5), 2: ((8, 26, 26), 8), 7: ((10, 10, 30), 4)})
    nuclei = np.zeros(shape, np.uint32)  # an empty layer: reported as such
    raw = (90 + 80 * (mito > 0)).astype(np.uint8)
    ds = Dataset.create(tmp / "cell.zarr", Layer(raw, VOXEL, name="raw"))
    ds.add_layer("mito", mito, kind="labels")
    ds.add_layer("nuclei", nuclei, kind="labels")
    ds.add_provenance({"step": "segment", "model": EVIL, "parameters": {"threshold": 0.5}})
    table = measure_regions(mito, voxel_size=VOXEL)
    table["condition"] = ["a", "b", "a"]
    result = write_report(
        tmp / "cell.zarr",
        tmp / "report.html",
        tables={"mito": table},
        group="condition",
        max_meshes=2,
        title=f"cell {EVIL}",
    )
    return tmp, result


def test_report_is_valid_self_contained_html(report):
    _, result = report
    text = result.path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    tags = [tag for tag, _ in parser.tags]
    assert "script" not in tags
    assert "link" not in tags
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    # mito: slices, histograms, violins, scatter, 3D; nuclei (empty): slices only
    assert len(images) == 6
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        png = base64.b64decode(attrs["src"][len(prefix) :], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert attrs.get("alt")
    for _, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("data:", "#")), value


def test_report_sections_and_content(report):
    _, result = report
    parser = _Collector()
    parser.feed(result.path.read_text(encoding="utf-8"))
    ids = {attrs.get("id") for tag, attrs in parser.tags if tag == "section"}
    assert {"dataset", "labels-0", "labels-1", "provenance"} <= ids
    text = " ".join(parser.text)
    for expected in (
        "Labels: mito",
        "Labels: nuclei",
        "No objects in this layer.",
        "violin plots by condition",
        "16 × 40 × 40",  # raw shape
        "20 × 10 × 10 nm",  # voxel size
        "volume (µm³)",
        "IQR (q1 – q3)",
        "surface / volume (µm⁻¹)",
        "Provenance",
        "threshold",
        "numpy",
        "torch",
    ):
        assert expected in text, expected
    assert EVIL in text  # shown as text, not markup
    assert [(r.name, r.n_objects, r.n_meshed) for r in result.layers] == [
        ("mito", 3, 2),
        ("nuclei", 0, 0),
    ]
    assert result.layers[0].table_source == "table given"
    assert result.layers[1].table_source.startswith("measured")


def test_report_refuses_to_overwrite_and_checks_layers(report):
    tmp, result = report
    with pytest.raises(OutputExistsError):
        write_report(tmp / "cell.zarr", result.path)
    with pytest.raises(LayerNotFoundError, match="mito"):
        write_report(tmp / "cell.zarr", tmp / "other.html", labels=["golgi"])
    assert not (tmp / "other.html").exists()


def test_summarize_table_median_iqr():
    import pandas as pd

    summary = summarize_table(pd.DataFrame({"volume_um3": [1.0, 2.0, 3.0, 4.0, np.nan]}))
    row = summary.loc["volume_um3"]
    assert row["n"] == 4
    assert row["median"] == 2.5
    assert (row["q1"], row["q3"]) == (1.75, 3.25)


def test_report_progress_advances_once_per_layer_and_once_at_the_end(report):
    tmp, result = report

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        def start(self, total: int, description: str) -> None:
            self.calls.append(("start", total))

        def advance(self, steps: int = 1) -> None:
            self.calls.append(("advance", steps))

        def finish(self) -> None:
            self.calls.append(("finish", 0))

    recorder = Recorder()
    again = write_report(tmp / "cell.zarr", tmp / "progress.html", progress=recorder)
    n_layers = len(again.layers)
    assert n_layers == len(result.layers) >= 1
    assert recorder.calls[0] == ("start", n_layers + 1)
    assert recorder.calls[1:] == [("advance", 1)] * (n_layers + 1) + [("finish", 0)]

    # a layer that fails still closes the bar, and nothing is written
    failing = Recorder()
    bad = {result.layers[0].name: pd.DataFrame({"x": [1.0]})}
    with pytest.raises(ConfigError, match="lacks column"):
        write_report(tmp / "cell.zarr", tmp / "bad.html", tables=bad, progress=failing)
    assert failing.calls[0] == ("start", n_layers + 1)
    assert failing.calls[-1] == ("finish", 0)
    assert not (tmp / "bad.html").exists()


def test_report_shows_cell_composition(tmp_path):
    shape = (16, 40, 40)
    mito = _balls(shape, {1: ((5, 10, 10), 5), 2: ((8, 26, 26), 8), 7: ((10, 10, 30), 4)})
    nuclei = _balls(shape, {1: ((8, 30, 8), 6)})
    cells = np.zeros(shape, np.uint32)
    cells[:, :20] = 4
    cells[:, 20:] = 5
    raw = (90 + 80 * (mito > 0)).astype(np.uint8)
    ds = Dataset.create(tmp_path / "c.zarr", Layer(raw, VOXEL, name="raw"))
    for name, values in (("cells", cells), ("mitochondria", mito), ("nuclei", nuclei)):
        ds.add_layer(name, values, kind="labels")
    composition = cell_composition(ds, ["cells", "mitochondria", "nuclei"])
    mito_rows = composition[composition["organelle"] == "mitochondria"].set_index("cell")
    for cell in (4, 5):
        inside = cells == cell
        expected = 100 * np.count_nonzero(mito[inside]) / np.count_nonzero(inside)
        assert mito_rows.loc[cell, "percent_of_cell"] == pytest.approx(expected)
        cytoplasm = inside & (nuclei == 0)
        expected = 100 * np.count_nonzero(mito[cytoplasm]) / np.count_nonzero(cytoplasm)
        assert mito_rows.loc[cell, "percent_of_cytoplasm"] == pytest.approx(expected)
    nuclei_rows = composition[composition["organelle"] == "nuclei"].set_index("cell")
    assert nuclei_rows.loc[4, "percent_of_cell"] == 0
    assert nuclei_rows.loc[5, "percent_of_cell"] > 0
    assert nuclei_rows["percent_of_cytoplasm"].isna().all()  # nuclei are not in the cytoplasm
    result = write_report(tmp_path / "c.zarr", tmp_path / "r.html", max_meshes=1)
    parser = _Collector()
    parser.feed(result.path.read_text(encoding="utf-8"))
    ids = {attrs.get("id") for tag, attrs in parser.tags if tag == "section"}
    assert "cells" in ids
    text = " ".join(parser.text)
    assert "Cell composition" in text
    assert "mitochondria % of cytoplasm" in text
    # no cells layer, no section
    assert cell_composition(ds, ["mitochondria", "nuclei"]) is None
