"""Meshes in nm (x, y, z), OBJ/PLY/STL files and neuroglancer precomputed round trips."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pandas as pd
import pytest

from vemkit.errors import ConfigError, OutputExistsError
from vemkit.measure import (
    Mesh,
    measure_regions,
    mesh_objects,
    read_neuroglancer_fragment,
    write_neuroglancer_precomputed,
    write_obj,
    write_ply,
    write_stl,
)

VOXEL = (40.0, 10.0, 10.0)


def _scene() -> np.ndarray:
    labels = np.zeros((14, 40, 60), np.uint32)
    labels[3:8, 5:15, 5:45] = 4  # a box elongated along x
    zz, yy, xx = np.mgrid[:14, :40, :60]
    labels[((zz - 8) * 40) ** 2 + ((yy - 28) * 10) ** 2 + ((xx - 40) * 10) ** 2 <= 120**2] = 17
    return labels


def test_meshes_are_xyz_nm_closed_and_outward() -> None:
    labels = _scene()
    meshes = mesh_objects(labels, voxel_size=VOXEL)
    assert list(meshes) == [4, 17]
    box = meshes[4]
    assert box.vertices_nm.dtype == np.float32
    assert box.faces.dtype == np.uint32
    extent = box.vertices_nm.max(axis=0) - box.vertices_nm.min(axis=0)
    # x spans 40 voxels of 10 nm, y 10 of 10 nm, z 5 of 40 nm (minus smoothing).
    assert extent[0] == pytest.approx(390, abs=30)
    assert extent[1] == pytest.approx(90, abs=30)
    assert extent[2] == pytest.approx(160, abs=50)
    centre = box.vertices_nm.mean(axis=0)
    assert centre == pytest.approx([24.5 * 10, 9.5 * 10, 5 * 40], abs=15)
    assert box.volume_nm3 > 0  # outward faces
    # Smoothing rounds the edges of this small box; the voxel staircase keeps its volume.
    staircase = mesh_objects(labels, voxel_size=VOXEL, smooth_mask=False)[4]
    assert staircase.volume_nm3 == pytest.approx(5 * 10 * 40 * 4000, rel=0.02)
    assert box.volume_nm3 < staircase.volume_nm3
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.Trimesh(box.vertices_nm, box.faces, process=False)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0


def test_sphere_mesh_area_matches_measure_regions() -> None:
    labels = _scene()
    sphere = mesh_objects(labels, voxel_size=VOXEL, labels_subset=[17])
    assert list(sphere) == [17]
    row = measure_regions(labels, voxel_size=VOXEL).set_index("label").loc[17]
    # measure_regions measures the same mesh, rescaled to the voxel volume.
    scale = (row["volume_um3"] * 1e9 / sphere[17].volume_nm3) ** (2 / 3)
    assert sphere[17].area_nm2 * scale / 1e6 == pytest.approx(row["surface_area_um2"], rel=1e-5)
    assert row["surface_area_um2"] == pytest.approx(4 * math.pi * 0.12**2, rel=0.02)


def test_smoothing_and_simplification() -> None:
    labels = _scene()
    plain = mesh_objects(labels, voxel_size=VOXEL, labels_subset=[17], smooth_mask=False)[17]
    smooth = mesh_objects(
        labels, voxel_size=VOXEL, labels_subset=[17], smooth_mask=False, smoothing_iterations=10
    )[17]
    assert smooth.area_nm2 < plain.area_nm2  # the staircase is smoothed away
    assert smooth.volume_nm3 == pytest.approx(plain.volume_nm3, rel=0.05)  # Taubin keeps volume
    pytest.importorskip("zmesh")
    full = mesh_objects(labels, voxel_size=VOXEL, labels_subset=[4])[4]
    reduced = mesh_objects(labels, voxel_size=VOXEL, labels_subset=[4], simplify_ratio=0.2)[4]
    assert len(reduced.faces) <= 0.25 * len(full.faces)
    assert reduced.volume_nm3 == pytest.approx(full.volume_nm3, rel=0.05)


def test_mesh_files_read_back_with_trimesh(tmp_path) -> None:
    trimesh = pytest.importorskip("trimesh")
    mesh = mesh_objects(_scene(), voxel_size=VOXEL)[4]
    for writer, suffix in ((write_obj, "obj"), (write_ply, "ply"), (write_stl, "stl")):
        path = writer(mesh, tmp_path / f"box.{suffix}")
        loaded = trimesh.load(path, file_type=suffix, process=False, force="mesh")
        assert len(loaded.faces) == len(mesh.faces)
        assert loaded.area == pytest.approx(mesh.area_nm2, rel=1e-5)
        assert loaded.volume == pytest.approx(mesh.volume_nm3, rel=1e-5)
        if suffix != "stl":  # STL stores triangle corners, not shared vertices
            np.testing.assert_allclose(loaded.vertices, mesh.vertices_nm, rtol=1e-5)
        with pytest.raises(OutputExistsError):
            writer(mesh, path)
        writer(mesh, path, overwrite=True)


def test_neuroglancer_precomputed_round_trip(tmp_path) -> None:
    labels = _scene()
    meshes = mesh_objects(labels, voxel_size=VOXEL)
    table = measure_regions(labels, voxel_size=VOXEL)
    table["cell"] = "A"  # a text column: skipped
    table.loc[0, "nn_dist_um"] = np.nan  # a column with NaN: skipped
    folder = write_neuroglancer_precomputed(meshes, tmp_path / "mesh", segment_properties=table)

    info = json.loads((folder / "info").read_text())
    assert info == {"@type": "neuroglancer_legacy_mesh", "segment_properties": "segment_properties"}
    for segment, mesh in meshes.items():
        manifest = json.loads((folder / f"{segment}:0").read_text())
        assert manifest == {"fragments": [str(segment)]}
        data = (folder / str(segment)).read_bytes()
        (n_vertices,) = struct.unpack("<I", data[:4])
        assert n_vertices == len(mesh.vertices_nm)
        vertices = np.frombuffer(data[4 : 4 + 12 * n_vertices], "<f4").reshape(-1, 3)
        faces = np.frombuffer(data[4 + 12 * n_vertices :], "<u4").reshape(-1, 3)
        np.testing.assert_array_equal(vertices, mesh.vertices_nm)
        np.testing.assert_array_equal(faces, mesh.faces)
        back = read_neuroglancer_fragment(folder / str(segment))
        np.testing.assert_array_equal(back.faces, mesh.faces)

    properties = json.loads((folder / "segment_properties" / "info").read_text())
    assert properties["@type"] == "neuroglancer_segment_properties"
    inline = properties["inline"]
    assert inline["ids"] == ["4", "17"]
    by_id = {p["id"]: p for p in inline["properties"]}
    assert "cell" not in by_id
    assert "nn_dist_um" not in by_id
    assert by_id["volume_um3"]["type"] == "number"
    assert by_id["volume_um3"]["data_type"] == "float32"
    assert by_id["volume_um3"]["values"] == pytest.approx(table["volume_um3"].tolist(), rel=1e-6)
    assert by_id["n_voxels"]["data_type"] == "uint32"
    assert by_id["touches_border"]["data_type"] == "uint32"
    assert all(len(p["values"]) == 2 for p in inline["properties"])

    with pytest.raises(OutputExistsError):
        write_neuroglancer_precomputed(meshes, folder)
    write_neuroglancer_precomputed({4: meshes[4]}, folder, overwrite=True)
    assert "segment_properties" not in json.loads((folder / "info").read_text())


def test_label_column_or_index_gives_ids(tmp_path) -> None:
    mesh = Mesh(
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
        np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.uint32),
    )
    assert mesh.volume_nm3 == pytest.approx(1 / 6)
    table = pd.DataFrame({"score": [0.5, 2.0]}, index=[7, 8])
    folder = write_neuroglancer_precomputed({8: mesh}, tmp_path / "m", segment_properties=table)
    inline = json.loads((folder / "segment_properties" / "info").read_text())["inline"]
    assert inline["ids"] == ["8"]
    assert inline["properties"][0]["values"] == [2.0]


def test_bad_parameters() -> None:
    labels = _scene()
    with pytest.raises(ConfigError, match="step"):
        mesh_objects(labels, voxel_size=VOXEL, step=0)
    with pytest.raises(ConfigError, match="simplify_ratio"):
        mesh_objects(labels, voxel_size=VOXEL, simplify_ratio=1.5)
    with pytest.raises(ConfigError, match="smoothing_iterations"):
        mesh_objects(labels, voxel_size=VOXEL, smoothing_iterations=-1)
    assert mesh_objects(np.zeros((3, 3, 3), np.uint8), voxel_size=1) == {}
    tiny = np.zeros((3, 3, 3), np.uint8)
    tiny[1, 1, 1] = 1
    assert math.isfinite(mesh_objects(tiny, voxel_size=1)[1].area_nm2)
