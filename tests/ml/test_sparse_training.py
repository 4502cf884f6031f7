"""End to end: a tiny 2D U-Net learns bright blobs from every-4th-plane sparse labels."""

import time

import numpy as np
import torch
from scipy import ndimage

from vemkit.ml.augment import Augmenter
from vemkit.ml.checkpoint import load_model
from vemkit.ml.losses import BCEDiceLoss
from vemkit.ml.networks import UNetConfig, build_network
from vemkit.ml.normalize import Normalization, fit_normalization
from vemkit.ml.predict import predict_array
from vemkit.ml.sampling import PatchDataset, PatchSampler
from vemkit.ml.sparse import sparse_plane_mask
from vemkit.ml.targets import binary_target
from vemkit.ml.train import train

torch.set_num_threads(1)


def blobs(shape, *, count, seed):
    """Bright spheres of random radius on a noisy, blurred, uneven background."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for label in range(1, count + 1):
        centre = rng.uniform(0, shape)
        radius = rng.uniform(4.0, 8.0)
        inside = ((grid - centre[:, None, None, None]) ** 2).sum(axis=0) < radius**2
        labels[inside & (labels == 0)] = label
    background = 0.3 + 0.1 * np.sin(grid[2] / 9.0) * np.cos(grid[1] / 13.0)
    clean = np.where(labels > 0, 0.75, background)
    image = ndimage.gaussian_filter(clean, 1.0) + rng.normal(0, 0.1, shape)
    return (image * 1000 + 500).astype(np.float32), labels


def iou(prediction, truth):
    return (prediction & truth).sum() / max((prediction | truth).sum(), 1)


def batch_iou(prediction, target, valid):
    guess = (prediction > 0) & valid[:, None]
    truth = (target > 0.5) & valid[:, None]
    return float((guess & truth).sum() / (guess | truth).sum().clamp(min=1))


def test_tiny_unet_learns_blobs_from_sparse_planes(tmp_path):
    start = time.perf_counter()
    image, labels = blobs((16, 64, 64), count=24, seed=0)
    annotated = sparse_plane_mask(labels.shape, every_n=4, fraction_painted=0.7, seed=0)
    assert annotated.mean() < 0.2
    norm = fit_normalization(image)
    sampler = PatchSampler(
        image, labels, patch_shape=(32, 32), valid=annotated, foreground_fraction=0.5
    )
    augmenter = Augmenter(
        voxel_size=(8.0, 8.0), gamma_p=0.0, blur_p=0.0, noise_p=0.2, noise_sigma_range=(0.0, 0.05)
    )
    train_set = PatchDataset(
        sampler,
        samples_per_epoch=64,
        seed=0,
        normalization=norm,
        augment=augmenter,
        target_fn=binary_target,
    )
    val_image, val_labels = blobs((4, 64, 64), count=6, seed=1)
    val_set = PatchDataset(
        PatchSampler(val_image, val_labels, patch_shape=(32, 32)),
        samples_per_epoch=16,
        seed=1,
        normalization=norm,
        target_fn=binary_target,
    )
    config = UNetConfig(dims=2, depth=3, base_channels=8, norm="batch")
    model = build_network(config, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    result = train(
        model,
        torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=True),
        torch.utils.data.DataLoader(val_set, batch_size=16),
        BCEDiceLoss(),
        optimizer,
        epochs=24,
        checkpoint_dir=tmp_path,
        card={"normalization": norm.to_dict(), "target": "foreground"},
        metric_fn=batch_iou,
        seed=0,
    )
    trained_s = time.perf_counter() - start

    best, _, card = load_model(result.best_checkpoint)
    normalization = Normalization.from_dict(card["normalization"])
    test_image, test_labels = blobs((8, 64, 64), count=12, seed=2)
    probability = predict_array(
        best,
        test_image,
        patch_shape=(32, 32),
        overlap=0.25,
        batch_size=8,
        normalization=normalization,
        activation="sigmoid",
    )
    test_iou = iou(probability[0] > 0.5, test_labels > 0)
    # planes of the training volume that were never annotated
    train_prediction = predict_array(
        best, image, patch_shape=(32, 32), normalization=normalization, activation="sigmoid"
    )
    unlabelled = ~annotated.any(axis=(1, 2))
    unlabelled_iou = iou(train_prediction[0, unlabelled] > 0.5, labels[unlabelled] > 0)
    print(
        f"trained in {trained_s:.1f} s, best epoch {result.best_epoch}, val IoU "
        f"{result.best_value:.3f}, test IoU {test_iou:.3f}, unlabelled-plane IoU "
        f"{unlabelled_iou:.3f}, total {time.perf_counter() - start:.1f} s"
    )
    assert test_iou > 0.8
    assert unlabelled_iou > 0.8
