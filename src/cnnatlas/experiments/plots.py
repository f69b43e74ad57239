"""The experiments' two kinds of picture: overlaid curves (mean over seeds with a ±1 std band,
which the atlas's per-run ``cnnatlas.plot.curves`` does not draw) and bars with ±1 std error bars
(the atlas's ``cnnatlas.plot.bars``). PNG bytes written atomically; matplotlib's Agg backend."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

from cnnatlas.train.checkpoint import atomic_write_bytes

#: label → (x values, y means, y stds or None, line style)
Series = Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None, str]]


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def curves(series: Series, path: Path, *, xlabel: str, ylabel: str, title: str = "", logy: bool = False) -> Path:
    """Overlaid curves; arms sharing a colour index keep their colour across line styles."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours: dict[str, str] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for label, (xs, ys, err, style) in series.items():
        key = label.split(" ")[0]
        colour = colours.setdefault(key, palette[len(colours) % len(palette)])
        ax.plot(xs, ys, style, color=colour, label=label, linewidth=1.6)
        if err is not None and any(e for e in err):
            low = [y - e for y, e in zip(ys, err)]
            high = [y + e for y, e in zip(ys, err)]
            ax.fill_between(xs, low, high, color=colour, alpha=0.15, linewidth=0)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def bars(
    labels: Sequence[str], means: Sequence[float], stds: Sequence[float], path: Path, *, ylabel: str, title: str = ""
) -> Path:
    """One bar per arm with ±1 std error bars (the atlas's bar chart, cnnatlas.plot.bars)."""
    from cnnatlas.plot import bars as atlas_bars
    from cnnatlas.plot import save_figure

    figure = atlas_bars(list(labels), list(means), list(stds), ylabel=ylabel, title=title)
    return save_figure(figure, path)
