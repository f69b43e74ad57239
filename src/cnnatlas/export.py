"""Export a network to ONNX, TorchScript or safetensors, verified before the file appears.

Every export is written to a temporary file beside the destination, checked, and only then
renamed into place, so a failed export leaves no file behind:

``onnx``
    PyTorch's exporter (the TorchScript-based one by default: on this project's networks it
    is 5–25× faster than the ``torch.export``-based one and gives the same graph; pass
    ``exporter="dynamo"`` for the latter). Checked with ``onnx.checker`` (full check,
    shape inference included), then ONNX Runtime runs a random batch and its logits must equal
    PyTorch's within :data:`cnnatlas.fast.TOLERANCE` ``["fp32"]`` (relative to the largest
    logit) with the same top-1 class.
``torchscript``
    ``torch.jit.trace`` of the eval-mode network; the traced module must reproduce the eager
    logits on a second random batch (another batch size than the one traced).
``safetensors``
    The state dict plus the metadata that rebuilds the network (``cnnatlas-model`` JSON:
    registered name, builder options, classes, input size); checked by rebuilding the network
    from the written file alone and comparing its logits.

``fold_bn`` exports the :func:`cnnatlas.fast.fold_batchnorm` copy (ONNX and TorchScript only:
a folded state dict no longer fits the registered architecture).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from cnnatlas.errors import CheckpointError, InputError

FORMATS = ("onnx", "torchscript", "safetensors")
EXTENSIONS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
DEFAULT_OPSET = 18
METADATA_KEY = "cnnatlas-model"
METADATA_FORMAT = "cnnatlas-model/1"


@dataclass
class ExportReport:
    """What was written and how it was verified."""

    path: Path
    format: str
    inputs: list[tuple[str, list[int | str]]]
    outputs: list[tuple[str, list[int | str]]]
    checks: list[str] = field(default_factory=list)
    max_relative_error: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a network: registered name, builder options, classes, input size."""

    name: str
    options: Mapping[str, Any]
    classes: tuple[str, ...]
    input_size: tuple[int, int, int]

    def to_metadata(self) -> dict[str, str]:
        payload = {
            "format": METADATA_FORMAT,
            "model": self.name,
            "options": dict(self.options),
            "classes": list(self.classes),
            "input_size": list(self.input_size),
        }
        return {METADATA_KEY: json.dumps(payload, sort_keys=True)}


# -- helpers -----------------------------------------------------------------------------------
def _writable_destination(path: Path) -> Path:
    from cnnatlas.plot.output import check_output_path

    if path.is_dir():
        raise InputError(f"output path {str(path)!r} is a directory; name a file")
    check_output_path(path, directory=True)
    return path


def _temporary_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    from cnnatlas.train.checkpoint import fsync_dir

    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    from cnnatlas.fast import main_logits

    with torch.inference_mode():
        return main_logits(model, model(x)).float()


def _unsupported_operator(exc: BaseException) -> str | None:
    text = str(exc)
    match = re.search(r"operator '?((?:aten|prim|onnx)::\w+)", text) or re.search(r"((?:aten|prim)::\w+)", text)
    return match.group(1) if match else None


@contextlib.contextmanager
def _silenced_stdout() -> Iterator[None]:
    """The TorchScript-based exporter's C++ code prints the whole graph to file descriptor 1
    when an operator fails; the error we raise says what matters in one line."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_agreement(model: nn.Module, x: Tensor, candidate: Tensor, what: str) -> float:
    from cnnatlas.fast import agreement_with_eager

    agreement = agreement_with_eager(model, x, _logits(model, x), candidate, "fp32")
    if not agreement.ok:
        raise InputError(
            f"{what} disagrees with PyTorch: top-1 agreement {agreement.top1_agreement:.3f}, "
            f"max relative logit error {agreement.max_relative_error:.2e} (tolerance {agreement.tolerance:g})"
        )
    return agreement.max_relative_error


def _random_batch(input_size: tuple[int, ...], batch: int, seed: int) -> Tensor:
    return torch.randn((batch, *input_size), generator=torch.Generator().manual_seed(seed))


# -- ONNX --------------------------------------------------------------------------------------
class FixedAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one known input size, written with ops every ONNX opset has.

    PyTorch's ONNX exporter translates adaptive average pooling only when the output size
    divides the input size (VGG's 7×7 → 7×7, a global pool); otherwise (7×7 → 3×3, the
    regions overlap) it gives up. Adaptive pooling averages over the rectangle rows
    [⌊i·H/h⌋, ⌈(i+1)·H/h⌉) × columns [⌊j·W/w⌋, ⌈(j+1)·W/w⌉), and the mean over a rectangle is the
    mean over its rows of the means over its columns, so one slice-and-mean per output row and
    per output column gives the same numbers (the export is verified against the original).
    """

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
        super().__init__()
        self.rows = _regions(in_size[0], out_size[0])
        self.cols = _regions(in_size[1], out_size[1])

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x[:, :, start:end].mean(2, keepdim=True) for start, end in self.rows], 2)
        return torch.cat([x[:, :, :, start:end].mean(3, keepdim=True) for start, end in self.cols], 3)


def _regions(size: int, out: int) -> list[tuple[int, int]]:
    """Adaptive pooling's [start, end) along one side of ``size`` for each of ``out`` outputs."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def with_fixed_adaptive_pools(model: nn.Module, example: Tensor, *, inplace: bool = False) -> nn.Module:
    """``model`` with every ``nn.AdaptiveAvgPool2d`` replaced, for the spatial size ``example``
    gives it, by what ONNX can express: nothing when output = input, a plain average pool when
    the output size divides the input size, :class:`FixedAdaptiveAvgPool2d` otherwise. A copy is
    changed unless ``inplace`` (for a model that is already the caller's own copy); ``model``
    itself is returned when it has no adaptive pool."""
    pools = {path for path, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    if not pools:
        return model
    if not inplace:
        model = copy.deepcopy(model)
    seen: dict[str, tuple[int, int]] = {}

    def record(path: str) -> Any:
        def hook(_: nn.Module, args: tuple[Tensor, ...]) -> None:  # returns None: the input is unchanged
            seen.setdefault(path, tuple(args[0].shape[-2:]))

        return hook

    hooks = [m.register_forward_pre_hook(record(path)) for path, m in model.named_modules() if path in pools]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    for path, in_size in seen.items():
        pool = model.get_submodule(path)
        wanted = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size, pool.output_size)
        out_size = tuple(i if o is None else o for i, o in zip(in_size, wanted))
        if out_size == in_size:
            fixed: nn.Module = nn.Identity()
        elif all(i % o == 0 for i, o in zip(in_size, out_size)):
            kernel = tuple(i // o for i, o in zip(in_size, out_size))
            fixed = nn.AvgPool2d(kernel, stride=kernel)
        else:
            fixed = FixedAdaptiveAvgPool2d(in_size, out_size)
        parent, _, attribute = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attribute, fixed)
    return model


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    example: Tensor,
    *,
    dynamic_batch: bool = False,
    fold_bn: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> Path:
    """Write ``model`` (eval mode) as ONNX to ``path`` without verifying it (see :func:`export`).
    An operator the exporter cannot translate is an :class:`InputError` naming it."""
    from cnnatlas.fast import fold_batchnorm

    if exporter not in ("torchscript", "dynamo"):
        raise InputError(f"unknown ONNX exporter {exporter!r}; choose torchscript or dynamo")
    model = model.eval()
    if fold_bn:
        model, _ = fold_batchnorm(model, example)
    name = getattr(model, "model_name", "") or type(model).__name__
    # the folded network is already a copy of the caller's, so its pools can be replaced in place
    model = with_fixed_adaptive_pools(model, example, inplace=fold_bn)
    path = Path(path)
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"], "opset_version": opset}
    if dynamic_batch:
        if exporter == "dynamo":
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad(), _silenced_stdout():
            warnings.simplefilter("ignore")  # tracer and deprecation notes about our own input checks
            torch.onnx.export(model, (example,), str(path), dynamo=exporter == "dynamo", **kwargs)
    except Exception as exc:  # noqa: BLE001 - every exporter failure means this network cannot be exported
        operator = _unsupported_operator(exc)
        what = f"operator {operator}" if operator else _first_line(exc)
        raise InputError(f"{name} cannot be exported to ONNX (opset {opset}): {what} is not supported") from exc
    return path


def onnxruntime_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ONNX Runtime inference session on the CPU, all graph optimisations on."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"ONNX export needs the {module} package: pip install 'cnnatlas[export]' (onnx, onnxruntime)"
        ) from None


def verify_onnx(path: Path, model: nn.Module, input_size: tuple[int, ...], dynamic_batch: bool) -> ExportReport:
    """onnx.checker, then ONNX Runtime against PyTorch on a random batch."""
    onnx = _require("onnx")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - any checker failure is reported as one line
        raise InputError(f"the exported ONNX file fails onnx.checker: {_first_line(exc)}") from exc
    session = onnxruntime_session(path)

    def shapes(values: Any) -> list[tuple[str, list[int | str]]]:
        return [(v.name, [d if isinstance(d, (int, str)) else "?" for d in v.shape]) for v in values]

    batch = 3 if dynamic_batch else 2  # a dynamic-batch file must also run at a size it was not traced at
    x = _random_batch(input_size, batch, seed=1)
    ort_logits = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    error = _check_agreement(model, x, ort_logits, "ONNX Runtime's output")
    return ExportReport(
        path=path,
        format="onnx",
        inputs=shapes(session.get_inputs()),
        outputs=shapes(session.get_outputs()),
        checks=["onnx.checker (full)", f"ONNX Runtime vs PyTorch on a random batch of {batch}"],
        max_relative_error=error,
    )


# -- TorchScript -------------------------------------------------------------------------------
def export_torchscript(model: nn.Module, path: Path, example: Tensor, input_size: tuple[int, ...]) -> ExportReport:
    """``torch.jit.trace`` and save; the traced module must match eager on another batch size."""
    model = model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example, check_trace=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"cannot trace {getattr(model, 'model_name', type(model).__name__)}: {_first_line(exc)}"
        ) from exc
    x = _random_batch(input_size, example.shape[0] + 1, seed=1)
    error = _check_agreement(model, x, _logits(traced, x), "the traced module")
    traced.save(str(path))
    shape = list(example.shape)
    return ExportReport(
        path=path,
        format="torchscript",
        inputs=[("x", ["batch", *shape[1:]])],
        outputs=[("logits", ["batch", int(getattr(model, "num_classes", 0)) or "?"])],
        checks=[f"traced module vs eager on a random batch of {x.shape[0]}"],
        max_relative_error=error,
    )


# -- safetensors -------------------------------------------------------------------------------
def export_safetensors(model: nn.Module, path: Path, spec: ModelSpec) -> ExportReport:
    """The state dict with :class:`ModelSpec` metadata; verified by :func:`load_exported`."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=spec.to_metadata())
    rebuilt, _ = load_exported(path)
    x = _random_batch(spec.input_size, 2, seed=1)
    error = _check_agreement(model.eval(), x, _logits(rebuilt, x), "the rebuilt network")
    return ExportReport(
        path=path,
        format="safetensors",
        inputs=[("input", ["batch", *spec.input_size])],
        outputs=[("logits", ["batch", int(getattr(model, "num_classes", 0)) or "?"])],
        checks=["network rebuilt from the file's metadata; its logits match"],
        max_relative_error=error,
    )


def load_exported(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a network (eval mode) from a safetensors file written by :func:`export`."""
    from safetensors import safe_open

    from cnnatlas.registry import create_model
    from cnnatlas.weights import check_state_dict, read_state_dict

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read {str(path)!r}: {_first_line(exc)}") from exc
    try:
        payload = json.loads(metadata[METADATA_KEY])
        assert payload.get("format") == METADATA_FORMAT
        spec = ModelSpec(
            name=str(payload["model"]),
            options=dict(payload.get("options") or {}),
            classes=tuple(str(c) for c in payload.get("classes") or ()),
            input_size=tuple(int(v) for v in payload["input_size"]),  # type: ignore[arg-type]
        )
    except (KeyError, AssertionError, TypeError, ValueError, json.JSONDecodeError):
        raise CheckpointError(f"{str(path)!r} has no cnnatlas model metadata (written by `cnnatlas export`?)") from None
    model = create_model(spec.name, **spec.options)
    state = read_state_dict(path)
    check_state_dict(model, state, source=repr(str(path)))
    model.load_state_dict(state, strict=True)
    return model.eval(), spec


# -- one entry point ---------------------------------------------------------------------------
def export(
    model: nn.Module,
    spec: ModelSpec,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    fold_bn: bool = False,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> ExportReport:
    """Export ``model`` (built from ``spec``) to ``path`` in ``fmt``, verified; the file
    appears only when every check passed."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fold_bn and fmt == "safetensors":
        raise InputError("--fold-bn applies to onnx and torchscript; a folded state dict no longer fits the model")
    if fmt == "onnx":
        _require("onnx"), _require("onnxruntime")
        if not 7 <= opset <= 23:
            raise InputError(f"--opset must be between 7 and 23, got {opset}")
    path = _writable_destination(Path(path))
    model = model.eval()
    example = _random_batch(spec.input_size, 2, seed=0)
    reference = model
    if fold_bn:
        from cnnatlas.fast import fold_batchnorm

        model, _ = fold_batchnorm(model, example[:1])
    tmp = _temporary_beside(path)
    try:
        if fmt == "onnx":
            export_onnx(model, tmp, example, dynamic_batch=dynamic_batch, opset=opset, exporter=exporter)
            report = verify_onnx(tmp, reference, spec.input_size, dynamic_batch)
        elif fmt == "torchscript":
            report = export_torchscript(model, tmp, example, spec.input_size)
        else:
            report = export_safetensors(model, tmp, spec)
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.path = path
    return report
