"""webKnossos NML export: XML validity, format details, round trip."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from vemkit.errors import CorruptFileError, InvalidVolumeError, OutputExistsError
from vemkit.geometry import VoxelSize
from vemkit.io.webknossos import read_nml, write_nml

VS = VoxelSize(50, 5, 4)


def test_write_nml_round_trip(tmp_path):
    points_nm = np.array([[100.0, 50.0, 40.0], [1000.0, 500.0, 400.0], [0.0, 0.0, 0.0]])
    out = write_nml(
        tmp_path / "seeds.nml",
        points_nm,
        voxel_size=VS,
        ids=[3, 7, 11],
        radii_nm=[10.0, 20.0, 30.0],
        dataset_name="cell_<1>",
        comment="nucleus centroid & seed",
    )
    assert out.is_file()
    back = read_nml(out)
    assert back.dataset_name == "cell_<1>"
    assert back.voxel_size == VS
    assert back.ids.tolist() == [3, 7, 11]
    assert back.names == ["object 3", "object 7", "object 11"]
    np.testing.assert_allclose(back.points_vox, points_nm / np.array([50, 5, 4]))
    np.testing.assert_allclose(back.points_nm, points_nm)
    np.testing.assert_allclose(back.radii_nm, [10.0, 20.0, 30.0])
    assert back.comments == dict.fromkeys((3, 7, 11), "nucleus centroid & seed")
    assert back.description == "nucleus centroid & seed"


def test_write_nml_format(tmp_path):
    out = write_nml(tmp_path / "a.nml", [[60.0, 12.0, 9.0]], voxel_size=VS, names=["n"])
    text = out.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0"')
    root = ET.fromstring(text)
    assert root.tag == "things"
    scale = root.find("parameters/scale")
    assert scale is not None
    assert (scale.get("x"), scale.get("y"), scale.get("z")) == ("4", "5", "50")
    node = root.find("thing/nodes/node")
    assert node is not None
    # x y z in integer voxels: 9/4 -> 2, 12/5 -> 2, 60/50 -> 1
    assert (node.get("x"), node.get("y"), node.get("z")) == ("2", "2", "1")
    thing = root.find("thing")
    assert thing is not None
    assert thing.get("name") == "n"
    assert thing.get("id") == "1"
    for tag in ("branchpoints", "comments", "groups"):
        assert root.find(tag) is not None
    # nearest voxel: round trip is exact to half a voxel
    error_nm = np.abs(read_nml(out).points_nm[0] - [60.0, 12.0, 9.0])
    assert np.all(error_nm <= np.array(VS.as_tuple()) / 2)


def test_write_nml_empty_and_errors(tmp_path):
    empty = write_nml(tmp_path / "e.nml", np.zeros((0, 3)), voxel_size=VS)
    assert read_nml(empty).ids.size == 0
    with pytest.raises(OutputExistsError):
        write_nml(empty, np.zeros((0, 3)), voxel_size=VS)
    write_nml(empty, [[0, 0, 0]], voxel_size=VS, overwrite=True)
    assert read_nml(empty).ids.tolist() == [1]
    with pytest.raises(InvalidVolumeError, match=r"\(N, 3\)"):
        write_nml(tmp_path / "b.nml", [[1, 2]], voxel_size=VS)
    with pytest.raises(InvalidVolumeError, match="ids"):
        write_nml(tmp_path / "b.nml", [[1, 2, 3], [4, 5, 6]], voxel_size=VS, ids=[1, 1])
    with pytest.raises(InvalidVolumeError, match="NaN"):
        write_nml(tmp_path / "b.nml", [[np.nan, 2, 3]], voxel_size=VS)
    assert not (tmp_path / "b.nml").exists()


def test_read_nml_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.nml"
    bad.write_text("<things><thing", encoding="utf-8")
    with pytest.raises(CorruptFileError):
        read_nml(bad)
    bad.write_text("<things><parameters/></things>", encoding="utf-8")
    with pytest.raises(CorruptFileError, match="scale"):
        read_nml(bad)
