"""`cnnatlas bench`: timing statistics, the machine peak, rows that agree with themselves, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cnnatlas
from cnnatlas.bench import (
    Timing,
    bench_model,
    fit_time_against_operations,
    machine_peak,
    parse_batches,
    time_calls,
)
from cnnatlas.errors import InputError


def test_timing_reports_median_and_interquartile_range() -> None:
    timing = Timing((0.5, 0.1, 0.3, 0.2, 0.4))
    assert timing.median == 0.3
    # quartiles of 0.1…0.5 (exclusive method): 0.15 and 0.45
    assert timing.iqr == pytest.approx(0.3)


def test_time_calls_warms_up_then_stops_once_stable() -> None:
    import time

    calls = []

    def call() -> None:
        # 2 ms each: scheduling jitter is far below the allowed spread of 10 × the median, which a
        # call of a microsecond (where one preempted sample is 100× the rest) could not promise
        calls.append(1)
        time.sleep(0.002)

    timing = time_calls(call, warmup=3, min_repeats=5, max_repeats=50, target_spread=10.0)
    assert len(timing.samples) == 5 and len(calls) == 3 + 5


def test_time_calls_stops_at_the_repeat_budget_when_never_stable() -> None:
    import time

    durations = iter([0.0] * 2 + [0.001 * (1 + (i % 2) * 20) for i in range(100)])
    timing = time_calls(lambda: time.sleep(next(durations)), warmup=2, min_repeats=3, max_repeats=8, max_seconds=60)
    assert len(timing.samples) == 8


def test_machine_peak_is_cores_times_clock_times_flop_per_cycle() -> None:
    # AMD Zen 3 (AVX2 + FMA): 2 FMA pipes × 8 fp32 lanes × 2 FLOP = 32 FLOP per cycle per core.
    peak = machine_peak("cpu", cores=2, clock_ghz=2.5, flags=frozenset({"avx", "avx2", "fma"}))
    assert peak.flops == pytest.approx(2 * 2.5e9 * 32)
    assert "32 FLOP/cycle" in peak.derivation
    # AVX-512 doubles the lanes; AVX-512 BF16 doubles bf16 again (two products per fp32 lane).
    avx512 = frozenset({"avx2", "avx512f", "avx512_bf16"})
    assert machine_peak("cpu", cores=1, clock_ghz=1.0, flags=avx512).flops == pytest.approx(64e9)
    assert machine_peak("cpu", "bf16", cores=1, clock_ghz=1.0, flags=avx512).flops == pytest.approx(128e9)


def test_bench_rows_are_consistent_with_their_timing_and_the_analyser() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("lenet5")
    macs = cnnatlas.analyze("lenet5").totals["macs"]
    peak = machine_peak("cpu", cores=2, clock_ghz=2.0, flags=frozenset({"avx2", "fma"}))
    rows = bench_model(model, "lenet5", (1, 32, 32), macs, batches=(1, 4), backend="fast", peak=peak, max_seconds=1)
    assert [r.batch for r in rows] == [1, 4]
    param_bytes = sum(p.numel() * 4 for p in model.parameters())
    for row in rows:
        assert row.ms_per_image == pytest.approx(row.ms_per_batch / row.batch)
        assert row.images_per_s == pytest.approx(1000 / row.ms_per_image)
        assert row.gflops == pytest.approx(2 * macs * row.batch / (row.ms_per_batch / 1000) / 1e9)
        assert row.peak_fraction == pytest.approx(row.gflops * 1e9 / peak.flops)
        assert row.repeats >= 5 and row.iqr_ms >= 0
        assert row.peak_memory_bytes >= param_bytes
        assert row.agreement["top1_agreement"] == 1.0 and row.agreement["max_relative_error"] <= 1e-4


def test_training_mode_counts_three_products_per_mac() -> None:
    torch.manual_seed(0)
    macs = cnnatlas.analyze("lenet5").totals["macs"]
    (row,) = bench_model(
        cnnatlas.create_model("lenet5"), "lenet5", (1, 32, 32), macs, batches=(8,), mode="train", max_seconds=1
    )
    assert row.mode == "train" and row.peak_memory_bytes > 0
    assert row.gflops == pytest.approx(6 * macs * 8 / (row.ms_per_batch / 1000) / 1e9)


def test_bad_arguments_are_input_errors() -> None:
    model = cnnatlas.create_model("lenet5")
    for kwargs, fragment in (
        ({"backend": "tensorrt"}, "unknown backend"),
        ({"mode": "serve"}, "unknown mode"),
        ({"mode": "train", "backend": "fast"}, "--backend eager"),
    ):
        with pytest.raises(InputError, match=fragment):
            bench_model(model, "lenet5", (1, 32, 32), 1, batches=(1,), **kwargs)
    for text in ("0", "1,x", ""):
        with pytest.raises(InputError):
            parse_batches(text)
    assert parse_batches("1,8,32") == (1, 8, 32)


def test_fit_of_time_against_operations() -> None:
    fit = fit_time_against_operations([(1, 12), (2, 22), (4, 42)])
    assert fit["ms_per_gmac"] == pytest.approx(10) and fit["intercept_ms"] == pytest.approx(2)
    assert fit["r2"] == pytest.approx(1)
    assert fit_time_against_operations([(1, 1)]) is None
    # a point off the line lowers R²
    assert fit_time_against_operations([(1, 12), (2, 22), (4, 80)])["r2"] < 0.99


# -- the command -------------------------------------------------------------------------------
def _cli(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from cnnatlas.cli import main

    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def test_bench_command_writes_json_with_the_environment(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "r.json"
    argv = ["bench", "lenet5", "--batch", "1,2", "--max-seconds", "1", "--format", "json", "--out", str(out_file)]
    code, out, err = _cli(capfd, *argv)
    assert code == 0, err
    result = json.loads(out_file.read_text())
    assert {"cpu", "cores", "threads", "torch", "backend", "dtype", "native_bf16"} <= set(result["environment"])
    assert result["environment"]["torch"] == torch.__version__
    assert [r["batch"] for r in result["results"]] == [1, 2]
    assert result["peak"]["derivation"]
    code, out, err = _cli(capfd, "bench", "lenet5", "--batch", "1", "--max-seconds", "1", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("model,backend,dtype,mode,batch,ms_per_batch")
    # any model source, here torchvision's SqueezeNet 1.1 at 64×64
    argv = ["bench", "torchvision:squeezenet1_1", "--input", "3x64x64", "--batch", "1", "--max-seconds", "1"]
    code, out, err = _cli(capfd, *argv, "--no-memory", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["model"] == "torchvision:squeezenet1_1" and row["input_shape"] == [1, 3, 64, 64]
    assert row["macs_per_image"] > 0


def test_bench_command_errors_are_one_line_and_write_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    def one_line(argv: list[str], fragment: str) -> None:
        code, out, err = _cli(capfd, *argv)
        assert code == 2 and out == "" and err.startswith("cnnatlas: error:") and err.count("\n") == 1, err
        assert fragment in err, err

    out_file = str(tmp_path / "r.json")
    one_line(["bench", "lenett5", "--out", out_file], "did you mean lenet5")
    one_line(["bench", "lenet5", "--batch", "0", "--out", out_file], "--batch")
    one_line(["bench", "lenet5", "--dtype", "fp16", "--out", out_file], "needs a GPU")
    one_line(["bench", "lenet5", "--out", str(tmp_path / "absent" / "r.json")], "cannot write")
    assert list(tmp_path.iterdir()) == []


# -- the chart ---------------------------------------------------------------------------------
def _result(rows: list[tuple[str, int, float, int]]) -> dict:
    """A bench result with (model, batch, ms per image, MACs per image) rows."""
    return {
        "environment": {"cpu": "test CPU", "threads": 2, "torch": torch.__version__},
        "peak": {"flops": None, "derivation": ""},
        "results": [
            {
                "model": m,
                "backend": "eager",
                "dtype": "fp32",
                "mode": "infer",
                "batch": b,
                "ms_per_image": ms,
                "macs_per_image": macs,
                "peak_memory_bytes": b * 2**20,
            }
            for m, b, ms, macs in rows
        ],
    }


def test_bench_chart_has_time_memory_and_operations_panels() -> None:
    from cnnatlas.plot import bench

    result = _result(
        [("a", 1, 10.0, 1_000_000_000), ("a", 4, 6.0, 1_000_000_000), ("b", 1, 30.0, 3_000_000_000)]
        + [("b", 4, 16.0, 3_000_000_000), ("c", 4, 26.0, 5_000_000_000)]
    )
    figure = bench(result, batch=4)
    time_axes, memory_axes, ops_axes = figure.axes
    assert [line.get_label() for line in time_axes.get_lines()] == ["a", "b", "c"]
    assert len(memory_axes.get_lines()) == 3
    # points (1, 6), (3, 16), (5, 26) lie on 1 + 5x exactly
    (fit_line,) = ops_axes.get_lines()
    assert "1.00 ms + 5.00 ms/G-MAC, R² = 1.00" in fit_line.get_label()
    with pytest.raises(InputError, match="batch size 2 was not measured"):
        bench(result, batch=2)


def test_operations_panel_goes_log_log_over_an_order_of_magnitude() -> None:
    from cnnatlas.plot import bench

    # MobileNet-like 0.5 G-MACs beside VGG16-like 15 G-MACs: linear axes would crowd the small one
    wide = bench(
        _result([("small", 16, 8.0, 500_000_000), ("mid", 16, 40.0, 2 * 10**9), ("big", 16, 290.0, 15 * 10**9)])
    )
    ops_axes = wide.axes[2]
    assert (ops_axes.get_xscale(), ops_axes.get_yscale()) == ("log", "log")
    (fit_line,) = ops_axes.get_lines()
    xs = fit_line.get_xdata()
    assert len(xs) > 2 and min(xs) == pytest.approx(0.5) and max(xs) == pytest.approx(15.0)
    # within one order of magnitude the axes stay linear and the line is its two ends
    narrow = bench(_result([("a", 16, 10.0, 10**9), ("b", 16, 40.0, 4 * 10**9)]))
    assert narrow.axes[2].get_xscale() == "linear" and len(narrow.axes[2].get_lines()[0].get_xdata()) == 2


def test_plot_bench_command(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result([("a", 1, 10.0, 10**9), ("b", 1, 20.0, 2 * 10**9)])))
    code, out, err = _cli(capfd, "plot", "bench", str(path), "--out", str(tmp_path / "b.png"))
    assert code == 0, err
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "bad.json").write_text('{"results": []}')
    code, out, err = _cli(capfd, "plot", "bench", str(tmp_path / "bad.json"), "--out", str(tmp_path / "c.png"))
    assert code == 2 and err.count("\n") == 1 and "not a `cnnatlas bench" in err
    assert not (tmp_path / "c.png").exists()
