"""The CLI through Typer's runner: happy paths and every bad input → one line, exit 2."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from vemkit.cli.main import app
from vemkit.io import open_layer

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *words: str) -> None:
    """Exit code 2, one line on stderr, no traceback, and the line says what to do."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vemkit: error:"), lines[0]
    assert "Traceback" not in result.output
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


@pytest.fixture
def stack(tmp_path):
    data = (np.arange(16 * 32 * 32) % 251).astype(np.uint8).reshape(16, 32, 32)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data)
    return path, data


def test_version_and_help():
    assert run("--version").exit_code == 0
    result = run("--help")
    assert result.exit_code == 0
    for command in ("info", "convert", "phantom", "demo", "datasets"):
        assert command in result.output


def test_info_on_tiff_with_voxel_size(stack):
    path, data = stack
    result = run("info", path, "--voxel-size", "50,4.6,4.6")
    assert result.exit_code == 0, result.output
    assert "(16, 32, 32)" in result.output
    assert "50 × 4.6 × 4.6" in result.output
    assert f"values {data.min()} … {data.max()}" in result.output


def test_info_json(stack):
    path, _ = stack
    result = run("info", path, "--json")
    facts = json.loads(result.stdout)
    assert facts["layers"][0]["shape"] == [16, 32, 32]
    assert facts["layers"][0]["voxel_size_from"] == "unknown"


def test_convert_then_info_shows_pyramid(stack, tmp_path):
    path, data = stack
    before = path.read_bytes()
    out = tmp_path / "out.zarr"
    result = run("convert", path, out, "--voxel-size", "10,10,10", "--quiet")
    assert result.exit_code == 0, result.output
    layer = open_layer(out)
    np.testing.assert_array_equal(layer.read(), data)
    assert layer.voxel_size.as_tuple() == (10.0, 10.0, 10.0)
    assert path.read_bytes() == before  # input untouched
    info = run("info", out)
    assert info.exit_code == 0, info.output
    assert "raw" in info.output


def test_convert_to_tiff_keeps_voxel_size(stack, tmp_path):
    path, data = stack
    out = tmp_path / "copy.tif"
    assert run("convert", path, out, "--voxel-size", "40,8,8").exit_code == 0
    layer = open_layer(out)
    np.testing.assert_array_equal(layer.read(), data)
    np.testing.assert_allclose(layer.voxel_size.as_tuple(), (40.0, 8.0, 8.0), rtol=1e-4)


def test_phantom_command(tmp_path):
    out = tmp_path / "p.zarr"
    result = run("phantom", out, "--size", "48", "--seed", "3", "--quiet")
    assert result.exit_code == 0, result.output
    for name in ("labels/nuclei", "labels/mitochondria", "labels/cells"):
        assert open_layer(f"{out}/{name}").kind == "labels"
    assert open_layer(out).shape == (48, 48, 48)


# --- bad input: one line, exit code 2, nothing half-written -----------------------------


def test_missing_file(tmp_path):
    assert_user_error(run("info", tmp_path / "nope.tif"), "no such file")


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert_user_error(run("info", path), "unknown format")


def test_corrupt_tiff(stack, tmp_path):
    path, _ = stack
    broken = tmp_path / "broken.tif"
    broken.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    result = run("convert", broken, tmp_path / "b.zarr", "--voxel-size", "1")
    assert_user_error(result)
    assert not (tmp_path / "b.zarr").exists()


def test_2d_image_where_3d_needed(tmp_path):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, np.ones((32, 32), np.uint8))
    assert_user_error(run("convert", path, tmp_path / "o.zarr", "--voxel-size", "5"), "3D")


def test_all_nan_volume(tmp_path):
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((4, 8, 8), np.nan, np.float32), photometric="minisblack")
    assert_user_error(run("convert", path, tmp_path / "o.zarr", "--voxel-size", "5"), "NaN")
    assert not (tmp_path / "o.zarr").exists()


def test_empty_volume(tmp_path):
    path = tmp_path / "empty.tif"
    with pytest.warns(UserWarning, match="zero-size"):
        tifffile.imwrite(path, np.zeros((0, 8, 8), np.uint8), photometric="minisblack")
    assert_user_error(run("info", path))


@pytest.mark.parametrize("bad", ["a,b,c", "0,1,1", "1,2", "-5"])
def test_malformed_voxel_size(stack, bad):
    path, _ = stack
    assert_user_error(run("info", path, f"--voxel-size={bad}"), "voxel size")


def test_missing_voxel_size_for_convert(stack, tmp_path):
    path, _ = stack
    assert_user_error(run("convert", path, tmp_path / "o.zarr"), "--voxel-size")


def test_existing_output_refused_then_overwritten(stack, tmp_path):
    path, _ = stack
    out = tmp_path / "o.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_user_error(run("convert", path, out, "--voxel-size", "5"), "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    assert run("convert", path, out, "--voxel-size", "5", "--overwrite").exit_code == 0
    assert not (out / "keep.txt").exists()


def test_output_into_input_refused(stack):
    path, _ = stack
    assert_user_error(run("convert", path, path, "--voxel-size", "5", "--overwrite"), "input")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(stack, tmp_path):
    path, _ = stack
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert_user_error(run("convert", path, locked / "o.zarr", "--voxel-size", "5"), "write")
    finally:
        locked.chmod(stat.S_IRWXU)


def test_output_in_missing_folder(stack, tmp_path):
    path, _ = stack
    result = run("convert", path, tmp_path / "no" / "such" / "o.zarr", "--voxel-size", "5")
    assert_user_error(result, "does not exist")


def test_unknown_output_suffix(stack, tmp_path):
    path, _ = stack
    assert_user_error(run("convert", path, tmp_path / "o.png", "--voxel-size", "5"), ".zarr")


def test_bad_phantom_size(tmp_path):
    assert_user_error(run("phantom", tmp_path / "p.zarr", "--size", "4"), "--size")


@pytest.mark.realdata
def test_info_on_every_shared_dataset(shared_data):
    for folder in sorted(p.parent for p in shared_data.glob("*/dataset.json")):
        result = run("info", folder, "--no-stats")
        assert result.exit_code == 0, (folder, result.output)
        meta = json.loads((folder / "dataset.json").read_text())
        for name, entry in meta["files"].items():
            assert str(tuple(entry["shape"])) in result.output, (folder, name)


@pytest.mark.realdata
def test_info_on_a_shared_file_uses_catalog_voxel_size(shared_data):
    result = run("info", shared_data / "gala_medulla_fibsem" / "test_raw.tif", "--json")
    facts = json.loads(result.stdout)
    assert facts["layers"][0]["voxel_size_nm"] == [10.0, 10.0, 10.0]


def test_the_command_starts_without_loading_the_heavy_libraries():
    """``vemkit --help`` stays instant: PyTorch, TensorStore and the pipelines load lazily.

    The ``vemkit.pipelines`` package itself is light (it holds the defaults the help shows).
    """
    import subprocess
    import sys

    code = (
        "import sys, vemkit.cli.main; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'tensorstore', 'matplotlib') "
        "or m.startswith('vemkit.pipelines.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
