import numpy as np
import pytest
import torch
from torch import nn

from vemkit.errors import ConfigError, InvalidVolumeError, VoxelSizeError
from vemkit.geometry import VoxelSize
from vemkit.ml.networks import UNetConfig, build_network, ensemble_members
from vemkit.ml.normalize import fit_normalization, normalize
from vemkit.ml.predict import (
    blend_weights,
    predict_array,
    predict_triaxis,
    resample_labels,
    resample_to_shape,
)

torch.set_num_threads(1)


class Identity(nn.Module):
    def forward(self, x):
        return x.clone()


class Recorder:
    def __init__(self):
        self.calls = []

    def start(self, total, description):
        self.calls.append(("start", total, description))

    def advance(self, steps=1):
        self.calls.append(("advance", steps))

    def finish(self):
        self.calls.append(("finish",))


def random_volume(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("blend", ["gaussian", "cosine", "constant"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_identity_model_gives_back_the_input_exactly_3d(blend, overlap):
    image = random_volume((13, 37, 29))
    result = predict_array(
        Identity(), image, patch_shape=(8, 16, 16), overlap=overlap, batch_size=3, blend=blend
    )
    assert result.shape == (1, 13, 37, 29)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[0], image)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_identity_model_exact_2d_planes_with_tta(axis):
    image = random_volume((2, 7, 20, 24))  # two channels
    result = predict_array(
        Identity(), image, patch_shape=(8, 16), overlap=0.5, batch_size=5, axis=axis, tta=True
    )
    np.testing.assert_array_equal(result, image)


class FirstChannel(nn.Module):
    def forward(self, x):
        return x[:, :1].clone()


class ShiftRight(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, dims=-1)


@pytest.mark.parametrize("patch_shape", [(8, 16), (4, 8, 16)])
def test_tta_flips_spatial_axes_only(patch_shape):
    plane = random_volume((6, 20, 24))
    image = np.stack([plane, -plane])
    result = predict_array(FirstChannel(), image, patch_shape=patch_shape, overlap=0.5, tta=True)
    np.testing.assert_array_equal(result[0], plane)
    # a model that is not flip-equivariant: TTA averages its flipped versions
    plain = predict_array(ShiftRight(), plane, patch_shape=patch_shape, overlap=0.5)
    averaged = predict_array(ShiftRight(), plane, patch_shape=patch_shape, overlap=0.5, tta=True)
    assert not np.allclose(plain, averaged)


def test_small_and_2d_images_are_padded():
    image = random_volume((5, 6))
    result = predict_array(Identity(), image, patch_shape=(16, 16), overlap=0.25)
    assert result.shape == (1, 5, 6)
    np.testing.assert_array_equal(result[0], image)
    one_plane = random_volume((1, 3, 40))
    np.testing.assert_array_equal(
        predict_array(Identity(), one_plane, patch_shape=(4, 8, 8))[0], one_plane
    )


def test_normalization_activation_and_progress():
    image = np.random.default_rng(0).gamma(2.0, 30.0, size=(3, 20, 20))
    norm = fit_normalization(image)
    recorder = Recorder()
    result = predict_array(
        Identity(),
        image,
        patch_shape=(16, 16),
        overlap=0.5,
        batch_size=4,
        normalization=norm,
        activation="sigmoid",
        progress=recorder,
    )
    expected = 1 / (1 + np.exp(-normalize(image, norm).astype(np.float64)))
    np.testing.assert_allclose(result[0], expected, rtol=1e-6)
    assert recorder.calls[0][0] == "start"
    assert recorder.calls[-1] == ("finish",)
    advances = sum(c[1] for c in recorder.calls if c[0] == "advance")
    assert advances == recorder.calls[0][1]


def test_blend_weights_are_smooth_and_positive():
    weights = blend_weights((8, 16), blend="gaussian")
    assert weights.shape == (8, 16)
    assert weights.min() > 0
    assert weights.max() == pytest.approx(1.0)
    cosine = blend_weights((16,), blend="cosine")
    np.testing.assert_allclose(cosine, cosine[::-1])
    with pytest.raises(ConfigError):
        blend_weights((4,), blend="linear")


def test_unet_prediction_and_errors():
    net = build_network(UNetConfig(dims=2, depth=2, base_channels=4, out_channels=2), seed=0)
    image = random_volume((3, 24, 20))
    result = predict_array(net, image, patch_shape=(16, 16), overlap=0.25, activation="softmax")
    assert result.shape == (2, 3, 24, 20)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, rtol=1e-5)

    class Shrinks(nn.Module):
        def forward(self, x):
            return x[..., 1:-1, 1:-1]

    with pytest.raises(ConfigError, match="spatial shape"):
        predict_array(Shrinks(), image, patch_shape=(8, 8))
    with pytest.raises(InvalidVolumeError):
        predict_array(Identity(), np.zeros((1, 1, 1, 4, 4)), patch_shape=(4, 4))
    with pytest.raises(ConfigError, match="overlap"):
        predict_array(Identity(), image, patch_shape=(8, 8), overlap=1.0)


def test_triaxis_identity_is_exact_without_resampling():
    volume = random_volume((9, 14, 11))
    recorder = Recorder()
    fused = predict_triaxis(
        Identity(), volume, patch_shape=(8, 8), overlap=0.5, batch_size=4, progress=recorder
    )
    np.testing.assert_array_equal(fused[0], volume)
    assert [c[2] for c in recorder.calls if c[0] == "start"] == [
        "predicting planes along z",
        "predicting planes along y",
        "predicting planes along x",
    ]


class AxisMarker(nn.Module):
    """A 2D 'model' that outputs a constant; lets the test see which passes are fused."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x, self.value)


def test_triaxis_weights():
    volume = random_volume((4, 6, 6))
    fused = predict_triaxis(
        AxisMarker(2.0), volume, patch_shape=(4, 4), axes=(0, 1), axis_weights=(1.0, 3.0)
    )
    np.testing.assert_allclose(fused, 2.0)
    with pytest.raises(ConfigError, match="axis_weights"):
        predict_triaxis(Identity(), volume, patch_shape=(4, 4), axis_weights=(1.0,))


def test_triaxis_resamples_anisotropic_volume_to_model_voxel_size():
    z, y, x = np.meshgrid(np.arange(6), np.arange(24), np.arange(20), indexing="ij")
    smooth = (np.sin(z * 40 / 120) + np.cos(y * 10 / 60) + np.sin(x * 10 / 70)).astype(np.float32)
    fused = predict_triaxis(
        Identity(),
        smooth,
        patch_shape=(16, 16),
        overlap=0.25,
        voxel_size=VoxelSize(40, 10, 10),
        model_voxel_size=10.0,
    )
    assert fused.shape == (1, 6, 24, 20)
    np.testing.assert_allclose(fused[0], smooth, atol=0.05)
    with pytest.raises(VoxelSizeError):
        predict_triaxis(Identity(), smooth, patch_shape=(8, 8), model_voxel_size=10.0)


def test_resample_to_shape_round_trip():
    array = random_volume((2, 5, 7, 9))
    up = resample_to_shape(array, (20, 14, 9))
    assert up.shape == (2, 20, 14, 9)
    back = resample_to_shape(up, (5, 7, 9))
    assert back.shape == array.shape
    np.testing.assert_array_equal(resample_to_shape(array, (5, 7, 9)), array)


def test_context_stack_puts_neighbours_in_channels():
    from vemkit.ml import context_stack

    volume = np.arange(4 * 2 * 3).reshape(4, 2, 3)
    stack = context_stack(volume, 1)
    assert stack.shape == (3, 4, 2, 3)
    assert np.array_equal(stack[1], volume)
    assert np.array_equal(stack[0, 1:], volume[:-1])  # the section below
    assert np.array_equal(stack[2, :-1], volume[1:])  # the section above
    assert np.array_equal(stack[0, 0], volume[0])  # the edge repeats
    assert np.array_equal(context_stack(volume, 0), volume[None])
    along_x = context_stack(volume, 2, axis=2)
    assert np.array_equal(along_x[0][..., 2], volume[..., 0])
    with pytest.raises(ConfigError):
        context_stack(volume, -1)
    with pytest.raises(InvalidVolumeError):
        context_stack(volume[0], 1)


@pytest.mark.parametrize("tta", [False, True])
def test_an_ensemble_predicts_the_mean_of_its_members_maps(tta):
    config = UNetConfig(dims=2, depth=2, base_channels=4, out_channels=2, ensemble=3)
    net = build_network(config, seed=0).eval()
    image = random_volume((3, 24, 40))
    options = {"patch_shape": (16, 16), "overlap": 0.25, "tta": tta, "activation": "sigmoid"}
    maps = predict_array(net, image, **options)
    members = [predict_array(m, image, **options) for m in ensemble_members(net)]
    # the probabilities are averaged (not the logits): the mean of the members' maps
    np.testing.assert_allclose(maps, np.mean(members, axis=0), atol=1e-6)
    assert np.abs(members[0] - members[1]).max() > 1e-3


class ShapeRecorder(nn.Module):
    """Identity that records the window shapes it is given."""

    def __init__(self):
        super().__init__()
        self.shapes = set()

    def forward(self, x):
        self.shapes.add(tuple(x.shape[2:]))
        return x.clone()


def test_triaxis_takes_one_window_shape_per_plane_orientation():
    volume = random_volume((6, 40, 24))
    model = ShapeRecorder()
    windows = {0: (40, 24), 1: (8, 24), 2: (8, 40)}
    fused = predict_triaxis(model, volume, patch_shape=windows, overlap=0.0)
    np.testing.assert_array_equal(fused[0], volume)
    assert model.shapes == {(40, 24), (8, 24), (8, 40)}
    with pytest.raises(ConfigError, match="axes \\[2\\]"):
        predict_triaxis(model, volume, patch_shape={0: (8, 8), 1: (8, 8)})
    with pytest.raises(ConfigError, match="2D windows"):
        predict_triaxis(model, volume, patch_shape={0: (8, 8, 8), 1: (8, 8), 2: (8, 8)})


def test_a_flat_block_is_predicted_with_flat_windows_across_it():
    from vemkit.ml.normalize import Normalization
    from vemkit.pipelines.predict import ModelSpec, predict_block

    spec = ModelSpec(
        name="shapes",
        target_type="binary",
        channels=("foreground",),
        voxel_size=VoxelSize(10, 10, 10),
        normalization=Normalization(mode="none"),
        dims=2,
        tile=512,
        overlap=0.0,
        divisor=(8, 8),
    )
    block = random_volume((16, 200, 120))
    model = ShapeRecorder()
    maps = predict_block(model, block, spec=spec, voxel_size=VoxelSize(10, 10, 10), triaxis=True)
    assert maps.shape == (1, *block.shape)
    # z planes 200 x 120; y planes 16 x 120 and x planes 16 x 200 — not padded to 200 x 200
    assert model.shapes == {(200, 120), (16, 120), (16, 200)}
    # but never narrower than the training patches: the 16 sections are mirrored up to 64
    import dataclasses

    model = ShapeRecorder()
    trained = dataclasses.replace(spec, min_window=60)
    again = predict_block(
        model, block, spec=trained, voxel_size=VoxelSize(10, 10, 10), triaxis=True
    )
    assert model.shapes == {(200, 120), (64, 120), (64, 200)}
    np.testing.assert_array_equal(again, maps)  # an identity does not care


@pytest.mark.parametrize(
    ("before", "after"),
    [((3, 1024, 1024), (3, 512, 512)), ((7, 100, 90), (37, 201)), ((61,), (100,))],
)
def test_label_resampling_is_zooms_nearest_voxel_without_float_rounding(before, after):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 1000, size=before).astype(np.uint32)
    expected = resample_to_shape(small, after, order=0).astype(np.uint32)
    assert np.array_equal(resample_labels(small, after), expected)
    big = small.astype(np.uint64) + np.uint64(2**40)  # ids float32 cannot hold
    big[small == 0] = 2**32 - 1
    resampled = resample_labels(big, after)
    assert resampled.dtype == np.uint64
    assert np.array_equal(resampled == 2**32 - 1, expected == 0)
    assert np.array_equal(resampled[expected > 0], expected[expected > 0].astype(np.uint64) + 2**40)
