"""One forward pass on the meta device, seen at two levels at once.

* Module forward pre/post hooks keep a stack of the module calls in progress, so every ATen op
  is attributed to the innermost module running it. A call of a *leaf* module (no children)
  becomes one row; an op that runs directly in a non-leaf module's forward (the residual
  ``out += identity``, ``torch.cat`` of Inception branches, ``torch.flatten``, ``F.relu``,
  ``F.adaptive_avg_pool2d``) becomes a row of its own — functional ops are seen, not skipped.
* A ``TorchDispatchMode`` sees every ATen op with its real argument shapes. It mirrors
  ``FlopCounterMode``'s dispatch exactly (same decompositions, same formula registry), so our
  MACs are its FLOPs ÷ 2 by construction, and it feeds the FLOP rules, the receptive-field
  table and the "longest path of weighted layers" depth.
* ``saved_tensors_hooks`` record what autograd keeps for backward: the exact input of the
  training-memory estimate (see :mod:`cnnatlas.analysis.memory`).

Tensors live on the meta device: shapes and dtypes only, no storage, no arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnatlas.analysis import rules
from cnnatlas.analysis.receptive import INPUT_FIELD, Field, ReceptiveFieldTable
from cnnatlas.formulas import conv_output_size

# Metadata queries FlopCounterMode lets through untouched; we do the same.
_METADATA_OPS = {
    torch.ops.aten.sym_is_contiguous.default,
    torch.ops.aten.is_contiguous.default,
    torch.ops.aten.is_contiguous.memory_format,
    torch.ops.aten.is_strides_like_format.default,
    torch.ops.aten.is_non_overlapping_and_dense.default,
    torch.ops.aten.size.default,
    torch.ops.aten.sym_size.default,
    torch.ops.aten.stride.default,
    torch.ops.aten.sym_stride.default,
    torch.ops.aten.storage_offset.default,
    torch.ops.aten.sym_storage_offset.default,
    torch.ops.aten.numel.default,
    torch.ops.aten.sym_numel.default,
    torch.ops.aten.dim.default,
    torch.ops.prim.layout.default,
}


def storage_key(tensor: Tensor) -> int:
    """Identity of the memory a tensor lives in (views and in-place results share it)."""
    return tensor.untyped_storage()._cdata


@dataclass
class RawRow:
    """One row while the trace runs (module path, costs, output)."""

    path: str  # module path; for a functional op, its parent module's path
    name: str
    type: str
    depth: int  # module nesting depth of the row (functional ops: parent depth + 1)
    functional: bool
    weight_params: int = 0
    bias_params: int = 0
    trainable_params: int = 0
    macs: int = 0
    flops: int = 0
    backward_flops: int = 0
    activations: int = 0
    activation_bytes: int = 0
    output_shape: list[int] = field(default_factory=list)
    rf: Any = None  # Field, receptive.UNKNOWN, or None where no 2-D spatial path leads
    spec: tuple[int, str] | None = None
    module_attrs: dict[str, Any] = field(default_factory=dict)

    def add_spec(self, candidate: tuple[int, str] | None) -> None:
        if candidate is not None and (self.spec is None or candidate[0] > self.spec[0]):
            self.spec = candidate


@dataclass
class _Frame:
    path: str
    module: nn.Module
    leaf: bool
    row: RawRow | None
    first_row: int  # index of the first row created during this call
    first_op: int  # number of ops run before this call: later-created storages are its own


@dataclass
class TraceResult:
    rows: list[RawRow]
    output: Any
    input_field: Field
    network_depth: int
    saved_bytes: int  # bytes of distinct activation storages autograd saves for backward
    uncounted_ops: dict[str, int]
    unused_params: int  # parameters no op touched (e.g. auxiliary heads in eval mode)
    modules: list[tuple[str, nn.Module]]  # model.named_modules(), in order
    op_costs: dict[str, list[int]] = field(default_factory=dict)  # ATen op → [calls, MACs, FLOPs, elements]
    field_unknown_ops: dict[str, int] = field(default_factory=dict)  # ops that made a receptive field "?"
    # (producer row, consumer row, tensor shape): filled only by a recording tracer
    # (cnnatlas.analysis.graph); row -1 is the network input, len(rows) its output.
    edges: list[tuple[int, int, tuple[int, ...]]] | None = None


class _ParamInfo:
    """Parameters per owning module path, each counted once even if shared, each charged to
    one row: a leaf module's row, or the functional op that reads a container's own parameter
    (``F.linear(x, self.weight)`` charges ``weight`` to the ``mm`` row, not the first op)."""

    def __init__(self, modules: list[tuple[str, nn.Module]], state: dict[str, Tensor] | None) -> None:
        self.by_path: dict[str, list[tuple[str, nn.Parameter]]] = {}
        self.by_storage: dict[int, tuple[str, str, nn.Parameter]] = {}  # what ops see → (path, name, param)
        seen: set[int] = set()
        for path, module in modules:
            owned = []
            for pname, param in module._parameters.items():  # named_parameters(recurse=False), cheaper
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    owned.append((pname, param))
                    seen_as = param if state is None else state.get(f"{path}.{pname}" if path else pname)
                    if seen_as is not None:
                        self.by_storage[storage_key(seen_as)] = (path, pname, param)
            if owned:
                self.by_path[path] = owned
        self.assigned: set[tuple[str, str]] = set()

    def _charge(self, path: str, pname: str, param: nn.Parameter, row: RawRow) -> None:
        self.assigned.add((path, pname))
        if pname.endswith("bias"):
            row.bias_params += param.numel()
        else:
            row.weight_params += param.numel()
        if param.requires_grad:
            row.trainable_params += param.numel()

    def assign(self, path: str, row: RawRow) -> None:
        """Charge every not yet charged parameter of ``path`` to ``row``."""
        for pname, param in self.by_path.get(path, ()):
            if (path, pname) not in self.assigned:
                self._charge(path, pname, param, row)

    def assign_read(self, tensors: list[Tensor], row: RawRow) -> None:
        """Charge the parameters among an op's inputs (views of them included) to its row."""
        for t in tensors:
            owner = self.by_storage.get(storage_key(t))
            if owner is not None and (owner[0], owner[1]) not in self.assigned:
                self._charge(*owner, row)

    def has_unassigned(self, path: str) -> bool:
        return any((path, pname) not in self.assigned for pname, _ in self.by_path.get(path, ()))

    def unassigned_numel(self) -> int:
        return sum(
            p.numel() for path, ps in self.by_path.items() for pname, p in ps if (path, pname) not in self.assigned
        )


class _OpDispatchMode(TorchDispatchMode):
    def __init__(self, on_op: Callable[[Any, tuple, dict, Any], None]) -> None:
        super().__init__()
        self.on_op = on_op

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _METADATA_OPS:
            return func(*args, **kwargs)
        if isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        # Same rule as FlopCounterMode: decompose whatever can be decomposed, count the rest.
        if func is not torch.ops.prim.device.default and func not in _FAST_META and func not in _KEEP_WHOLE:
            with self:
                result = func.decompose(*args, **kwargs)
            if result is not NotImplemented:
                return result
        fast = _FAST_META.get(func)
        out = fast(*args, **kwargs) if fast is not None else _fast_pointwise(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        self.on_op(func, args, kwargs, out)
        return out


def _plain_meta(*tensors: Tensor) -> bool:
    return all(
        t.device.type == "meta" and t.dtype in (torch.float32, torch.float64) and t.is_contiguous() for t in tensors
    )


def _fast_batch_norm_eval(x: Tensor, weight: Any, bias: Any, mean: Tensor, var: Tensor, *rest: Any) -> Any:
    # The meta kernel of inference batch norm runs a Python decomposition (~8 ms a call); its
    # result is just "same shape as the input" plus two per-channel vectors.
    if not _plain_meta(x, mean, var):
        return None
    return x.new_empty(x.shape), x.new_empty(mean.shape), x.new_empty(mean.shape)


def _fast_batch_norm(x: Tensor, weight: Any, bias: Any, mean: Any, var: Any, training: bool, *rest: Any) -> Any:
    # Inference form only; its decomposition ends in the op above.
    if training or mean is None or not _plain_meta(x, mean, var):
        return None
    return x.new_empty(x.shape), x.new_empty(mean.shape), x.new_empty(mean.shape)


def _output_sides(
    x: Tensor,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool = False,
) -> tuple[int, int] | None:
    """(h, w) of a 2-D convolution or pool over ``x`` by :func:`cnnatlas.formulas.conv_output_size`
    (ATen's rule, ceil mode included), or None when a window does not fit."""
    try:
        size = tuple(
            conv_output_size(
                int(x.shape[2 + a]), int(kernel[a]), int(stride[a]), int(padding[a]), int(dilation[a]), ceil_mode
            )
            for a in range(2)
        )
    except ValueError:
        return None
    return size if min(size) >= 1 else None  # type: ignore[return-value]


def _fast_convolution(
    x: Tensor,
    weight: Tensor,
    bias: Any,
    stride: list,
    padding: list,
    dilation: list,
    transposed: bool,
    output_padding: list,
    groups: int,
) -> Tensor | None:
    # The meta kernel computes the output shape in Python (~1 ms); for a plain 2-D convolution
    # of contiguous tensors it is the textbook formula, and the result is contiguous.
    if transposed or x.dim() != 4 or weight.dim() != 4 or not _plain_meta(x, weight):
        return None
    if len(stride) != 2 or len(padding) != 2 or len(dilation) != 2 or x.shape[1] != weight.shape[1] * groups:
        return None
    size = _output_sides(x, weight.shape[2:], stride, padding, dilation)
    if size is None:
        return None  # let the real kernel raise its own error
    return x.new_empty((x.shape[0], weight.shape[0], *size))


def _fast_cat(tensors: list[Tensor], dim: int = 0) -> Tensor | None:
    # Meta concatenation also goes through Python; for contiguous same-dtype 4-D tensors the
    # result is a contiguous tensor whose `dim` is the sum of the inputs'.
    if not tensors or not _plain_meta(*tensors) or len({t.dtype for t in tensors}) != 1:
        return None
    first = tensors[0]
    if any(t.dim() != first.dim() or t.dim() < 2 for t in tensors):
        return None
    dim = dim % first.dim()
    if any(t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1 :] != first.shape[dim + 1 :] for t in tensors):
        return None
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return first.new_empty(shape)


def _fast_max_pool2d(
    x: Tensor,
    kernel: list,
    stride: list = (),
    padding: list = (0,),
    dilation: list = (1,),
    ceil_mode: bool = False,
) -> tuple[Tensor, Tensor] | None:
    # The meta kernel checks and computes the shape in Python (~0.3 ms); for the usual 4-D
    # contiguous input it is the formula above, and the indices are int64 of the same shape.
    if (
        x.dim() != 4
        or not _plain_meta(x)
        or not all(len(v) in (1, 2) for v in (kernel, padding, dilation))
        or len(stride) > 2
    ):
        return None
    two = lambda v: (int(v[0]), int(v[-1]))  # noqa: E731 - (h, w) of a 1- or 2-element list
    (kh, kw), (ph, pw), (dh, dw) = two(kernel), two(padding), two(dilation)
    sh, sw = two(stride) if len(stride) else (kh, kw)
    if min(kh, kw, sh, sw, dh, dw) < 1 or ph > kh // 2 or pw > kw // 2:
        return None  # let the real kernel raise its own error
    size = _output_sides(x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    if size is None:
        return None
    shape = (x.shape[0], x.shape[1], *size)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


def _fast_addmm(bias: Tensor, mat1: Tensor, mat2: Tensor, *rest: Any, **kwargs: Any) -> Tensor | None:
    # A fully connected layer: its meta kernel broadcasts in Python (~1 ms); the result of
    # bias + mat1 @ mat2 is a contiguous (n, m) matrix when the bias broadcasts to it.
    if mat1.dim() != 2 or mat2.dim() != 2 or mat1.shape[1] != mat2.shape[0] or bias.dim() > 2:
        return None
    if (
        not _plain_meta(mat1, bias)
        or mat2.device.type != "meta"
        or mat2.dtype != mat1.dtype
        or bias.dtype != mat1.dtype
    ):
        return None  # mat2 is usually weight.t(), a non-contiguous view: only its shape matters
    shape = (mat1.shape[0], mat2.shape[1])
    if any(b not in (1, s) for b, s in zip(reversed(bias.shape), reversed(shape))):
        return None
    return mat1.new_empty(shape)


_POINTWISE = frozenset(
    "relu hardtanh leaky_relu sigmoid tanh silu hardswish gelu elu add sub mul div clamp clamp_min".split()
)


def _fast_pointwise(func: Any, args: tuple, kwargs: dict) -> Any:
    """Same-shape element-wise ops (the refs behind their meta kernels cost ~1 ms a call): the
    result has the input's shape, dtype and layout; an in-place op returns its input."""
    packet_name = func._overloadpacket.__name__
    inplace = packet_name.endswith("_")
    if (inplace and packet_name[:-1] or packet_name) not in _POINTWISE or len(func._schema.returns) != 1:
        return None
    first = args[0] if args else None
    if not isinstance(first, Tensor) or not _plain_meta(first):
        return None
    for value in (*args[1:], *kwargs.values()):
        if isinstance(value, Tensor) and (
            value.shape != first.shape or value.dtype != first.dtype or not _plain_meta(value)
        ):
            return None
        if isinstance(value, (list, tuple)):
            return None
    return first if inplace else first.new_empty(first.shape)


# Run whole rather than decomposed: the receptive field needs their arguments (nearest
# interpolation decomposes into index arithmetic). Neither form has a FLOP formula in
# torch.utils.flop_counter, so MACs stay FlopCounterMode's ÷ 2.
_KEEP_WHOLE = frozenset(
    (
        torch.ops.aten.upsample_nearest2d.default,
        torch.ops.aten.upsample_nearest2d.vec,
        torch.ops.aten._upsample_nearest_exact2d.default,
        torch.ops.aten._upsample_nearest_exact2d.vec,
    )
)

_FAST_META: dict[Any, Callable[..., Any]] = {
    torch.ops.aten._native_batch_norm_legit_no_training.default: _fast_batch_norm_eval,
    torch.ops.aten.cat.default: _fast_cat,
    torch.ops.aten.native_batch_norm.default: _fast_batch_norm,
    torch.ops.aten.convolution.default: _fast_convolution,
    torch.ops.aten.addmm.default: _fast_addmm,
    torch.ops.aten.max_pool2d_with_indices.default: _fast_max_pool2d,
}


def display_namer(names: dict[str, str]) -> Callable[[str], str]:
    """Module path → paper name: the longest mapped prefix is replaced
    (``features.0`` → ``conv1_1``; ``layer1.0.conv1`` → ``conv2_x.0.conv1``)."""

    def display(path: str) -> str:
        parts = path.split(".") if path else []
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in names:
                return ".".join([names[prefix], *parts[cut:]])
        return path

    return display


class Tracer:
    """One traced forward pass: the module hooks, the dispatch callback and the saved-tensor
    hook are its methods, and the state they share (rows, module stack, receptive-field table,
    per-tensor depth, storage bookkeeping) is its attributes.

    ``Tracer(model, state, names).run(args, kwargs)`` returns a :class:`TraceResult`; a tracer runs once."""

    def __init__(self, model: nn.Module, state: dict[str, Tensor] | None, names: dict[str, str]) -> None:
        self.model = model
        self.state = state
        self.display = display_namer(names)
        self.modules = list(model.named_modules())
        self.leaves = {
            id(module) for _, module in self.modules if all(child is None for child in module._modules.values())
        }
        self.params = _ParamInfo(self.modules, state)
        self.rows: list[RawRow] = []
        self.stack: list[_Frame] = []
        self.used_names: dict[str, int] = {}
        self.rf = ReceptiveFieldTable()
        # id(tensor) → (weighted layers on the longest path to it, id of the last weighted row)
        self.depth_of: dict[int, tuple[int, int]] = {}
        self.keep_alive: list[Tensor] = []  # keeps the ids in depth_of unique while the trace runs
        self.uncounted: dict[str, int] = {}
        self.parameter_storages = {
            storage_key(t) for t in (state.values() if state is not None else [*model.parameters(), *model.buffers()])
        }
        self.saved: dict[int, int] = {}  # storage → bytes autograd keeps for backward
        self.created_at: dict[int, int] = {}  # storage → index of the (non-aliasing) op that created it
        self.op_count = 0
        self.op_costs: dict[str, list[int]] = {}  # ATen op → [calls, MACs, FLOPs, new elements]

    # -- the run -----------------------------------------------------------------------------------
    def run(self, args: tuple[Tensor, ...], kwargs: dict[str, Tensor]) -> TraceResult:
        for x in (*args, *kwargs.values()):
            # Receptive fields are for 2-D spatial maps: N×C×H×W floating-point inputs.
            if x.dim() == 4 and x.is_floating_point():
                self.rf.set(x, INPUT_FIELD)
            self.depth_of[id(x)] = (0, 0)
            self.keep_alive.append(x)
        handles = []
        for path, module in self.modules:
            handles.append(module.register_forward_pre_hook(partial(self.on_module_start, path)))
            handles.append(module.register_forward_hook(partial(self.on_module_end, path), always_call=True))
        try:
            with (
                torch.enable_grad(),
                torch.autograd.graph.saved_tensors_hooks(self.on_saved_tensor, _unpack),
                _OpDispatchMode(self.on_op),
            ):
                if self.state is not None:
                    output = torch.func.functional_call(self.model, self.state, args, kwargs)
                else:
                    output = self.model(*args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        return TraceResult(
            rows=self.rows,
            output=output,
            input_field=INPUT_FIELD,
            network_depth=max((d for d, _ in self.depth_of.values()), default=0),
            saved_bytes=sum(self.saved.values()),
            uncounted_ops=self.uncounted,
            unused_params=self.params.unassigned_numel(),
            modules=self.modules,
            op_costs=self.op_costs,
            field_unknown_ops=self.rf.unknown_ops,
        )

    # -- hooks ---------------------------------------------------------------------------------------
    def on_module_start(self, path: str, module: nn.Module, _args: Any) -> None:
        """Forward pre-hook: push a frame; a leaf module's call opens its row."""
        leaf = id(module) in self.leaves
        row = None
        if leaf:
            row = RawRow(
                path=path,
                name=self._unique(self.display(path) or type(module).__name__),
                type=type(module).__name__,
                depth=_module_depth(path),
                functional=False,
                module_attrs=_module_attrs(module),
            )
            self.rows.append(row)
            self.params.assign(path, row)
        first_row = len(self.rows) - (1 if leaf else 0)
        self.stack.append(_Frame(path, module, leaf, row, first_row=first_row, first_op=self.op_count))

    def on_module_end(self, path: str, module: nn.Module, _args: Any, out: Any) -> None:
        """Forward hook: pop the frame; a leaf row gets its output shape, field and new activations."""
        stack = self.stack
        if not stack or stack[-1].module is not module:
            return  # unwinding after an error
        frame = stack.pop()
        if frame.leaf and frame.row is not None:
            self._close_leaf_row(frame, _flat_tensors(out))
        elif self.params.has_unassigned(path):
            # A container that owns parameters but ran no op of its own.
            if len(self.rows) > frame.first_row:
                self.params.assign(path, self.rows[-1])

    def on_op(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        """Dispatch callback: cost the op, propagate fields and depth, add it to its row."""
        if func.namespace != "aten":
            return
        name = rules.op_name(func)
        macs = rules.macs_of(func, args, kwargs, out)
        flops, known = rules.flops_of(func, args, kwargs, out, macs)
        if not known:
            self.uncounted[name] = self.uncounted.get(name, 0) + 1
        outputs = rules.out_tensors(out)
        inputs = rules.op_tensors(args, kwargs)
        self.rf.propagate(func, args, kwargs, out, inputs, outputs)
        aliasing = rules.returns_alias(func)
        op_index = self.op_count
        self.op_count += 1
        if not aliasing:
            for t in outputs:
                self.created_at.setdefault(storage_key(t), op_index)
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.leaf:
            row = frame.row
        elif name in rules.NO_ROW_OPS or (aliasing and self._views_parameters(inputs)):
            row = None  # allocation, autograd bookkeeping, or `weight.t()` before F.linear
        else:
            row = self._functional_row(frame, name, outputs, aliasing)
            self.params.assign_read(inputs, row)
        self._propagate_depth(inputs, outputs, row if macs > 0 else None)
        costs = self.op_costs.get(name)
        if costs is None:
            costs = self.op_costs[name] = [0, 0, 0, 0]
        costs[0] += 1
        costs[1] += macs
        costs[2] += flops
        if not aliasing and outputs:
            costs[3] += outputs[0].numel()
        if row is None:
            return
        row.macs += macs
        row.flops += flops
        row.backward_flops += rules.backward_flops(name, args, inputs, macs, flops)
        row.add_spec(rules.op_spec(func, args, kwargs, out))

    def on_saved_tensor(self, tensor: Tensor) -> Tensor:
        """saved_tensors_hooks pack: remember the bytes of each activation storage kept for backward."""
        key = storage_key(tensor)
        if key not in self.parameter_storages:
            self.saved[key] = tensor.untyped_storage().nbytes()
        return tensor

    # -- helpers -------------------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        count = self.used_names.get(name, 0)
        self.used_names[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    def _propagate_depth(self, inputs: list[Tensor], outputs: list[Tensor], weighted_row: RawRow | None) -> None:
        """Weighted layers on the longest path to each output. A row that applies its weights
        again along the same path (an LSTM's time steps) counts once."""
        depth_of = self.depth_of
        deepest: tuple[int, int] = (0, 0)
        for t in inputs:
            seen = depth_of.get(id(t))
            if seen is not None and seen[0] >= deepest[0]:
                deepest = seen
        if weighted_row is not None and deepest[1] != id(weighted_row):
            deepest = (deepest[0] + 1, id(weighted_row))
        for t in outputs:
            depth_of[id(t)] = deepest
            self.keep_alive.append(t)

    def _views_parameters(self, inputs: list[Tensor]) -> bool:
        return bool(inputs) and all(storage_key(t) in self.parameter_storages for t in inputs)

    def _functional_row(self, frame: _Frame | None, name: str, outputs: list[Tensor], aliasing: bool) -> RawRow:
        """A row for an op run directly in a non-leaf module's forward (or outside any module)."""
        parent = frame.path if frame is not None else ""
        base = f"{self.display(parent)}.{name}" if parent else name
        row = RawRow(path=parent, name=self._unique(base), type=name, depth=_module_depth(parent) + 1, functional=True)
        self.rows.append(row)
        main = outputs[0] if outputs else None
        if main is not None:
            row.output_shape = list(main.shape)
            if not aliasing:
                row.activations = main.numel()
                row.activation_bytes = main.numel() * main.element_size()
            row.rf = self.rf.get(main)
        return row

    def _close_leaf_row(self, frame: _Frame, outputs: list[Tensor]) -> None:
        row = frame.row
        assert row is not None
        if outputs:
            row.output_shape = list(outputs[0].shape)
            row.rf = self.rf.get(outputs[0])
        counted: set[int] = set()
        for t in outputs:
            key = storage_key(t)
            # Only storages created during this call are the module's own activations.
            if self.created_at.get(key, -1) >= frame.first_op and key not in counted:
                counted.add(key)
                row.activations += t.numel()
                row.activation_bytes += t.numel() * t.element_size()


def trace(
    model: nn.Module,
    args: tuple[Tensor, ...],
    kwargs: dict[str, Tensor],
    state: dict[str, Tensor] | None,
    names: dict[str, str],
    tracer_class: type[Tracer] = Tracer,
) -> TraceResult:
    """Run ``model(*args, **kwargs)`` on meta tensors (through ``functional_call`` with ``state``
    when given) and collect one :class:`RawRow` per leaf-module call and per functional op.
    ``tracer_class`` may be a :class:`Tracer` subclass that records more (the diagrams' edges)."""
    return tracer_class(model, state, names).run(args, kwargs)


def _module_depth(path: str) -> int:
    return len(path.split(".")) if path else 0


def _unpack(tensor: Tensor) -> Tensor:
    return tensor


def _flat_tensors(value: Any) -> list[Tensor]:
    found: list[Tensor] = []

    def visit(item: Any) -> None:
        if isinstance(item, Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            for sub in item:
                visit(sub)
        elif isinstance(item, dict):
            for sub in item.values():
                visit(sub)

    visit(value)
    return found


def _module_attrs(module: nn.Module) -> dict[str, Any]:
    """The few module settings a spec needs that no op reveals (dropout in eval runs no op)."""
    attrs: dict[str, Any] = {}
    if isinstance(module, nn.RNNBase):
        text = f"{module.mode.replace('_', ' ')}, hidden {module.hidden_size}"
        if module.num_layers > 1:
            text += f", {module.num_layers} layers"
        if module.bidirectional:
            text += ", bidirectional"
        attrs["rnn"] = text
    if isinstance(module, nn.modules.dropout._DropoutNd):
        attrs["dropout"] = module.p
    for key in ("size", "alpha", "beta", "k"):
        if "LocalResponseNorm" in type(module).__name__ and hasattr(module, key):
            attrs[f"lrn_{key}"] = getattr(module, key)
    return attrs
