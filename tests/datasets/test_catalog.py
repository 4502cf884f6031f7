from __future__ import annotations

import json

import numpy as np
import pytest

from vemkit.datasets import data_root, dataset_info, list_datasets, load_layer
from vemkit.errors import LayerNotFoundError, VolumeNotFoundError


def _fake_dataset(root, name="toy", voxel=(40.0, 4.0, 4.0)):
    import tifffile

    folder = root / name
    folder.mkdir(parents=True)
    raw = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    labels = (raw > 100).astype(np.uint8)
    tifffile.imwrite(folder / "a_raw.tif", raw, compression="zlib", photometric="minisblack")
    tifffile.imwrite(folder / "a_mito.tif", labels, compression="zlib", photometric="minisblack")
    meta = {
        "name": name,
        "modality": "ssTEM",
        "voxel_size_nm": list(voxel) if voxel else None,
        "label_values": {"mitochondria_semantic": {"0": "background", "1": "mito"}},
        "license": "CC0",
        "files": {
            "a_raw.tif": {"role": "raw", "shape": [4, 8, 8], "dtype": "uint8"},
            "a_mito.tif": {"role": "mitochondria_semantic", "shape": [4, 8, 8], "dtype": "uint8"},
        },
    }
    (folder / "dataset.json").write_text(json.dumps(meta))
    return raw, labels


def test_catalog_on_a_made_up_folder(tmp_path, monkeypatch):
    raw, labels = _fake_dataset(tmp_path)
    monkeypatch.setenv("VEMKIT_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    assert list_datasets() == ["toy"]
    info = dataset_info("toy")
    assert info.voxel_size.as_tuple() == (40.0, 4.0, 4.0)
    layer = load_layer("toy", "raw")
    np.testing.assert_array_equal(layer.read(), raw)
    assert layer.voxel_size.as_tuple() == (40.0, 4.0, 4.0)
    assert layer.metadata["voxel_size_from"] == "dataset.json"
    mito = load_layer("toy", "mitochondria_semantic")
    assert mito.kind == "labels"
    assert mito.metadata["label_values"] == {"0": "background", "1": "mito"}
    np.testing.assert_array_equal(mito.read(), labels)


def test_catalog_errors_name_the_choices(tmp_path, monkeypatch):
    _fake_dataset(tmp_path)
    monkeypatch.setenv("VEMKIT_DATA", str(tmp_path))
    with pytest.raises(LayerNotFoundError, match="a_raw"):
        load_layer("toy", "nuclei")
    with pytest.raises(LayerNotFoundError, match="available: toy"):
        dataset_info("nope")


def test_unknown_voxel_size_is_recorded(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, voxel=None)
    monkeypatch.setenv("VEMKIT_DATA", str(tmp_path))
    assert load_layer("toy", "raw").metadata["voxel_size_from"] == "unknown"


def test_missing_root_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VEMKIT_DATA", str(tmp_path / "absent"))
    assert data_root() is None
    assert list_datasets() == []
    with pytest.raises(VolumeNotFoundError, match="VEMKIT_DATA"):
        dataset_info("toy")


@pytest.mark.realdata
def test_every_shared_dataset_loads(shared_data):
    for name in list_datasets(shared_data):
        info = dataset_info(name, root=shared_data)
        for file in info.files.values():
            layer = load_layer(name, file.stem, root=shared_data)
            assert layer.shape == file.shape, file.name
            assert str(layer.dtype) == file.dtype, file.name
            assert layer.kind == file.kind


@pytest.mark.realdata
def test_vnc_voxel_size_and_labels(shared_data):
    mito = load_layer("drosophila_vnc_sstem", "mitochondria_instances", root=shared_data)
    assert mito.voxel_size.as_tuple() == (50.0, 4.6, 4.6)
    crop = mito.read()[:, :256, :256]
    assert crop.max() > 0
