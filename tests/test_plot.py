"""Charts: the data they plot equals the registry's and the analyser's figures (not pixels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cnnatlas
from cnnatlas.cli import main
from cnnatlas.errors import InputError
from cnnatlas.plot import bars, bubble, curves, layers, rf, save_figure, winners
from cnnatlas.published import ILSVRC_ENTRIES, select


def _texts(figure) -> str:
    return "\n".join(t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text")))


def test_layers_conclusions_equal_shares_from_the_summary() -> None:
    analysis = cnnatlas.analyze("alexnet_2012")
    rows = analysis.layers
    fc_params = sum(r.params for r in rows if r.type == "Linear") / analysis.totals["params"]
    conv_macs = sum(r.macs for r in rows if r.type == "Conv2d") / analysis.totals["macs"]
    # The notes (000, the AlexNet cost table): nearly all parameters in the FC layers, most
    # operations in the convolutions — about 96 % and 92 % for the published network.
    assert 0.955 < fc_params < 0.97 and 0.91 < conv_macs < 0.93
    figure = layers("alexnet_2012")
    (shares,) = figure.atlas_conclusions
    assert shares.fc_param_share == pytest.approx(fc_params)
    assert shares.conv_mac_share == pytest.approx(conv_macs)
    text = _texts(figure)
    assert f"{100 * fc_params:.0f}% of parameters are in fully connected layers" in text
    assert f"{100 * conv_macs:.0f}% of multiply-accumulates are in convolutions" in text
    # the parameter bars are the analyser's per-layer counts, in the network's order
    params_axes = next(a for a in figure.axes if a.patches and a.patches[0].get_gid() == "layers:alexnet_2012:params")
    heights = [p.get_height() for p in params_axes.patches]
    shown = [r for r in rows if r.type in ("Conv2d", "Linear", "MaxPool2d")]
    assert heights == pytest.approx([r.params / 1e6 for r in shown])


def test_two_models_share_one_scale_per_metric() -> None:
    figure = layers(["alexnet_2012", "zfnet"], metric="params")
    left, right = figure.axes[:2]
    assert left.get_ylim() == right.get_ylim()
    with pytest.raises(InputError):
        layers(["alexnet_2012", "zfnet", "vgg11"])
    with pytest.raises(InputError):
        layers("alexnet_2012", metric="flops")


def test_bubble_points_are_registry_and_analyser_values() -> None:
    names = ["alexnet_2012", "resnet18", "mobilenet_v1_025"]
    figure = bubble(names)
    plotted = {}
    for collection in figure.axes[0].collections:
        gid = collection.get_gid() or ""
        if gid.startswith("bubble:"):
            for x, y in collection.get_offsets():
                plotted[(round(float(x), 6), round(float(y), 6))] = gid.endswith("hollow")
    expected = {}
    for name in names:
        info = cnnatlas.model_info(name)
        chosen = select(info.results, "top-1", "ImageNet-1k")
        macs = cnnatlas.analyze(name).totals["macs"]
        expected[(round(macs / 1e9, 6), round(chosen.accuracy, 6))] = chosen.protocol != "1 crop"
    assert plotted == expected
    # AlexNet (2012) is published at 10 crops only, MobileNet without a protocol: hollow. resnet18:
    # torchvision's single-crop figure.
    assert {p.model: p.other_protocol for p in figure.atlas_points} == {
        "alexnet_2012": True,
        "resnet18": False,
        "mobilenet_v1_025": True,
    }
    sizes = {p.model: p.params for p in figure.atlas_points}
    assert sizes["resnet18"] == cnnatlas.model_info("resnet18").params
    # labels never overlap
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in figure.axes[0].texts]
    assert len(boxes) == len(names)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_winners_bars_are_the_registered_entries_with_analyser_depth() -> None:
    figure = winners()
    bars_drawn = figure.atlas_bars
    heights = [p.get_height() for p in figure.axes[0].patches]
    assert heights == [b.top5_error for b in bars_drawn]
    assert sorted(heights) == sorted(e.result.error for e in ILSVRC_ENTRIES if not e.outside_data)
    for bar in bars_drawn:
        assert bar.depth == cnnatlas.analyze(bar.model).totals["network_depth"]
    assert "15.3% with outside data" in _texts(figure)


def test_rf_line_is_the_analyser_receptive_field() -> None:
    figure = rf("zfnet")
    analysis = cnnatlas.analyze("zfnet")
    line = next(line for line in figure.axes[0].lines if line.get_gid() == "rf")
    # every convolution and pooling layer of ZFNet grows the field, so each is one point
    expected = [r for r in analysis.layers if r.type in ("Conv2d", "MaxPool2d")]
    assert list(line.get_ydata()) == [r.receptive_field for r in expected]
    jump = next(line for line in figure.axes[1].lines if line.get_gid() == "jump")
    assert list(jump.get_ydata()) == [r.jump for r in expected]


def test_rf_and_layers_take_any_model_source() -> None:
    """A network that is not registered (torchvision's VGG-11, built without weights) is charted
    from its own trace: conv1 sees 3 pixels, pool1 4, conv2 (at jump 2) 4 + 2·2 = 8."""
    figure = rf("torchvision:vgg11")
    line = next(line for line in figure.axes[0].lines if line.get_gid() == "rf")
    assert list(line.get_ydata())[:3] == [3, 4, 8]
    # VGG-11's three FC layers hold 123,642,856 of its 132,863,336 parameters (torchvision 0.29
    # weights metadata: num_params), 93%
    assert "93% of parameters are in fully connected layers" in _texts(layers("torchvision:vgg11"))


def _fake_run(directory: Path, top1: list[float], label_model: str) -> Path:
    directory.mkdir(parents=True)
    rows = [
        {"epoch": i + 1, "step": 10 * (i + 1), "train_top1": t - 0.05, "test_top1": t, "train_loss": 1 / (i + 1)}
        for i, t in enumerate(top1)
    ]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "config.json").write_text(json.dumps({"model": {"name": label_model}, "recipe": {"name": "r"}}))
    return directory


def test_curves_overlay_runs_thin_train_bold_test(tmp_path: Path) -> None:
    plain = _fake_run(tmp_path / "plain", [0.5, 0.6], "plain20")
    residual = _fake_run(tmp_path / "res", [0.55, 0.7, 0.8], "resnet20")
    figure = curves([plain, residual], x="step")
    lines = {line.get_gid(): line for line in figure.axes[0].lines}
    assert list(lines["curve:1:test:error"].get_ydata()) == pytest.approx([45.0, 30.0, 20.0])
    assert list(lines["curve:1:test:error"].get_xdata()) == [10, 20, 30]
    assert lines["curve:0:test:error"].get_linewidth() > lines["curve:0:train:error"].get_linewidth()
    assert "plain20 · r (test)" in [line.get_label() for line in figure.axes[0].lines]
    with pytest.raises(InputError, match="no training metrics"):
        curves([tmp_path])
    with pytest.raises(InputError):
        curves([plain], metric="accuracy")


def test_bars_with_error_bars() -> None:
    figure = bars(["a", "b"], [1.0, 2.0], [0.1, 0.3], ylabel="error (%)", highlight=["b"])
    assert [p.get_height() for p in figure.axes[0].patches] == [1.0, 2.0]
    assert "2 ± 0.3" in _texts(figure)
    with pytest.raises(InputError):
        bars(["a"], [1.0, 2.0], ylabel="x")


def test_save_figure_formats_and_bad_paths(tmp_path: Path) -> None:
    figure = bars(["a"], [1.0], ylabel="x")
    assert save_figure(figure, tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert save_figure(figure, tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in save_figure(figure, tmp_path / "f.svg").read_bytes()[:400]
    with pytest.raises(InputError, match="figure format"):
        save_figure(figure, tmp_path / "f.gif")
    with pytest.raises(InputError, match="does not exist"):
        save_figure(figure, tmp_path / "missing" / "f.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "f.svg"]  # no temporary left


@pytest.mark.parametrize(
    "argv",
    [
        ["plot", "rf", "no_such_model"],
        ["plot", "layers", "alexnet_2012", "--out", "x.bmp"],
        ["plot", "layers", "alexnet_2012", "--metric", "flops"],
        ["plot", "curves", "."],
        ["plot", "winners", "--out", "/nonexistent-dir/w.png"],
    ],
)
def test_cli_bad_input_is_one_error_line(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnatlas: error:") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_the_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rf.svg"
    assert main(["plot", "rf", "lenet5", "--out", str(out)]) == 0
    assert out.read_bytes().lstrip().startswith(b"<?xml") and str(out) in capsys.readouterr().out
