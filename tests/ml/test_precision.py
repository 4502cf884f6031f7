import logging

import numpy as np
import pytest
import torch

from vemkit.errors import ConfigError
from vemkit.ml import precision as precision_module
from vemkit.ml.networks import UNetConfig, build_network
from vemkit.ml.precision import PRECISIONS, resolve_precision
from vemkit.ml.predict import predict_array, predict_triaxis

torch.set_num_threads(1)


def test_precision_names_and_devices():
    from typing import get_args

    from vemkit.cli.common import PrecisionName

    assert PRECISIONS == ("auto", "float32", "bfloat16")
    assert get_args(PrecisionName) == PRECISIONS  # the CLI's copy of the names
    cpu = resolve_precision("auto", "cpu")
    assert (cpu.dtype, cpu.name, cpu.scales_gradients) == (None, "float32", False)
    cuda = resolve_precision("auto", "cuda:0")
    assert (cuda.dtype, cuda.name, cuda.scales_gradients) == (torch.float16, "float16", True)
    assert resolve_precision("float32", "cuda").dtype is None
    bf16 = resolve_precision("bfloat16", "cpu")
    assert (bf16.dtype, bf16.name, bf16.scales_gradients) == (torch.bfloat16, "bfloat16", False)
    with pytest.raises(ConfigError, match="precision must be one of auto, float32, bfloat16"):
        resolve_precision("half", "cpu")


def test_autocast_runs_convolutions_in_the_chosen_type():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(1, 1, 8, 8)
    with resolve_precision("bfloat16", "cpu")():
        assert conv(x).dtype == torch.bfloat16
    with resolve_precision("auto", "cpu")():
        assert conv(x).dtype == torch.float32


def test_bfloat16_on_a_cpu_without_it_warns(monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "cpu_bfloat16_native", lambda: False)
    precision_module._warn_emulated_bfloat16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="vemkit.ml.precision"):
        resolve_precision("bfloat16", "cpu")
    assert "no bfloat16 instructions" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vemkit.ml.precision"):
        resolve_precision("bfloat16", "cpu")  # e.g. the next block: said once is enough
    assert caplog.text == ""
    caplog.clear()
    monkeypatch.setattr(precision_module, "cpu_bfloat16_native", lambda: True)
    with caplog.at_level(logging.WARNING, logger="vemkit.ml.precision"):
        resolve_precision("bfloat16", "cpu")
        resolve_precision("auto", "cpu")
    assert caplog.text == ""


def test_cpu_bfloat16_detection_answers_on_this_machine():
    assert precision_module.cpu_bfloat16_native() in (True, False, None)


def test_bfloat16_prediction_is_close_to_float32_but_not_the_same():
    model = build_network(UNetConfig(dims=2, depth=2, base_channels=8, norm="group"), seed=0)
    image = np.random.default_rng(0).normal(size=(3, 40, 40)).astype(np.float32)
    options = {"patch_shape": (16, 16), "activation": "sigmoid", "overlap": 0.25}
    exact = predict_array(model, image, **options)
    assert np.array_equal(exact, predict_array(model, image, precision="float32", **options))
    fast = predict_array(model, image, precision="bfloat16", **options)
    assert fast.dtype == np.float32
    difference = np.abs(fast - exact)
    assert 0 < difference.max() < 0.02
    fused = predict_triaxis(model, image, precision="bfloat16", **options)
    assert not np.array_equal(fused, predict_triaxis(model, image, **options))
    with pytest.raises(ConfigError, match="precision"):
        predict_array(model, image, precision="float16", **options)


def test_bfloat16_training_of_a_3d_network_on_the_cpu_warns(tmp_path, caplog):
    from vemkit.ml.losses import BCEDiceLoss
    from vemkit.ml.train import train

    config = UNetConfig(dims=3, depth=2, base_channels=4, anisotropic_levels=1)
    model = build_network(config, seed=0)
    image = torch.randn(2, 1, 4, 16, 16)
    target = (image > 0).float()
    batches = [(image, target, torch.ones_like(target))]
    with caplog.at_level(logging.WARNING, logger="vemkit.ml.train"):
        train(
            model,
            batches,
            None,
            BCEDiceLoss(),
            torch.optim.Adam(model.parameters(), lr=1e-3),
            epochs=1,
            checkpoint_dir=tmp_path,
            precision="bfloat16",
        )
    assert "NaN weight gradients where" in caplog.text


def test_the_faster_precision_is_suggested_only_where_it_helps(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_bfloat16_native", lambda: True)
    assert "--precision bfloat16" in precision_module.faster_precision_hint("auto", "cpu")
    assert precision_module.faster_precision_hint("float32", "cpu") is None
    assert precision_module.faster_precision_hint("bfloat16", "cpu") is None
    assert precision_module.faster_precision_hint("auto", "cuda") is None
    monkeypatch.setattr(precision_module, "cpu_bfloat16_native", lambda: None)
    assert precision_module.faster_precision_hint("auto", "cpu") is None
