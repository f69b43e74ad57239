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

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
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


class _Unknown:
    """The field of a tensor that went through an op whose effect on the field is not known:
    shown as "?" (never a guessed number), and so is everything computed from it."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()

# Ops that do not move pixels: each output element reads the same position of its inputs
# (element-wise maths, normalisation with fixed statistics, joins along channels, copies).
_KEEPS_FIELD = frozenset(
    """cat stack clone _to_copy copy alias detach lift_fresh lift_fresh_copy native_dropout bernoulli
    _native_batch_norm_legit_no_training _native_batch_norm_legit native_batch_norm native_group_norm
    native_layer_norm _softmax _log_softmax where masked_fill fill zero empty_like zeros_like ones_like
    native_channel_shuffle channel_shuffle pixel_shuffle_channels""".split()
)
# Ops that rearrange dimensions: harmless while the two spatial axes stay the last two.
_REARRANGES = frozenset(
    """view _unsafe_view reshape flatten unflatten permute transpose t unsqueeze squeeze expand select
    unbind split split_with_sizes unsafe_split unsafe_split_with_sizes chunk narrow index_select repeat
    as_strided""".split()
)
_NEAREST = {"upsample_nearest2d": False, "_upsample_nearest_exact2d": True}  # op → "exact" variant
_INTERPOLATING = {"upsample_bilinear2d": 1, "upsample_bicubic2d": 2}  # op → taps each side of the sample
_PADS = frozenset(("constant_pad_nd", "reflection_pad2d", "replication_pad2d"))
_POINTWISE_CACHE: dict[Any, bool] = {}


def _pointwise(func: Any) -> bool:
    known = _POINTWISE_CACHE.get(func)
    if known is None:
        known = _POINTWISE_CACHE[func] = torch.Tag.pointwise in getattr(func, "tags", ())
    return known


def _resample(field: Axis, n_out: int, step: float, taps: Callable[[int], tuple[int, int]]) -> Axis:
    """An axis resampled to n_out samples ``step`` input pixels apart, output o reading inputs taps(o) = (lo, hi):
    the field grows by the widest span of taps, the jump is the sampling step, and the first
    output's field is centred on the middle of its taps."""
    widest = max(hi - lo for lo, hi in (taps(o) for o in range(n_out)))
    lo0, hi0 = taps(0)
    return Axis(field.r + widest * field.j, field.j * step, field.start + (lo0 + hi0) / 2 * field.j)


def _sampling_step(n_in: int, n_out: int, scale: float | None, align_corners: bool = False) -> float:
    """Input pixels between adjacent output samples (ATen's area_pixel_compute_scale)."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return scale if scale else n_in / n_out


def _nearest_taps(n_in: int, step: float, exact: bool) -> Callable[[int], tuple[int, int]]:
    def taps(o: int) -> tuple[int, int]:
        # ATen: src = floor(o·scale) ("nearest") or floor((o + ½)·scale) ("nearest-exact").
        i = min(math.floor((o + (0.5 if exact else 0.0)) * step), n_in - 1)
        return i, i

    return taps


def _interpolating_taps(n_in: int, step: float, align_corners: bool, reach: int) -> Callable[[int], tuple[int, int]]:
    """Inputs with a non-zero weight for output o: bilinear (reach 1) reads floor(src) and the
    next pixel, bicubic (reach 2) two either side; a sample that falls on a pixel reads only it."""

    def taps(o: int) -> tuple[int, int]:
        src = o * step if align_corners else (o + 0.5) * step - 0.5
        if reach == 1 and not align_corners:
            src = max(src, 0.0)  # bilinear clamps negative coordinates, bicubic does not
        base = math.floor(src)
        if src == base:
            lo = hi = base
        else:
            lo, hi = base - (reach - 1), base + reach
        return max(lo, 0), min(hi, n_in - 1)

    return taps


def _transposed(field: Axis, kernel: int, stride: int, padding: int, dilation: int) -> Axis:
    """Transposed convolution: output o sums inputs i with i·s + t·d = o + p (taps t < k), so the
    jump divides by s and the field grows by the widest span of such i (Araujo et al.'s
    recursion with a fractional stride 1/s)."""
    widest = 0
    for residue in range(stride):
        hits = [(residue - t * dilation) // stride for t in range(kernel) if (residue - t * dilation) % stride == 0]
        if hits:
            widest = max(widest, max(hits) - min(hits))
    first = [(padding - t * dilation) / stride for t in range(kernel) if (padding - t * dilation) % stride == 0]
    centre = (min(first) + max(first)) / 2 if first else (padding - (kernel - 1) * dilation / 2) / stride
    return Axis(field.r + widest * field.j, field.j / stride, field.start + centre * field.j)


class ReceptiveFieldTable:
    """Side table tensor → Field (or UNKNOWN), filled op by op while the tracer runs."""

    def __init__(self) -> None:
        self._fields: dict[int, Any] = {}
        self._keep_alive: list[Tensor] = []  # ids stay unique while the trace runs
        self.unknown_ops: dict[str, int] = {}  # ops whose effect on the field is not known → calls

    def set(self, tensor: Tensor, field: Any) -> None:
        self._fields[id(tensor)] = field
        self._keep_alive.append(tensor)

    def get(self, tensor: Any) -> Any:
        """The tensor's Field, UNKNOWN, or None (no 2-D spatial path leads to it)."""
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
        if any(f is UNKNOWN for f in inputs):
            field: Any = UNKNOWN
        elif func._overloadpacket.__name__ == "copy_" and getattr(args[0], "_base", None) is not None:
            # Writing a map into part of another tensor (circular padding assembles its output
            # this way): which pixels land where is not visible op by op, so the whole is "?".
            self.set(args[0]._base, self._unknown("copy_ into part of a tensor (e.g. circular padding)"))
            field = UNKNOWN
        else:
            field = self._output_field(func, args, kwargs, out, inputs, in_tensors)
        if field is None:
            return
        for tensor in out_tensors:
            self.set(tensor, field)

    def _unknown(self, name: str) -> Any:
        self.unknown_ops[name] = self.unknown_ops.get(name, 0) + 1
        return UNKNOWN

    def _output_field(
        self, func: Any, args: tuple, kwargs: dict, out: Any, inputs: list[Field], in_tensors: list[Tensor]
    ) -> Field | Any:
        name = op_name(func)
        x = args[0] if args and isinstance(args[0], Tensor) else None
        source = self.get(x)
        result_tensor = out if isinstance(out, Tensor) else (out[0] if isinstance(out, (tuple, list)) and out else None)
        if name == "convolution" and source is not None and args[1].dim() == 4:
            kernel = args[1].shape[-2:]
            stride, padding, dilation = _pair(args[3], 1), _pair(args[4], 0), _pair(args[5], 1)
            if args[6]:  # transposed
                return tuple(  # type: ignore[return-value]
                    _transposed(source[a], int(kernel[a]), stride[a], padding[a], dilation[a]) for a in range(2)
                )
            return tuple(  # type: ignore[return-value]
                source[a].step(int(kernel[a]), stride[a], padding[a], dilation[a]) for a in range(2)
            )
        if name in _NEAREST and source is not None and x is not None:
            scales = [args[2] if len(args) > 2 else None, args[3] if len(args) > 3 else None]
            axes = []
            for a, (n_in, n_out) in enumerate(zip(_spatial(x), _spatial(result_tensor))):
                step = _sampling_step(n_in, n_out, _inverse(scales[a]))
                axes.append(_resample(source[a], n_out, step, _nearest_taps(n_in, step, _NEAREST[name])))
            return axes[0], axes[1]
        if name in _INTERPOLATING and source is not None and x is not None:
            align = bool(args[2]) if len(args) > 2 else False
            scales = [args[3] if len(args) > 3 else None, args[4] if len(args) > 4 else None]
            axes = []
            for a, (n_in, n_out) in enumerate(zip(_spatial(x), _spatial(result_tensor))):
                step = _sampling_step(n_in, n_out, _inverse(scales[a]), align)
                taps = _interpolating_taps(n_in, step, align, _INTERPOLATING[name])
                axes.append(_resample(source[a], n_out, step, taps))
            return axes[0], axes[1]
        if name == "pixel_shuffle" and source is not None:
            factor = int(args[1])  # output o reads input o // r: one pixel, at a jump of j / r
            return tuple(Axis(source[a].r, source[a].j / factor, source[a].start) for a in range(2))  # type: ignore[return-value]
        if name == "pixel_unshuffle" and source is not None:
            factor = int(args[1])  # an r×r block folded into channels: an r×r window, stride r
            return tuple(source[a].step(factor, factor) for a in range(2))  # type: ignore[return-value]
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
                # The widest region (exact) and the mean stride (exact when n_in is a multiple of n_out).
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
            if x.dim() - 1 in dims or x.dim() - 2 in dims:
                return self._unknown(f"{name} over one spatial axis")
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
        if name in _PADS and source is not None and x is not None:
            # Every padding mode shifts the map by the padding before; reflect/replicate fill the
            # border from inside the map, the field's size and step stay the recursion's.
            pad = [int(p) for p in args[1]]
            before_w = pad[0] if len(pad) > 0 else 0
            before_h = pad[2] if len(pad) > 2 else 0
            return (
                Axis(source[0].r, source[0].j, source[0].start - before_h * source[0].j),
                Axis(source[1].r, source[1].j, source[1].start - before_w * source[1].j),
            )
        if name in ("index", "_unsafe_index") and source is not None and x is not None:
            indices = list(args[1]) if len(args) > 1 else []
            if all(i is None for i in indices[x.dim() - 2 :]):
                return source  # picks channels (LeNet-5's C3 connection table), not pixels
        if name in _KEEPS_FIELD or _pointwise(func):
            return merge(inputs)
        if not any(t.dim() >= 4 and _spatial(t) != (1, 1) and id(t) in self._fields for t in in_tensors):
            return merge(inputs)  # only fields that already cover the whole map meet here
        if name in _REARRANGES and x is not None and source is not None:
            if (
                name in ("view", "_unsafe_view", "reshape", "flatten")
                and result_tensor is not None
                and _spatial(result_tensor) == (1, 1)
                and result_tensor.dim() < 4
            ):
                return _global(source, _spatial(x))  # folding the map into features: an FC sees all of it
            outs = [result_tensor] if result_tensor is not None else []
            if isinstance(out, (tuple, list)):
                outs = [t for t in out if isinstance(t, Tensor)]
            if outs and all(t.dim() >= 4 and t.shape[-2:] == x.shape[-2:] for t in outs):
                return source
        return self._unknown(name)


def _inverse(scale: Any) -> float | None:
    """ATen passes the user's scale factor (output/input); the sampling step is its inverse."""
    return 1.0 / float(scale) if scale else None
