"""Receptive field size, jump and start, propagated on tensors through the traced ATen ops.

Per spatial axis the recursion of docs/analysis.md (Araujo et al., "Computing receptive fields of
convolutional neural networks", Distill 2019)::

    j_out = j_in · s
    r_out = r_in + (k − 1) · d · j_in
    start_out = start_in + ((k − 1)/2 · d − p) · j_in

from r = j = 1, start = 0.5 at the input. Each tensor carries its (r, j, start) for both axes
in a side table keyed by tensor identity; convolutions and pools apply the recursion, ops
that join paths (add, cat, mul …) take the maximum over their inputs — so Inception,
residual, dense and fractal graphs get the largest field over all paths. A view that folds
the spatial axes into features (flatten before an FC layer) acts like a convolution whose
kernel is the whole map, which is what an FC layer on a feature map is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from torch import Tensor

from cnnatlas.analysis.rules import _pair, adaptive_regions, op_name


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis: size ``r``, jump ``j`` (input pixels between adjacent
    outputs), ``start`` (centre of the first output's field, in input pixels)."""

    r: float = 1.0
    j: float = 1.0
    start: float = 0.5

    def step(self, kernel: int, stride: float, padding: int = 0, dilation: int = 1) -> "Axis":
        return Axis(
            r=self.r + (kernel - 1) * dilation * self.j,
            j=self.j * stride,
            start=self.start + ((kernel - 1) / 2 * dilation - padding) * self.j,
        )


Field = tuple[Axis, Axis]  # (rows, columns)
INPUT_FIELD: Field = (Axis(), Axis())


def merge(fields: Iterable[Field]) -> Field | None:
    """Join of paths: the largest field (and jump) per axis; start follows the largest field."""
    fields = list(fields)
    if not fields:
        return None
    merged = []
    for axis in range(2):
        widest = max((f[axis] for f in fields), key=lambda a: (a.r, a.j))
        merged.append(Axis(widest.r, max(f[axis].j for f in fields), widest.start))
    return merged[0], merged[1]


def _spatial(t: Tensor) -> tuple[int, int]:
    return (int(t.shape[-2]), int(t.shape[-1])) if t.dim() >= 4 else (1, 1)


def _global(field: Field, size: tuple[int, int]) -> Field:
    """An op whose output sees the whole size_h × size_w map (global pooling, flatten → FC)."""
    return field[0].step(size[0], size[0]), field[1].step(size[1], size[1])


class ReceptiveFieldTable:
    """Side table tensor → Field, filled op by op while the tracer runs."""

    def __init__(self) -> None:
        self._fields: dict[int, Field] = {}
        self._keep_alive: list[Tensor] = []  # ids stay unique while the trace runs

    def set(self, tensor: Tensor, field: Field) -> None:
        self._fields[id(tensor)] = field
        self._keep_alive.append(tensor)

    def get(self, tensor: Any) -> Field | None:
        return self._fields.get(id(tensor)) if isinstance(tensor, Tensor) else None

    def propagate(
        self, func: Any, args: tuple, kwargs: dict, out: Any, in_tensors: list[Tensor], out_tensors: list[Tensor]
    ) -> None:
        """Give ``out_tensors`` (the tensors of ``out``) the field ``func`` makes of its inputs'
        (``in_tensors``, the tensors among ``args``/``kwargs``)."""
        fields = self._fields
        inputs = [fields[id(t)] for t in in_tensors if id(t) in fields]
        if not inputs:
            return
        field = self._output_field(func, args, kwargs, out, inputs)
        if field is None:
            return
        for tensor in out_tensors:
            self.set(tensor, field)

    def _output_field(self, func: Any, args: tuple, kwargs: dict, out: Any, inputs: list[Field]) -> Field | None:
        name = op_name(func)
        x = args[0] if args and isinstance(args[0], Tensor) else None
        source = self.get(x)
        if name == "convolution" and source is not None and args[1].dim() == 4 and not args[6]:
            kernel = args[1].shape[-2:]
            stride, padding, dilation = _pair(args[3], 1), _pair(args[4], 0), _pair(args[5], 1)
            return tuple(  # type: ignore[return-value]
                source[a].step(int(kernel[a]), stride[a], padding[a], dilation[a]) for a in range(2)
            )
        if (
            name in ("max_pool2d_with_indices", "max_pool2d", "avg_pool2d", "avg_pool3d", "max_pool3d_with_indices")
            and source is not None
        ):
            kernel = _pair(args[1], 1)
            stride = _pair(args[2] if len(args) > 2 else None, 0)
            stride = kernel if stride == (0, 0) else stride
            padding = _pair(args[3] if len(args) > 3 else 0, 0)
            dilation = _pair(args[4], 1) if name.startswith("max") and len(args) > 4 else (1, 1)
            return tuple(  # type: ignore[return-value]
                source[a].step(kernel[a], stride[a], padding[a], dilation[a]) for a in range(2)
            )
        if name in ("_adaptive_avg_pool2d", "adaptive_max_pool2d") and source is not None and x is not None:
            result = []
            out_size = _spatial(out[0] if isinstance(out, tuple) else out)
            for a, (n_in, n_out) in enumerate(zip(_spatial(x), out_size)):
                # Exact when n_in is a multiple of n_out; otherwise the widest region and the
                # mean stride, an approximation (documented in docs/analysis.md).
                result.append(source[a].step(max(adaptive_regions(n_in, n_out)), n_in / n_out))
            return result[0], result[1]
        if name in ("mean", "sum", "amax") and source is not None and x is not None and x.dim() >= 4:
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            dims = (
                [int(d) % x.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
                if dims is not None
                else list(range(x.dim()))
            )
            if x.dim() - 1 in dims and x.dim() - 2 in dims:
                return _global(source, _spatial(x))
            return source
        if name == "slice" and source is not None and x is not None and x.dim() >= 4:
            dim = int(args[1]) % x.dim() if len(args) > 1 else 0
            start = int(args[2] or 0) if len(args) > 2 else 0
            step = int(args[4]) if len(args) > 4 else 1
            axis = dim - (x.dim() - 2)
            if axis in (0, 1):
                # x[..., ::s] subsamples like a 1×1 convolution with stride s (option-A shortcuts).
                moved = list(source)
                moved[axis] = Axis(
                    source[axis].r, source[axis].j * step, source[axis].start + max(start, 0) * source[axis].j
                )
                return moved[0], moved[1]
            return source
        if name == "constant_pad_nd" and source is not None and x is not None:
            pad = [int(p) for p in args[1]]
            before_w = pad[0] if len(pad) > 0 else 0
            before_h = pad[2] if len(pad) > 2 else 0
            return (
                Axis(source[0].r, source[0].j, source[0].start - before_h * source[0].j),
                Axis(source[1].r, source[1].j, source[1].start - before_w * source[1].j),
            )
        if name in ("view", "_unsafe_view", "reshape", "flatten") and source is not None and x is not None:
            result_tensor = out if isinstance(out, Tensor) else None
            if (
                result_tensor is not None
                and _spatial(x) != (1, 1)
                and _spatial(result_tensor) == (1, 1)
                and result_tensor.dim() < 4
            ):
                return _global(source, _spatial(x))
            return source
        return merge(inputs)
