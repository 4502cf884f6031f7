import numpy as np
import pytest
import torch

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.ml.losses import (
    BCEDiceLoss,
    CombinedLoss,
    CrossEntropyLoss,
    LossTerm,
    RegressionLoss,
    masked_mean,
)
from vemkit.ml.sparse import sparse_plane_mask

torch.set_num_threads(1)


def sparse_valid(shape, seed=0):
    """(N, Z, Y, X) valid mask: every 4th plane, half painted."""
    return torch.from_numpy(
        np.stack(
            [
                sparse_plane_mask(
                    shape, every_n=4, fraction_painted=0.5, seed=seed + i, stroke_px=2
                )
                for i in range(2)
            ]
        )
    )


LOSSES = [
    (BCEDiceLoss(), 2, "binary"),
    (BCEDiceLoss(bce_weight=0.0), 1, "binary"),
    (RegressionLoss(kind="mse"), 1, "float"),
    (RegressionLoss(kind="l1"), 1, "float"),
    (RegressionLoss(kind="smooth_l1", activation="tanh", beta=0.5), 1, "float"),
    (CrossEntropyLoss(class_weights=[1.0, 2.0, 0.5]), 3, "classes"),
    (
        CombinedLoss(
            [
                LossTerm(BCEDiceLoss(), channels=(0, 1)),
                LossTerm(RegressionLoss(kind="smooth_l1"), channels=(2,), weight=0.5),
            ]
        ),
        3,
        "float",
    ),
]


@pytest.mark.parametrize(("loss", "channels", "kind"), LOSSES)
def test_unlabelled_voxels_get_exactly_zero_gradient(loss, channels, kind):
    shape = (8, 6, 6)
    valid = sparse_valid(shape)
    assert 0 < valid.float().mean() < 0.2
    gen = torch.Generator().manual_seed(0)
    prediction = torch.randn((2, channels, *shape), generator=gen, requires_grad=True)
    if kind == "classes":
        target = torch.randint(0, channels, (2, *shape), generator=gen)
        target[~valid] = 255  # garbage where unlabelled must not matter
    else:
        target = (torch.rand((2, channels, *shape), generator=gen) > 0.5).float()
        target[~valid.unsqueeze(1).expand_as(target)] = float("nan")
    value = loss(prediction, target, valid)
    assert torch.isfinite(value)
    value.backward()
    grad = prediction.grad
    unlabelled = ~valid.unsqueeze(1).expand_as(grad)
    assert (grad[unlabelled] == 0).all()
    assert (grad[~unlabelled] != 0).any()
    # changing predictions at unlabelled voxels does not change the loss
    other = prediction.detach().clone()
    other[unlabelled] = torch.randn(int(unlabelled.sum()), generator=gen) * 10
    assert float(loss(other, target, valid)) == pytest.approx(value.item(), rel=1e-5)


def test_per_channel_valid_in_combined_loss():
    loss = CombinedLoss(
        [
            LossTerm(BCEDiceLoss(), channels=(0,)),
            LossTerm(RegressionLoss(), channels=(1,)),
        ]
    )
    prediction = torch.randn(1, 2, 4, 4, requires_grad=True)
    target = torch.zeros(1, 2, 4, 4)
    valid = torch.ones(1, 2, 4, 4, dtype=torch.bool)
    valid[:, 1, :2] = False
    loss(prediction, target, valid).backward()
    assert (prediction.grad[0, 1, :2] == 0).all()
    assert (prediction.grad[0, 0, :2] != 0).all()


def test_losses_without_valid_and_empty_valid():
    prediction = torch.randn(1, 1, 4, 4, requires_grad=True)
    target = torch.ones(1, 1, 4, 4)
    assert RegressionLoss()(prediction, target).item() == pytest.approx(
        ((prediction - 1) ** 2).mean().item()
    )
    none_valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    value = RegressionLoss()(prediction, target, none_valid)
    value.backward()
    assert value.item() == 0.0
    assert (prediction.grad == 0).all()
    assert float(masked_mean(torch.ones(3), torch.tensor([True, False, True]))) == 1.0


def test_loss_shape_errors():
    with pytest.raises(InvalidVolumeError, match="differ"):
        BCEDiceLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(InvalidVolumeError, match="valid mask"):
        BCEDiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(4, 4))
    with pytest.raises(ConfigError):
        RegressionLoss(kind="huber")


def test_sparse_plane_mask():
    mask = sparse_plane_mask((10, 32, 32), every_n=4, offset=1)
    assert mask.dtype == bool
    assert np.flatnonzero(mask.any(axis=(1, 2))).tolist() == [1, 5, 9]
    assert mask[1].all()
    partial = sparse_plane_mask((10, 64, 64), every_n=3, axis=2, fraction_painted=0.3, seed=3)
    painted = partial.any(axis=(0, 1))
    assert np.flatnonzero(painted).tolist() == list(range(0, 64, 3))
    fraction = partial[:, :, 0].mean()
    assert 0.25 < fraction < 0.35
    again = sparse_plane_mask((10, 64, 64), every_n=3, axis=2, fraction_painted=0.3, seed=3)
    np.testing.assert_array_equal(partial, again)
    with pytest.raises(ConfigError):
        sparse_plane_mask((4, 4), every_n=0)
