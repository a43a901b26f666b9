"""Shared test setup: one torch thread (the default is 50-100x slower on small shared
machines) and a private dataset cache, so tests never touch the user's cache."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)
    if "GRADBENCH_CACHE" not in os.environ:
        os.environ["GRADBENCH_CACHE"] = tempfile.mkdtemp(prefix="gradbench-test-cache-")


@pytest.fixture
def small_mlp_task() -> str:
    """A fast mnist1d_mlp: 1000 samples, 3 hidden layers of 32."""
    return "mnist1d_mlp[depth=3,width=32,num_samples=1000]"
