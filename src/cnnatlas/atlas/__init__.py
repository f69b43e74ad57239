"""The offline HTML atlas: ``build_atlas(out_dir)`` (``cnnatlas atlas --out DIR``).

A static site that works from ``file://`` or any static server, with no network: the index
(interactive bubble chart, ILSVRC winners, a sortable and filterable table of every model), one
page per model (diagram, per-layer table and charts, receptive field, paper, published results,
default recipe, commands), a formulas page, and the reader's questions when docs/questions.md is
present. The JavaScript and CSS ship inside the package (``cnnatlas/atlas/assets``).

Models are computed in worker processes; the site is written into a temporary directory beside
``out_dir`` and renamed into place at the end, so a failed build leaves nothing half-written and
an earlier atlas in ``out_dir`` intact until the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnatlas.errors import InputError

MARKER = ".cnnatlas-atlas"  # marks a directory this builder wrote (and may replace)
ASSETS = ("atlas.js", "atlas.css")


@dataclass(frozen=True)
class AtlasBuild:
    out_dir: Path
    models: list[str]
    pages: int
    seconds: float
    slowest: list[tuple[str, float]]  # (model, seconds) of the slowest records
    diagrams_rendered: bool


def questions_file() -> Path | None:
    """docs/questions.md of a source checkout, when this package runs from one."""
    candidate = Path(__file__).resolve().parents[3] / "docs" / "questions.md"
    return candidate if candidate.is_file() else None


def _bubble(records: list[dict[str, Any]]) -> dict[str, Any]:
    from cnnatlas.plot.charts import family_styles

    points = [
        {
            "model": r["name"],
            "family": r["family"],
            "macs": r["totals"]["macs"],
            "params": r["totals"]["params"],
            "top1": r["chosen"]["top-1"]["accuracy"],
            "protocol": r["chosen"]["top-1"]["protocol"],
            "hollow": r["chosen"]["top-1"]["other_protocol"],
            "source": r["chosen"]["top-1"]["source"],
            "url": f"models/{r['page']}.html",
        }
        for r in records
        if r["dataset"] == "ImageNet-1k" and r["chosen"]["top-1"] is not None
    ]
    from matplotlib.colors import to_hex

    styles = family_styles({p["family"] for p in points})
    return {
        "title": "ImageNet top-1 accuracy against operations (bubble area ∝ parameters)",
        "protocol": "1 crop",
        "points": points,
        "families": {f: {"colour": to_hex(c), "marker": m} for f, (c, m) in styles.items()},
    }


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write the atlas to {str(out)!r}: it is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise InputError(f"{str(out)!r} is not empty and holds no atlas; choose a new or empty directory")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise InputError(f"cannot write the atlas to {str(out)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the atlas to {str(out)!r}: directory {str(parent)!r} is not writable")


def build_atlas(
    out_dir: str | os.PathLike[str],
    models: Sequence[str] | None = None,
    jobs: int | None = None,
    render_diagrams: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    input_size: Sequence[int] | None = None,
) -> AtlasBuild:
    """Build the site for ``models`` (default: every registered model) in ``jobs`` worker
    processes (default: the CPU count); ``progress(name, done, total)`` is called as each model
    finishes.

    ``models`` holds registered names, fnmatch patterns over them, and any other model source
    (``torchvision:NAME``, ``file.py:NAME``, ``package.module:NAME``; see :mod:`cnnatlas.sources`
    — a file or module source runs its code). ``input_size`` (C×H×W) is the input of the sources
    that do not declare one (default 3×224×224); registered models use their paper's input.
    """
    from cnnatlas.atlas.pages import formulas_page, index_page, model_page, questions_page
    from cnnatlas.atlas.records import model_record, page_name, winners_record
    from cnnatlas.plot.data import expand_models
    from cnnatlas.plot.diagram import graphviz_available
    from cnnatlas.sources import resolve_source, source_kind

    started = time.perf_counter()
    out = Path(out_dir)
    _check_out_dir(out)
    sources = [m for m in models or () if source_kind(m) != "registered"]
    patterns = [m for m in models or () if source_kind(m) == "registered"]
    names = expand_models(patterns) if patterns or not sources else []
    # Resolved once, here: a bad source fails before any work or any file, and a file or module
    # source's code runs once, in this process, which analyses it (a worker could not import it).
    resolved = {source: resolve_source(source, meta=True) for source in sources}
    names += [source for source in resolved if source not in names]
    pages = [page_name(n) for n in names]
    if len(set(pages)) != len(pages):
        clash = sorted({p for p in pages if pages.count(p) > 1})
        raise InputError(f"two models would share the page name {clash[0]!r}; give them distinct sources")
    render_diagrams = render_diagrams and graphviz_available()
    workers = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    records: dict[str, dict[str, Any]] = {}

    def finished(name: str, record: dict[str, Any]) -> None:
        records[name] = record
        if progress:
            progress(name, len(records), len(names))

    if workers == 1:
        winners = winners_record()
        for name in names:
            finished(name, model_record(name, render_diagrams, input_size, resolved.get(name)))
    else:
        # Big networks first, so no worker is left with ResNet-1202 at the end.
        order = sorted((n for n in names if n not in resolved), key=_expected_cost, reverse=True)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            winners_future = pool.submit(winners_record)
            futures = {name: pool.submit(model_record, name, render_diagrams, input_size) for name in order}
            for name, source in resolved.items():  # while the workers analyse the registered models
                finished(name, model_record(name, render_diagrams, input_size, source))
            for name in order:
                finished(name, futures[name].result())
            winners = winners_future.result()
    ordered = [records[n] for n in names]
    known = set(names)
    for bar in winners:  # link a winner to its page only when the page is built
        bar["url"] = f"models/{bar['model']}.html" if bar["model"] in known else "#winners-chart"

    questions = questions_file()
    has_q = questions is not None
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.resolve().parent))
    try:
        (temporary / "models").mkdir()
        (temporary / "assets").mkdir()
        assets = resources.files("cnnatlas.atlas") / "assets"
        for asset in ASSETS:
            (temporary / "assets" / asset).write_bytes((assets / asset).read_bytes())
        (temporary / "index.html").write_text(index_page(ordered, _bubble(ordered), winners, has_q), encoding="utf-8")
        (temporary / "formulas.html").write_text(formulas_page(has_q), encoding="utf-8")
        if questions is not None:
            (temporary / "questions.html").write_text(
                questions_page(questions.read_text(encoding="utf-8"), has_q), encoding="utf-8"
            )
        for record in ordered:
            page = model_page(record, has_q)
            (temporary / "models" / f"{record['page']}.html").write_text(page, encoding="utf-8")
            if not record["diagram"]["svg"]:
                (temporary / "models" / f"{record['page']}.dot").write_text(record["diagram"]["dot"], encoding="utf-8")
        (temporary / MARKER).write_text("built by cnnatlas atlas\n", encoding="utf-8")
        os.chmod(temporary, 0o755)
        _replace_dir(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    page_count = 2 + len(ordered) + (1 if has_q else 0)
    slowest = sorted(((r["name"], r["seconds"]) for r in ordered), key=lambda x: -x[1])[:5]
    return AtlasBuild(out, names, page_count, time.perf_counter() - started, slowest, render_diagrams)


def _expected_cost(name: str) -> int:
    """Registered depth hints (the number in the name) order the work: deepest first."""
    digits = "".join(ch if ch.isdigit() else " " for ch in name).split()
    return max((int(d) for d in digits), default=0)


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished site into place; an earlier atlas is removed only after the swap."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


__all__ = ["AtlasBuild", "build_atlas", "questions_file"]
