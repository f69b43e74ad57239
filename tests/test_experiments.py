"""Experiments: the plumbing on the ``smoke`` budget (a few dozen cluttered digits, 2 seeds,
one epoch), the schema of results.json, resume, bad input, and that the arms of each experiment
differ in exactly the way the experiment says they do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnatlas
from cnnatlas.analysis import analyze
from cnnatlas.cli import main
from cnnatlas.experiments import stats
from cnnatlas.experiments.runner import run_dir_of, run_experiment
from cnnatlas.experiments.spec import EXPERIMENTS, get_experiment
from cnnatlas.layers import LocalResponseNorm
from cnnatlas.models.resnet import ResidualBlock


def _build(experiment: str, arm: str, in_chans: int = 1) -> nn.Module:
    spec = get_experiment(experiment).arm(arm)
    options = {k: v for k, v in spec.model_options.items() if k != "devices"}
    return cnnatlas.create_model(spec.model, num_classes=10, in_chans=in_chans, **options)


def _kernels(model: nn.Module) -> set[tuple[int, int]]:
    return {tuple(m.kernel_size) for m in model.modules() if isinstance(m, nn.Conv2d)}


def _receptive_field(experiment: str, arm: str) -> int:
    spec = get_experiment(experiment).arm(arm)
    rows = analyze(spec.model, (1, 40, 40), num_classes=10, in_chans=1, **dict(spec.model_options)).layers
    return max(r.receptive_field for r in rows)


def _check_results(folder: Path, name: str) -> dict:
    results = json.loads((folder / "results.json").read_text())
    exp = get_experiment(name)
    assert results["schema"] == 1 and results["experiment"] == name and results["seeds"] == [0, 1]
    assert results["significance"] == stats.RULE and results["machine"]["torch"] == torch.__version__
    assert list(results["arms"]) == [a.name for a in exp.arms_for("smoke")]
    for entry in results["arms"].values():
        assert entry["params"] > 0 and entry["macs"] > 0
        if exp.trains:
            assert [r["seed"] for r in entry["runs"]] == [0, 1]
            summary = entry["metrics"]["test_error"]
            assert summary["n"] == 2 and 0.0 <= summary["mean"] <= 1.0
            assert math.isclose(summary["mean"], sum(summary["values"]) / 2)
            assert all(r["curve"] and r["images_per_s"] > 0 for r in entry["runs"])
    for arm in list(results["arms"])[1:]:
        assert results["arms"][arm]["vs_baseline"]["baseline"] == exp.arms_for("smoke")[0].name
    assert set(results["extra"]) == set(exp.measures)
    assert (folder / "results.md").read_text().startswith(f"# Experiment `{name}`")
    assert (folder / "bars.png").read_bytes()[:4] == b"\x89PNG"
    return results


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_runs_on_the_smoke_budget(name: str, tmp_path: Path) -> None:
    folder = run_experiment(name, budget="smoke", out=tmp_path / name, device="cpu")
    _check_results(folder, name)


def test_resume_keeps_finished_runs_and_redoes_only_the_missing(tmp_path: Path) -> None:
    folder = run_experiment("lrn", budget="smoke", out=tmp_path / "lrn", device="cpu", arms=("none", "lrn"))
    done = run_dir_of(folder, "none", 0) / "metrics.jsonl"
    stamp = done.stat().st_mtime_ns
    first = json.loads((folder / "results.json").read_text())
    (folder / "results.json").unlink()
    lost = run_dir_of(folder, "lrn", 1)
    for path in sorted(lost.rglob("*"), reverse=True):  # as if killed before its first checkpoint
        path.unlink() if path.is_file() else path.rmdir()
    again = run_experiment("", resume=folder, device="cpu")
    assert done.stat().st_mtime_ns == stamp  # a finished run is read back, not retrained
    second = json.loads((again / "results.json").read_text())
    assert second["arms"]["none"]["runs"] == first["arms"]["none"]["runs"]
    assert [r["seed"] for r in second["arms"]["lrn"]["runs"]] == [0, 1]


def test_steps_to_target_reads_the_running_training_error() -> None:
    from cnnatlas.experiments.measures import steps_to_target_error

    steps = [{"step": i + 1, "acc": 0.5 if i < 30 else 0.9} for i in range(60)]
    # mean error of the last 20 steps reaches 0.25 once 10 of them are at 0.1: (10·0.5 + 10·0.1)/20 = 0.3,
    # (7·0.5 + 13·0.1)/20 = 0.24 → step 30 + 13
    assert steps_to_target_error(steps, 0.25, window=20) == 43
    assert steps_to_target_error(steps[:30], 0.25, window=20) is None


def test_welch_matches_student_t_tables() -> None:
    # Student's t table: two-sided p = 0.05 at t = 2.776 with 4 degrees of freedom, and
    # p = 0.0734 at t = 2.0 with 10 (e.g. NIST/SEMATECH e-Handbook, Table 1.3.6.7.2).
    assert stats.student_t_two_sided_p(2.776, 4) == pytest.approx(0.05, abs=2e-4)
    assert stats.student_t_two_sided_p(2.0, 10) == pytest.approx(0.0734, abs=1e-4)
    equal_variance = stats.welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])  # t = 3/√(2/3), ν = 4
    assert equal_variance["t"] == pytest.approx(3 / math.sqrt(2 / 3)) and equal_variance["dof"] == pytest.approx(4)
    assert equal_variance["significant"] and not stats.welch([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])["significant"]
    assert stats.summary([1.0, 3.0]) == {"mean": 2.0, "std": math.sqrt(2.0), "n": 2, "values": [1.0, 3.0]}


# -- the arms differ as each experiment claims ---------------------------------------------------
def test_kernel_stack_arms_have_equal_receptive_fields_and_the_stated_kernels() -> None:
    assert _kernels(_build("kernel-stack", "one-5x5")) == {(3, 3), (5, 5)}  # 3×3 stem, 5×5 stages
    assert (5, 5) not in _kernels(_build("kernel-stack", "two-3x3"))
    assert (7, 7) in _kernels(_build("kernel-stack", "one-7x7"))
    assert _receptive_field("kernel-stack", "two-3x3") == _receptive_field("kernel-stack", "one-5x5")
    assert _receptive_field("kernel-stack", "three-3x3") == _receptive_field("kernel-stack", "one-7x7")
    # VGG §2.3: at C channels in and out, two 3×3 layers hold 2·9C² weights against 25C²
    # for one 5×5, and three 3×3 hold 27C² against 49C² for one 7×7.
    c = 16

    def conv_weights(arm: str) -> int:
        convs = [m for m in _build("kernel-stack", arm).stages.modules() if isinstance(m, nn.Conv2d)]
        return sum(m.weight.numel() for m in convs)

    assert conv_weights("two-3x3") == 3 * 18 * c * c and conv_weights("one-5x5") == 3 * 25 * c * c
    assert conv_weights("three-3x3") == 3 * 27 * c * c and conv_weights("one-7x7") == 3 * 49 * c * c


def test_degradation_plain_arms_add_nothing_and_residual_arms_do() -> None:
    exp = get_experiment("degradation")
    for arm in exp.arms:
        blocks = [m for m in _build("degradation", arm.name).modules() if isinstance(m, ResidualBlock)]
        depth = int(arm.name.removeprefix("plain").removeprefix("resnet"))
        assert len(blocks) == (depth - 2) // 2  # He et al. 2015 §4.2: 6n + 2 layers, 3n blocks
        assert all(b.has_shortcut == arm.name.startswith("resnet") for b in blocks)
        ops = {
            row.type
            for row in analyze(arm.model, (1, 28, 28), num_classes=10, in_chans=1, **dict(arm.model_options)).layers
        }
        assert ("add" in ops) == arm.name.startswith("resnet")


def test_lrn_pooling_activation_and_head_arms_hold_the_named_layers() -> None:
    def types(experiment: str, arm: str) -> set[type]:
        return {type(m) for m in _build(experiment, arm).modules()}

    assert LocalResponseNorm in types("lrn", "lrn") and nn.BatchNorm2d not in types("lrn", "lrn")
    assert nn.BatchNorm2d in types("lrn", "batchnorm") and LocalResponseNorm not in types("lrn", "batchnorm")
    assert not {LocalResponseNorm, nn.BatchNorm2d} & types("lrn", "none")
    pools = {
        arm: [m for m in _build("pooling", arm).modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
        for arm in ("max-2x2", "max-3x3-overlap", "avg-2x2", "strided-conv")
    }
    assert {(p.kernel_size, p.stride) for p in pools["max-2x2"]} == {(2, 2)}
    assert {(p.kernel_size, p.stride) for p in pools["max-3x3-overlap"]} == {(3, 2)}  # AlexNet §3.4: z=3 > s=2
    assert all(isinstance(p, nn.AvgPool2d) for p in pools["avg-2x2"]) and pools["strided-conv"] == []
    for act, cls in (("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)):
        convs = _build("activation", act).stages
        assert {type(m) for m in convs.modules()} & {nn.ReLU, nn.Tanh, nn.Sigmoid} == {cls}
    linear = {
        arm: [m for m in _build("head", arm).head if isinstance(m, nn.Linear)]
        for arm in ("fc-fc", "fc-narrow", "fc", "gap")
    }
    assert [m.out_features for m in linear["fc-fc"]] == [64, 64, 10] and [
        m.out_features for m in linear["fc-narrow"]
    ] == [64, 16, 10]
    assert (
        len(linear["fc"]) == len(linear["gap"]) == 1 and linear["gap"][0].in_features == 32
    )  # GAP: one weight per channel


def test_bottleneck_and_depthwise_arms_cut_macs_at_equal_output_width() -> None:
    def macs(experiment: str, arm: str) -> int:
        spec = get_experiment(experiment).arm(arm)
        return analyze(spec.model, (1, 40, 40), num_classes=10, in_chans=1, **dict(spec.model_options)).totals["macs"]

    naive, reduced = _build("bottleneck", "inception-naive"), _build("bottleneck", "inception-reduced")
    assert naive.num_features == reduced.num_features  # equal output width
    assert (1, 1) not in {
        tuple(m.kernel_size) for m in naive.stages[0].inception.branch2.modules() if isinstance(m, nn.Conv2d)
    }
    assert macs("bottleneck", "inception-reduced") < macs("bottleneck", "inception-naive")
    basic, bottleneck = _build("bottleneck", "resnet-basic"), _build("bottleneck", "resnet-bottleneck")
    assert [b.out_chans for b in basic.blocks()] == [b.out_chans for b in bottleneck.blocks()]
    assert {
        len([m for m in b.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]) >= 2
        for b in bottleneck.blocks()
    } == {True}
    separable = _build("depthwise", "separable")
    depthwise = [m for m in separable.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert not [m for m in _build("depthwise", "full").modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    # Howard et al. 2017 eq. 5: a separable layer costs 1/N + 1/9 of a full 3×3 one; with the
    # stem and head included the whole net still needs several times fewer MACs.
    assert macs("depthwise", "full") > 4 * macs("depthwise", "separable")


def test_warm_start_deep_arm_takes_the_shallow_arms_layers() -> None:
    shallow, deep = _build("warm-start", "A-shallow"), _build("warm-start", "deep-from-A")
    shared = {
        k for k, v in shallow.state_dict().items() if k in deep.state_dict() and deep.state_dict()[k].shape == v.shape
    }
    # VGG §3.1: the first layers and the classifier come from A, the added layers are new
    assert "stages.0.conv1.conv.weight" in shared and "head.fc.weight" in shared
    assert "stages.0.conv2.conv.weight" not in shared and "stages.0.conv2.conv.weight" in deep.state_dict()


# -- the command line: one error line, exit 2 ----------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["experiment", "run", "no-such"], "unknown experiment 'no-such'"),
        (["experiment", "run", "lrn", "--arms", "lrn,nope"], "has no arm 'nope'"),
        (["experiment", "run", "lrn", "--data", "nodata"], "unknown data set 'nodata'"),
        (["experiment", "run", "lrn", "--seeds", "0"], "--seeds must be a positive integer"),
        (["experiment", "run", "lrn", "--budget", "huge"], "unknown budget 'huge'"),
        (["experiment", "run", "transfer", "--data", "mnist-sample"], "only the cluttered-mnist"),
        (["experiment", "report", "/nonexistent/exp"], "holds no results.json"),
    ],
)
def test_bad_experiment_input_is_one_error_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main([*args, "--out", str(out)] if args[1] == "run" else args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("cnnatlas: error: ") and message in err
    assert not out.exists()  # nothing written for a refused run


def test_experiment_list_names_every_experiment_with_its_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(EXPERIMENTS) and len(rows) == 13
    assert all(r["claim"] and r["question"] and r["models"] for r in rows)


def test_finding_names_runs_stuck_at_chance() -> None:
    from cnnatlas.experiments.report import finding

    def run(seed: int, errors: list[float]) -> dict:
        return {"seed": seed, "curve": [{"epoch": i + 1, "train_error": e} for i, e in enumerate(errors)]}

    arms = {
        # seed 1 sat at chance (90% error on 10 classes) for all three epochs; seed 0 learned
        "relu": {"runs": [run(0, [0.70, 0.28, 0.14]), run(1, [0.894, 0.885, 0.885])]},
        # high but falling: learning, only slowly — not stuck
        "sigmoid": {"runs": [run(0, [0.90, 0.86, 0.82])], "vs_baseline": {"p": 0.3, "significant": False}},
    }
    text = finding({"metric": "train_error", "arms": arms, "seeds": [0, 1]})
    assert "did not learn" in text and "`relu` seed 1" in text
    assert "seed 0" not in text.split("did not learn")[1] and "`sigmoid`" not in text.split("did not learn")[1]


@pytest.mark.parametrize("budget", ["quick", "full", "smoke"])
def test_every_budget_asks_the_cluttered_task_for_something_it_can_make(budget: str) -> None:
    # The options are checked before any digit is drawn; a budget whose canvas cannot hold its
    # own scale jitter would only fail when someone runs it (the multi-scale quick budget did).
    import inspect

    from cnnatlas.data import cluttered

    defaults = {k: p.default for k, p in inspect.signature(cluttered.make_cluttered).parameters.items()}
    for exp in EXPERIMENTS.values():
        plan = exp.budgets[budget]
        if not plan.data.startswith("cluttered-mnist"):
            continue
        for arm in exp.arms_for(budget):
            options = {**defaults, **plan.data_options, **arm.data_options, **plan.arm_data_options.get(arm.name, {})}
            cluttered._check(options["canvas"], options["clutter"], options["train_size"], options["scale_jitter"])
