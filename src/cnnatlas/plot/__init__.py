"""Charts of the notes' pictures, each computed from the registered models and the analyser.

::

    import cnnatlas.plot as plot
    fig = plot.bubble()                       # top-1 accuracy vs G-MACs, area ∝ parameters
    fig = plot.winners()                      # ILSVRC winners: top-5 error and depth by year
    fig = plot.layers(["alexnet_2012", "vgg16"])  # per-layer costs and the three conclusions
    fig = plot.rf("vgg16")                    # receptive field and jump by layer
    fig = plot.curves(["runs/plain20", "runs/resnet20"])  # overlaid training curves
    fig = plot.bars(["a", "b"], [1.0, 2.0], [0.1, 0.2], ylabel="error (%)")
    fig = plot.bench(plot.load_bench_result("bench.json"))  # time/memory vs batch, ops vs time
    plot.save_figure(fig, "chart.svg")        # PNG, SVG or PDF by extension, written atomically

Every function returns a :class:`matplotlib.figure.Figure` on its own Agg canvas; nothing is
shown or printed (see docs/atlas.md).
"""

from __future__ import annotations

from cnnatlas.plot.bench import bench, load_bench_result
from cnnatlas.plot.charts import bubble, layers, rf, winners
from cnnatlas.plot.curves import RunCurves, bars, curves, load_run_curves
from cnnatlas.plot.output import FIGURE_FORMATS, save_figure

__all__ = [
    "FIGURE_FORMATS",
    "RunCurves",
    "bars",
    "bench",
    "bubble",
    "curves",
    "layers",
    "load_bench_result",
    "load_run_curves",
    "rf",
    "save_figure",
    "winners",
]
