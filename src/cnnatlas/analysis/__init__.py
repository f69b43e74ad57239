"""Per-layer analysis: shapes, parameters, MACs/FLOPs, activation memory, receptive fields.

``analyze("vgg16")`` builds the network on the meta device (no weights allocated, no
arithmetic), runs one traced forward pass in eval mode and returns an :class:`Analysis`:
one row per leaf-module call and per functional op, and totals. Conventions (MACs, FLOPs,
activations, receptive field, training memory) are in docs/analysis.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from cnnatlas.analysis.inputs import ExampleInputs, example_inputs
from cnnatlas.analysis.memory import measure_training_step, optimizer_state_bytes
from cnnatlas.analysis.receptive import UNKNOWN
from cnnatlas.analysis.render import Analysis, LayerRow
from cnnatlas.analysis.rules import register_flop_rule
from cnnatlas.analysis.trace import RawRow, Tracer, TraceResult, display_namer, trace
from cnnatlas.base import find_collapsing_layer, smallest_working_input
from cnnatlas.errors import InputError

__all__ = ["Analysis", "LayerRow", "analyze", "measure_training_step", "register_flop_rule"]

DEFAULT_INPUT = (3, 224, 224)


def _build(
    model_or_source: Any, dtype: torch.dtype, model_kwargs: dict[str, Any]
) -> tuple[nn.Module, str, tuple[int, ...] | None, dict[str, torch.Tensor] | None]:
    """(model, its name, the input size its source declares or None, meta state for
    functional_call or None)."""
    if isinstance(model_or_source, str):
        from cnnatlas.sources import resolve_source

        resolved = resolve_source(model_or_source, meta=True, **model_kwargs)
        model = resolved.model
        if dtype != torch.float32:
            model = model.to(dtype)
        state = None if _is_meta(model, dtype) else _meta_state(model, dtype)
        return model, resolved.name, resolved.input_size, state
    if not isinstance(model_or_source, nn.Module):
        raise InputError(f"analyze() takes a model source or an nn.Module, got {type(model_or_source).__name__}")
    if model_kwargs:
        raise InputError(f"model options {sorted(model_kwargs)} only apply to a model source (a name), not a module")
    model = model_or_source
    name = getattr(model, "model_name", "") or type(model).__name__
    registered = None
    if getattr(model, "model_name", ""):
        from cnnatlas.registry import list_models, lookup

        if name in list_models():
            registered = lookup(name).info.input_size
    if _is_meta(model, dtype):
        return model, name, registered, None  # already shapes only: trace it as it is
    return model, name, registered, _meta_state(model, dtype)


def _is_meta(model: nn.Module, dtype: torch.dtype) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return all(t.device.type == "meta" and (t.dtype == dtype or not t.is_floating_point()) for t in tensors)


def _meta_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Meta stand-ins for every parameter and buffer (the pattern of base.find_collapsing_layer):
    the caller's weights are neither read nor copied."""
    state: dict[str, torch.Tensor] = {}
    for key, param in model.named_parameters():
        stand_in = torch.empty_like(param, device="meta", dtype=dtype if param.is_floating_point() else param.dtype)
        state[key] = stand_in.requires_grad_(param.requires_grad)
    for key, buffer in model.named_buffers():
        state[key] = torch.empty_like(
            buffer, device="meta", dtype=dtype if buffer.is_floating_point() else buffer.dtype
        )
    return state


def _cannot_run(model: nn.Module, name: str, inputs: ExampleInputs, reason: str) -> InputError:
    """The error for inputs the model cannot take: for one image input, the smallest square
    input that works when there is one; otherwise the reason and how to give other inputs."""
    shapes = ", ".join("×".join(map(str, t.shape[1:])) for t in inputs.tensors())
    first = inputs.args[0] if len(inputs.args) == 1 and not inputs.kwargs else None
    if first is not None and first.dim() == 4:
        chans = int(first.shape[1])
        smallest = smallest_working_input(model, chans)
        if smallest is not None:
            return InputError(f"{reason}; the smallest input that works is {chans}×{smallest}×{smallest}")
    return InputError(
        f"{name} cannot run on input {shapes}: {reason}; give its input with --input SHAPE (once per "
        "input, e.g. --input 3x224x224 --input 10) and --input-dtype, or input_size=/input_data= in Python"
    )


def analyze(
    model_or_source: str | nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    *,
    input_data: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor] | None = None,
    input_dtypes: torch.dtype | str | Sequence[torch.dtype | str] | None = None,
    optimizer: str = "momentum",
    **model_kwargs: Any,
) -> Analysis:
    """Analyse a network at ``batch × input_size``.

    ``model_or_source`` is an ``nn.Module`` or a model source: a registered name, ``torchvision:NAME``,
    ``file.py:NAME`` or ``package.module:NAME`` (see :mod:`cnnatlas.sources`); ``model_kwargs``
    (``num_classes=10`` …) go to its builder.

    Inputs, as torchinfo takes them (see :mod:`cnnatlas.analysis.inputs`): ``input_size`` is one
    shape without the batch dimension or a list of shapes (one per positional input), with
    ``input_dtypes`` (one, or one per input; default ``dtype``); or ``input_data`` is example
    tensors (whole shapes) — one, a list, or a dict of keyword inputs. The default is the
    model's own input (1×32×32 for LeNet-5, 3×224×224 for most ImageNet networks and for an
    unregistered module). ``dtype`` is also the parameters' dtype. ``optimizer`` (``sgd``,
    ``momentum`` or ``adam``) only affects the training-memory estimate.
    """
    return _analyze_traced(
        model_or_source, input_size, batch, dtype, input_data, input_dtypes, optimizer, model_kwargs, Tracer
    )[0]


def _analyze_traced(
    model_or_source: str | nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None,
    batch: int,
    dtype: torch.dtype,
    input_data: Any,
    input_dtypes: Any,
    optimizer: str,
    model_kwargs: dict[str, Any],
    tracer_class: type[Tracer],
) -> tuple[Analysis, TraceResult]:
    """:func:`analyze` with the raw trace too, traced by ``tracer_class`` (cnnatlas.analysis.graph
    passes one that also records which layer feeds which)."""
    optimizer_state_bytes(0, optimizer)  # validates the name before any work
    model, name, declared_input, state = _build(model_or_source, dtype, model_kwargs)
    chans = getattr(model, "in_chans", None)
    default = declared_input or ((chans,) + DEFAULT_INPUT[1:] if chans else DEFAULT_INPUT)
    inputs = example_inputs(input_size, input_data, input_dtypes, batch, dtype, default)
    names = model.paper_layer_names() if hasattr(model, "paper_layer_names") else {}
    # A model built here is not handed back, so its mode need not be restored.
    restore = not isinstance(model_or_source, str)
    result = _trace_eval(model, name, inputs, state, names, restore_mode=restore, tracer_class=tracer_class)
    display = display_namer(names)
    analysis = Analysis(
        model=name,
        input_shape=list(inputs.tensors()[0].shape) if inputs.tensors() else [],
        dtype=str(dtype).replace("torch.", ""),
        optimizer=optimizer,
        layers=[_finish(raw) for raw in result.rows],
        totals=_totals(model, state, inputs, result, optimizer),
        min_input_size=getattr(model, "min_input_size", None),
        uncounted_ops=dict(result.uncounted_ops),
        module_types={path: type(m).__name__ for path, m in result.modules},
        module_names={path: display(path) or type(m).__name__ for path, m in result.modules},
        inputs=inputs.describe(),
        field_unknown_ops=dict(result.field_unknown_ops),
        operators={
            name: {"calls": c[0], "macs": c[1], "flops": c[2], "activations": c[3]}
            for name, c in result.op_costs.items()
        },
    )
    return analysis, result


def _trace_eval(
    model: nn.Module,
    name: str,
    inputs: ExampleInputs,
    state: dict[str, torch.Tensor] | None,
    names: dict[str, str],
    restore_mode: bool,
    tracer_class: type[Tracer] = Tracer,
) -> TraceResult:
    """Trace ``model`` in eval mode; a failure caused by an input it cannot take becomes an
    InputError that names the collapsing layer and, where one exists, an input that works."""
    was_training = model.training and restore_mode
    if any(module.training for module in model.modules()):
        model.eval()
    try:
        return trace(model, inputs.args, inputs.kwargs, state, names, tracer_class)
    except InputError as exc:
        if "got" in str(exc) and "channel" not in str(exc):
            raise _cannot_run(model, name, inputs, str(exc)) from None
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        if isinstance(exc, (TypeError, IndexError)) and _raised_in_analyser(exc):
            raise  # a defect of the analyser itself, not of the model or its input: keep the traceback
        only = inputs.args[0] if len(inputs.args) == 1 and not inputs.kwargs else None
        where = find_collapsing_layer(model, tuple(only.shape)) if only is not None and only.dim() == 4 else ""
        if where:
            size = "×".join(map(str, only.shape[1:]))
            raise _cannot_run(model, name, inputs, f"{name} cannot run on input {size}: {where}") from None
        text = str(exc).strip().splitlines()
        raise _cannot_run(model, name, inputs, text[0] if text else type(exc).__name__) from None
    finally:
        if was_training:
            model.train()


_ANALYSER_DIR = Path(__file__).resolve().parent


def _raised_in_analyser(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is in the analyser's own code.

    A TypeError or IndexError raised by the model's forward (a wrong number of inputs, an input of
    the wrong kind) or by PyTorch on its behalf is the user's input problem; one raised inside
    this package's tracer, rules or receptive-field code is our defect and must not be reported
    as "the model cannot run on this input".
    """
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().parent == _ANALYSER_DIR


def _totals(
    model: nn.Module,
    state: dict[str, torch.Tensor] | None,
    inputs: ExampleInputs,
    result: TraceResult,
    optimizer: str,
) -> dict[str, int]:
    """Whole-network figures: counts summed over the rows, parameters, and the memory estimate."""
    named_params = list(model.named_parameters())
    real_params = [p for _, p in named_params]
    if state is not None:
        param_keys = {k for k, _ in named_params}
        params = [t for k, t in state.items() if k in param_keys]
        buffers = [t for k, t in state.items() if k not in param_keys]
    else:
        params, buffers = real_params, list(model.buffers())
    rows = result.rows
    tensors = inputs.tensors()
    float_dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    totals = {
        "params": sum(p.numel() for p in real_params),
        "trainable_params": sum(p.numel() for p in real_params if p.requires_grad),
        "fixed_params": sum(p.numel() for p in real_params if not p.requires_grad),
        "unused_params": result.unused_params,
        "macs": sum(r.macs for r in rows),
        "flops": sum(r.flops for r in rows),
        "training_flops": sum(r.flops + r.backward_flops for r in rows),
        "activations": sum(r.activations for r in rows),
        "activation_bytes": sum(r.activation_bytes for r in rows),
        "input_activations": sum(t.numel() for t in tensors),
        "input_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "network_depth": result.network_depth,
    }
    totals.update(_training_memory(params, buffers, result, float_dtype, optimizer))
    return totals


def _training_memory(
    params: list[torch.Tensor], buffers: list[torch.Tensor], result: TraceResult, dtype: torch.dtype, optimizer: str
) -> dict[str, int]:
    """Parameters + gradients + optimiser state + activations saved for backward (docs/analysis.md)."""
    trainable_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    buffer_bytes = sum(b.numel() * b.element_size() for b in buffers)
    # Training-mode dropout keeps a 1-byte mask and creates a new output the next layer saves.
    saved = result.saved_bytes + sum(_dropout_training_bytes(raw, dtype) for raw in result.rows)
    opt_bytes = optimizer_state_bytes(trainable_bytes, optimizer)
    return {
        "param_bytes": param_bytes,
        "buffer_bytes": buffer_bytes,
        "saved_activation_bytes": saved,
        "gradient_bytes": trainable_bytes,
        "optimizer_state_bytes": opt_bytes,
        "training_memory_bytes": param_bytes + buffer_bytes + trainable_bytes + opt_bytes + saved,
    }


def _dropout_training_bytes(raw: RawRow, dtype: torch.dtype) -> int:
    """Eval-mode dropout runs no op; in training it keeps a bool mask and a new output."""
    if not raw.module_attrs.get("dropout") or not raw.output_shape:
        return 0
    elements = math.prod(raw.output_shape)
    return elements * (1 + torch.empty((), dtype=dtype).element_size())


def _finish(raw: RawRow) -> LayerRow:
    # A recurrent module runs matrix products; its own settings describe it better than "FC".
    spec = raw.spec[1] if raw.spec and "rnn" not in raw.module_attrs else _module_spec(raw)
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
        receptive_field=None if field is UNKNOWN else _whole(max(field[0].r, field[1].r)) if field else 0,
        jump=None if field is UNKNOWN else _number(max(field[0].j, field[1].j)) if field else 0,
        start=float(field[0].start) if field and field is not UNKNOWN else 0.0,
        depth=raw.depth,
        path=raw.path,
    )


def _number(value: float) -> float | int:
    """An int when whole (a jump of 2), else the fraction (0.5 after a ×2 upsampling)."""
    value = round(value, 6)
    return int(value) if value == int(value) else value


def _whole(value: float) -> int:
    """A field size in whole input pixels: after an upsampling the recursion runs at a fractional
    jump and its value is rounded up to the pixels a field touches."""
    return math.ceil(round(value, 6))


def _module_spec(raw: RawRow) -> str:
    attrs = raw.module_attrs
    if "rnn" in attrs:
        return attrs["rnn"]
    if "dropout" in attrs:
        return f"dropout {attrs['dropout']:g}"
    if "lrn_size" in attrs:
        return f"LRN, size {attrs['lrn_size']}"
    return raw.type
