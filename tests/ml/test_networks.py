import sys

import pytest
import torch

from vemkit.errors import ConfigError, InvalidVolumeError, VemkitError
from vemkit.ml.networks import (
    Ensemble,
    MissingDependencyError,
    UNet,
    UNetConfig,
    build_network,
    count_parameters,
    ensemble_members,
    freeze_encoder,
    unfreeze,
)

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        (UNetConfig(dims=2, depth=3, base_channels=4), (2, 1, 32, 32)),
        (UNetConfig(dims=2, depth=2, base_channels=4, norm="batch", residual=True), (2, 1, 20, 28)),
        (UNetConfig(dims=3, depth=3, base_channels=4, norm="instance"), (1, 1, 8, 16, 16)),
        (
            UNetConfig(dims=3, depth=3, base_channels=4, anisotropic_levels=2, norm=None),
            (1, 1, 5, 16, 16),
        ),
        (
            UNetConfig(
                dims=3,
                in_channels=2,
                out_channels=3,
                depth=3,
                base_channels=4,
                anisotropic_levels=1,
                dropout=0.1,
                channel_growth=1.5,
            ),
            (2, 2, 6, 12, 20),
        ),
    ],
)
def test_output_shape_and_one_gradient_step(config, shape):
    net = build_network(config, seed=0)
    x = torch.randn(shape)
    y = net(x)
    assert y.shape == (shape[0], config.out_channels, *shape[2:])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    y.square().mean().backward()
    optimizer.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True)]
    assert all(changed)


def test_anisotropic_levels_only_pool_yx():
    config = UNetConfig(dims=3, depth=4, anisotropic_levels=2)
    assert config.pool_factors() == ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    assert config.shape_divisor() == (2, 8, 8)
    net = build_network(UNetConfig(dims=3, depth=3, base_channels=4, anisotropic_levels=1))
    assert net.encoder[0].conv1.kernel_size == (1, 3, 3)
    assert net.encoder[1].conv1.kernel_size == (3, 3, 3)
    assert net.pools[0].kernel_size == (1, 2, 2)


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    config = UNetConfig(dims=2, depth=2, base_channels=4)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = build_network(config, seed=5)
    b = build_network(config, seed=5)
    assert torch.rand(1) == expected
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_config_round_trip_and_validation():
    config = UNetConfig(dims=3, depth=3, anisotropic_levels=1, norm=None, patch_shape=(8, 32, 32))
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="anisotropic_levels"):
        UNetConfig(dims=2, anisotropic_levels=1)
    with pytest.raises(ConfigError, match="depth - 1"):
        UNetConfig(dims=3, depth=2, anisotropic_levels=2)
    with pytest.raises(ConfigError, match="norm"):
        UNetConfig(norm="layer")
    with pytest.raises(ConfigError, match="unknown network config keys"):
        UNetConfig.from_dict({"dims": 2, "width": 3})
    with pytest.raises(ConfigError, match="backend"):
        UNetConfig(architecture="segresnet")


def test_wrong_input_is_a_clear_error():
    net = build_network(UNetConfig(dims=2, depth=2, base_channels=4))
    with pytest.raises(InvalidVolumeError, match="expects input"):
        net(torch.zeros(1, 1, 4, 16, 16))


def test_monai_backend_without_monai_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "monai", None)
    monkeypatch.setitem(sys.modules, "monai.networks", None)
    config = UNetConfig(dims=3, backend="monai", architecture="segresnet")
    with pytest.raises(MissingDependencyError, match=r"pip install 'vemkit\[monai\]'") as info:
        build_network(config)
    assert isinstance(info.value, VemkitError)
    assert isinstance(info.value, ImportError)


def test_freeze_encoder_keeps_encoder_fixed():
    net = build_network(UNetConfig(dims=2, depth=3, base_channels=4, norm="batch"), seed=0)
    total = count_parameters(net)
    frozen = freeze_encoder(net)
    assert 0 < frozen < total
    assert count_parameters(net, trainable_only=True) == total - frozen
    net.train()
    assert not net.encoder.training
    assert net.decoder.training
    encoder_state = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net(torch.randn(2, 1, 16, 16)).mean().backward()
    optimizer.step()
    for key, value in net.encoder.state_dict().items():
        assert torch.equal(value, encoder_state[key]), key  # incl. BatchNorm running stats
    unfreeze(net)
    assert count_parameters(net, trainable_only=True) == total
    assert net.encoder.training
    assert isinstance(net, UNet)


def test_an_ensemble_holds_independently_seeded_networks():
    config = UNetConfig(dims=2, depth=2, base_channels=4, norm="batch", ensemble=3)
    net = build_network(config, seed=5)
    assert isinstance(net, Ensemble)
    members = ensemble_members(net)
    assert len(members) == 3
    # member i is the network a single config builds with seed + i
    for index, member in enumerate(members):
        single = build_network(config.member(), seed=5 + index)
        for key, value in single.state_dict().items():
            assert torch.equal(member.state_dict()[key], value), key
    assert not torch.equal(members[0].head.weight, members[1].head.weight)
    assert {k.split(".")[1] for k in net.state_dict()} == {"0", "1", "2"}
    net.eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        mean = torch.stack([m(x) for m in members]).mean(0)
        assert torch.allclose(net(x), mean)
    assert ensemble_members(members[0]) == [members[0]]
    assert count_parameters(net) == 3 * count_parameters(members[0])


def test_ensemble_config_round_trip_and_limits():
    config = UNetConfig(dims=2, depth=2, ensemble=4)
    assert config.to_dict()["ensemble"] == 4
    assert UNetConfig.from_dict(config.to_dict()) == config
    # a single network's dict has no ensemble key: older vemkit versions still read it
    assert "ensemble" not in config.member().to_dict()
    assert UNetConfig.from_dict(config.member().to_dict()).ensemble == 1
    for bad in (0, 17, 2.5, True):
        with pytest.raises(ConfigError, match="ensemble"):
            UNetConfig(ensemble=bad)
    with pytest.raises(ConfigError, match="2 members"):
        Ensemble([build_network(config.member())], UNetConfig(ensemble=2))


def test_freezing_an_ensemble_freezes_every_encoder():
    net = build_network(UNetConfig(dims=2, depth=2, base_channels=4, ensemble=2), seed=0)
    frozen = freeze_encoder(net)
    members = ensemble_members(net)
    assert frozen == sum(count_parameters(m.encoder) for m in members)
    net.train()
    assert all(not m.encoder.training and m.decoder.training for m in members)
    unfreeze(net)
    assert count_parameters(net, trainable_only=True) == count_parameters(net)
    assert all(m.encoder.training for m in members)
