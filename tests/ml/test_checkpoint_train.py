import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from vemkit.errors import ConfigError, CorruptFileError, ModelNotFoundError
from vemkit.ml.checkpoint import load_model, read_model_info, round_to_float16, save_model
from vemkit.ml.losses import BCEDiceLoss
from vemkit.ml.networks import UNetConfig, build_network, freeze_encoder
from vemkit.ml.sampling import PatchDataset, PatchSampler
from vemkit.ml.targets import binary_target
from vemkit.ml.train import TrainingError, train

torch.set_num_threads(1)

CONFIG = UNetConfig(dims=2, depth=2, base_channels=4, norm="batch", dropout=0.1)


def tiny_data(seed=0, samples=8, batch_size=4):
    rng = np.random.default_rng(seed)
    labels = np.zeros((4, 24, 24), dtype=np.uint8)
    labels[:, 4:12, 6:14] = 1
    labels[:, 15:21, 14:22] = 2
    image = (labels > 0) + rng.normal(0, 0.3, labels.shape)
    sampler = PatchSampler(image, labels, patch_shape=(16, 16))
    dataset = PatchDataset(sampler, samples_per_epoch=samples, seed=seed, target_fn=binary_target)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


class Recorder:
    def __init__(self):
        self.descriptions = []
        self.steps = 0

    def start(self, total, description):
        self.descriptions.append(description)

    def advance(self, steps=1):
        self.steps += steps

    def finish(self):
        pass


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        UNetConfig(dims=3, depth=3, base_channels=4, anisotropic_levels=1, residual=True),
        dataclasses.replace(CONFIG, ensemble=2),
    ],
)
def test_save_load_round_trip_gives_identical_outputs(tmp_path, config):
    model = build_network(config, seed=3)
    model(torch.randn(2, 1, *(8,) * config.dims))  # update BatchNorm running statistics
    model.eval()
    card = {"task": "nuclei", "normalization": {"mode": "percentile", "low": 1.0, "high": 2.0}}
    folder = save_model(tmp_path / "model", model, config, card)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    loaded, loaded_config, loaded_card = load_model(folder)
    assert loaded_config == config
    assert loaded_card == card
    assert not loaded.training
    x = torch.randn(1, 1, *(16,) * config.dims)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


def test_float16_weights_halve_the_file_and_load_as_the_rounded_model(tmp_path):
    config = UNetConfig(dims=2, depth=3, base_channels=16, norm="batch")
    model = build_network(config, seed=3)
    model(torch.randn(2, 1, 16, 16))  # BatchNorm running statistics
    model.eval()
    full = save_model(tmp_path / "full", model, config)
    half = save_model(tmp_path / "half", model, config, weights_dtype="float16")
    full_size = (full / "model.safetensors").stat().st_size
    half_size = (half / "model.safetensors").stat().st_size
    assert half_size < 0.6 * full_size
    loaded, _, _ = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        original = model(x)
        stored = loaded(x)
        assert not torch.equal(original, stored)  # the rounding is real...
        assert torch.allclose(original, stored, atol=1e-2)  # ...and small
        round_to_float16(model)  # the in-memory model now computes as the stored one
        assert torch.equal(model(x), stored)
    counter = dict(loaded.state_dict())
    assert any(not v.is_floating_point() for v in counter.values())  # num_batches_tracked


def test_float16_weights_refuse_values_beyond_its_range(tmp_path):
    model = build_network(CONFIG, seed=0)
    with torch.no_grad():
        next(model.parameters())[0] = 1e6
    with pytest.raises(ConfigError, match="float16"):
        save_model(tmp_path / "m", model, CONFIG, weights_dtype="float16")
    with pytest.raises(ConfigError, match="float16"):
        round_to_float16(model)
    with pytest.raises(ConfigError, match="weights_dtype"):
        save_model(tmp_path / "m", model, CONFIG, weights_dtype="bfloat16")
    assert not (tmp_path / "m").exists()


def test_saved_weights_are_readable_like_any_new_file(tmp_path):
    folder = save_model(tmp_path / "m", build_network(CONFIG, seed=0), CONFIG)
    previous = os.umask(0o022)
    os.umask(previous)
    expected = 0o666 & ~previous
    for name in ("model.safetensors", "model.json"):
        assert (folder / name).stat().st_mode & 0o777 == expected, name


def test_checkpoint_errors(tmp_path):
    model = build_network(CONFIG, seed=0)
    with pytest.raises(ModelNotFoundError):
        load_model(tmp_path / "missing")
    with pytest.raises(ConfigError, match="JSON"):
        save_model(tmp_path / "bad", model, CONFIG, {"x": object()})
    folder = save_model(tmp_path / "m", model, CONFIG)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptFileError):
        load_model(folder)
    info = json.loads((folder / "model.json").read_text())
    info["format_version"] = 99
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="upgrade"):
        read_model_info(folder)
    other = build_network(UNetConfig(dims=2, depth=3, base_channels=4), seed=0)
    save_model(tmp_path / "wrong", other, CONFIG)  # weights do not fit the stored config
    with pytest.raises(ConfigError, match="do not fit"):
        load_model(tmp_path / "wrong")


def run(
    tmp_path, name, epochs, *, resume_from=None, model_seed=0, progress=None, device="cpu", **kwargs
):
    model = build_network(CONFIG, seed=model_seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    result = train(
        model,
        tiny_data(),
        tiny_data(seed=1),
        BCEDiceLoss(),
        optimizer,
        epochs=epochs,
        checkpoint_dir=tmp_path / name,
        device=device,
        resume_from=resume_from,
        progress=progress,
        seed=11,
        **kwargs,
    )
    return model, result


def test_resumed_training_matches_uninterrupted_training(tmp_path):
    torch.manual_seed(0)
    outside = torch.rand(1)
    straight, result = run(tmp_path, "straight", 3)
    torch.manual_seed(0)
    assert torch.rand(1) == outside  # training does not consume the global random state
    assert [r.epoch for r in result.history] == [1, 2, 3]
    assert result.monitor == "val_loss"
    assert (result.last_checkpoint / "trainer.pt").is_file()
    assert (result.best_checkpoint / "model.safetensors").is_file()

    run(tmp_path, "interrupted", 2)
    resumed, resumed_result = run(
        tmp_path, "interrupted", 3, resume_from=tmp_path / "interrupted", model_seed=99
    )
    assert [r.epoch for r in resumed_result.history] == [1, 2, 3]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed_result.history[-1].train_loss == result.history[-1].train_loss
    _, _, card = load_model(result.last_checkpoint)
    assert card["training"]["epoch"] == 3


def test_time_budget_stops_between_epochs_and_changes_nothing_else(tmp_path):
    straight, result = run(tmp_path, "straight", 3)
    budgeted, budget_result = run(tmp_path, "budgeted", 3, max_seconds=1e9)
    assert not budget_result.stopped_by_time
    for a, b in zip(straight.state_dict().values(), budgeted.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    recorder = Recorder()
    _, spent = run(tmp_path, "spent", 3, max_seconds=1e-9, progress=recorder)
    assert spent.stopped_by_time
    assert [r.epoch for r in spent.history] == [1]
    assert recorder.descriptions[0].startswith("epoch 1/3")
    assert spent.history[0].train_loss == result.history[0].train_loss
    with pytest.raises(ConfigError, match="max_seconds"):
        run(tmp_path, "bad", 3, max_seconds=0)


def test_early_stopping_metric_and_progress(tmp_path):
    recorder = Recorder()
    _, result = run(
        tmp_path,
        "early",
        10,
        metric_fn=lambda prediction, target, valid: 0.5,
        early_stopping_patience=2,
        progress=recorder,
        card={"task": "test"},
    )
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1
    assert result.monitor == "val_metric"
    assert result.best_value == 0.5
    assert recorder.steps == 3 * 2  # 8 samples in batches of 4
    assert "epoch 2/10" in recorder.descriptions[1]
    assert "loss" in recorder.descriptions[1]
    assert "ETA" in recorder.descriptions[1]
    _, _, card = load_model(result.best_checkpoint)
    assert card["task"] == "test"
    assert card["training"]["epoch"] == 1

    # resuming a run that had stopped early trains nothing more and says it stopped early
    recorder = Recorder()
    _, resumed = run(
        tmp_path,
        "early",
        10,
        resume_from=tmp_path / "early",
        metric_fn=lambda prediction, target, valid: 0.5,
        early_stopping_patience=2,
        progress=recorder,
    )
    assert resumed.stopped_early
    assert len(resumed.history) == 3
    assert recorder.steps == 0


def test_fine_tuning_starts_from_loaded_weights(tmp_path):
    pretrained, result = run(tmp_path, "pretrain", 4)
    model, config, _ = load_model(result.last_checkpoint)
    for a, b in zip(pretrained.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    freeze_encoder(model)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tuned = train(
        model,
        tiny_data(seed=2),
        None,
        BCEDiceLoss(),
        optimizer,
        epochs=1,
        checkpoint_dir=tmp_path / "tuned",
        config=config,
        seed=0,
    )
    assert tuned.monitor == "train_loss"
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    assert any(
        not torch.equal(value, decoder_before[key])
        for key, value in model.decoder.state_dict().items()
    )
    # starting from trained weights, the first epoch's loss beats a fresh network's
    fresh = build_network(config, seed=0)
    fresh_result = train(
        fresh,
        tiny_data(seed=2),
        None,
        BCEDiceLoss(),
        torch.optim.Adam(fresh.parameters(), lr=1e-2),
        epochs=1,
        checkpoint_dir=tmp_path / "fresh",
        seed=0,
    )
    assert tuned.history[0].train_loss < fresh_result.history[0].train_loss


def test_training_errors(tmp_path):
    model = build_network(CONFIG, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def nan_loss(prediction, target, valid):
        return prediction.mean() * float("nan")

    with pytest.raises(TrainingError, match="learning rate"):
        train(model, tiny_data(), None, nan_loss, optimizer, epochs=1, checkpoint_dir=tmp_path)
    plain = nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(ConfigError, match="UNetConfig"):
        train(plain, tiny_data(), None, BCEDiceLoss(), optimizer, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ModelNotFoundError):
        train(
            model,
            tiny_data(),
            None,
            BCEDiceLoss(),
            optimizer,
            epochs=1,
            checkpoint_dir=tmp_path,
            resume_from=tmp_path / "nothing",
        )


def test_bfloat16_training_learns_and_records_its_precision(tmp_path):
    _, exact = run(tmp_path, "float32", 3)
    model, fast = run(tmp_path, "bfloat16", 3, precision="bfloat16")
    losses = [r.train_loss for r in fast.history]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert losses != [r.train_loss for r in exact.history]
    # weights and their gradients stay float32; only the passes are autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert (fast.precision, exact.precision) == ("bfloat16", "float32")
    _, _, card = load_model(fast.best_checkpoint)
    assert card["training"]["precision"] == "bfloat16"
    _, _, card = load_model(exact.best_checkpoint)
    assert card["training"]["precision"] == "float32"
    # a bfloat16 run resumes like any other
    _, resumed = run(
        tmp_path, "bfloat16", 4, precision="bfloat16", resume_from=tmp_path / "bfloat16"
    )
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[2].train_loss == fast.history[2].train_loss


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_nan_gradient_stops_training_before_it_reaches_the_weights(tmp_path, precision):
    model = build_network(CONFIG, seed=0)
    name, poisoned = next(iter(model.named_parameters()))
    poisoned.register_hook(lambda grad: grad * float("nan"))
    before = poisoned.detach().clone()
    with pytest.raises(TrainingError, match=f"gradient of {name} became NaN") as caught:
        train(
            model,
            tiny_data(),
            None,
            BCEDiceLoss(),
            torch.optim.Adam(model.parameters(), lr=1e-2),
            epochs=1,
            checkpoint_dir=tmp_path,
            precision=precision,
        )
    assert torch.equal(poisoned.detach(), before)  # no step was taken with it
    assert ("--precision float32" in str(caught.value)) == (precision == "bfloat16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_training_and_prediction_on_cuda(tmp_path):
    from vemkit.ml.predict import predict_array

    _, result = run(tmp_path, "cuda", 2, device="cuda")
    assert all(np.isfinite(r.train_loss) for r in result.history)
    resumed, _ = run(tmp_path, "cuda", 3, device="cuda", resume_from=tmp_path / "cuda")
    image = np.random.default_rng(0).normal(size=(2, 40, 40)).astype(np.float32)
    on_gpu = predict_array(resumed, image, patch_shape=(16, 16), device="cuda", batch_size=8)
    assert on_gpu.shape == (1, 2, 40, 40)
    assert np.isfinite(on_gpu).all()
