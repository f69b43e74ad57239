"""A trained network's activations at a named layer, through torchvision's feature extraction.

``torchvision.models.feature_extraction.create_feature_extractor`` traces the model with
torch.fx and returns the outputs of the requested graph nodes; node names are module paths
(``stages.2.pool``, ``head.fc1``) or, for functional calls, their generated names. This is how
"fc7 features" are taken from a net trained on one task to train a linear classifier on
another (Razavian et al. 2014; VGG Appendix B). Every registered model traces: its input check steps
aside for torch.fx proxies (:meth:`cnnatlas.base.AtlasModel.check_input`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnatlas.errors import InputError


def layer_names(model: nn.Module) -> list[str]:
    """Every node name :func:`feature_extractor` accepts (eval-mode graph)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    _, names = get_graph_node_names(model)
    return [n for n in names if n != "x"]


def feature_extractor(model: nn.Module, layer: str) -> nn.Module:
    """A module returning ``{layer: activations}``; InputError listing valid names otherwise."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model.eval()
    valid = layer_names(model)
    if layer not in valid:
        name = getattr(model, "display_name", type(model).__name__)
        raise InputError(f"no layer {layer!r} in {name}; valid layers: {', '.join(valid)}")
    return create_feature_extractor(model, return_nodes=[layer])


def extract(model: nn.Module, layer: str, images: Tensor, adapter: object, batch_size: int = 256) -> Tensor:
    """Activations of ``layer`` for uint8 ``images`` fed through the run's ``adapter``."""
    extractor = feature_extractor(model, layer)
    chunks = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            chunks.append(extractor(adapter(images[start : start + batch_size]))[layer])  # type: ignore[operator]
    return torch.cat(chunks)


def export_features(
    run_dir: str | os.PathLike[str],
    layer: str,
    *,
    split: str = "test",
    limit: int | None = None,
    out: str | os.PathLike[str] | None = None,
) -> tuple[Path, tuple[int, ...]]:
    """Write ``features`` and ``labels`` of the run's data split at ``layer`` to a .safetensors file."""
    from safetensors.torch import save as save_bytes

    from cnnatlas.data import load_dataset
    from cnnatlas.train.checkpoint import atomic_write_bytes
    from cnnatlas.train.run import load_run

    if limit is not None and limit < 1:
        raise InputError(f"--limit must be a positive integer, got {limit}")
    run = load_run(run_dir)
    data = run.config["data"]
    dataset = load_dataset(data["name"], root=data.get("root"), split=split, **dict(data.get("options", {})))
    images = getattr(dataset, "images", None)
    if images is None:
        raise InputError("features: image-folder data sets are not supported; use an in-memory data set")
    labels = dataset.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    features = extract(run.model, layer, images, run.adapter)
    path = Path(out) if out else Path(run_dir) / f"features-{layer.replace('/', '_')}-{split}.safetensors"
    payload = save_bytes(
        {"features": features.contiguous(), "labels": labels.contiguous()},
        metadata={"layer": layer, "run": str(run_dir)},
    )
    atomic_write_bytes(path, payload)
    return path, tuple(features.shape)
