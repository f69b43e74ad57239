"""Experiments that answer the lecture notes' questions by training (docs/experiments.md).

>>> from cnnatlas.experiments import list_experiments
>>> "degradation" in list_experiments()
True
"""

from __future__ import annotations

from cnnatlas.experiments.spec import Arm, Budget, Experiment, get_experiment, list_experiments

__all__ = ["Arm", "Budget", "Experiment", "get_experiment", "list_experiments", "run_experiment", "render"]


def run_experiment(name: str, **options: object) -> object:
    """See :func:`cnnatlas.experiments.runner.run_experiment` (imported lazily: it pulls in torch)."""
    from cnnatlas.experiments.runner import run_experiment as _run

    return _run(name, **options)  # type: ignore[arg-type]


def render(folder: object) -> object:
    """See :func:`cnnatlas.experiments.report.render`."""
    from cnnatlas.experiments.report import render as _render

    return _render(folder)  # type: ignore[arg-type]
