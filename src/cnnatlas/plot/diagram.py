"""Architecture diagrams rendered by Graphviz (`dot`): SVG, PNG, PDF, or the DOT source itself.

The graph comes from :func:`cnnatlas.analysis.graph.layer_graph` (the analyser's trace). The
``graphviz`` Python package is used when installed (the ``diagram`` extra); either way Debian's
``graphviz`` package (or any install of Graphviz) must provide the ``dot`` program for every
format but ``dot``, which needs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

from cnnatlas.errors import CnnAtlasError, InputError

DIAGRAM_FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = (
    "Graphviz's `dot` program is not installed: install it with `apt-get install graphviz` "
    "(Debian/Ubuntu; `brew install graphviz` on macOS), or use --format dot for the source"
)


def diagram_format(path: str | os.PathLike[str] | None, fmt: str | None) -> str:
    """The format asked for, else the one the file name's extension names, else SVG."""
    if fmt is None and path is not None:
        fmt = Path(path).suffix.lower().lstrip(".") or "svg"
    fmt = fmt or "svg"
    if fmt not in DIAGRAM_FORMATS:
        raise InputError(f"unknown diagram format {fmt!r}; choose from {', '.join(DIAGRAM_FORMATS)}")
    return fmt


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def render(graph: Any, fmt: str = "svg", timeout: float | None = None) -> bytes:
    """The diagram of a :class:`~cnnatlas.analysis.graph.LayerGraph` in ``fmt``; with ``timeout``
    (seconds) a layout that takes longer is stopped with an error."""
    fmt = diagram_format(None, fmt)
    source = graph.to_dot()
    if fmt == "dot":
        return source.encode()
    if not graphviz_available():
        raise CnnAtlasError(INSTALL_HINT)
    try:
        import graphviz
    except ImportError:
        graphviz = None
    try:
        if graphviz is not None and timeout is None:
            return graphviz.Source(source).pipe(format=fmt, engine="dot")
        done = subprocess.run(
            ["dot", f"-T{fmt}"], input=source.encode(), capture_output=True, timeout=timeout, check=True
        )
        return done.stdout
    except subprocess.TimeoutExpired:
        raise CnnAtlasError(f"Graphviz took over {timeout:g} s to lay out {graph.model}; try --depth 1 or 2") from None
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        text = detail.decode(errors="replace").strip().splitlines()
        raise CnnAtlasError(f"Graphviz failed on {graph.model}: {text[-1] if text else exc}") from None
    except Exception as exc:  # the graphviz package's own errors (ExecutableNotFound, CalledProcessError)
        if type(exc).__module__.startswith("graphviz"):
            raise CnnAtlasError(f"Graphviz failed on {graph.model}: {str(exc).strip().splitlines()[-1]}") from None
        raise


def diagram(
    model_or_name: Any, depth: int | None = None, input_size: Sequence[int] | None = None, **model_kwargs: Any
) -> Any:
    """The layer graph of a registered model or any ``nn.Module`` (see ``render``/``save_diagram``)."""
    from cnnatlas.analysis.graph import layer_graph

    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise InputError(f"depth must be a positive integer, got {depth!r}")
    return layer_graph(model_or_name, input_size=input_size, depth=depth, **model_kwargs)


def save_diagram(graph: Any, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Render and write atomically; the format comes from ``fmt`` or the extension."""
    from cnnatlas.plot.output import write_output

    return write_output(path, render(graph, diagram_format(path, fmt)))


__all__ = [
    "DIAGRAM_FORMATS",
    "INSTALL_HINT",
    "diagram",
    "diagram_format",
    "graphviz_available",
    "render",
    "save_diagram",
]
