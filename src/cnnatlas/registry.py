"""The one model registry: ``register_model``, ``list_models``, ``create_model``, ``model_info``.

Family files register their variants at import time: a table of :class:`Variant` rows handed to
:func:`register_family` (see ``cnnatlas.models``). A registration is static metadata (paper,
input size) plus a keyword-only builder; figures that depend on the built network (parameter
count, minimum input size) are read off a model built on the meta device, so they can never
drift from the code; published results come from the one table in ``cnnatlas.published``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnatlas.errors import CnnAtlasError, InputError
from cnnatlas.limits import MAX_IN_CHANS, MAX_NUM_CLASSES
from cnnatlas.published import PublishedResult, results_for


@dataclass(frozen=True)
class Paper:
    """Where an architecture was published."""

    authors: str
    title: str
    year: int
    venue: str
    url: str = ""

    def cite(self) -> str:
        return f"{self.authors} ({self.year}), {self.title}. {self.venue}"

    def short(self) -> str:
        """ "Simonyan & Zisserman", "He et al." — how tables name a paper."""
        surnames = [a.strip().split()[-1] for a in self.authors.split(",") if a.strip()]
        if len(surnames) <= 2:
            return " & ".join(surnames)
        return f"{surnames[0]} et al."


@dataclass(frozen=True)
class ModelInfo:
    """Everything cnnatlas knows about a registered network without running it."""

    name: str
    family: str
    paper: Paper
    input_size: tuple[int, int, int]  # (C, H, W) the paper used
    dataset: str  # the data set the design targets, e.g. "ImageNet-1k", "CIFAR-10", "MNIST"
    num_classes: int
    description: str = ""
    # Published numbers: the table in cnnatlas.published fills this in model_info(); a network
    # registered from outside the package may bring its own.
    results: tuple[PublishedResult, ...] = ()
    torchvision_name: str | None = None  # state-dict compatible torchvision model, if any
    default_recipe: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # builder kwargs of this variant
    # Filled by model_info() from a model built on the meta device:
    params: int | None = None
    trainable_params: int | None = None
    min_input_size: int | None = None


Builder = Callable[..., nn.Module]


class Registration(NamedTuple):
    """A registered network: its static metadata and the keyword-only builder ``create_model``
    calls (``inspect.signature(builder)`` lists the options it accepts)."""

    info: ModelInfo
    builder: Builder


_REGISTRY: dict[str, Registration] = {}


def register_model(info: ModelInfo, builder: Builder) -> None:
    """Register ``builder`` under ``info.name``; a duplicate name is a programming error."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    if not info.name or info.name != info.name.lower() or " " in info.name:
        raise ValueError(f"model names are lower-case identifiers, got {info.name!r}")
    _REGISTRY[info.name] = Registration(info, builder)


@dataclass(frozen=True)
class Variant:
    """One row of a family's variant table, as a paper's table lists its networks.

    ``options`` are this variant's builder keywords (``ModelInfo.defaults``; ``create_model``
    overrides any of them). A field left ``None`` among ``input_size``, ``dataset``,
    ``num_classes``, ``recipe`` and ``paper`` takes the family-wide value given to
    :func:`register_family`, so a table spells out only what differs between its rows.
    """

    name: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    torchvision_name: str | None = None  # state-dict compatible torchvision model, if any
    input_size: tuple[int, int, int] | None = None
    dataset: str | None = None
    num_classes: int | None = None
    recipe: str | None = None  # the default training recipe (cnnatlas.train.recipes)
    paper: Paper | None = None  # for a family whose variants come from several papers


# The data settings several families share, for a row or a family: ``register_family(..., **IMAGENET)``.
IMAGENET: Mapping[str, Any] = MappingProxyType(
    {"input_size": (3, 224, 224), "dataset": "ImageNet-1k", "num_classes": 1000}
)
CIFAR10: Mapping[str, Any] = MappingProxyType({"input_size": (3, 32, 32), "dataset": "CIFAR-10", "num_classes": 10})


def register_family(
    family: str,
    paper: Paper,
    builder: Builder,
    variants: Iterable[Variant],
    *,
    input_size: tuple[int, int, int] | None = None,
    dataset: str | None = None,
    num_classes: int | None = None,
    recipe: str | None = None,
) -> None:
    """Register every row of ``variants`` under ``family`` with the one ``builder``; the keyword
    arguments are the family-wide values of the rows' ``None`` fields."""
    for row in variants:
        size = row.input_size or input_size
        data = row.dataset or dataset
        classes = row.num_classes if row.num_classes is not None else num_classes
        if size is None or data is None or classes is None:
            raise ValueError(f"model {row.name!r} needs an input_size, dataset and num_classes (in its row or family)")
        info = ModelInfo(
            name=row.name,
            family=family,
            paper=row.paper or paper,
            input_size=size,
            dataset=data,
            num_classes=classes,
            description=row.description,
            torchvision_name=row.torchvision_name,
            default_recipe=row.recipe or recipe,
            defaults=dict(row.options),
        )
        register_model(info, builder)


def _ensure_models_imported() -> None:
    # Importing the package registers every family; done lazily so that registry.py itself
    # has no import-time dependency on the model files.
    import cnnatlas.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch ``pattern``, sorted."""
    _ensure_models_imported()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def lookup(name: str) -> Registration:
    """The registration of ``name`` without building anything (``model_info`` builds the network
    on the meta device to count its parameters; this does not). An unknown name raises
    :class:`~cnnatlas.errors.InputError` suggesting the closest registered names."""
    _ensure_models_imported()
    if not isinstance(name, str):
        raise InputError(f"a model name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")  # VGG16, ResNet-50: names are matched case-insensitively
    try:
        return _REGISTRY[key]
    except KeyError:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `cnnatlas models` for the list"
        raise InputError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str, *, num_classes: int | None = None, in_chans: int | None = None, **overrides: Any
) -> nn.Module:
    """Build a registered network; ``overrides`` merge into the variant's own settings."""
    info, builder = lookup(name)
    kwargs: dict[str, Any] = {"num_classes": info.num_classes, "in_chans": info.input_size[0]}
    kwargs.update(info.defaults)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    kwargs.update(overrides)
    for key, limit in (("num_classes", MAX_NUM_CLASSES), ("in_chans", MAX_IN_CHANS)):
        value = kwargs[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise InputError(f"{name}: {key} must be a positive integer of at most {limit:,}, got {value!r}")
    accepted = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            options = ", ".join(sorted(set(accepted) - {"name"}))
            raise InputError(f"{name} does not accept {', '.join(unknown)}; its options are: {options}")
    try:
        model = builder(**kwargs)
    except CnnAtlasError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        # an option of the wrong type or an impossible size (e.g. growth_rate=-5) reaching PyTorch
        options = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items())) or "its defaults"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{name} cannot be built with {options}: {first}") from None
    model.model_name = info.name  # lets error messages and the analyser name the network
    return model


class _SkipInitOnMeta(TorchFunctionMode):
    """Turns the in-place fills of weight initialisation into no-ops on meta tensors.

    On the meta device ``normal_``/``uniform_``/… compute nothing, yet each still runs
    PyTorch's Python reference implementation (shape checks, decompositions): initialising a
    ResNet-50 that way costs more than building it. Every op listed returns its input's shape
    unchanged, so skipping it cannot change the built network; ``requires_grad_`` and the
    like are deliberately not listed.
    """

    SKIPPED = frozenset(
        {
            "normal_",
            "uniform_",
            "zero_",
            "fill_",
            "copy_",
            "erfinv_",
            "mul_",
            "add_",
            "sub_",
            "div_",
            "clamp_",
            "exponential_",
            "random_",
            "bernoulli_",
            "log_normal_",
            "cauchy_",
            "geometric_",
        }
    )

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        # torch.nn.init's functions reach a mode whole (kaiming_uniform_ …), and the mode is off
        # while one runs, so they are recognised by their module rather than their inner fills.
        in_place_init = name in self.SKIPPED or (
            getattr(func, "__module__", "") == "torch.nn.init" and name.endswith("_")
        )
        if in_place_init and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def create_meta_model(name: str, **kwargs: Any) -> nn.Module:
    """:func:`create_model` on the meta device: shapes, dtypes and parameter counts without
    memory or arithmetic, weight initialisation skipped (it means nothing there)."""
    with torch.device("meta"), _SkipInitOnMeta():
        return create_model(name, **kwargs)


def model_info(name: str) -> ModelInfo:
    """Static metadata, published results (cnnatlas.published), and the parameter count and
    minimum input size read off a meta-device build."""
    info = lookup(name).info
    model = create_meta_model(name)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return replace(
        info,
        params=params,
        trainable_params=trainable,
        min_input_size=getattr(model, "min_input_size", None),
        results=info.results + results_for(name, info.torchvision_name),
    )
