"""What an experiment is: a question, the paper claim it tests, arms (model + options), budgets.

Every arm trains through :func:`cnnatlas.train.train` with the ``experiment`` recipe, so the
arms of one experiment differ only in the model option under test. A budget fixes the data,
the training length and the number of seeds; ``quick`` runs on a 2-core laptop CPU in minutes,
``full`` is the longer run a paper-scale answer needs (more digits, more epochs, deeper arms).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from cnnatlas.errors import InputError

BUDGETS = ("quick", "full", "smoke")  # smoke: seconds, for tests of the plumbing only


@dataclass(frozen=True)
class Arm:
    """One configuration: a registered model, its options, and what else differs.

    ``init_from_arm``: initialise from the same seed's trained run of that (earlier) arm,
    copying tensors by name and shape except ``init_exclude``; ``freeze``: parameter patterns
    kept fixed; ``data_options``/``recipe`` are merged over the budget's.
    """

    name: str
    model: str
    model_options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    data_options: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    init_from_arm: str | None = None
    init_exclude: str | None = None
    freeze: str | None = None


@dataclass(frozen=True)
class Budget:
    """Data, length and seeds of one budget; ``arms`` (names) restricts which arms run."""

    data: str
    epochs: float
    seeds: int
    data_options: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    limit_train: int | None = None
    limit_test: int | None = None
    arms: tuple[str, ...] | None = None
    arm_data_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # over the arm's own


@dataclass(frozen=True)
class Experiment:
    """A question from the notes, the claim it tests (with its source) and how to test it.

    ``metric`` is the primary metric the significance rule is applied to (lower is better);
    ``measures`` names extra measurements run after training (see :mod:`.measures`).
    ``fixed_data``: the arms set data options (digit subsets, scale jitter) that only the
    cluttered-digit task has, so ``--data`` cannot replace it.
    """

    name: str
    question: str
    claim: str
    arms: tuple[Arm, ...]
    budgets: Mapping[str, Budget]
    metric: str = "test_error"
    measures: tuple[str, ...] = ()
    fixed_data: bool = False
    trains: bool = True

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise InputError(f"experiment {self.name!r} has no arm {name!r} (arms: {', '.join(a.name for a in self.arms)})")

    def arms_for(self, budget: str, only: tuple[str, ...] | None = None) -> list[Arm]:
        chosen = self.budgets[budget].arms
        arms = [a for a in self.arms if chosen is None or a.name in chosen]
        if only:
            for name in only:
                self.arm(name)  # InputError for an unknown arm
            arms = [a for a in arms if a.name in only]
            needed = {a.init_from_arm for a in arms if a.init_from_arm}
            missing = sorted(needed - {a.name for a in arms})
            if missing:
                raise InputError(f"arm(s) {', '.join(sorted(only))} start from arm(s) {', '.join(missing)}: add them")
        return arms

    def models(self) -> list[str]:
        return list(dict.fromkeys(a.model for a in self.arms))


# -- the catalogue -----------------------------------------------------------------------------
CLUTTERED = "cluttered-mnist"
QUICK_RECIPE = {"batch_size": 32, "lr": 0.02}  # small batches: enough steps in a few thousand images
SMOKE = Budget(CLUTTERED, 1, 2, {"train_size": 64}, {"batch_size": 32}, limit_test=32)


def _budgets(
    quick_seeds: int = 3,
    quick_data: str = "mnist-sample",
    quick_options: Mapping[str, Any] | None = None,
    quick_limit: int | None = 2000,
) -> dict[str, Budget]:
    """quick: 2,000 clean digits (or the given data), 3 epochs, batch 32 — minutes on a laptop CPU;
    full: the cluttered task, all 8,000 digits, 30 epochs, 5 seeds."""
    return {
        "quick": Budget(quick_data, 3, quick_seeds, dict(quick_options or {}), QUICK_RECIPE, limit_train=quick_limit),
        "full": Budget(CLUTTERED, 30, 5),
        "smoke": SMOKE,
    }


_NARROW_RESNET = {"widths": (8, 16, 32), "stem_width": 8}
_CONSTANT_WIDTH = {"stem": 16, "widths": (16, 16, 16), "head": "gap"}


def _catalogue() -> dict[str, Experiment]:
    experiments = [
        Experiment(
            "degradation",
            "Does a 56-layer plain network really train worse than a 20-layer one, and does a residual one not?",
            "He et al. 2015, Fig. 1 and Fig. 6 / §4.2: deeper plain nets have higher training error; "
            "residual nets of the same depth do not (CIFAR-10, 20–110 layers)",
            tuple(
                Arm(
                    f"{kind}{depth}",
                    f"{kind}{depth}",
                    _NARROW_RESNET,
                    f"{kind} CIFAR net, {depth} layers, widths 8/16/32",
                )
                for kind in ("plain", "resnet")
                for depth in (20, 32, 56, 110)
            ),
            {
                "quick": Budget(
                    "mnist-sample",
                    3,
                    3,
                    {},
                    QUICK_RECIPE,
                    limit_train=2000,
                    arms=("plain20", "plain56", "resnet20", "resnet56"),
                ),
                "full": Budget(CLUTTERED, 30, 5),
                "smoke": Budget(
                    CLUTTERED, 1, 2, {"train_size": 64}, {"batch_size": 32}, limit_test=32, arms=("plain20", "resnet20")
                ),
            },
            metric="train_error",
        ),
        Experiment(
            "kernel-stack",
            "Are two 3×3 convolutions better than one 5×5 (and three 3×3 than one 7×7)? Was it tested with a model?",
            "Simonyan & Zisserman 2014 §2.3: a stack of two 3×3 layers has a 5×5 receptive field, three have 7×7, "
            "with more non-linearities and fewer parameters (27C² vs 49C²); §4.1 (Table 3): a net with 5×5 layers "
            "in place of pairs of 3×3 had 7% higher top-1 error",
            (
                Arm("two-3x3", "mini_vgg", {**_CONSTANT_WIDTH, "kernels": (3, 3)}, "per stage: 3×3, 3×3 (16 channels)"),
                Arm("one-5x5", "mini_vgg", {**_CONSTANT_WIDTH, "kernels": (5,)}, "per stage: one 5×5 (16 channels)"),
                Arm("three-3x3", "mini_vgg", {**_CONSTANT_WIDTH, "kernels": (3, 3, 3)}, "per stage: 3×3 ×3"),
                Arm("one-7x7", "mini_vgg", {**_CONSTANT_WIDTH, "kernels": (7,)}, "per stage: one 7×7"),
            ),
            _budgets(),
            measures=("timing",),
        ),
        Experiment(
            "lrn",
            "What is LRN, and does it help?",
            "Krizhevsky et al. 2012 §3.3: response normalisation reduces top-1/top-5 error by 1.4%/1.2%; "
            "Simonyan & Zisserman 2014 §4.1, Table 3 (A vs A-LRN): it does not improve performance; "
            "Ioffe & Szegedy 2015: batch normalisation",
            (
                Arm("none", "mini_vgg", {"norm": "none"}, "no normalisation"),
                Arm("lrn", "mini_vgg", {"norm": "lrn"}, "LRN (k=2, n=5, α=1e-4, β=0.75) after each stage"),
                Arm("batchnorm", "mini_vgg", {"norm": "bn"}, "batch normalisation after every convolution"),
            ),
            _budgets(),
        ),
        Experiment(
            "pooling",
            "Max, average or strided convolution; overlapping or not?",
            "Krizhevsky et al. 2012 §3.4: overlapping 3×3/2 pooling lowers top-1/top-5 error by 0.4%/0.3% "
            "against 2×2/2; Springenberg et al. 2015: a strided convolution can replace pooling",
            (
                Arm("max-2x2", "mini_vgg", {"pool": "max2"}, "2×2/2 max pooling"),
                Arm("max-3x3-overlap", "mini_vgg", {"pool": "max3"}, "3×3/2 overlapping max pooling"),
                Arm("avg-2x2", "mini_vgg", {"pool": "avg2"}, "2×2/2 average pooling"),
                Arm("strided-conv", "mini_vgg", {"pool": "stride"}, "3×3/2 convolution instead of pooling"),
            ),
            _budgets(),
        ),
        Experiment(
            "activation",
            "Why ReLU? How much faster does it train than tanh or sigmoid, and why does sigmoid saturate?",
            "Krizhevsky et al. 2012 §3.1, Fig. 1: a four-layer CNN with ReLUs reaches 25% training error on "
            "CIFAR-10 six times faster than with tanh",
            tuple(
                Arm(act, "mini_vgg", {"activation": act, "kernels": (3,), "head": "fc"}, f"3 conv + 1 FC, {act}")
                for act in ("relu", "tanh", "sigmoid")
            ),
            _budgets(),
            metric="train_error",
            measures=("steps_to_target", "gradient_norms"),
        ),
        Experiment(
            "head",
            "Why a second fully connected layer of the same width; could it be narrower, or gone?",
            "AlexNet/VGG use two 4096-wide FC layers; Lin et al. 2014 §3.2 (NiN) and Szegedy et al. 2014 §5 "
            "replace them by global average pooling with far fewer parameters (GoogLeNet: moving from fully "
            "connected layers to average pooling improved top-1 accuracy by about 0.6%)",
            (
                Arm("fc-fc", "mini_vgg", {"head": "fc-fc"}, "FC 128 → FC 128 → FC 10"),
                Arm("fc-narrow", "mini_vgg", {"head": "fc-narrow"}, "FC 128 → FC 32 → FC 10"),
                Arm("fc", "mini_vgg", {"head": "fc"}, "one FC 10 on the flattened 3×3 maps"),
                Arm("gap", "mini_vgg", {"head": "gap"}, "global average pooling → FC 10"),
            ),
            _budgets(),
            measures=("head_share",),
        ),
        Experiment(
            "bottleneck",
            "When to use a 1×1 convolution: does a 1×1 reduction cut the cost, at what accuracy?",
            "Szegedy et al. 2014 §4, Fig. 2: 1×1 reductions before the 3×3 and 5×5 keep the Inception module "
            "affordable; He et al. 2015 §4.1: bottleneck blocks (1×1, 3×3, 1×1) for the deeper nets",
            (
                Arm("inception-naive", "mini_inception", {"unit": "inception_naive"}, "Fig. 2(a), no reductions"),
                Arm("inception-reduced", "mini_inception", {"unit": "inception"}, "Fig. 2(b), same output width"),
                Arm("resnet-basic", "resnet20", _NARROW_RESNET, "ResNet-20 basic blocks, widths 8/16/32"),
                Arm(
                    "resnet-bottleneck",
                    "resnet20",
                    {**_NARROW_RESNET, "block": "bottleneck", "widths": (2, 4, 8)},
                    "bottleneck blocks 1×1→3×3→1×1 with the same 8/16/32 output width",
                ),
            ),
            _budgets(),
            measures=("timing",),
        ),
        Experiment(
            "depthwise",
            "Does MobileNet's depthwise-separable convolution's 8–9× fewer MACs make it 8–9× faster on a CPU?",
            "Howard et al. 2017 §3.1: 3×3 depthwise separable convolutions use 8 to 9 times less computation "
            "than standard convolutions at only a small reduction in accuracy (Table 4: 1.1% on ImageNet)",
            (
                Arm("separable", "mini_mobilenet", {"unit": "separable"}, "3×3 depthwise + 1×1 pointwise"),
                Arm("full", "mini_mobilenet", {"unit": "full"}, "full 3×3 convolutions"),
            ),
            _budgets(),
            measures=("timing",),
        ),
        Experiment(
            "ensemble",
            "Do deep networks need ensembles, and why do they work?",
            "Krizhevsky et al. 2012 §6, Simonyan & Zisserman 2014 §4.4, Szegedy et al. 2014 §7: averaging the "
            "softmax of several independently trained nets lowers the error (AlexNet: five CNNs 16.4% top-5 error "
            "against 18.2% for one)",
            (Arm("mini_vgg", "mini_vgg", {}, "independently trained copies (seeds)"),),
            _budgets(quick_seeds=5),
            measures=("ensemble",),
        ),
        Experiment(
            "multiscale",
            "What is multi-scale training and testing, and does it help?",
            "Simonyan & Zisserman 2014 §3.1–3.2, §4.2–4.3 (Tables 3–4): scale jittering at training and "
            "averaging over several test scales both lower the error",
            (
                Arm("single-scale", "mini_vgg", {"head": "gap"}, "trained at scale 1"),
                Arm(
                    "scale-jittered",
                    "mini_vgg",
                    {"head": "gap"},
                    "training digits at a random scale in [0.75, 1.25]",
                    data_options={"scale_jitter": 0.25},
                ),
            ),
            # the quick canvas holds a 28-pixel digit scaled by up to 1.25 (35 pixels)
            _budgets(quick_data=CLUTTERED, quick_options={"canvas": 36, "clutter": 0}, quick_limit=2000),
            measures=("multiscale",),
            fixed_data=True,
        ),
        Experiment(
            "warm-start",
            "Does initialising a deep net from a trained shallower one (VGG A → D/E) really speed up convergence?",
            "Simonyan & Zisserman 2014 §3.1: the deeper nets were started from net A's layers because bad "
            "initialisation can stall learning in deep nets; they note that Glorot initialisation makes this "
            "unnecessary",
            (
                Arm("A-shallow", "mini_vgg", {"kernels": (3,), "init": "normal"}, "1 conv per stage, N(0, 0.01)"),
                Arm(
                    "deep-normal", "mini_vgg", {"kernels": (3, 3, 3), "init": "normal"}, "3 convs per stage, N(0, 0.01)"
                ),
                Arm(
                    "deep-from-A",
                    "mini_vgg",
                    {"kernels": (3, 3, 3), "init": "normal"},
                    "3 convs per stage, A's layers copied in, the rest N(0, 0.01)",
                    init_from_arm="A-shallow",
                ),
                Arm("deep-glorot", "mini_vgg", {"kernels": (3, 3, 3), "init": "glorot"}, "3 convs per stage, Glorot"),
                Arm("deep-he", "mini_vgg", {"kernels": (3, 3, 3), "init": "he"}, "3 convs per stage, He"),
            ),
            _budgets(),
            metric="train_error",
            measures=("steps_to_target",),
        ),
        Experiment(
            "transfer",
            "Why do VGG features transfer to other data sets?",
            "Simonyan & Zisserman 2014 Appendix B and Razavian et al. 2014: features of a net trained on one "
            "task, with a linear classifier on top, do well on another task",
            (
                Arm(
                    "source-0-4",
                    "mini_vgg",
                    {},
                    "trained on 2,000 digits 0–4",
                    data_options={"digits": "0-4", "train_size": 2000},
                ),
                Arm(
                    "scratch-5-9",
                    "mini_vgg",
                    {},
                    "trained from scratch on 300 digits 5–9",
                    data_options={"digits": "5-9"},
                ),
                Arm(
                    "linear-5-9",
                    "mini_vgg",
                    {},
                    "0–4 features frozen, a new linear classifier on 300 digits 5–9",
                    data_options={"digits": "5-9"},
                    init_from_arm="source-0-4",
                    init_exclude="head.fc",
                    freeze="stages,head.fc1,head.fc2",
                ),
                Arm(
                    "finetune-5-9",
                    "mini_vgg",
                    {},
                    "started from the 0–4 net, all layers trained on 300 digits 5–9",
                    data_options={"digits": "5-9"},
                    init_from_arm="source-0-4",
                    init_exclude="head.fc",
                ),
            ),
            {
                # canvas 28 without clutter is the clean bundled digits, with digit subsets
                **_budgets(
                    quick_data=CLUTTERED,
                    quick_options={"canvas": 28, "clutter": 0, "train_size": 300},
                    quick_limit=None,
                ),
                "smoke": Budget(
                    CLUTTERED,
                    1,
                    2,
                    {"train_size": 64},
                    {"batch_size": 32},
                    limit_test=64,
                    arm_data_options={"source-0-4": {"train_size": 64}},
                ),
            },
            fixed_data=True,
        ),
        Experiment(
            "model-parallel",
            "AlexNet's two-GPU split: what, how, and what does it cost? How is it done in PyTorch?",
            "Krizhevsky et al. 2012 §3.2: half of the kernels on each GPU, communicating only in certain layers; "
            "the split form computes the same function as one device",
            (
                Arm("one-device", "alexnet_2012", {}, "grouped convolutions on one device"),
                Arm("two-devices", "alexnet_2012", {"devices": ("cpu", "cpu")}, "two towers, activations exchanged"),
            ),
            {
                "quick": Budget("synthetic", 0, 3, recipe={"batch_size": 4, "iterations": 3}),
                "full": Budget("synthetic", 0, 5, recipe={"batch_size": 16, "iterations": 5}),
                "smoke": Budget("synthetic", 0, 2, recipe={"batch_size": 1, "iterations": 1}),
            },
            metric="step_time_s",
            measures=("model_parallel",),
            trains=False,
        ),
    ]
    return {e.name: e for e in experiments}


EXPERIMENTS: dict[str, Experiment] = _catalogue()


def list_experiments() -> list[str]:
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown experiment {name!r}{hint} (known: {', '.join(EXPERIMENTS)})") from None
