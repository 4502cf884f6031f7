"""measure_regions against analytic shapes: spheres, ellipsoids, lattices, intensities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import measure_regions, principal_axis_lengths


def _grid_nm(shape_vox, voxel_size, centre_nm):
    return np.meshgrid(
        *[np.arange(n) * s - c for n, s, c in zip(shape_vox, voxel_size, centre_nm, strict=True)],
        indexing="ij",
    )


def _sphere(radius_nm, voxel_size, offset_vox=(0.3, 0.17, 0.41)):
    """A digitised sphere whose centre sits off the voxel grid (no lucky symmetry)."""
    shape = [math.ceil(2 * radius_nm / s) + 8 for s in voxel_size]
    centre = [(n / 2 + o) * s for n, s, o in zip(shape, voxel_size, offset_vox, strict=True)]
    z, y, x = _grid_nm(shape, voxel_size, centre)
    return (z**2 + y**2 + x**2 <= radius_nm**2).astype(np.uint16), np.asarray(centre)


# A radius of 1 µm is 50 voxels at 20 nm and 20 sections at 50 nm: enough for 2 %
# (the volume is a voxel count; the area comes from the smoothed mesh, see
# measure_regions Notes). Measured errors: volume < 0.02 %, area +0.3 % / +0.5 %.
@pytest.mark.parametrize("voxel_size", [(20.0, 20.0, 20.0), (50.0, 10.0, 10.0)])
def test_sphere_volume_area_sphericity(voxel_size) -> None:
    labels, centre_nm = _sphere(1000.0, voxel_size)
    row = measure_regions(labels, voxel_size=voxel_size).iloc[0]
    volume, area = 4 / 3 * math.pi, 4 * math.pi  # µm³, µm²
    assert row["volume_um3"] == pytest.approx(volume, rel=0.02)
    assert row["surface_area_um2"] == pytest.approx(area, rel=0.02)
    assert row["sv_ratio_per_um"] == pytest.approx(3.0, rel=0.02)
    assert row["sphericity"] == pytest.approx(1.0, abs=0.02)
    centroid = row[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy(float)
    np.testing.assert_allclose(centroid * 1000, centre_nm, atol=0.2 * min(voxel_size))
    for axis in ("major", "medium", "minor"):
        assert row[f"axis_{axis}_length_um"] == pytest.approx(2.0, rel=0.01)
    assert row["elongation"] == pytest.approx(1.0, abs=0.01)
    assert not row["touches_border"]


def test_rotated_ellipsoid_axes_and_elongation() -> None:
    semi_nm = np.array([600.0, 300.0, 150.0])
    voxel_size = (10.0, 10.0, 10.0)
    shape = (140, 140, 140)
    z, y, x = _grid_nm(shape, voxel_size, (703.0, 698.0, 701.0))
    rotation = np.array([[0.8, -0.36, 0.48], [0.6, 0.48, -0.64], [0.0, 0.8, 0.6]])
    body = np.tensordot(rotation, np.stack([z, y, x]), axes=1)
    labels = (((body / semi_nm[:, None, None, None]) ** 2).sum(axis=0) <= 1).astype(np.uint8)
    row = measure_regions(labels, voxel_size=voxel_size).iloc[0]
    assert row["axis_major_length_um"] == pytest.approx(1.2, rel=0.01)
    assert row["axis_medium_length_um"] == pytest.approx(0.6, rel=0.01)
    assert row["axis_minor_length_um"] == pytest.approx(0.3, rel=0.02)
    assert row["elongation"] == pytest.approx(4.0, rel=0.02)
    assert row["volume_um3"] == pytest.approx(4 / 3 * math.pi * 0.6 * 0.3 * 0.15, rel=0.01)


def test_anisotropic_axis_aligned_ellipsoid() -> None:
    voxel_size = (40.0, 8.0, 8.0)
    z, y, x = _grid_nm((40, 120, 200), voxel_size, (790.0, 476.0, 796.0))
    labels = ((z / 600) ** 2 + (y / 300) ** 2 + (x / 700) ** 2 <= 1).astype(np.uint8)
    row = measure_regions(labels, voxel_size=voxel_size).iloc[0]
    assert row["axis_major_length_um"] == pytest.approx(1.4, rel=0.01)
    assert row["axis_medium_length_um"] == pytest.approx(1.2, rel=0.01)
    assert row["axis_minor_length_um"] == pytest.approx(0.6, rel=0.01)
    assert row["elongation"] == pytest.approx(1.4 / 0.6, rel=0.02)


def test_principal_axes_match_skimage_without_voxel_extent() -> None:
    rng = np.random.default_rng(3)
    labels = np.zeros((12, 20, 24), np.uint8)
    labels[2:9, 3:15, 5:20] = rng.random((7, 12, 15)) < 0.7
    spacing = (30.0, 6.0, 5.0)
    props = regionprops(labels, spacing=spacing)[0]
    coords = np.argwhere(labels) * np.asarray(spacing)
    lengths, _ = principal_axis_lengths(coords)
    assert lengths[0] == pytest.approx(props.axis_major_length, rel=1e-6)
    assert lengths[2] == pytest.approx(props.axis_minor_length, rel=1e-6)


def test_one_section_object_has_finite_elongation() -> None:
    labels = np.zeros((3, 10, 10), np.uint8)
    labels[1, 2:8, 2:8] = 5
    row = measure_regions(labels, voxel_size=(50, 10, 10)).iloc[0]
    # A uniform slab of thickness s has variance s²/12 -> full length sqrt(5/3) s.
    assert row["axis_minor_length_um"] == pytest.approx(math.sqrt(5 / 3) * 0.05)
    assert np.isfinite(row["elongation"])
    assert row["surface_area_um2"] > 0


def test_table_columns_bbox_labels_and_intensity() -> None:
    labels = np.zeros((10, 12, 14), np.uint32)
    labels[1:4, 2:6, 3:9] = 70000
    labels[6:10, 0:3, 10:12] = 9
    image = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    table = measure_regions(labels, voxel_size=(40, 5, 5), intensity=image, k_neighbours=1)
    assert table["label"].tolist() == [9, 70000]
    assert table["label"].dtype == np.uint64
    big = table.set_index("label").loc[70000]
    assert big["n_voxels"] == 3 * 4 * 6
    assert big["volume_um3"] == pytest.approx(72 * 40 * 5 * 5 / 1e9)
    assert [big[f"bbox_min_{a}_vox"] for a in "zyx"] == [1, 2, 3]
    assert [big[f"bbox_max_{a}_vox"] for a in "zyx"] == [4, 6, 9]
    assert [big[f"bbox_size_{a}_um"] for a in "zyx"] == pytest.approx([0.12, 0.02, 0.03])
    values = image[labels == 70000]
    assert big["intensity_mean"] == pytest.approx(values.mean())
    assert big["intensity_std"] == pytest.approx(values.std())
    assert big["intensity_min"] == values.min()
    assert big["intensity_max"] == values.max()
    assert big["intensity_median"] == pytest.approx(np.median(values))
    assert not big["touches_border"]
    assert table.set_index("label").loc[9, "touches_border"]
    # Two objects: the nearest neighbour of each is the other one.
    assert table["nn_dist_um"].iloc[0] == pytest.approx(table["nn_dist_um"].iloc[1])
    assert table["knn_mean_dist_um"].tolist() == pytest.approx(table["nn_dist_um"].tolist())


def test_lattice_neighbours_and_density_columns() -> None:
    # 4 x 4 x 4 cubes on a lattice with 0.5 µm pitch along every axis.
    voxel_size = (50.0, 25.0, 25.0)
    labels = np.zeros((40, 80, 80), np.uint16)
    label = 0
    for k in range(4):
        for j in range(4):
            for i in range(4):
                label += 1
                labels[
                    5 + 10 * k : 7 + 10 * k, 10 + 20 * j : 14 + 20 * j, 10 + 20 * i : 14 + 20 * i
                ] = label
    table = measure_regions(labels, voxel_size=voxel_size, k_neighbours=6, density_bandwidth_um=0.5)
    assert len(table) == 64
    np.testing.assert_allclose(table["nn_dist_um"], 0.5)
    centroids = table[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy()
    inner = np.all((centroids > 0.6) & (centroids < 1.6), axis=1)
    assert inner.sum() == 8
    np.testing.assert_allclose(table.loc[inner, "knn_mean_dist_um"], 0.5)
    corner = np.all(
        np.isclose(centroids, centroids.min(axis=0)) | np.isclose(centroids, centroids.max(axis=0)),
        axis=1,
    )
    assert corner.sum() == 8
    # A lattice corner: 3 neighbours at 0.5, 3 at 0.5 sqrt 2.
    expected = (3 * 0.5 + 3 * 0.5 * math.sqrt(2)) / 6
    np.testing.assert_allclose(table.loc[corner, "knn_mean_dist_um"], expected)
    assert (table["density_per_um3"] > 0).all()
    assert table.loc[inner, "density_per_um3"].min() > table.loc[corner, "density_per_um3"].max()


def test_knn_is_nan_with_too_few_objects() -> None:
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0, 0, 0], labels[5, 5, 5], labels[0, 5, 0] = 1, 2, 3
    table = measure_regions(labels, voxel_size=10, k_neighbours=3)
    assert table["knn_mean_dist_um"].isna().all()
    assert table["nn_dist_um"].notna().all()
    single = measure_regions((labels == 1).astype(np.uint8), voxel_size=10)
    assert single["nn_dist_um"].isna().all()


def test_empty_labels_give_empty_table_with_columns() -> None:
    table = measure_regions(
        np.zeros((4, 4, 4), np.uint8),
        voxel_size=10,
        intensity=np.ones((4, 4, 4)),
        references={"nucleus": np.ones((4, 4, 4), bool)},
        density_bandwidth_um=0.1,
    )
    assert isinstance(table, pd.DataFrame)
    assert table.empty
    for column in ("volume_um3", "intensity_mean", "dist_surface_to_nucleus_um", "density_per_um3"):
        assert column in table.columns


def test_mesh_step_two_is_close() -> None:
    labels, _ = _sphere(500.0, (20.0, 20.0, 20.0))
    fine = measure_regions(labels, voxel_size=20).iloc[0]["surface_area_um2"]
    coarse = measure_regions(labels, voxel_size=20, mesh_step=2).iloc[0]["surface_area_um2"]
    assert coarse == pytest.approx(fine, rel=0.03)


def test_bad_input_raises_clear_errors() -> None:
    labels = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(InvalidVolumeError, match="3-D"):
        measure_regions(np.zeros((4, 4), np.uint8), voxel_size=10)
    with pytest.raises(InvalidVolumeError, match="integer"):
        measure_regions(labels.astype(float), voxel_size=10)
    with pytest.raises(InvalidVolumeError, match="intensity"):
        measure_regions(labels, voxel_size=10, intensity=np.zeros((3, 4, 4)))
    with pytest.raises(InvalidVolumeError, match="nucleus"):
        measure_regions(labels, voxel_size=10, references={"nucleus": np.zeros((4, 4, 5))})
    with pytest.raises(ConfigError, match="k_neighbours"):
        measure_regions(labels, voxel_size=10, k_neighbours=0)
    with pytest.raises(ConfigError, match="density_bandwidth_um"):
        measure_regions(labels, voxel_size=10, density_bandwidth_um=-1.0)
    with pytest.raises(ConfigError, match="mesh_step"):
        measure_regions(labels, voxel_size=10, mesh_step=0)
    with pytest.raises(ConfigError, match="names"):
        measure_regions(labels, voxel_size=10, references={"": labels})


def test_boolean_mask_is_one_object() -> None:
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:4, 1:4] = True
    table = measure_regions(mask, voxel_size=10)
    assert table["label"].tolist() == [1]
    assert table["n_voxels"].tolist() == [27]
