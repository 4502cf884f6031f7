"""Neuroglancer viewer states for datasets served over HTTP."""

from __future__ import annotations

import json
import urllib.parse

import numpy as np
import pytest

from vemkit.errors import ConfigError, LayerNotFoundError
from vemkit.geometry import VoxelSize
from vemkit.io import Dataset, Layer
from vemkit.io.neuroglancer import neuroglancer_state, neuroglancer_url


@pytest.fixture
def dataset(tmp_path):
    raw = np.zeros((8, 12, 16), np.uint8)
    ds = Dataset.create(tmp_path / "my cell.zarr", Layer(raw, VoxelSize(50, 5, 4), name="raw"))
    ds.add_layer("nuclei", np.ones((8, 12, 16), np.uint32), kind="labels")
    ds.add_layer("mito", np.zeros((8, 12, 16), np.uint32), kind="labels")
    return ds


def test_state_structure(dataset):
    state = neuroglancer_state(dataset.path, base_url="http://localhost:8000")
    assert state["dimensions"] == {
        "x": [pytest.approx(4e-9), "m"],
        "y": [pytest.approx(5e-9), "m"],
        "z": [pytest.approx(50e-9), "m"],
    }
    assert state["position"] == [8.0, 6.0, 4.0]  # x, y, z voxel centre
    layers = {layer["name"]: layer for layer in state["layers"]}
    assert set(layers) == {"raw", "nuclei", "mito"}
    assert layers["raw"]["type"] == "image"
    assert layers["raw"]["source"] == "zarr://http://localhost:8000/my%20cell.zarr/raw"
    assert layers["nuclei"]["type"] == "segmentation"
    assert layers["nuclei"]["source"] == "zarr://http://localhost:8000/my%20cell.zarr/labels/nuclei"
    assert state["selectedLayer"]["layer"] == "raw"
    json.dumps(state)  # JSON-ready


def test_state_layer_choice_scheme_and_url(dataset):
    state = neuroglancer_state(
        dataset,
        base_url="https://example.org/",
        dataset_url="https://data.example.org/cell.zarr/",
        layers=["labels/mito"],
        scheme="zarr2",
    )
    assert [layer["source"] for layer in state["layers"]] == [
        "zarr2://https://data.example.org/cell.zarr/labels/mito"
    ]
    url = neuroglancer_url(state, viewer="https://viewer.example/")
    assert url.startswith("https://viewer.example/#!")
    assert json.loads(urllib.parse.unquote(url.split("#!", 1)[1])) == state


def test_state_errors(dataset):
    with pytest.raises(ConfigError, match="http"):
        neuroglancer_state(dataset, base_url="localhost:8000")
    with pytest.raises(LayerNotFoundError, match="golgi"):
        neuroglancer_state(dataset, base_url="http://h/", layers=["golgi"])
