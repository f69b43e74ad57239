"""Published results: every number a paper (or torchvision's weights metadata) reports for a
registered network, in one table with explicit fields, plus the ILSVRC competition entries.

Each :class:`PublishedResult` says on what data (data set and split), which metric (top-1 or
top-5 classification error), under which test protocol (crops/scales), from how many models
(1 = a single model, N = an ensemble of N), and where it is printed (the table). Values are
stored in one direction, as **error in percent**; :attr:`PublishedResult.accuracy` converts for
display. Papers that print accuracy (SqueezeNet, MobileNet) are converted once, here, by
:func:`_from_accuracy`, so the figure a reader finds in the paper is still visible in the code.

Single-model results are keyed by registered model name (:data:`RESULTS`);
``model_info(name).results`` reads them from here. Competition entries (ensembles on the test
set, as submitted to ILSVRC) are separate records (:data:`ILSVRC_ENTRIES`), so they never mix
with single-model figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

METRICS = ("top-1", "top-5")
SPLITS = ("val", "test")
# How a test image becomes a prediction. "full image": the whole (small) image is the input,
# as on MNIST and CIFAR; "dense": the network is applied fully-convolutionally to the whole
# rescaled image (VGG §3.2); "not stated": the paper does not say.
PROTOCOLS = (
    "1 crop",
    "10 crops",
    "144 crops",
    "dense, 1 scale",
    "dense, 3 scales",
    "dense, multi-scale",
    "full image",
    "not stated",
)
# The protocol `compare` and the bubble chart prefer: one view of the image, as Canziani et al.
# (2016) measured every network (a single central crop).
SINGLE_VIEW = ("1 crop", "full image")

TORCHVISION_WEIGHTS = "IMAGENET1K_V1"


@dataclass(frozen=True)
class PublishedResult:
    """One published number for one network, with everything needed to compare it fairly.

    ``error`` is the classification error in percent (e.g. 37.5 for AlexNet's ILSVRC-2010
    top-1). ``reference`` is empty when the number is from the network's own paper
    (``ModelInfo.paper``); otherwise it names who published it.
    """

    dataset: str  # "ImageNet-1k" (the ILSVRC-2012 data), "ILSVRC-2010", "CIFAR-10", "CIFAR-100", "SVHN", "MNIST"
    split: str  # "val" or "test"
    metric: str  # "top-1" or "top-5" error
    error: float  # percent
    source: str  # where in the publication: "Table 3", "Section III.C"
    protocol: str = "not stated"  # one of PROTOCOLS
    models: int | None = 1  # 1: single model; N: ensemble of N; None: an ensemble of unstated size
    setting: str = ""  # what else tells rows of the same table apart (training augmentation, test scale)
    reference: str = ""  # empty: the network's own paper

    def __post_init__(self) -> None:
        # Malformed rows are programming errors in this table, caught at import time.
        if self.metric not in METRICS or self.split not in SPLITS or self.protocol not in PROTOCOLS:
            raise ValueError(f"malformed published result: {self}")
        if not 0.0 <= self.error <= 100.0 or (self.models is not None and self.models < 1):
            raise ValueError(f"malformed published result: {self}")

    @property
    def accuracy(self) -> float:
        """The same number as accuracy in percent (display only)."""
        return round(100.0 - self.error, 6)

    @property
    def single_model(self) -> bool:
        return self.models == 1

    @property
    def single_view(self) -> bool:
        return self.protocol in SINGLE_VIEW

    @property
    def from_paper(self) -> bool:
        return not self.reference

    def ensemble_text(self) -> str:
        if self.models == 1:
            return "single model"
        return "ensemble" if self.models is None else f"ensemble of {self.models}"

    def describe(self) -> str:
        """ "ImageNet-1k val, single model, 10 crops — Table 3" (with setting and reference)."""
        parts = [f"{self.dataset} {self.split}", self.ensemble_text(), self.protocol]
        if self.setting:
            parts.append(self.setting)
        where = self.source if not self.reference else f"{self.reference}, {self.source}"
        return f"{', '.join(parts)} — {where}"


@dataclass(frozen=True)
class CompetitionEntry:
    """An ILSVRC classification submission: an ensemble evaluated on the held-out test set."""

    year: int
    team: str
    place: int
    model: str  # the registered network the entry is built from (its depth is read off it)
    result: PublishedResult
    outside_data: str = ""  # training data beyond ILSVRC, if the entry used any


# -- helpers that keep the table below close to how each paper prints it ----------------------


def _pair(dataset: str, split: str, top1: float | None, top5: float | None, source: str, **kw) -> tuple:
    rows = []
    if top1 is not None:
        rows.append(PublishedResult(dataset, split, "top-1", top1, source, **kw))
    if top5 is not None:
        rows.append(PublishedResult(dataset, split, "top-5", top5, source, **kw))
    return tuple(rows)


def _from_accuracy(accuracy: float) -> float:
    """A paper that prints accuracy: store the error (rounded so 100 − 57.5 is 42.5 exactly)."""
    return round(100.0 - accuracy, 6)


def _imagenet_val(top1: float | None, top5: float | None, source: str, protocol: str, **kw) -> tuple:
    return _pair("ImageNet-1k", "val", top1, top5, source, protocol=protocol, **kw)


def _test(dataset: str, error: float, source: str, setting: str = "", **kw) -> PublishedResult:
    """A CIFAR/SVHN/MNIST test-set error: the whole small image is the input."""
    return PublishedResult(dataset, "test", "top-1", error, source, protocol="full image", setting=setting, **kw)


def _densenet_imagenet(top1: tuple[float, float], top5: tuple[float, float]) -> tuple:
    """Huang et al. 2017 Table 3: single-crop / 10-crop top-1 and top-5 error, ImageNet val."""
    return _imagenet_val(top1[0], top5[0], "Table 3", "1 crop") + _imagenet_val(top1[1], top5[1], "Table 3", "10 crops")


def _densenet_cifar(c10: float, c10p: float, c100: float, c100p: float, svhn: float) -> tuple:
    """Huang et al. 2017 Table 2's columns: C10, C10+, C100, C100+ (+: translation and
    mirroring augmentation), SVHN."""
    return (
        _test("CIFAR-10", c10, "Table 2", "C10, no augmentation"),
        _test("CIFAR-10", c10p, "Table 2", "C10+, translation + mirroring"),
        _test("CIFAR-100", c100, "Table 2", "C100, no augmentation"),
        _test("CIFAR-100", c100p, "Table 2", "C100+, translation + mirroring"),
        _test("SVHN", svhn, "Table 2"),
    )


def _fractal_table1(row: str, errors: tuple[float, float, float, float, float, float]) -> tuple:
    """Larsson et al. 2017 Table 1's columns: C10, C10+, C10++, C100, C100+, C100++
    (+: standard augmentation, ++: more augmentation)."""
    columns = (
        ("CIFAR-10", "C10"),
        ("CIFAR-10", "C10+"),
        ("CIFAR-10", "C10++"),
        ("CIFAR-100", "C100"),
        ("CIFAR-100", "C100+"),
        ("CIFAR-100", "C100++"),
    )
    return tuple(_test(ds, e, "Table 1", f"{row}, {col}") for (ds, col), e in zip(columns, errors))


def _vgg(setting: str, protocol: str, top1: float, top5: float, table: str = "Table 3") -> tuple:
    """Simonyan & Zisserman 2015: Table 3 tests densely at one scale Q, Table 4 at three."""
    return _imagenet_val(top1, top5, table, protocol, setting=setting)


_VGG_S256 = "train S=256, test Q=256"
_VGG_JITTER_384 = "train S∈[256;512], test Q=384"
_VGG_MULTI = "train S∈[256;512], test Q∈{256,384,512}"
_RESNET_T3 = "Table 3"  # He et al. 2016, 10-crop testing, ImageNet val
_WRN_T5 = "Table 5"  # Zagoruyko & Komodakis 2016, CIFAR test error, median of 5 runs

# -- single-model results, keyed by registered model name -------------------------------------
# Krizhevsky et al. 2012 average the softmax over ten 224×224 patches (four corners, centre and
# their reflections) for every number they report.
RESULTS: dict[str, tuple[PublishedResult, ...]] = {
    "lenet5": (
        _test("MNIST", 0.95, "Section III.C", "no distortions"),
        _test("MNIST", 0.8, "Section III.C", "with distortions"),
    ),
    "alexnet_2012": (
        *_pair("ILSVRC-2010", "test", 37.5, 17.0, "Table 1", protocol="10 crops", setting="CNN"),
        *_imagenet_val(40.7, 18.2, "Table 2", "10 crops", setting="1 CNN"),
    ),
    "zfnet": _imagenet_val(38.4, 16.5, "Table 2", "not stated", setting="1 convnet as per Fig. 3"),
    "zfnet_wide": (
        *_imagenet_val(37.5, 16.0, "Table 2", "not stated", setting="1 convnet, layers 3,4,5: 512,1024,512 maps"),
        PublishedResult(
            "ImageNet-1k", "test", "top-5", 16.1, "Table 2", setting="1 convnet, layers 3,4,5: 512,1024,512 maps"
        ),
    ),
    "nin_cifar": (
        _test("CIFAR-10", 10.41, "Table 1", "NIN + Dropout"),
        _test("CIFAR-10", 8.81, "Table 1", "NIN + Dropout + Augmentation"),
    ),
    "vgg11": _vgg(_VGG_S256, "dense, 1 scale", 29.6, 10.4),
    "vgg11_lrn": _vgg(_VGG_S256, "dense, 1 scale", 29.7, 10.5),
    "vgg13": _vgg(_VGG_S256, "dense, 1 scale", 28.7, 9.9),
    "vgg16_c": (
        *_vgg(_VGG_S256, "dense, 1 scale", 28.1, 9.4),
        *_vgg(_VGG_JITTER_384, "dense, 1 scale", 27.3, 8.8),
        *_vgg(_VGG_MULTI, "dense, 3 scales", 26.3, 8.2, table="Table 4"),
    ),
    "vgg16": (
        *_vgg(_VGG_S256, "dense, 1 scale", 27.0, 8.8),
        *_vgg(_VGG_JITTER_384, "dense, 1 scale", 25.6, 8.1),
        *_vgg(_VGG_MULTI, "dense, 3 scales", 24.8, 7.5, table="Table 4"),
    ),
    "vgg19": (
        *_vgg(_VGG_S256, "dense, 1 scale", 27.3, 9.0),
        *_vgg(_VGG_JITTER_384, "dense, 1 scale", 25.5, 8.0),
        *_vgg(_VGG_MULTI, "dense, 3 scales", 24.8, 7.5, table="Table 4"),
    ),
    # Szegedy et al. 2015 Table 3: performance break-down on the validation set, one model.
    "googlenet": (
        *_imagenet_val(None, 10.07, "Table 3", "1 crop"),
        *_imagenet_val(None, 9.15, "Table 3", "10 crops"),
        *_imagenet_val(None, 7.89, "Table 3", "144 crops"),
    ),
    "resnet18": _imagenet_val(27.88, None, "Table 2", "10 crops", setting="option A shortcuts"),
    "resnet34": _imagenet_val(24.52, 7.46, _RESNET_T3, "10 crops", setting="ResNet-34 B"),
    "resnet50": _imagenet_val(22.85, 6.71, _RESNET_T3, "10 crops"),
    "resnet101": _imagenet_val(21.75, 6.05, _RESNET_T3, "10 crops"),
    # Table 4 is the fully-convolutional form averaged over scales {224, 256, 384, 480, 640}.
    "resnet152": (
        *_imagenet_val(21.43, 5.71, _RESNET_T3, "10 crops"),
        *_imagenet_val(19.38, 4.49, "Table 4", "dense, multi-scale"),
    ),
    "plain18": _imagenet_val(27.94, None, "Table 2", "10 crops"),
    "plain34": _imagenet_val(28.54, 10.02, _RESNET_T3, "10 crops"),
    "resnet20": (_test("CIFAR-10", 8.75, "Table 6"),),
    "resnet32": (_test("CIFAR-10", 7.51, "Table 6"),),
    "resnet44": (_test("CIFAR-10", 7.17, "Table 6"),),
    "resnet56": (_test("CIFAR-10", 6.97, "Table 6"),),
    "resnet110": (_test("CIFAR-10", 6.43, "Table 6", "best of 5 runs (mean 6.61 ± 0.16)"),),
    "resnet1202": (_test("CIFAR-10", 7.93, "Table 6"),),
    # He et al. 2016b (identity mappings, arXiv:1603.05027): Table 3 CIFAR-10, Table 4 CIFAR-100,
    # Table 5 ImageNet at a 320×320 crop.
    "preact_resnet110": (_test("CIFAR-10", 6.37, "Table 3"),),
    "preact_resnet164": (_test("CIFAR-10", 5.46, "Table 3"), _test("CIFAR-100", 24.33, "Table 4")),
    "preact_resnet1001": (_test("CIFAR-10", 4.92, "Table 3"), _test("CIFAR-100", 22.71, "Table 4")),
    "preact_resnet152": _imagenet_val(21.1, 5.5, "Table 5", "1 crop", setting="320×320 crop"),
    "wrn16_8": (
        _test("CIFAR-10", 4.27, _WRN_T5, "median of 5 runs"),
        _test("CIFAR-100", 20.43, _WRN_T5, "median of 5 runs"),
    ),
    "wrn28_10": (
        _test("CIFAR-10", 4.0, _WRN_T5, "median of 5 runs"),
        _test("CIFAR-100", 19.25, _WRN_T5, "median of 5 runs"),
    ),
    "wrn40_4": (
        _test("CIFAR-10", 4.53, _WRN_T5, "median of 5 runs"),
        _test("CIFAR-100", 21.18, _WRN_T5, "median of 5 runs"),
    ),
    "wide_resnet50_2": _imagenet_val(21.9, 6.03, "Table 8", "1 crop"),
    "resnext50_32x4d": _imagenet_val(22.2, None, "Table 3", "1 crop", setting="224×224 crop"),
    "resnext101_64x4d": _imagenet_val(20.4, 5.3, "Table 4", "1 crop", setting="224×224 crop"),
    "resnext29_8x64d": (_test("CIFAR-10", 3.65, "Table 7"), _test("CIFAR-100", 17.77, "Table 7")),
    "resnext29_16x64d": (_test("CIFAR-10", 3.58, "Table 7"), _test("CIFAR-100", 17.31, "Table 7")),
    # Huang et al. 2016 (stochastic depth) Table 1, with standard augmentation.
    "resnet110_sd": (
        _test("CIFAR-10", 5.23, "Table 1", "CIFAR-10+, translation + mirroring"),
        _test("CIFAR-100", 24.58, "Table 1", "CIFAR-100+, translation + mirroring"),
    ),
    "fractalnet20": (
        *_fractal_table1("FractalNet 20 layers", (10.18, 5.22, 5.11, 35.34, 23.30, 22.85)),
        *_fractal_table1("+ drop-path + dropout", (7.33, 4.60, 4.59, 28.20, 23.73, 23.36)),
        *_fractal_table1("deepest column alone", (7.27, 4.68, 4.63, 29.05, 24.32, 23.60)),
    ),
    "densenet121": _densenet_imagenet((25.02, 23.61), (7.71, 6.66)),
    "densenet169": _densenet_imagenet((23.80, 22.08), (6.85, 5.92)),
    "densenet201": _densenet_imagenet((22.58, 21.46), (6.34, 5.54)),
    "densenet264": _densenet_imagenet((22.15, 20.80), (6.12, 5.29)),
    "densenet40_k12": _densenet_cifar(7.00, 5.24, 27.55, 24.42, 1.79),
    "densenet_bc100_k12": _densenet_cifar(5.92, 4.51, 24.15, 22.27, 1.76),
    # Iandola et al. 2016 Tables 2–3 print top-1 / top-5 *accuracy* on ImageNet without naming
    # the test protocol.
    "squeezenet1_0": _imagenet_val(
        _from_accuracy(57.5), _from_accuracy(80.3), "Table 3", "not stated", setting="vanilla SqueezeNet (also Table 2)"
    ),
    "squeezenet1_0_bypass": _imagenet_val(
        _from_accuracy(60.4), _from_accuracy(82.5), "Table 3", "not stated", setting="SqueezeNet + simple bypass"
    ),
    "squeezenet1_0_complex_bypass": _imagenet_val(
        _from_accuracy(58.8), _from_accuracy(82.0), "Table 3", "not stated", setting="SqueezeNet + complex bypass"
    ),
    # Howard et al. 2017 Table 6 prints top-1 accuracy, protocol not stated.
    "mobilenet_v1_100": _imagenet_val(_from_accuracy(70.6), None, "Table 6", "not stated", setting="1.0 MobileNet-224"),
    "mobilenet_v1_075": _imagenet_val(
        _from_accuracy(68.4), None, "Table 6", "not stated", setting="0.75 MobileNet-224"
    ),
    "mobilenet_v1_050": _imagenet_val(_from_accuracy(63.7), None, "Table 6", "not stated", setting="0.5 MobileNet-224"),
    "mobilenet_v1_025": _imagenet_val(
        _from_accuracy(50.6), None, "Table 6", "not stated", setting="0.25 MobileNet-224"
    ),
}

# -- ILSVRC classification entries (ensembles, test set) --------------------------------------
_RUSSAKOVSKY = "Russakovsky et al. (2015), ImageNet Large Scale Visual Recognition Challenge, IJCV 115"


def _entry(year: int, team: str, place: int, model: str, error: float, source: str, models: int | None, **kw):
    protocol = kw.pop("protocol", "not stated")
    reference = kw.pop("reference", "")
    outside = kw.pop("outside_data", "")
    result = PublishedResult(
        "ImageNet-1k", "test", "top-5", error, source, protocol=protocol, models=models, reference=reference, **kw
    )
    return CompetitionEntry(year, team, place, model, result, outside)


ILSVRC_ENTRIES: tuple[CompetitionEntry, ...] = (
    # Krizhevsky et al. 2012 Table 2: "5 CNNs" 16.4 % and "7 CNNs*" 15.3 % top-5 test error; the
    # starred nets were pre-trained on the whole ImageNet Fall 2011 release.
    _entry(2012, "SuperVision", 1, "alexnet_2012", 16.4, "Table 2", 5, protocol="10 crops", setting="5 CNNs"),
    _entry(
        2012,
        "SuperVision",
        1,
        "alexnet_2012",
        15.3,
        "Table 2",
        7,
        protocol="10 crops",
        setting="7 CNNs*",
        outside_data="two nets pre-trained on ImageNet Fall 2011 (15M images, 22K classes)",
    ),
    # Not in Zeiler & Fergus's paper: the ILSVRC-2013 winning entry of Zeiler's company Clarifai,
    # built on the same network, scored 11.7 % without outside data.
    _entry(
        2013,
        "Clarifai",
        1,
        "zfnet",
        11.7,
        "ILSVRC 2013 classification results",
        None,
        reference=_RUSSAKOVSKY,
    ),
    # Simonyan & Zisserman 2015 Table 7: "VGG (ILSVRC submission, 7 nets)", 7.3 % top-5 test.
    _entry(2014, "VGG", 2, "vgg16", 7.3, "Table 7", 7, setting="ILSVRC submission"),
    # Szegedy et al. 2015 Table 2 (test, 1st place) and Table 3 (7 models, 144 crops each).
    _entry(2014, "GoogLeNet", 1, "googlenet", 6.67, "Tables 2 and 3", 7, protocol="144 crops"),
    # He et al. 2016 Table 5 ("ResNet (ILSVRC'15)"); §4.1: six models of different depth.
    _entry(2015, "MSRA", 1, "resnet152", 3.57, "Table 5", 6),
)


def results_for(name: str, torchvision_name: str | None = None) -> tuple[PublishedResult, ...]:
    """Everything published for a registered network: its paper's single-model numbers, then
    torchvision's single-crop ImageNet-val figures when the network loads torchvision weights."""
    return RESULTS.get(name, ()) + torchvision_results(torchvision_name)


def torchvision_results(torchvision_name: str | None) -> tuple[PublishedResult, ...]:
    """``acc@1``/``acc@5`` from torchvision's weights metadata (its IMAGENET1K_V1 weights, one
    224×224 centre crop of the image resized to 256, ImageNet val), converted to error."""
    if torchvision_name is None:
        return ()
    import torchvision
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(torchvision_name)[TORCHVISION_WEIGHTS]
        metrics = weights.meta["_metrics"]["ImageNet-1K"]
    except (KeyError, ValueError):  # an older torchvision without these weights or metadata
        return ()
    version = torchvision.__version__.split("+")[0]
    reference = f"torchvision {version} weights metadata"
    source = f"{torchvision_name}, {TORCHVISION_WEIGHTS}"
    return _imagenet_val(
        _from_accuracy(metrics["acc@1"]), _from_accuracy(metrics["acc@5"]), source, "1 crop", reference=reference
    )


def _rank(result: PublishedResult, protocol: str) -> tuple[int, int, int]:
    """Lower is better: the requested protocol first, then the paper before other publishers,
    then single-view before multi-view."""
    return (result.protocol != protocol, not result.from_paper, not result.single_view)


def select(
    results: Iterable[PublishedResult],
    metric: str,
    dataset: str,
    protocol: str = "1 crop",
) -> PublishedResult | None:
    """The single-model result to show for one metric: the requested protocol (CIFAR/MNIST's
    "full image" counts as the single-crop one) where anyone published it, the network's own
    paper first; otherwise the closest other protocol, which callers must mark as such."""
    wanted = "full image" if dataset not in ("ImageNet-1k", "ILSVRC-2010") and protocol == "1 crop" else protocol
    candidates = [
        r
        for r in results
        if r.metric == metric
        and r.dataset == dataset
        and r.single_model
        and (r.split == "val" or dataset != "ImageNet-1k")
    ]
    if not candidates:
        return None
    # stable: among equals, the order the paper's table gives (first = its headline setting)
    return min(candidates, key=lambda r: _rank(r, wanted))


def matches_protocol(result: PublishedResult, protocol: str) -> bool:
    """Whether ``result`` was measured under ``protocol`` ("1 crop" also accepts "full image")."""
    return result.protocol == protocol or (protocol == "1 crop" and result.protocol == "full image")


__all__ = [
    "ILSVRC_ENTRIES",
    "METRICS",
    "PROTOCOLS",
    "RESULTS",
    "CompetitionEntry",
    "PublishedResult",
    "matches_protocol",
    "results_for",
    "select",
    "torchvision_results",
]
