"""Point labels that do not overlap: a greedy search over offsets around each point.

Labels are placed in order of the points' height (top first); each tries a ring of offsets at
growing distance and keeps the first whose box overlaps no label already placed and stays
inside the axes. A label that finds no free place is drawn at the farthest offset tried with a
thin leader line, so every point keeps its name.
"""

from __future__ import annotations

from typing import Any, Sequence

_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_RADII = (5, 11, 18, 27, 38, 52)


def place_labels(
    axes: Any, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], fontsize: float = 7
) -> list:
    """Annotate each (x, y) with its text; returns the annotations. The figure must have a
    canvas that can measure text (cnnatlas.plot.output.new_figure gives an Agg one) and its
    axes limits must be final."""
    figure = axes.figure
    renderer = figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    placed: list[Any] = []
    annotations = []
    order = sorted(range(len(texts)), key=lambda i: -ys[i])
    for i in order:
        chosen = None
        for radius in _RADII:
            for dx, dy in _DIRECTIONS:
                note = axes.annotate(
                    texts[i],
                    (xs[i], ys[i]),
                    xytext=(dx * radius, dy * radius),
                    textcoords="offset points",
                    ha="left" if dx > 0 else ("right" if dx < 0 else "center"),
                    va="bottom" if dy > 0 else ("top" if dy < 0 else "center"),
                    fontsize=fontsize,
                    zorder=5,
                )
                box = note.get_window_extent(renderer)
                inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                if inside and not any(box.overlaps(other) for other in placed):
                    chosen = note
                    placed.append(box)
                    break
                note.remove()
            if chosen is not None:
                break
        if chosen is None:  # crowded: farthest slot, with a leader line
            chosen = axes.annotate(
                texts[i],
                (xs[i], ys[i]),
                xytext=(_RADII[-1] + 10, _RADII[-1] + 10),
                textcoords="offset points",
                fontsize=fontsize,
                arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "gray"},
                zorder=5,
            )
            placed.append(chosen.get_window_extent(renderer))
        annotations.append(chosen)
    return annotations


__all__ = ["place_labels"]
