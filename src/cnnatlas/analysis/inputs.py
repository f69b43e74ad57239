"""The example inputs of an analysis, as torchinfo takes them: shapes, tensors, or keywords.

* ``input_size=(3, 224, 224)`` — one input; the batch dimension is prepended.
* ``input_size=[(3, 224, 224), (10,)]`` — several positional inputs (a two-input model, an
  image and a vector); ``input_dtypes=[torch.float32, torch.long]`` gives each its dtype
  (token ids are ``long``).
* ``input_data=tensor`` / ``(t1, t2)`` / ``{"x": t1, "mask": t2}`` — example tensors, whole
  shapes (batch included), positional or by keyword; only their shapes and dtypes are used:
  the analysis runs on meta stand-ins and never reads their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from cnnatlas.errors import InputError

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float": torch.float32,
    "float32": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "long": torch.long,
    "int64": torch.long,
    "int": torch.int32,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"long"`` → ``torch.int64`` (also ``"float16"``, ``"bfloat16"``, ``"bool"`` …)."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).lower().replace("torch.", "")
    if key not in DTYPE_NAMES:
        raise InputError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[key]


@dataclass(frozen=True)
class ExampleInputs:
    """Meta tensors to call the model with: ``model(*args, **kwargs)``."""

    args: tuple[Tensor, ...]
    kwargs: dict[str, Tensor] = field(default_factory=dict)

    def tensors(self) -> list[Tensor]:
        return [*self.args, *self.kwargs.values()]

    def describe(self) -> list[dict[str, Any]]:
        """One entry per input: ``{"name": "x0" | keyword, "shape": [...], "dtype": "float32"}``."""
        named = [(f"input{i}" if len(self.args) > 1 else "input", t) for i, t in enumerate(self.args)]
        named += list(self.kwargs.items())
        return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for n, t in named]


def example_inputs(
    input_size: Sequence[int] | Sequence[Sequence[int]] | None,
    input_data: Tensor | Sequence[Tensor] | Mapping[str, Tensor] | None,
    input_dtypes: torch.dtype | str | Sequence[torch.dtype | str] | None,
    batch: int,
    dtype: torch.dtype,
    default_size: Sequence[int],
) -> ExampleInputs:
    """Meta stand-ins for the inputs described by one of ``input_data`` or ``input_size``
    (``default_size`` when neither is given)."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    if input_data is not None:
        if input_size is not None:
            raise InputError("give either input_size (shapes) or input_data (example tensors), not both")
        return _from_tensors(input_data)
    shapes = _shapes(input_size if input_size is not None else default_size)
    dtypes = _dtypes(input_dtypes, len(shapes), dtype)
    return ExampleInputs(
        args=tuple(torch.empty((batch, *shape), device="meta", dtype=d) for shape, d in zip(shapes, dtypes))
    )


def _shapes(input_size: Any) -> list[tuple[int, ...]]:
    """One shape or a list of shapes, each a sequence of positive ints (no batch dimension)."""
    if isinstance(input_size, (list, tuple)) and input_size and all(isinstance(v, (list, tuple)) for v in input_size):
        candidates = list(input_size)
    else:
        candidates = [input_size]
    shapes = []
    for shape in candidates:
        if not isinstance(shape, (list, tuple, torch.Size)) or not all(_is_int(v) for v in shape):
            raise InputError(f"an input size must be a sequence of integers such as (3, 224, 224), got {shape!r}")
        if any(int(v) < 1 for v in shape):
            raise InputError(f"input sizes must be positive, got {tuple(shape)!r}")
        shapes.append(tuple(int(v) for v in shape))
    return shapes


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dtypes(input_dtypes: Any, count: int, default: torch.dtype) -> list[torch.dtype]:
    if input_dtypes is None:
        return [default] * count
    if isinstance(input_dtypes, (str, torch.dtype)):
        return [parse_dtype(input_dtypes)] * count
    dtypes = [parse_dtype(d) for d in input_dtypes]
    if len(dtypes) == 1:
        return dtypes * count
    if len(dtypes) != count:
        raise InputError(f"{len(dtypes)} input dtypes for {count} inputs; give one, or one per input")
    return dtypes


def _meta(tensor: Any, where: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise InputError(f"input_data {where} must be a tensor, got {type(tensor).__name__}")
    return torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")


def _from_tensors(data: Any) -> ExampleInputs:
    if isinstance(data, Tensor):
        return ExampleInputs(args=(_meta(data, "item"),))
    if isinstance(data, Mapping):
        return ExampleInputs(args=(), kwargs={str(k): _meta(v, f"[{k!r}]") for k, v in data.items()})
    if isinstance(data, (list, tuple)):
        return ExampleInputs(args=tuple(_meta(t, f"[{i}]") for i, t in enumerate(data)))
    raise InputError(f"input_data must be a tensor, a list of tensors or a dict of them, got {type(data).__name__}")
