"""Shared fixtures: deterministic seeds, CPU threads kept to the machine's two cores."""

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_configure(config: pytest.Config) -> None:
    # two cores: one thread per pytest-xdist worker when two run, else both threads
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2 // workers, torch.get_num_threads())))
