"""The result of an analysis — per-layer rows and totals — and its renderings: a rich table,
Markdown, CSV and JSON (the schema of docs/analysis.md, plain integers)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence


@dataclass(frozen=True)
class LayerRow:
    """One leaf-module call or one functional op (or, after :meth:`Analysis.collapse`, one
    module at the chosen depth)."""

    name: str  # paper-style display name
    type: str  # module class, or the ATen op for a functional row
    spec: str  # "96 11×11 filters, stride 4, pad 0"
    output_shape: list[int]
    weight_params: int
    bias_params: int
    macs: int
    flops: int
    activations: int  # elements of the output, if it is a new tensor
    activation_bytes: int
    receptive_field: float | None  # size r on the larger axis, in input pixels; 0 n/a, None unknown
    jump: float | None  # effective stride j (a fraction after upsampling); 0 n/a, None unknown
    start: float  # centre of the first output's field (input pixel coordinates)
    depth: int  # module nesting depth (for --depth collapsing)
    path: str  # module path in the PyTorch model ("" = the model itself)

    @property
    def params(self) -> int:
        return self.weight_params + self.bias_params

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        ordered = {
            "name": data.pop("name"),
            "type": data.pop("type"),
            "output_shape": data.pop("output_shape"),
            "params": self.params,
            "macs": data.pop("macs"),
            "flops": data.pop("flops"),
            "activations": data.pop("activations"),
            "receptive_field": data.pop("receptive_field"),
            "jump": data.pop("jump"),
        }
        ordered.update(data)
        return ordered


# -- columns of the per-layer table ---------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One column of a table: its header, alignment and how a row's cell reads."""

    key: str
    header: str
    right: bool
    cell: Callable[[Any, Any], str]


def check_columns(columns: Sequence[str], known: dict[str, Any]) -> list[str]:
    """``columns`` as a list, every key known (an InputError lists the keys otherwise)."""
    keys = [c.strip() for c in (columns.split(",") if isinstance(columns, str) else columns) if c.strip()]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        from cnnatlas.errors import InputError

        raise InputError(f"unknown column {', '.join(unknown) or '(none)'}; columns are: {', '.join(known)}")
    return keys


def field_text(value: float | None) -> str:
    """Receptive field or jump as printed: "?" unknown, "" not applicable, "2.5" fractional."""
    if value is None:
        return "?"
    return "" if value == 0 else f"{value:g}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else ""


def module_path_text(layer: LayerRow) -> str:
    """The row's place in the PyTorch model: the module path, and for an op run in a
    module's forward, that op after the module path."""
    if layer.type and layer.type[:1].islower():  # functional rows are typed by their ATen op
        return f"{layer.path}:{layer.type}" if layer.path else layer.type
    return layer.path or "(model)"


LAYER_COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("layer", "layer", False, lambda r, a: r.name),
        Column("module", "module path", False, lambda r, a: module_path_text(r)),
        Column("type", "type", False, lambda r, a: r.type),
        Column("spec", "spec", False, lambda r, a: r.spec or r.type),
        Column("output", "output", False, lambda r, a: shape_text(r.output_shape)),
        Column("params", "params", True, lambda r, a: f"{r.params:,}"),
        Column("macs", "MACs", True, lambda r, a: f"{r.macs:,}"),
        Column("macs_short", "MACs", True, lambda r, a: human(r.macs)),
        Column("macs_percent", "MACs %", True, lambda r, a: _percent(r.macs, a.totals["macs"])),
        Column("flops", "FLOPs", True, lambda r, a: human(r.flops)),
        Column("flops_full", "FLOPs", True, lambda r, a: f"{r.flops:,}"),
        Column("activations", "activations", True, lambda r, a: f"{r.activations:,}"),
        Column("memory", "memory", True, lambda r, a: human_bytes(r.activation_bytes)),
        Column("rf", "RF", True, lambda r, a: field_text(r.receptive_field)),
        Column("jump", "jump", True, lambda r, a: field_text(r.jump)),
        Column("start", "start", True, lambda r, a: "" if r.receptive_field == 0 else f"{r.start:g}"),
    )
}
DEFAULT_COLUMNS = (
    "layer",
    "module",
    "spec",
    "output",
    "params",
    "macs_short",
    "flops",
    "activations",
    "memory",
    "rf",
    "jump",
)


TOTAL_FIELDS = (
    "params",
    "trainable_params",
    "fixed_params",
    "unused_params",
    "macs",
    "flops",
    "training_flops",
    "activations",
    "activation_bytes",
    "input_activations",
    "input_bytes",
    "param_bytes",
    "buffer_bytes",
    "network_depth",
    "saved_activation_bytes",
    "gradient_bytes",
    "optimizer_state_bytes",
    "training_memory_bytes",
)


@dataclass(frozen=True)
class Analysis:
    """Per-layer rows and totals of one network at one input size (see docs/analysis.md)."""

    model: str
    input_shape: list[int]
    dtype: str
    optimizer: str
    layers: list[LayerRow]
    totals: dict[str, int]
    min_input_size: int | None = None
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict, repr=False)
    module_names: dict[str, str] = field(default_factory=dict, repr=False)
    measured: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)  # name, shape, dtype of each input
    operators: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)  # ATen op → calls, costs
    field_unknown_ops: dict[str, int] = field(default_factory=dict)  # ops after which the field is "?"

    # -- access ----------------------------------------------------------------------------------
    def row(self, name: str) -> LayerRow:
        for layer in self.layers:
            if layer.name == name:
                return layer
        known = ", ".join(layer.name for layer in self.layers[:8])
        raise KeyError(f"{self.model} has no layer {name!r}; layers: {known} …")

    def __getitem__(self, name: str) -> LayerRow:
        return self.row(name)

    def collapse(self, depth: int) -> "Analysis":
        """Merge every row deeper than ``depth`` into its ancestor module at that depth."""
        if depth < 1:
            raise ValueError("depth must be at least 1")
        merged: list[LayerRow] = []
        group_key: str | None = None
        group: list[LayerRow] = []

        def flush() -> None:
            if not group:
                return
            if group_key is None:
                merged.extend(group)
            else:
                last = group[-1]
                merged.append(
                    LayerRow(
                        name=self.module_names.get(group_key, group_key),
                        type=self.module_types.get(group_key, "Module"),
                        spec=f"{len(group)} layers" if len(group) > 1 else group[0].spec,
                        output_shape=last.output_shape,
                        weight_params=sum(r.weight_params for r in group),
                        bias_params=sum(r.bias_params for r in group),
                        macs=sum(r.macs for r in group),
                        flops=sum(r.flops for r in group),
                        activations=sum(r.activations for r in group),
                        activation_bytes=sum(r.activation_bytes for r in group),
                        receptive_field=last.receptive_field,
                        jump=last.jump,
                        start=last.start,
                        depth=depth,
                        path=group_key,
                    )
                )
            group.clear()

        for layer in self.layers:
            key = ".".join(layer.path.split(".")[:depth]) if layer.depth > depth else None
            if key != group_key or key is None:
                flush()
                group_key = key
            group.append(layer)
        flush()
        return replace(self, layers=merged)

    # -- renderings ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "inputs": [dict(item) for item in self.inputs],
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": {key: int(self.totals[key]) for key in TOTAL_FIELDS},
            "dtype": self.dtype,
            "optimizer": self.optimizer,
            "min_input_size": self.min_input_size,
        }
        if self.uncounted_ops:
            data["uncounted_ops"] = dict(self.uncounted_ops)
        if self.field_unknown_ops:
            data["receptive_field_unknown_after"] = dict(self.field_unknown_ops)
        if self.measured is not None:
            data["measured"] = dict(self.measured)
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def cells(self, columns: Sequence[str] = DEFAULT_COLUMNS) -> tuple[list[str], list[list[str]], list[bool]]:
        """(headers, one row of text cells per layer, right-aligned?) for ``columns``
        (keys of :data:`LAYER_COLUMNS`)."""
        chosen = [LAYER_COLUMNS[key] for key in check_columns(columns, LAYER_COLUMNS)]
        rows = [[column.cell(layer, self) for column in chosen] for layer in self.layers]
        return [c.header for c in chosen], rows, [c.right for c in chosen]

    def totals_lines(self) -> list[tuple[str, str]]:
        t = self.totals
        lines = [
            ("params", f"{t['params']:,} ({t['trainable_params']:,} trainable, {t['fixed_params']:,} fixed)"),
            ("MACs", f"{t['macs']:,} ({human(t['macs'])})"),
            ("FLOPs", f"{t['flops']:,} ({human(t['flops'])})"),
            (
                "FLOPs per training step (forward + backward)",
                f"{t['training_flops']:,} ({human(t['training_flops'])}; rule in docs/analysis.md)",
            ),
            ("activations (forward)", f"{t['activations']:,} elements, {human_bytes(t['activation_bytes'])}"),
            ("input", f"{t['input_activations']:,} elements, {human_bytes(t['input_bytes'])}"),
            ("parameter memory", human_bytes(t["param_bytes"])),
            ("depth (weighted layers on the longest path)", str(t["network_depth"])),
            (
                f"training memory estimate ({self.optimizer}, batch {self.input_shape[0]})",
                f"{human_bytes(t['training_memory_bytes'])} = "
                f"params {human_bytes(t['param_bytes'] + t['buffer_bytes'])}"
                f" + grads {human_bytes(t['gradient_bytes'])} + optimiser {human_bytes(t['optimizer_state_bytes'])}"
                f" + saved activations {human_bytes(t['saved_activation_bytes'])}",
            ),
        ]
        if t.get("unused_params"):
            lines.append(
                ("params not run by this forward", f"{t['unused_params']:,} (e.g. auxiliary heads in eval mode)")
            )
        if self.measured is not None:
            lines.append(("measured peak", f"{human_bytes(self.measured['peak_bytes'])} ({self.measured['method']})"))
        if self.uncounted_ops:
            lines.append(("ops without a FLOP rule (0 FLOPs)", ", ".join(sorted(self.uncounted_ops))))
        if self.field_unknown_ops:
            lines.append(('receptive field unknown ("?") after', ", ".join(sorted(self.field_unknown_ops))))
        return lines

    def to_markdown(self, columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
        headers, rows, _ = self.cells(columns)
        out = [markdown_table(headers, rows), "", "| total | |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.totals_lines()]
        return "\n".join(out) + "\n"

    def to_text(self, columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
        """Plain fixed-width text: the title, the table (never truncated) and the totals."""
        headers, rows, right = self.cells(columns)
        key_width = max(len(k) for k, _ in self.totals_lines())
        totals = "\n".join(f"{k.ljust(key_width)}  {v}" for k, v in self.totals_lines())
        return f"{self.title()}\n\n{plain_table(headers, rows, right)}\n{totals}\n"

    def title(self) -> str:
        inputs = ", ".join(f"{'×'.join(map(str, i['shape']))} {i['dtype']}" for i in self.inputs)
        return f"{self.model} — input {inputs or '×'.join(map(str, self.input_shape))}"

    def to_csv(self, columns: Sequence[str] | None = None) -> str:
        """Every field of every row as plain numbers; or, with ``columns``, those cells as printed."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if columns is not None:
            headers, rows, _ = self.cells(columns)
            writer.writerow(headers)
            writer.writerows(rows)
            return buffer.getvalue()
        keys = list(self.layers[0].to_dict()) if self.layers else ["name"]
        writer.writerow(keys)
        for layer in self.layers:
            data = layer.to_dict()
            writer.writerow(["x".join(map(str, v)) if isinstance(v, list) else v for v in (data[k] for k in keys)])
        return buffer.getvalue()

    def to_rich(self, columns: Sequence[str] = DEFAULT_COLUMNS) -> Any:
        """A ``rich`` renderable: the per-layer table followed by the totals (for a terminal
        wide enough to show every cell whole; anything else gets :meth:`to_text`)."""
        from rich.console import Group
        from rich.table import Table

        headers, rows, right = self.cells(columns)
        table = Table(title=self.title(), show_lines=False)
        for header, is_number in zip(headers, right):
            table.add_column(header, justify="right" if is_number else "left", no_wrap=is_number, overflow="fold")
        for cells in rows:
            table.add_row(*cells)
        totals = Table(show_header=False, box=None)
        totals.add_column(style="bold")
        totals.add_column(overflow="fold")
        for key, value in self.totals_lines():
            totals.add_row(key, value)
        return Group(table, totals)

    def __str__(self) -> str:
        return self.to_markdown()


# -- formatting helpers ----------------------------------------------------------------------------
def human(n: float) -> str:
    """1234567 → "1.23M" (decimal prefixes, as the papers print MACs)."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= limit:
            return f"{n / limit:.{2 if abs(n) < 10 * limit else 1}f}{suffix}"
    return str(int(n))


def human_bytes(n: float) -> str:
    """Bytes in binary units, as memory is reported: 1048576 → "1.00 MiB"."""
    for limit, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= limit:
            return f"{n / limit:.2f} {suffix}"
    return f"{int(n)} B"


def shape_text(shape: Sequence[int]) -> str:
    """Output shape without the batch dimension: [1, 96, 55, 55] → "96×55×55"."""
    return "×".join(map(str, shape[1:])) if len(shape) > 1 else "×".join(map(str, shape))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A fixed-width text table that never truncates: each column is as wide as its widest
    cell, numbers (``right``-aligned columns) are printed in full, and a cell holding line
    breaks continues on the next lines of its column (how long names wrap)."""
    right = list(right) if right is not None else [False] * len(headers)
    split_rows = [[str(cell).split("\n") for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split_rows:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    for row in split_rows:
        height = max(len(lines) for lines in row)
        for k in range(height):
            out.append(line([lines[k] if k < len(lines) else "" for lines in row]))
    return "\n".join(out) + "\n"
