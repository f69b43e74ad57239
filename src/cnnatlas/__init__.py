"""cnnatlas — the classic convolutional networks as published, measured layer by layer.

Public API (docs/README.md is the guide)::

    import cnnatlas
    cnnatlas.list_models("resnet*")
    m = cnnatlas.create_model("vgg16", num_classes=10, in_chans=1)
    cnnatlas.model_info("vgg16")
    cnnatlas.load_weights(m, "vgg16-397923af.pth")
    a = cnnatlas.analyze("vgg16", input_size=(3, 224, 224))
"""

from __future__ import annotations

from typing import Any

from cnnatlas.errors import CheckpointError, CnnAtlasError, DataError, InputError
from cnnatlas.registry import (
    ModelInfo,
    Paper,
    Variant,
    create_model,
    list_models,
    lookup,
    model_info,
    register_family,
    register_model,
)
from cnnatlas.weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CnnAtlasError",
    "DataError",
    "InputError",
    "ModelInfo",
    "Paper",
    "Variant",
    "analyze",
    "create_model",
    "list_models",
    "load_weights",
    "lookup",
    "model_info",
    "register_family",
    "register_model",
    "save_weights",
]


def analyze(model_or_name: Any, *args: Any, **kwargs: Any) -> Any:
    """Per-layer analysis (see :func:`cnnatlas.analysis.analyze`); imported lazily."""
    from cnnatlas.analysis import analyze as _analyze

    return _analyze(model_or_name, *args, **kwargs)
