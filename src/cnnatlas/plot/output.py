"""Figures without pyplot, and writing them safely.

Every chart is a :class:`matplotlib.figure.Figure` attached to its own Agg canvas: no global
backend is switched, no window can open, nothing is shown or printed, and a figure lives only as
long as the caller keeps it. :func:`save_figure` picks PNG, SVG or PDF from the file name and
renders in memory, then writes to a temporary name in the target directory, renamed at the end,
so a failed or interrupted save never leaves half a file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from cnnatlas.errors import InputError

FIGURE_FORMATS = ("png", "svg", "pdf")
PNG_DPI = 150


def new_figure(width: float, height: float) -> Any:
    """A figure on an Agg canvas (so text extents can be measured before saving)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def figure_format(path: str | os.PathLike[str]) -> str:
    """The format named by ``path``'s extension; anything but PNG, SVG or PDF is an InputError."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        shown = Path(path).suffix or "no extension"
        raise InputError(f"{str(path)!r}: cannot tell the figure format from {shown}; use .png, .svg or .pdf")
    return suffix


def check_output_path(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Fail before any work when ``path`` cannot be written: a missing or read-only parent
    directory, or (for a figure) an extension other than .png, .svg or .pdf."""
    target = Path(path)
    if not directory:
        figure_format(target)
    parent = target.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {str(target)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {str(target)!r}: directory {str(parent)!r} is not writable")


def write_output(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` atomically (cnnatlas.train.checkpoint.atomic_write_bytes: a temporary name
    in the same directory, renamed at the end) with an ordinary file mode; a missing or
    unwritable directory is an InputError and leaves nothing behind."""
    from cnnatlas.train.checkpoint import atomic_write_bytes

    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise InputError(f"cannot write {str(target)!r}: directory {str(directory)!r} does not exist")
    try:
        atomic_write_bytes(target, data)
        os.chmod(target, 0o666 & ~_umask())  # mkstemp makes files private; outputs are ordinary files
    except OSError as exc:
        raise InputError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return target


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` as PNG, SVG or PDF (by extension), atomically; returns the path."""
    fmt = figure_format(path)
    # A fixed creation date keeps SVG/PDF output identical from run to run (docs/img is committed).
    metadata = {"Date": None} if fmt == "svg" else ({"CreationDate": None} if fmt == "pdf" else {})
    import matplotlib

    buffer = io.BytesIO()
    # a fixed salt makes the SVG element ids the same on every run too
    with matplotlib.rc_context({"svg.hashsalt": "cnnatlas"}):
        figure.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=metadata, bbox_inches="tight")
    return write_output(path, buffer.getvalue())


__all__ = ["FIGURE_FORMATS", "check_output_path", "figure_format", "new_figure", "save_figure", "write_output"]
