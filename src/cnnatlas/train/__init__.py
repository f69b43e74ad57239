"""Training: the papers' recipes, a fast trainer (single process or DDP under torchrun),
atomic checkpoints with exact resume, and evaluation.

>>> from cnnatlas.train import get_recipe
>>> get_recipe("resnet_cifar").milestones
(32000, 48000)
"""

from __future__ import annotations

from typing import Any

from cnnatlas.train.adapt import InputAdapter
from cnnatlas.train.recipes import Recipe, get_recipe, list_recipes

__all__ = ["InputAdapter", "Recipe", "RunResult", "get_recipe", "list_recipes", "load_run", "train"]


def train(model_name: str, **options: Any) -> Any:
    """See :func:`cnnatlas.train.trainer.train` (imported lazily: it pulls in the data package)."""
    from cnnatlas.train.trainer import train as _train

    return _train(model_name, **options)


def load_run(run_dir: Any) -> Any:
    """See :func:`cnnatlas.train.run.load_run`."""
    from cnnatlas.train.run import load_run as _load_run

    return _load_run(run_dir)


def __getattr__(name: str) -> Any:
    if name == "RunResult":
        from cnnatlas.train.trainer import RunResult

        return RunResult
    raise AttributeError(name)
