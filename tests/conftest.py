"""Shared test fixtures.

The model and recipe registries are process-wide tables. A test that registers a model of its
own would otherwise leave it behind for every later test (the README's model table, the
registry-wide parametrisations), so each test runs inside a snapshot of both tables that is
restored when it ends. The suite runs in random order (pytest-randomly) to keep it that way.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (`-n N`) every worker is a process of its own: split the cores between
    # them, or N workers × all-core thread pools oversubscribe the machine and run slower than one.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@contextmanager
def _registry_snapshot() -> Iterator[None]:
    """Restore the model and recipe registries to their state on entry when the block ends."""
    from cnnatlas import registry
    from cnnatlas.train import recipes

    registry.list_models()  # import every family first, so the snapshot holds them all
    models, known_recipes = dict(registry._REGISTRY), dict(recipes._RECIPES)
    try:
        yield
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(models)
        recipes._RECIPES.clear()
        recipes._RECIPES.update(known_recipes)


@pytest.fixture(autouse=True)
def _isolated_registries() -> Iterator[None]:
    with _registry_snapshot():
        yield


@pytest.fixture
def registry_snapshot() -> Callable[[], ContextManager[None]]:
    """The snapshot-and-restore context manager every test already runs inside."""
    return _registry_snapshot


# The two deepest networks cost 5–40 s each in every test that sweeps the whole registry on a
# 2-core machine (ResNet-1202's minimum-size probe alone takes 40 s), which would put the default
# run over its 10-minute budget. In those sweeps they run with the slow tests (`pytest -m slow`,
# scripts/ci-full); the family tests (test_resnet.py) keep their own checks of both networks.
DEEPEST_NETWORKS = frozenset({"resnet1202", "preact_resnet1001"})
REGISTRY_SWEEPS = frozenset({"test_models_common.py", "test_analysis_papers.py", "test_interop.py"})


@pytest.hookimpl(tryfirst=True)  # before pytest's own `-m 'not slow'` deselection reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if item.path.name in REGISTRY_SWEEPS and callspec and callspec.params.get("name") in DEEPEST_NETWORKS:
            item.add_marker(pytest.mark.slow)


def _calibrate_batch_norm(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Set every batch norm's running statistics to those of ``x`` flowing through ``model``,
    as training leaves them, and return the model in eval mode.

    A fresh network's statistics (mean 0, variance 1) let a 1,000-layer residual net's activations
    double their variance at every block and overflow float32 long before the logits; with the
    statistics of real activations each block's branch is normalised and the logits stay finite.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.fixture
def deepest_networks() -> frozenset[str]:
    """The two 1,000-layer networks, which some registry-wide checks must treat apart."""
    return DEEPEST_NETWORKS


@pytest.fixture
def calibrate_batch_norm() -> Callable[[torch.nn.Module, torch.Tensor], torch.nn.Module]:
    return _calibrate_batch_norm
