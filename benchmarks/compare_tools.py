"""Our totals beside every other counter's, on twelve torchvision models and one LSTM network.

    python benchmarks/compare_tools.py [--models NAME ...] [--format markdown|text]

Tools: cnnatlas (``analyze("torchvision:NAME")``, meta device), ``torch.utils.flop_counter.
FlopCounterMode`` (÷ 2, real forward), fvcore ``FlopCountAnalysis``, ptflops
``get_model_complexity_info`` with both backends (``pytorch``: module hooks; ``aten``: an ATen
dispatch mode), thop ``profile``, torchinfo ``summary`` (``total_mult_adds``) and calflops
``calculate_flops`` (its MACs). Each tool gets a freshly built model (thop and ptflops attach
state to modules) in eval mode, batch 1, at the model's own input size, float32, CPU. A tool that
is not installed or fails on a model gets an empty cell and the reason printed under the table.
The conventions that explain every difference are in docs/analysis.md ("Other counters").
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cnnatlas.analysis import analyze
from cnnatlas.sources import resolve_source

MODELS = [
    "alexnet",
    "vgg16",
    "googlenet",
    "inception_v3",
    "resnet18",
    "resnet50",
    "densenet121",
    "squeezenet1_0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "shufflenet_v2_x1_0",
    "efficientnet_b0",
]


class SequenceClassifier(nn.Module):
    """A custom network no CNN counter was written for: embedding, a 2-layer LSTM, a linear head."""

    def __init__(self, vocab: int = 1000, width: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, num_layers=2, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out[:, -1])


LSTM_SOURCE = f"{Path(__file__).resolve()}:SequenceClassifier"
LSTM_TOKENS = 32


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), torch.no_grad():
        return fn()


def flop_counter(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def fvcore(model: nn.Module, x: torch.Tensor) -> int:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def ptflops(backend: str) -> Callable[[nn.Module, torch.Tensor], int]:
    def run(model: nn.Module, x: torch.Tensor) -> int:
        from ptflops import get_model_complexity_info

        macs, _ = get_model_complexity_info(
            model,
            tuple(x.shape[1:]),
            as_strings=False,
            print_per_layer_stat=False,
            verbose=False,
            backend=backend,
            input_constructor=lambda _: x,
        )
        return int(macs)

    return run


def thop(model: nn.Module, x: torch.Tensor) -> int:
    from thop import profile

    macs, _ = profile(model, inputs=(x,), verbose=False)
    return int(macs)


def torchinfo(model: nn.Module, x: torch.Tensor) -> int:
    from torchinfo import summary

    return int(summary(model, input_data=x, verbose=0).total_mult_adds)


def calflops(model: nn.Module, x: torch.Tensor) -> int:
    from calflops import calculate_flops

    _, macs, _ = calculate_flops(
        model=model, args=[x], output_as_string=False, print_results=False, print_detailed=False
    )
    return int(macs)


TOOLS: dict[str, Callable[[nn.Module, torch.Tensor], int]] = {
    "FlopCounterMode ÷ 2": flop_counter,
    "fvcore": fvcore,
    "ptflops (pytorch)": ptflops("pytorch"),
    "ptflops (aten)": ptflops("aten"),
    "thop": thop,
    "torchinfo": torchinfo,
    "calflops": calflops,
}


def measure(source: str, x: torch.Tensor) -> tuple[dict[str, int | None], list[str]]:
    ours = analyze(source, input_data=x)
    row: dict[str, int | None] = {"params": ours.totals["params"], "cnnatlas": ours.totals["macs"]}
    notes = []
    for tool, fn in TOOLS.items():
        model = resolve_source(source).model.eval()
        try:
            row[tool] = _quiet(lambda fn=fn, model=model: fn(model, x))
        except Exception as exc:  # noqa: BLE001 - a tool's own failure is a result to report
            row[tool] = None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            notes.append(f"{source}, {tool}: {type(exc).__name__}: {first}")
    return row, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--no-lstm", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    sources = [(f"torchvision:{m}", None) for m in args.models]
    if not args.no_lstm:
        sources.append((LSTM_SOURCE, torch.randint(0, 1000, (1, LSTM_TOKENS))))
    rows, notes = [], []
    for source, data in sources:
        if data is None:
            side = resolve_source(source, meta=True).input_size[-1]
            data = torch.randn(1, 3, side, side)
        row, failed = measure(source, data)
        rows.append((source.replace("torchvision:", "").replace(LSTM_SOURCE, "LSTM (custom)"), row))
        notes += failed
    headers = ["model", "params", "cnnatlas MACs", *TOOLS]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for name, row in rows:
        cells = [name, f"{row['params']:,}", f"{row['cnnatlas']:,}"]
        for tool in TOOLS:
            value = row[tool]
            cells.append("—" if value is None else f"{value:,} ({value / row['cnnatlas']:.3f})")
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"torch {torch.__version__}; each cell: the tool's MAC count (its ratio to ours).")
    for note in notes:
        print(f"* {note}")


if __name__ == "__main__":
    main()
