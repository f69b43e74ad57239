"""Cost rules, one per ATen op type: MACs, FLOPs and the notes-style spec string.

The tracer (:mod:`cnnatlas.analysis.trace`) sees every ATen op a forward pass executes and
asks this module three questions about it:

* **MACs** — taken from ``torch.utils.flop_counter``'s own formula registry (convolution,
  mm, addmm, bmm, baddbmm …) and halved, so that our total is *by construction* the same
  number as ``FlopCounterMode`` forward FLOPs ÷ 2. Bias is excluded, as in the ResNet, VGG
  and MobileNet papers.
* **FLOPs** — ``2·MACs`` plus the rule for the op's other arithmetic (bias add, normalisation,
  activation, pooling, element-wise joins); data movement (concatenation, views, padding,
  copies) costs nothing. The rule table is :data:`FLOP_RULES` and is reproduced in
  docs/analysis.md.
* **spec** — a short description in the lecture notes' style ("96 11×11 filters, stride 4,
  pad 0", "3×3 max pool, stride 2", "FC 4096").
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten


def numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def op_tensors(args: Sequence[Any], kwargs: dict | None = None) -> list[Tensor]:
    """The tensors among an ATen op's arguments (or its outputs, passed as a sequence).

    ATen schemas hold tensors directly or in one flat list (``cat``'s ``Tensor[]``, ``index``'s
    ``Tensor?[]``), never deeper, so one level of lists is searched."""
    found: list[Tensor] = []
    for value in (*args, *kwargs.values()) if kwargs else args:
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(item for item in value if isinstance(item, Tensor))
    return found


def out_tensors(out: Any) -> list[Tensor]:
    """The tensors an ATen op returned (one tensor, or a tuple/list of them)."""
    if isinstance(out, Tensor):
        return [out]
    return op_tensors(out) if isinstance(out, (list, tuple)) else []


def first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def _pair(value: Any, default: int) -> tuple[int, int]:
    """An int or a list of 1–3 ints as (h, w): pooling ops take the last two entries, so the
    same code reads 2-D pools and LRN's 3-D pool over (channel, h, w)."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return default, default
    if isinstance(value, int):
        return value, value
    values = [int(v) for v in value]
    return (values[-2], values[-1]) if len(values) >= 2 else (values[0], values[0])


# -- MACs ------------------------------------------------------------------------------------------
def macs_of(func: Any, args: tuple, kwargs: dict, out: Any) -> int:
    """Multiply-accumulates of one op: torch's FLOP formula ÷ 2 (every formula there counts
    a multiply and an add per MAC), 0 for ops it has no formula for."""
    formula = flop_registry.get(func._overloadpacket)
    if formula is None:
        return 0
    shape_formula = getattr(formula, "__wrapped__", None)
    if shape_formula is None:
        return int(formula(*args, **kwargs, out_val=out)) // 2
    # Registered formulas are wrapped to map tensors to shapes with a pytree walk, which costs
    # more than the rest of our per-op work; the same mapping done directly gives the same call.
    shape_kwargs = {key: _shapes(value) for key, value in kwargs.items()}
    return int(shape_formula(*_shapes(args), out_shape=_shapes(out), **shape_kwargs)) // 2


def _shapes(value: Any) -> Any:
    """``torch.utils.flop_counter.get_shape`` over nested tuples/lists: tensors → their shapes."""
    if isinstance(value, Tensor):
        return value.shape
    if isinstance(value, list):
        return [_shapes(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_shapes(item) for item in value)
    return value


# -- FLOPs -----------------------------------------------------------------------------------------
def _out_numel(args: tuple, kwargs: dict, out: Any) -> int:
    tensor = first_tensor(out)
    return tensor.numel() if tensor is not None else 0


def _conv_flops(args: tuple, kwargs: dict, out: Any) -> int:
    # The bias add is one add per output element; the 2·MACs part is added by flops_of.
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return _out_numel(args, kwargs, out) if bias is not None else 0


def _max_pool_flops(args: tuple, kwargs: dict, out: Any) -> int:
    kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
    k = math.prod(int(v) for v in (kernel if isinstance(kernel, (list, tuple)) else [kernel, kernel]))
    return (k - 1) * _out_numel(args, kwargs, out)  # k−1 comparisons per output


def _avg_pool_flops(args: tuple, kwargs: dict, out: Any) -> int:
    kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
    k = math.prod(int(v) for v in (kernel if isinstance(kernel, (list, tuple)) else [kernel, kernel]))
    return k * _out_numel(args, kwargs, out)  # k−1 additions and one division per output


def adaptive_regions(size_in: int, size_out: int) -> list[int]:
    """Region lengths of adaptive pooling along one axis (PyTorch's start/end rule)."""
    return [math.ceil((i + 1) * size_in / size_out) - (i * size_in) // size_out for i in range(size_out)]


def _adaptive_flops(comparisons: bool) -> Callable[[tuple, dict, Any], int]:
    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        x = args[0]
        tensor = first_tensor(out)
        if tensor is None or x.dim() < 3:
            return 0
        planes = numel(tensor.shape[:-2])
        rows = adaptive_regions(x.shape[-2], tensor.shape[-2])
        cols = adaptive_regions(x.shape[-1], tensor.shape[-1])
        area = sum(rows) * sum(cols)  # Σ over output cells of region height × width
        if comparisons:
            return planes * (area - len(rows) * len(cols))
        return planes * area

    return rule


def _input_numel(args: tuple, kwargs: dict, out: Any) -> int:
    # mean: n−1 additions and one division per output = one FLOP per input element.
    return args[0].numel()


def _sum_flops(args: tuple, kwargs: dict, out: Any) -> int:
    return args[0].numel() - _out_numel(args, kwargs, out)


def _per_output(flops_per_element: int) -> Callable[[tuple, dict, Any], int]:
    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        return flops_per_element * _out_numel(args, kwargs, out)

    return rule


def _zero(args: tuple, kwargs: dict, out: Any) -> int:
    return 0


# Op name (overload packet, trailing "_" of in-place variants stripped) → (rule, description).
# The descriptions are the rule table of docs/analysis.md.
FLOP_RULES: dict[str, tuple[Callable[[tuple, dict, Any], int], str]] = {
    "convolution": (_conv_flops, "2·MACs + 1 per output element if there is a bias"),
    "addmm": (_per_output(1), "2·MACs + 1 per output element (the bias add)"),
    "mm": (_zero, "2·MACs"),
    "bmm": (_zero, "2·MACs"),
    "baddbmm": (_per_output(1), "2·MACs + 1 per output element"),
    "_native_batch_norm_legit_no_training": (
        _per_output(2),
        "2 per element: inference batch norm is y = a·x + b with a, b folded from γ, β, μ, σ",
    ),
    "_native_batch_norm_legit": (_per_output(2), "2 per element (as above; batch statistics not counted)"),
    "native_batch_norm": (_per_output(2), "2 per element"),
    "relu": (_per_output(1), "1 per element"),
    "threshold": (_per_output(1), "1 per element"),
    "leaky_relu": (_per_output(1), "1 per element"),
    "hardtanh": (_per_output(1), "1 per element (ReLU6)"),
    "clamp": (_per_output(1), "1 per element"),
    "clamp_min": (_per_output(1), "1 per element"),
    "sigmoid": (_per_output(1), "1 per element"),
    "tanh": (_per_output(1), "1 per element"),
    "elu": (_per_output(1), "1 per element"),
    "gelu": (_per_output(1), "1 per element"),
    "silu": (_per_output(1), "1 per element"),
    "hardswish": (_per_output(1), "1 per element"),
    "add": (_per_output(1), "1 per output element (residual joins, LRN's +k)"),
    "sub": (_per_output(1), "1 per output element"),
    "mul": (_per_output(1), "1 per output element"),
    "div": (_per_output(1), "1 per output element"),
    "pow": (_per_output(1), "1 per output element"),
    "exp": (_per_output(1), "1 per element"),
    "log": (_per_output(1), "1 per element"),
    "sqrt": (_per_output(1), "1 per element"),
    "rsqrt": (_per_output(1), "1 per element"),
    "neg": (_per_output(1), "1 per element"),
    "abs": (_per_output(1), "1 per element"),
    "native_dropout": (_per_output(1), "1 per element (training only; eval dropout runs no op)"),
    "_softmax": (_per_output(3), "3 per element: exp, sum, divide"),
    "_log_softmax": (_per_output(3), "3 per element: exp, sum, log/subtract"),
    "max_pool2d_with_indices": (_max_pool_flops, "k_h·k_w − 1 comparisons per output element"),
    "max_pool2d": (_max_pool_flops, "k_h·k_w − 1 comparisons per output element"),
    "max_pool3d_with_indices": (_max_pool_flops, "k − 1 comparisons per output element"),
    "avg_pool2d": (_avg_pool_flops, "k_h·k_w per output element (k−1 adds + 1 divide)"),
    "avg_pool3d": (_avg_pool_flops, "k per output element (LRN's window sum + divide)"),
    "_adaptive_avg_pool2d": (_adaptive_flops(False), "Σ region sizes: 1 per input element of each region"),
    "adaptive_max_pool2d": (_adaptive_flops(True), "Σ (region size − 1) comparisons"),
    "mean": (_input_numel, "1 per input element (n−1 adds + 1 divide per output)"),
    "upsample_bilinear2d": (_per_output(7), "7 per output element: 4 weighted taps (4 multiplies, 3 adds)"),
    "upsample_bicubic2d": (_per_output(31), "31 per output element: 16 weighted taps (16 multiplies, 15 adds)"),
    "sum": (_sum_flops, "input elements − output elements"),
}

# Ops that move or allocate data but do no arithmetic: 0 FLOPs, and never reported as missing.
ZERO_COST_OPS = frozenset(
    """cat stack view _unsafe_view reshape alias detach lift_fresh t transpose permute expand
    unsqueeze squeeze select slice clone contiguous _to_copy copy constant_pad_nd empty
    empty_strided empty_like zeros zeros_like ones ones_like full fill zero new_zeros new_empty
    new_ones split split_with_sizes chunk unbind narrow index_select flatten unflatten as_strided
    rand rand_like randn bernoulli uniform normal scalar_tensor _local_scalar_dense
    index max_unpool2d channel_shuffle native_channel_shuffle pixel_shuffle pixel_unshuffle unsafe_split
    unsafe_split_with_sizes unsafe_chunk arange roll flip repeat tile gather _unsafe_index index_put where
    masked_fill embedding upsample_nearest2d _upsample_nearest_exact2d reflection_pad2d replication_pad2d
    slice_scatter select_scatter lift_fresh_copy _reshape_alias new_empty_strided full_like""".split()
)

# Ops that never get a functional row of their own: allocation and autograd bookkeeping.
NO_ROW_OPS = frozenset("empty empty_strided empty_like detach alias lift_fresh zero fill".split())


def register_flop_rule(
    targets: Any, *, description: str = "registered rule"
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register the FLOPs of an ATen operator cnnatlas has no rule for (or replace a rule).

    Mirrors ``torch.utils.flop_counter.register_flop_formula``: ``targets`` is an operator
    (``torch.ops.aten.upsample_bicubic2d``, an overload such as ``….default``, or its name) or a
    list of them, and the decorated formula receives the op's arguments with every tensor
    replaced by its shape, plus ``out_shape``, and returns the op's FLOPs::

        from cnnatlas.analysis import register_flop_rule

        @register_flop_rule(torch.ops.aten.grid_sampler_2d, description="8 per output element")
        def grid_sample_flops(input_shape, grid_shape, *args, out_shape, **kwargs) -> int:
            return 8 * math.prod(out_shape)

    The rule adds to 2·MACs (MACs stay those of torch's own formulas: convolutions and matrix
    products) and takes the op off the "ops without a FLOP rule" list. Rules are kept for the
    rest of the process, as torch's are; docs/analysis.md lists the built-in ones.
    """

    names = [_target_name(t) for t in (targets if isinstance(targets, (list, tuple)) else [targets])]

    def register(formula: Callable[..., int]) -> Callable[..., int]:
        def rule(args: tuple, kwargs: dict, out: Any) -> int:
            shape_kwargs = {key: _shapes(value) for key, value in kwargs.items()}
            return int(formula(*_shapes(args), out_shape=_shapes(out), **shape_kwargs))

        for name in names:
            FLOP_RULES[name] = (rule, description)
        return formula

    return register


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        name = target.split("::")[-1].split(".")[0]
    elif hasattr(target, "_overloadpacket"):
        name = target._overloadpacket.__name__
    elif hasattr(target, "_qualified_op_name"):
        name = target._qualified_op_name.split("::")[-1]
    else:
        raise TypeError(f"register_flop_rule takes ATen operators or their names, got {target!r}")
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


_NAME_CACHE: dict[Any, str] = {}


def op_name(func: Any) -> str:
    """ "relu_" → "relu": in-place and out-of-place variants share one rule."""
    name = _NAME_CACHE.get(func)
    if name is None:
        name = func._overloadpacket.__name__
        name = _NAME_CACHE[func] = name[:-1] if name.endswith("_") and not name.startswith("_") else name
    return name


def flops_of(func: Any, args: tuple, kwargs: dict, out: Any, macs: int) -> tuple[int, bool]:
    """(FLOPs, known): 2·MACs plus the op's rule; ``known`` is False for an op with no rule."""
    name = op_name(func)
    rule = FLOP_RULES.get(name)
    if rule is not None:
        return 2 * macs + int(rule[0](args, kwargs, out)), True
    return 2 * macs, macs > 0 or name in ZERO_COST_OPS


# -- backward ----------------------------------------------------------------------------------------
# The two matrix operands of each op torch has a MAC formula for (positions in the ATen call).
_MATRIX_OPERANDS: dict[str, tuple[int, int]] = {
    "convolution": (0, 1),
    "mm": (0, 1),
    "bmm": (0, 1),
    "addmm": (1, 2),
    "baddbmm": (1, 2),
}


def backward_flops(name: str, args: tuple, inputs: list[Tensor], macs: int, flops: int) -> int:
    """FLOPs of an op's backward pass, by the rule of docs/analysis.md: a convolution or matrix
    product costs its forward MACs again for each operand that needs a gradient (the input's
    gradient, the weights' gradient: 2 × forward for a hidden layer, 1 × for the first layer,
    whose input needs none); every other FLOP is charged once more if any input needs a
    gradient (an element-wise derivative costs about what the forward did)."""
    backward = 0
    if macs:
        positions = _MATRIX_OPERANDS.get(name)
        if positions is None:
            backward += 2 * (2 * macs)
        else:
            needing = sum(
                1 for i in positions if i < len(args) and isinstance(args[i], Tensor) and args[i].requires_grad
            )
            backward += 2 * macs * needing
    rest = flops - 2 * macs
    if rest and any(t.requires_grad for t in inputs):
        backward += rest
    return backward


# -- tensor aliasing ---------------------------------------------------------------------------------
_ALIAS_CACHE: dict[Any, bool] = {}


def returns_alias(func: Any) -> bool:
    """True for views and in-place ops: their output shares memory with an input, so it is
    not a new activation."""
    cached = _ALIAS_CACHE.get(func)
    if cached is None:
        cached = _ALIAS_CACHE[func] = any(ret.alias_info is not None for ret in func._schema.returns)
    return cached


# -- spec strings --------------------------------------------------------------------------------------
def _dims(h: int, w: int) -> str:
    return f"{h}×{w}"


def _scalar_or_pair(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"({values[0]}, {values[1]})"


def op_spec(func: Any, args: tuple, kwargs: dict, out: Any) -> tuple[int, str] | None:
    """(priority, spec) describing the op, or None; a row shows its highest-priority spec."""
    name = op_name(func)
    if name == "convolution":
        x, weight = args[0], args[1]
        if weight.dim() != 4:
            return 3, f"{weight.shape[0]} filters of size {'×'.join(map(str, weight.shape[2:]))}"
        stride, padding, dilation = _pair(args[3], 1), _pair(args[4], 0), _pair(args[5], 1)
        groups = int(args[8]) if len(args) > 8 else 1
        text = (
            f"{weight.shape[0]} {_dims(*weight.shape[2:])} filters, "
            f"stride {_scalar_or_pair(stride)}, pad {_scalar_or_pair(padding)}"
        )
        if dilation != (1, 1):
            text += f", dilation {_scalar_or_pair(dilation)}"
        if groups > 1:
            text += ", depthwise" if groups == x.shape[1] else f", {groups} groups"
        if args[6]:
            text += ", transposed"
        return 3, text
    if name in ("max_pool2d_with_indices", "max_pool2d", "avg_pool2d"):
        kernel = _pair(args[1], 1)
        stride = _pair(args[2] if len(args) > 2 else None, 0)
        stride = kernel if stride == (0, 0) else stride
        padding = _pair(args[3] if len(args) > 3 else 0, 0)
        kind = "avg" if name == "avg_pool2d" else "max"
        ceil_mode = (
            args[5] if kind == "max" and len(args) > 5 else (args[4] if kind == "avg" and len(args) > 4 else False)
        )
        text = f"{_dims(*kernel)} {kind} pool, stride {_scalar_or_pair(stride)}"
        if padding != (0, 0):
            text += f", pad {_scalar_or_pair(padding)}"
        if ceil_mode:
            text += ", ceil"
        return 2, text
    if name in ("_adaptive_avg_pool2d", "adaptive_max_pool2d"):
        kind = "avg" if "avg" in name else "max"
        tensor = first_tensor(out)
        assert tensor is not None
        if tuple(tensor.shape[-2:]) == (1, 1):
            return 2, f"global {kind} pool"
        return 2, f"adaptive {kind} pool to {_dims(*tensor.shape[-2:])}"
    if name == "mean" and args[0].dim() == 4:
        return 2, "global avg pool"
    if name in ("addmm", "mm"):
        tensor = first_tensor(out)
        assert tensor is not None
        return 2, f"FC {tensor.shape[-1]}"
    if name == "avg_pool3d":
        return 1, f"LRN window {int(_first(args[1]))}"
    if name in ("_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm"):
        return 1, "batch norm"
    if name in ("relu", "threshold"):
        return 0, "ReLU"
    if name == "cat":
        return 0, "concat"
    if name in ("add", "sub", "mul", "div"):
        return 0, name
    if name in ("view", "_unsafe_view", "reshape"):
        tensor = first_tensor(out)
        if tensor is not None and tensor.dim() == 2 and args[0].dim() > 2:
            return 0, f"flatten to {tensor.shape[-1]}"
        return 0, "reshape"
    return None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value
