"""Model sources: the one way every command turns a name on the command line into a network.

A SOURCE is one of

* a registered name — ``resnet50`` (see ``cnnatlas models``);
* ``torchvision:NAME`` — any torchvision classification model, built without weights
  (``torchvision:mobilenet_v2``);
* ``path/to/file.py:NAME`` — ``NAME`` in that Python file: an ``nn.Module`` subclass (called
  with the options) or a function returning an ``nn.Module``;
* ``package.module:NAME`` — the same, imported from an installed or importable module.

Loading a file or a module runs its code, exactly as ``python file.py`` would: that is the
user's choice, and the reason these sources are only ever read from the command line or an
explicit API call. Options (``--model-option k=v``) go to the registered builder, to
``torchvision.models.get_model`` or to the user's class or function.

:func:`resolve_model` builds the network; :func:`resolve_source` also returns what is known
about it without running it (display name, registered input size).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cnnatlas.errors import CnnAtlasError, InputError

__all__ = [
    "ResolvedModel",
    "parse_model_options",
    "parse_option_value",
    "resolve_model",
    "resolve_source",
    "source_kind",
]

TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class ResolvedModel:
    """A built network and what its source says about it."""

    model: nn.Module
    name: str  # how tables name it: the registered name, or the source as written
    kind: str  # "registered", "torchvision", "file" or "module"
    input_size: tuple[int, ...] | None  # the input it is made for (C×H×W), when known


def source_kind(source: str) -> str:
    """Which of the four forms ``source`` is (no file is read, no module imported)."""
    if source.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if ":" not in source:
        return "registered"
    location = source.rsplit(":", 1)[0]
    return "file" if location.endswith(".py") or "/" in location or "\\" in location else "module"


def resolve_model(source: str, *, meta: bool = False, **options: Any) -> nn.Module:
    """Build the network a SOURCE names (see the module docstring), with ``options`` passed to
    its builder. ``meta=True`` builds it on the meta device (shapes only, no weights
    allocated): how the analyser, diagrams and the atlas read a network."""
    return resolve_source(source, meta=meta, **options).model


def resolve_source(source: str, *, meta: bool = False, **options: Any) -> ResolvedModel:
    """:func:`resolve_model`, plus the display name and the input size the source declares."""
    if not isinstance(source, str) or not source.strip():
        raise InputError(f"a model source must be a non-empty string, got {source!r}")
    kind = source_kind(source)
    if kind == "registered":
        return _registered(source, meta, options)
    if kind == "torchvision":
        return _torchvision(source, source[len(TORCHVISION_PREFIX) :], meta, options)
    location, attribute = source.rsplit(":", 1)
    if not attribute.isidentifier():
        raise InputError(f"model source {source!r}: {attribute!r} is not a Python name (FILE.py:NAME)")
    namespace = _load_file(source, Path(location)) if kind == "file" else _import_module(source, location)
    if not hasattr(namespace, attribute):
        found = sorted(
            n for n, v in vars(namespace).items() if not n.startswith("_") and _is_module_class_or_factory(v)
        )
        hint = f"; it defines {', '.join(found[:8])}" if found else ""
        raise InputError(f"model source {source!r}: {location} has no attribute {attribute!r}{hint}")
    target = getattr(namespace, attribute)
    model = _call_builder(source, target, meta, options)
    return ResolvedModel(model=model, name=source, kind=kind, input_size=None)


def parse_option_value(text: str) -> Any:
    """One ``--model-option``/``--data-option`` value: a Python literal where it is one (``16``,
    ``0.5``, ``'fast'``, ``None``, ``(16, 32)``, and so ``16,32`` as well), else a JSON literal
    (``true``, ``null``), else the text itself. Lists become tuples, the form the builders take."""
    text = text.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return text
    return tuple(value) if isinstance(value, list) else value


def parse_model_options(pairs: list[str] | None, flag: str = "--model-option") -> dict[str, Any]:
    """``["num_classes=10", "mode='fast'", "widths=16,32"]`` → a dict; values by
    :func:`parse_option_value`, "-" in names read as "_" (``drop-path-rate`` = ``drop_path_rate``)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise InputError(f"{flag} must look like NAME=VALUE, got {pair!r}")
        options[key] = parse_option_value(text)
    return options


# -- the four forms ---------------------------------------------------------------------------------
def _registered(name: str, meta: bool, options: dict[str, Any]) -> ResolvedModel:
    from cnnatlas.registry import create_meta_model, create_model, lookup

    info = lookup(name).info  # unknown names raise InputError with the closest names
    model = create_meta_model(name, **options) if meta else create_model(name, **options)
    in_chans = getattr(model, "in_chans", None)
    size = tuple(info.input_size)
    if in_chans and size and in_chans != size[0]:
        size = (in_chans, *size[1:])
    return ResolvedModel(model=model, name=name, kind="registered", input_size=size)


def _torchvision(source: str, name: str, meta: bool, options: dict[str, Any]) -> ResolvedModel:
    from torchvision import models

    available = models.list_models(module=models)  # classification models only
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(TORCHVISION_PREFIX + c for c in close)}?" if close else ""
        raise InputError(f"torchvision has no classification model {name!r}{hint}")
    if "weights" in options:
        raise InputError(f"{source}: models are built without weights; load weights with cnnatlas.load_weights")
    model = _call_builder(source, lambda **kw: models.get_model(name, weights=None, **kw), meta, options)
    return ResolvedModel(model=model, name=source, kind="torchvision", input_size=_torchvision_input(models, name))


def _torchvision_input(models: Any, name: str) -> tuple[int, int, int]:
    """The crop size of the model's published weights (299 for Inception v3, 224 for most),
    read from torchvision's metadata without downloading anything."""
    try:
        transforms = models.get_model_weights(name).DEFAULT.transforms
        crop = transforms.keywords.get("crop_size", 224)
        side = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    except (AttributeError, ValueError, TypeError, KeyError):
        side = 224
    return 3, side, side


def _load_file(source: str, path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"model source {source!r}: no such file {str(path)!r}")
    module_name = f"cnnatlas_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"model source {source!r}: {str(path)!r} cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling-free decorators look it up
    # The file's own folder first, so that it can import its neighbours as `python file.py` would.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure in the user's file is reported as such
        sys.modules.pop(module_name, None)
        raise InputError(f"model source {source!r}: running {str(path)!r} failed: {_one_line(exc)}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import_module(source: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InputError(f"model source {source!r}: no module named {exc.name!r}") from exc
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"model source {source!r}: importing {module_name!r} failed: {_one_line(exc)}") from exc


def _is_module_class_or_factory(value: Any) -> bool:
    if inspect.isclass(value):
        return issubclass(value, nn.Module)
    return inspect.isfunction(value)


def _call_builder(source: str, target: Any, meta: bool, options: dict[str, Any]) -> nn.Module:
    """Call an ``nn.Module`` class or a factory with ``options``; on the meta device when asked
    (falling back to a normal build if the user's code cannot run there)."""
    if isinstance(target, nn.Module):
        if options:
            raise InputError(f"model source {source!r} is a module instance; it takes no options")
        return target
    if not callable(target) or (inspect.isclass(target) and not issubclass(target, nn.Module)):
        raise InputError(
            f"model source {source!r} is a {type(target).__name__}, not an nn.Module class or a function returning one"
        )
    if meta:
        from cnnatlas.registry import _SkipInitOnMeta

        try:
            with torch.device("meta"), _SkipInitOnMeta():
                model = target(**options)
            if isinstance(model, nn.Module):
                return model
        except CnnAtlasError:
            raise
        except Exception:  # noqa: BLE001 - e.g. code that reads a tensor's values while building:
            pass  # built again below, normally, where a real error is reported as such
    return _checked(source, target, options)


def _checked(source: str, build: Callable[..., Any], options: dict[str, Any]) -> nn.Module:
    try:
        model = build(**options)
    except CnnAtlasError:
        raise
    except TypeError as exc:
        raise InputError(f"model source {source!r}: building it failed: {_one_line(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - the user's code; report what failed, in one line
        raise InputError(f"model source {source!r}: building it raised {_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise InputError(f"model source {source!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
