"""Per-layer analysis: shapes, parameters, MACs/FLOPs, activation memory, receptive fields.

``analyze("vgg16")`` builds the network on the meta device (no weights allocated, no
arithmetic), runs one traced forward pass in eval mode and returns an :class:`Analysis`:
one row per leaf-module call and per functional op, and totals. Conventions (MACs, FLOPs,
activations, receptive field, training memory) are in docs/analysis.md and DESIGN.md §4.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from cnnatlas.analysis.memory import measure_training_step, optimizer_state_bytes
from cnnatlas.analysis.render import Analysis, LayerRow
from cnnatlas.analysis.trace import RawRow, display_namer, trace
from cnnatlas.base import find_collapsing_layer, smallest_working_input
from cnnatlas.errors import InputError

__all__ = ["Analysis", "LayerRow", "analyze", "measure_training_step"]

DEFAULT_INPUT = (3, 224, 224)


def _check_input_size(input_size: Sequence[int], batch: int) -> tuple[int, int, int]:
    size = tuple(int(v) for v in input_size)
    if len(size) != 3 or min(size) < 1:
        raise InputError(f"input size must be three positive integers C×H×W, got {input_size!r}")
    if not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    return size  # type: ignore[return-value]


def _build(
    model_or_name: Any, dtype: torch.dtype, model_kwargs: dict[str, Any]
) -> tuple[nn.Module, str, tuple[int, int, int] | None, dict[str, torch.Tensor] | None]:
    """(model, its name, its registered input size or None, meta state for functional_call or None)."""
    if isinstance(model_or_name, str):
        from cnnatlas.registry import create_meta_model, lookup

        info = lookup(model_or_name).info  # unknown names raise InputError with suggestions
        model = create_meta_model(model_or_name, **model_kwargs)
        if dtype != torch.float32:
            model = model.to(dtype)
        return model, model_or_name, info.input_size, None
    if not isinstance(model_or_name, nn.Module):
        raise InputError(f"analyze() takes a model name or an nn.Module, got {type(model_or_name).__name__}")
    if model_kwargs:
        raise InputError(f"model options {sorted(model_kwargs)} only apply to a registered model name")
    model = model_or_name
    name = getattr(model, "model_name", "") or type(model).__name__
    registered = None
    if getattr(model, "model_name", ""):
        from cnnatlas.registry import list_models, lookup

        if name in list_models():
            registered = lookup(name).info.input_size
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "meta" and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
        return model, name, registered, None  # already shapes only: trace it as it is
    # Meta stand-ins for every parameter and buffer (the pattern of base.find_collapsing_layer):
    # the caller's weights are neither read nor copied.
    state: dict[str, torch.Tensor] = {}
    for key, param in model.named_parameters():
        stand_in = torch.empty_like(param, device="meta", dtype=dtype if param.is_floating_point() else param.dtype)
        state[key] = stand_in.requires_grad_(param.requires_grad)
    for key, buffer in model.named_buffers():
        state[key] = torch.empty_like(
            buffer, device="meta", dtype=dtype if buffer.is_floating_point() else buffer.dtype
        )
    return model, name, registered, state


def _too_small(model: nn.Module, name: str, shape: tuple[int, ...], reason: str) -> InputError:
    chans = shape[1]
    smallest = smallest_working_input(model, chans)
    hint = (
        f"; the smallest input that works is {chans}×{smallest}×{smallest}"
        if smallest is not None
        else "; no square input up to 1024×1024 works"
    )
    return InputError(f"{reason}{hint}")


def analyze(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    *,
    optimizer: str = "momentum",
    **model_kwargs: Any,
) -> Analysis:
    """Analyse a registered model (by name) or any ``nn.Module`` at ``batch × input_size``.

    ``input_size`` defaults to the registered model's own input (1×32×32 for LeNet-5,
    3×224×224 for most ImageNet networks; 3×224×224 for an unregistered module).
    ``optimizer`` (``sgd``, ``momentum`` or ``adam``) only affects the training-memory
    estimate. ``model_kwargs`` (``num_classes=10`` …) go to :func:`cnnatlas.create_model`.
    """
    optimizer_state_bytes(0, optimizer)  # validates the name before any work
    model, name, registered_input, state = _build(model_or_name, dtype, model_kwargs)
    chans = getattr(model, "in_chans", None)
    size = _check_input_size(
        input_size or registered_input or ((chans,) + DEFAULT_INPUT[1:] if chans else DEFAULT_INPUT), batch
    )
    shape = (batch, *size)
    x = torch.empty(shape, device="meta", dtype=dtype)
    names = model.paper_layer_names() if hasattr(model, "paper_layer_names") else {}
    display = display_namer(names)

    was_training = model.training and not isinstance(model_or_name, str)  # a model built here is not handed back
    if any(module.training for module in model.modules()):
        model.eval()
    try:
        result = trace(model, x, state, names)
    except InputError as exc:
        if "got" in str(exc) and "channel" not in str(exc):
            raise _too_small(model, name, shape, str(exc)) from None
        raise
    except (RuntimeError, ValueError, IndexError):
        where = find_collapsing_layer(model, shape)
        if where:
            raise _too_small(
                model, name, shape, f"{name} cannot run on input {'×'.join(map(str, size))}: {where}"
            ) from None
        raise
    finally:
        if was_training:
            model.train()

    rows = [_finish(raw) for raw in result.rows]
    module_types = {path: type(m).__name__ for path, m in result.modules}
    module_names = {path: display(path) or type(m).__name__ for path, m in result.modules}

    named_params = list(model.named_parameters())
    real_params = [p for _, p in named_params]
    if state is not None:
        param_keys = {k for k, _ in named_params}
        params = [t for k, t in state.items() if k in param_keys]
        buffers = [t for k, t in state.items() if k not in param_keys]
    else:
        params, buffers = real_params, list(model.buffers())
    trainable_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    buffer_bytes = sum(b.numel() * b.element_size() for b in buffers)
    # Training-mode dropout keeps a 1-byte mask and creates a new output the next layer saves.
    dropout_bytes = sum(_dropout_training_bytes(raw, dtype) for raw in result.rows)
    saved = result.saved_bytes + dropout_bytes
    opt_bytes = optimizer_state_bytes(trainable_bytes, optimizer)
    totals = {
        "params": sum(p.numel() for p in real_params),
        "trainable_params": sum(p.numel() for p in real_params if p.requires_grad),
        "fixed_params": sum(p.numel() for p in real_params if not p.requires_grad),
        "unused_params": result.unused_params,
        "macs": sum(r.macs for r in rows),
        "flops": sum(r.flops for r in rows),
        "activations": sum(r.activations for r in rows),
        "activation_bytes": sum(r.activation_bytes for r in rows),
        "input_activations": x.numel(),
        "input_bytes": x.numel() * x.element_size(),
        "param_bytes": param_bytes,
        "buffer_bytes": buffer_bytes,
        "network_depth": result.network_depth,
        "saved_activation_bytes": saved,
        "gradient_bytes": trainable_bytes,
        "optimizer_state_bytes": opt_bytes,
        "training_memory_bytes": param_bytes + buffer_bytes + trainable_bytes + opt_bytes + saved,
    }
    return Analysis(
        model=name,
        input_shape=list(shape),
        dtype=str(dtype).replace("torch.", ""),
        optimizer=optimizer,
        layers=rows,
        totals=totals,
        min_input_size=getattr(model, "min_input_size", None),
        uncounted_ops=dict(result.uncounted_ops),
        module_types=module_types,
        module_names=module_names,
    )


def _dropout_training_bytes(raw: RawRow, dtype: torch.dtype) -> int:
    """Eval-mode dropout runs no op; in training it keeps a bool mask and a new output."""
    if not raw.module_attrs.get("dropout") or not raw.output_shape:
        return 0
    elements = math.prod(raw.output_shape)
    return elements * (1 + torch.empty((), dtype=dtype).element_size())


def _finish(raw: RawRow) -> LayerRow:
    spec = raw.spec[1] if raw.spec else _module_spec(raw)
    field = raw.rf
    return LayerRow(
        name=raw.name,
        type=raw.type,
        spec=spec,
        output_shape=list(raw.output_shape),
        weight_params=raw.weight_params,
        bias_params=raw.bias_params,
        macs=raw.macs,
        flops=raw.flops,
        activations=raw.activations,
        activation_bytes=raw.activation_bytes,
        receptive_field=int(round(max(field[0].r, field[1].r))) if field else 0,
        jump=int(round(max(field[0].j, field[1].j))) if field else 0,
        start=float(field[0].start) if field else 0.0,
        depth=raw.depth,
        path=raw.path,
    )


def _module_spec(raw: RawRow) -> str:
    attrs = raw.module_attrs
    if "dropout" in attrs:
        return f"dropout {attrs['dropout']:g}"
    if "lrn_size" in attrs:
        return f"LRN, size {attrs['lrn_size']}"
    return raw.type
