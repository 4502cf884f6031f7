"""Shared fixtures: the real-data folder (skipped when absent) and small volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vemkit.datasets import data_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; tests using it skip cleanly when it is absent."""
    root = data_root()
    if root is None:
        pytest.skip("shared real datasets not found (set VEMKIT_DATA or place ../shared/data)")
    return root


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small networks: threads only add overhead)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
