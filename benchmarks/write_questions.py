"""Write docs/questions.md: the notes' 25 reader questions, each with a short answer, the numbers
behind it and the command that reproduces them.

    python benchmarks/write_questions.py --out DIR [--speed docs/bench/classic-cpu.json]

Every number is computed here: from the analyser and cnnatlas.formulas (exact, deterministic), or
read from the recorded experiments under DIR (``benchmarks/record_experiments.py``) and from a
``cnnatlas bench --format json`` result (``--speed``); an experiment or a timing without a
recording is named as "not yet recorded"/"not measured" instead of a number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnatlas.analysis import analyze
from cnnatlas.experiments.report import finding
from cnnatlas.experiments.runner import read_results
from cnnatlas.formulas import (
    conv_output_size,
    depthwise_separable_cost_ratio,
    inception_module_cost,
    stacked_conv_params,
    stacked_receptive_field,
)
from cnnatlas.plot.bench import load_bench_result

PAGE = Path(__file__).resolve().parents[1] / "docs" / "questions.md"


def evidence(folder: Path, name: str) -> str:
    """The recorded finding of experiment ``name``, with its picture, or "not yet recorded"."""
    if not (folder / name / "results.json").is_file():
        return f"Experiment `{name}`: not yet recorded (`cnnatlas experiment run {name}`)."
    results = read_results(folder / name)
    picture = f"\n\n![{name}](experiments/{name}-bars.png)" if (folder / name / "bars.png").is_file() else ""
    seeds = len(results["seeds"])
    return (
        f"Experiment [`{name}`](experiments.md#{name}) ({results['budget']} budget, {seeds} seeds): "
        f"{finding(results)}{picture}"
    )


def measured_speed(path: Path | None) -> str:
    """GoogLeNet against VGG-16 in measured time per image, from a `cnnatlas bench` result."""
    command = "`cnnatlas bench googlenet vgg16 --backend fast`"
    if path is None:
        return f"Their time per image is not measured here ({command})."
    result = load_bench_result(path)
    rows = {(r["model"], r["batch"]): r for r in result["results"]}
    batches = [b for (m, b) in rows if m == "googlenet" and ("vgg16", b) in rows]
    if not batches:
        return f"Their time per image is not measured here ({command})."
    batch = max(batches)
    googlenet, vgg = rows[("googlenet", batch)], rows[("vgg16", batch)]
    env = result.get("environment", {})
    faster = vgg["ms_per_image"] / googlenet["ms_per_image"]
    fewer = vgg["macs_per_image"] / googlenet["macs_per_image"]
    verdict = "does not shrink as fast as" if faster < fewer else "shrinks at least as fast as"
    return (
        f"Measured ([operations against time](benchmarks.md#operations-against-time); "
        f"{googlenet['backend']} {googlenet['dtype']}, batch {batch}, {env.get('threads')} threads of an "
        f"{env.get('cpu')} CPU): GoogLeNet {googlenet['ms_per_image']:.1f} ms per image, VGG-16 "
        f"{vgg['ms_per_image']:.1f} ms — {faster:.1f}× faster for {fewer:.1f}× fewer MACs: time {verdict} "
        f"the operation count."
    )


def numbers() -> dict[str, object]:
    """Analyser and formula figures the answers quote."""
    n: dict[str, object] = {}
    lenet = analyze("lenet5")
    n["lenet_out"] = lenet.row("OUTPUT").params
    alex = analyze("alexnet_2012").collapse(1)
    fc = sum(alex.row(f).params for f in ("fc6", "fc7", "fc8"))
    n["alex_total"] = alex.totals["params"]
    n["alex_fc"] = fc
    n["alex_fc_share"] = 100 * fc / alex.totals["params"]
    n["alex_fc6"] = alex.row("fc6").params
    n["alex_fc7"] = alex.row("fc7").params
    n["alex_conv1_out"] = conv_output_size(227, 11, 4, 0)
    n["alex_pool1_out"] = conv_output_size(55, 3, 2, 0)
    vgg = analyze("vgg16")
    n["vgg_rf"] = vgg.row("pool5").receptive_field
    n["vgg_macs"] = vgg.totals["macs"] / 1e9
    googlenet = analyze("googlenet")
    n["googlenet_macs"] = googlenet.totals["macs"] / 1e9
    n["inception_3a_shape"] = "×".join(map(str, googlenet.collapse(1).row("inception_3a").output_shape[1:]))
    naive = inception_module_cost(28, 192, 64, 128, 32)
    reduced = inception_module_cost(28, 192, 64, 128, 32, reduce3=96, reduce5=16, pool_proj=32)
    n["i3a_naive"], n["i3a_reduced"] = naive.macs / 1e6, reduced.macs / 1e6
    n["i3a_naive_out"], n["i3a_reduced_out"] = naive.out_channels, reduced.out_channels
    n["two33"], n["one55"] = stacked_conv_params(1, 3, 2)
    n["three33"], n["one77"] = stacked_conv_params(1, 3, 3)
    n["rf2"], n["rf3"] = stacked_receptive_field(3, 2), stacked_receptive_field(3, 3)
    n["dw_ratio"] = 1 / depthwise_separable_cost_ratio(512, 3)
    a = analyze("resnet20", (3, 32, 32))
    b = analyze("resnet20", (3, 32, 32), shortcut="B")
    n["resnet20_a"], n["resnet20_b"] = a.totals["params"], b.totals["params"]
    return n


TEMPLATE = """# The notes' questions, answered with evidence

The reader of the lecture notes (file 001 unless marked) wrote 25 questions in the margin. Each
answer below is short, gives the numbers that back it — from the analyser and the formulas
(exact), or from the recorded experiments (docs/experiments.md; quick budget, 3–5 seeds on a
shared 2-core CPU) — and the command that reproduces them. Where cnnatlas cannot answer with
evidence, the answer says so. This page is written by `benchmarks/write_questions.py`.

## 1. What is LeNet-5's RBF output unit?
Each of the 10 output units computes the squared Euclidean distance between the 84-dimensional
F6 output and a fixed 7×12 bitmap of its character (LeCun et al. 1998 §II.B, eq. 7): the smaller
the distance, the more likely the class. The {lenet_out} "parameters" of that layer are these
fixed prototypes, not learned. See docs/models/lenet.md.
`cnnatlas summary lenet5`

## 2. AlexNet's 2-GPU split: what, how, still needed, when, in PyTorch?
Half of each layer's kernels on each GPU (3 GB cards could not hold the net and its activations),
exchanging activations only into conv3 and the FC layers. Today a net of this size fits one GPU;
the idea lives on as tensor parallelism for models that do not fit (docs/model_parallel.md, with
the PyTorch code: `create_model("alexnet_2012", devices=("cuda:0", "cuda:1"))`).
{ev_model_parallel}
`cnnatlas experiment run model-parallel`

## 3. Why a second fully connected layer of the same width; could it be narrower?
The two 4096-wide layers are where AlexNet's parameters are: fc6 {alex_fc6:,} and fc7 {alex_fc7:,};
the three FC layers hold {alex_fc_share:.0f}% of its {alex_total:,} parameters. The papers chose the
width, they did not ablate it; NiN and GoogLeNet dropped the FC layers for global average pooling.
{ev_head}
`cnnatlas experiment run head`; `cnnatlas summary alexnet_2012`

## 4. These depths are easy to train on a GPU today: how easy, measured?
cnnatlas cannot measure it here: the recorded experiments ran on a 2-core CPU, and no GPU was
available. What is measured is in each experiment's table (training images/s on this CPU).
`cnnatlas experiment run degradation --device cuda` reports the same table on a GPU.

## 5. Should kernels be larger for translated inputs?
Not necessarily: what has to cover the object is the *receptive field* of the last layers, which
grows with depth and pooling whatever the kernel size ({rf2}×{rf2} from two 3×3 layers, {rf3}×{rf3}
from three). The cluttered task (digits translated on a 40×40 canvas, docs/data.md) is the test
bed; the quick budget runs on clean digits, so it does not answer this.
{ev_kernel_stack}
`cnnatlas experiment run kernel-stack --budget full` (cluttered digits)

## 6. Why are two 3×3 better than one 5×5; was it tested with a model?
Same 5×5 receptive field, two non-linearities instead of one, and fewer weights:
{two33}C² against {one55}C² ({three33}C² against {one77}C² for three 3×3 vs one 7×7, VGG §2.3).
VGG did test it (§4.1: a net with 5×5 in place of 3×3 pairs had 7% higher top-1 error). Here:
{ev_kernel_stack}
`cnnatlas experiment run kernel-stack`

## 7. Why do VGG features transfer to other data sets?
Features learned on many classes are generic edges, strokes and parts; a linear classifier on them
needs few labels for a new task (Razavian et al. 2014). Here a net trained on digits 0–4 is used
for 5–9 with 300 labelled digits:
{ev_transfer}
`cnnatlas experiment run transfer`; `cnnatlas features RUN_DIR --layer head.fc1`

## 8. Why 2–3 convolutions per pooling stage rather than conv-pool-conv-pool?
Stacking convolutions between poolings grows the receptive field ({rf2}, then {rf3} pixels) with
more non-linearities and fewer weights, without throwing away resolution after every layer.
The stage layout itself was not ablated here beyond the kernel stacks:
{ev_kernel_stack}

## 9. Does initialising D/E from A really speed up convergence, and why?
VGG §3.1 did it because a deep net with N(0, 0.01) weights can stall; it notes Glorot
initialisation works without pre-training. Here (deep net from the shallow one vs N(0, 0.01),
Glorot, He):
{ev_warm_start}
`cnnatlas experiment run warm-start`; `cnnatlas train MODEL --init-from RUN_DIR`

## 10. What is multi-scale training and testing?
Training: each image rescaled to a random scale (VGG: shorter side S in [256, 512]) before the
crop — scale jittering. Testing: the net applied at several scales and the softmax averaged
(VGG §3.2, §4.2–4.3). Here digits jittered in [0.75, 1.25], tested at 7/8, 1, 9/8 of the side:
{ev_multiscale}
`cnnatlas experiment run multiscale`

## 11. What is LRN (and does it help)?
Local response normalisation divides each activation by (k + α·Σ a²)^β over n = 5 neighbouring
channels (AlexNet §3.3, docs/formulas.md). AlexNet credits it with 1.2–1.4% lower error; VGG
found none (Table 3, A vs A-LRN). Here (none vs LRN vs batch normalisation):
{ev_lrn}
`cnnatlas experiment run lrn`

## 12. Do deep networks need ensembles; why do they work?
Independently trained nets make partly independent errors; averaging their softmax outputs
cancels some of them. Every ImageNet winner of the period reported an ensemble.
{ev_ensemble}
`cnnatlas experiment run ensemble`

## 13. Why stress the receptive field?
A unit can only use the pixels it sees. VGG-16's pool5 units see {vgg_rf}×{vgg_rf} input pixels,
about the whole 224×224 image, which is what a classifier needs.
`cnnatlas summary vgg16` (receptive-field column)

## 14. Why average pooling in GoogLeNet's auxiliary heads, not max?
The paper does not say why. The 5×5/3 average pool shrinks 14×14 maps to 4×4 before the head's
FC layer, keeping it small; averaging keeps a summary of the whole region. cnnatlas has no
experiment on the auxiliary heads; the closest evidence is max vs average pooling in the body:
{ev_pooling}

## 15. When should a 1×1 convolution be used?
To change the number of channels cheaply: before an expensive 3×3/5×5 (Inception), around a 3×3
in ResNet's bottleneck, as MobileNet's pointwise layer, and as a per-pixel fully connected layer
(NiN). GoogLeNet's inception (3a) costs {i3a_naive:.0f} M MACs without reductions and
{i3a_reduced:.0f} M with them (outputs of {i3a_naive_out} vs {i3a_reduced_out} channels).
{ev_bottleneck}
`cnnatlas experiment run bottleneck`

## 16. Does a 1×1 reduction really cut the cost?
Yes, in MACs: inception (3a) {i3a_naive:.0f} M → {i3a_reduced:.0f} M (formulas.inception_module_cost).
Whether time follows on a CPU is measured by the `bottleneck` experiment's timing table:
{ev_bottleneck}

## 17. What is an Inception module; is it really 2–3× faster?
Parallel 1×1, 3×3, 5×5 convolutions and a pooling branch, concatenated, with 1×1 reductions. The
"2–3× faster" is the paper's comparison with a non-Inception net of similar quality, which cnnatlas
does not have. By the analyser GoogLeNet needs {googlenet_macs:.2f} G MACs per 224×224 image,
VGG-16 {vgg_macs:.1f} G. {speed}
`cnnatlas compare googlenet vgg16`

## 18. Try a residual network and see the difference from a plain one.
{ev_degradation}
`cnnatlas experiment run degradation`

## 19. How does H = F + x reduce complexity; isn't it about gradients not vanishing?
It adds no parameters or MACs worth counting; what it changes is what the layers must learn: a
residual F = H − x, which is near zero when the block should be near the identity. The ResNet
paper argues the plain nets' problem is optimisation, not vanishing gradients (they used batch
normalisation). The `degradation` experiment shows the effect on training error (question 18);
cnnatlas does not separate the two explanations.

## 20. Shortcuts across a change of width: zero-padding or 1×1 projection?
Both work (ResNet Table 3: option A zero-padding, B projections where the width changes).
ResNet-20 has {resnet20_a:,} parameters with option A and {resnet20_b:,} with option B. No
cnnatlas experiment compares their accuracy.
`python -c "from cnnatlas.analysis import analyze; print(analyze('resnet20', shortcut='B').totals['params'])"`

## 21. Face-recognition accuracy ×10 every three months?
Outside cnnatlas's scope (a claim about a field's progress, not about an architecture); not answered.

## 22. What are PoS tagging and entity extraction; why are CNNs less suited?
Outside the scope of an image-CNN atlas: part-of-speech tagging labels each word with its
grammatical role, entity extraction finds names of people, places, organisations; not answered here.

## 23. (002) Why did VGG choose smaller kernels than AlexNet?
Question 6's argument: a stack of 3×3 layers has the receptive field of one large kernel with more
non-linearities and fewer weights ({three33}C² vs {one77}C² for 7×7).
{ev_kernel_stack}

## 24. (002) What is the output size after the Inception module's concatenation?
Same height and width as the input (every branch is "same"-padded, stride 1), channels summed:
GoogLeNet's inception (3a) gives {inception_3a_shape} (64 + 128 + 32 + 32 channels).
`cnnatlas summary googlenet`

## 25. (000) How were AlexNet's layer sizes chosen?
The paper does not explain the widths; they follow from the two 3 GB GPUs (each tower half the
kernels) and the 227×227 input: conv1 11×11/4 gives {alex_conv1_out}×{alex_conv1_out}, the 3×3/2
pool {alex_pool1_out}×{alex_pool1_out}. cnnatlas can recompute every size (docs/formulas.md) but not the reasons.
`cnnatlas summary alexnet_2012`
"""

EXPERIMENT_KEYS = {
    "ev_model_parallel": "model-parallel",
    "ev_head": "head",
    "ev_kernel_stack": "kernel-stack",
    "ev_transfer": "transfer",
    "ev_warm_start": "warm-start",
    "ev_multiscale": "multiscale",
    "ev_lrn": "lrn",
    "ev_ensemble": "ensemble",
    "ev_pooling": "pooling",
    "ev_bottleneck": "bottleneck",
    "ev_degradation": "degradation",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the recorded experiments' folder")
    parser.add_argument("--speed", type=Path, default=None, help="a `cnnatlas bench --format json` result")
    args = parser.parse_args(argv)
    values = numbers()
    values["speed"] = measured_speed(args.speed)
    values.update({key: evidence(args.out, name) for key, name in EXPERIMENT_KEYS.items()})
    PAGE.write_text(TEMPLATE.format(**values))
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
