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


@pytest.fixture(autouse=True)
def _restore_vemkit_log_levels():
    """Undo the log levels a CLI command sets (epoch lines in batch jobs) after each test.

    CLI tests run the commands in this process, so without this a command run by one
    test would make another test's command log epochs, depending on test order.
    """
    import logging

    names = [n for n in logging.root.manager.loggerDict if n.startswith("vemkit")]
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for name in logging.root.manager.loggerDict:
        if name.startswith("vemkit"):
            logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))
