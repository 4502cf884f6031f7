"""Volume fractions of organelles within cell and cytoplasm masks."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import composition_by_region, volume_fractions


def test_cell_and_cytoplasm_fractions() -> None:
    shape = (10, 20, 20)
    cell = np.zeros(shape, bool)
    cell[:, 2:18, 2:18] = True  # 10 * 16 * 16 = 2560 voxels
    nucleus = np.zeros(shape, np.uint8)
    nucleus[2:8, 6:14, 6:14] = 1  # 384 voxels
    mitos = np.zeros(shape, np.uint16)
    mitos[0:2, 2:4, 2:10] = 5  # 32 voxels inside the cell
    mitos[5, 15:17, 15:17] = 9  # 4 voxels inside
    mitos[5, 0:2, 0:2] = 11  # outside the cell: ignored
    voxel_size = (40.0, 10.0, 10.0)
    voxel_um3 = 40 * 10 * 10 / 1e9

    whole = volume_fractions(
        {"nucleus": nucleus, "mito": mitos}, region_mask=cell, voxel_size=voxel_size
    )
    assert whole["name"].tolist() == ["nucleus", "mito"]
    assert whole["volume_fraction"].tolist() == pytest.approx([384 / 2560, 36 / 2560])
    assert whole["n_objects"].tolist() == [1, 2]
    assert whole["volume_um3"].tolist() == pytest.approx([384 * voxel_um3, 36 * voxel_um3])
    assert whole["region_volume_um3"].tolist() == pytest.approx([2560 * voxel_um3] * 2)

    cytoplasm = cell & (nucleus == 0)
    cyto = volume_fractions({"mito": mitos}, region_mask=cytoplasm, voxel_size=voxel_size)
    assert cyto["volume_fraction"].iloc[0] == pytest.approx(36 / (2560 - 384))


def test_empty_region_and_bad_input() -> None:
    mask = np.zeros((2, 2, 2), bool)
    table = volume_fractions({"a": np.ones((2, 2, 2), np.uint8)}, region_mask=mask, voxel_size=1)
    assert np.isnan(table["volume_fraction"].iloc[0])
    assert table["n_objects"].iloc[0] == 0
    with pytest.raises(ConfigError):
        volume_fractions({}, region_mask=mask, voxel_size=1)
    with pytest.raises(InvalidVolumeError, match="shape"):
        volume_fractions({"a": np.ones((2, 2, 3))}, region_mask=mask, voxel_size=1)


# --- per-region composition (cells) -----------------------------------------------------------
def _two_cells() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two box cells (ids 3 and 9), a nucleus in cell 3, four mitochondria."""
    cells = np.zeros((10, 20, 40), np.uint16)
    cells[:, :, :20] = 3  # 10 x 20 x 20 = 4000 voxels
    cells[:5, :, 20:30] = 9  # 5 x 20 x 10 = 1000 voxels; the rest is outside every cell
    nuclei = np.zeros(cells.shape, bool)
    nuclei[2:8, 5:15, 5:15] = True  # 600 voxels, all in cell 3
    mito = np.zeros(cells.shape, np.uint32)
    mito[0:2, 0:5, 0:4] = 1  # 40 voxels, cell 3 cytoplasm
    mito[4:6, 8:10, 8:12] = 2  # 16 voxels, inside the nucleus of cell 3 (counts for the cell)
    mito[0:2, 0:2, 18:24] = 5  # 8 voxels in cell 3, 16 in cell 9 -> belongs to 9
    mito[8:10, 0:2, 35:40] = 6  # 20 voxels outside every cell
    return mito, cells, nuclei


def test_per_cell_fractions_by_hand_with_anisotropic_voxels() -> None:
    mito, cells, nuclei = _two_cells()
    voxel = (50.0, 10.0, 10.0)  # 5000 nm^3 = 5e-6 um^3 per voxel
    table, where = composition_by_region(mito, cells, voxel_size=voxel, exclude=nuclei)
    assert table["region"].tolist() == [3, 9]
    cell3, cell9 = table.iloc[0], table.iloc[1]
    assert cell3["region_volume_um3"] == pytest.approx(4000 * 5e-6)
    assert cell3["volume_um3"] == pytest.approx((40 + 16 + 8) * 5e-6)
    assert cell3["volume_fraction"] == pytest.approx(64 / 4000)
    assert cell3["n_objects"] == 3
    assert cell3["cytoplasm_volume_um3"] == pytest.approx(3400 * 5e-6)
    assert cell3["volume_fraction_cytoplasm"] == pytest.approx(48 / 3400)
    assert cell9["volume_fraction"] == pytest.approx(16 / 1000)
    assert cell9["volume_fraction_cytoplasm"] == pytest.approx(16 / 1000)
    assert cell9["n_objects"] == 1
    # objects 1, 2, 5, 6 in id order: cell 3, cell 3, mostly cell 9, no cell
    assert where.tolist() == [3, 3, 9, 0]


def test_per_cell_fractions_agree_with_the_single_region_function() -> None:
    mito, cells, nuclei = _two_cells()
    table, _ = composition_by_region(mito, cells, voxel_size=7.0, exclude=nuclei)
    for cell in (3, 9):
        one = volume_fractions({"m": mito}, region_mask=cells == cell, voxel_size=7.0)
        cyto = volume_fractions({"m": mito}, region_mask=(cells == cell) & ~nuclei, voxel_size=7.0)
        row = table[table["region"] == cell].iloc[0]
        assert row["volume_fraction"] == pytest.approx(one["volume_fraction"][0])
        assert row["n_objects"] == one["n_objects"][0]
        assert row["volume_fraction_cytoplasm"] == pytest.approx(cyto["volume_fraction"][0])


def test_per_cell_mask_region_and_bad_shapes() -> None:
    mito, cells, _ = _two_cells()
    table, where = composition_by_region(mito, cells > 0, voxel_size=1.0)
    assert table["region"].tolist() == [1]
    assert "volume_fraction_cytoplasm" not in table
    assert table["volume_fraction"][0] == pytest.approx((40 + 16 + 24) / 5000)
    assert where.tolist() == [1, 1, 1, 0]
    with pytest.raises(InvalidVolumeError, match="shape"):
        composition_by_region(mito[:5], cells, voxel_size=1.0)
    with pytest.raises(InvalidVolumeError, match="exclude"):
        composition_by_region(mito, cells, voxel_size=1.0, exclude=np.zeros((2, 2, 2)))
