"""Totals grouped three ways, like fvcore's ``by_module``/``by_operator`` and ptflops's per-layer
report: per module path (every module at every depth, with everything it contains), per ATen
operator, and per layer type; each row with its share of the network's total.

Shares are of the whole network: a module row's 42.0 % MACs is the fraction of all MACs spent
inside that module, so nested rows do not add up to 100 %, while the rows of one depth do.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Sequence

from cnnatlas.analysis.render import Analysis, check_columns, human, markdown_table, plain_table
from cnnatlas.errors import InputError

BY = ("module", "operator", "type")


@dataclass(frozen=True)
class Group:
    key: str  # module path, ATen op name or layer type
    label: str  # what the table prints (indented module path, op, type)
    kind: str  # the module class for a module row; "" otherwise
    count: int  # rows (type), calls (operator), layers inside (module)
    params: int
    macs: int
    flops: int
    activations: int


@dataclass(frozen=True)
class Breakdown:
    model: str
    by: str
    groups: list[Group]
    totals: dict[str, int]

    COLUMNS = ("name", "kind", "count", "params", "params%", "macs", "macs%", "flops", "flops%", "activations")

    def _headers(self) -> dict[str, str]:
        first = {"module": "module path", "operator": "ATen operator", "type": "layer type"}[self.by]
        count = {"module": "layers", "operator": "calls", "type": "rows"}[self.by]
        return {
            "name": first,
            "kind": "type",
            "count": count,
            "params": "params",
            "params%": "params %",
            "macs": "MACs",
            "macs%": "MACs %",
            "flops": "FLOPs",
            "flops%": "FLOPs %",
            "activations": "activations",
        }

    def _default_columns(self) -> list[str]:
        columns = list(self.COLUMNS)
        if self.by != "module":
            columns.remove("kind")
        if self.by == "operator":  # parameters belong to modules, not to operators
            columns.remove("params")
            columns.remove("params%")
        return columns

    def cells(self, columns: Sequence[str] | None = None) -> tuple[list[str], list[list[str]], list[bool]]:
        keys = check_columns(columns, self._headers()) if columns else self._default_columns()
        t = self.totals

        def cell(group: Group, key: str) -> str:
            values = {
                "name": group.label,
                "kind": group.kind,
                "count": f"{group.count:,}",
                "params": f"{group.params:,}",
                "params%": _share(group.params, t["params"]),
                "macs": f"{group.macs:,}",
                "macs%": _share(group.macs, t["macs"]),
                "flops": f"{group.flops:,}",
                "flops%": _share(group.flops, t["flops"]),
                "activations": f"{group.activations:,}",
            }
            return values[key]

        headers = self._headers()
        return (
            [headers[k] for k in keys],
            [[cell(g, k) for k in keys] for g in self.groups],
            [k not in ("name", "kind") for k in keys],
        )

    def totals_line(self) -> str:
        t = self.totals
        macs, flops = f"{t['macs']:,} MACs ({human(t['macs'])})", f"{t['flops']:,} FLOPs ({human(t['flops'])})"
        return f"total: {t['params']:,} params, {macs}, {flops}"

    def to_text(self, columns: Sequence[str] | None = None) -> str:
        headers, rows, right = self.cells(columns)
        title = f"{self.model} by {self.by}"
        return f"{title}\n\n{plain_table(headers, rows, right)}\n{self.totals_line()}\n"

    def to_markdown(self, columns: Sequence[str] | None = None) -> str:
        headers, rows, _ = self.cells(columns)
        return markdown_table(headers, rows) + "\n\n" + self.totals_line() + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["key", "type", "count", "params", "macs", "flops", "activations"])
        for g in self.groups:
            writer.writerow([g.key, g.kind, g.count, g.params, g.macs, g.flops, g.activations])
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "by": self.by,
            "rows": [
                {
                    "key": g.key,
                    "type": g.kind,
                    "count": g.count,
                    "params": g.params,
                    "macs": g.macs,
                    "flops": g.flops,
                    "activations": g.activations,
                }
                for g in self.groups
            ],
            "totals": {k: self.totals[k] for k in ("params", "macs", "flops", "activations")},
        }


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else ""


def breakdown(analysis: Analysis, by: str, max_depth: int | None = None) -> Breakdown:
    """Group ``analysis``'s costs ``by`` ``"module"`` (down to ``max_depth``), ``"operator"`` or ``"type"``."""
    if by == "module":
        groups = _by_module(analysis, max_depth)
    elif by == "operator":
        groups = _by_operator(analysis)
    elif by == "type":
        groups = _by_type(analysis)
    else:
        raise InputError(f"breakdown by {by!r}: use one of {', '.join(BY)}")
    return Breakdown(model=analysis.model, by=by, groups=groups, totals=dict(analysis.totals))


def _by_module(analysis: Analysis, max_depth: int | None) -> list[Group]:
    sums: dict[str, list[int]] = {path: [0, 0, 0, 0, 0] for path in analysis.module_types}
    for layer in analysis.layers:
        parts = layer.path.split(".") if layer.path else []
        for cut in range(len(parts) + 1):  # the row counts in every module that contains it
            key = ".".join(parts[:cut])
            entry = sums.setdefault(key, [0, 0, 0, 0, 0])
            entry[0] += 1
            entry[1] += layer.params
            entry[2] += layer.macs
            entry[3] += layer.flops
            entry[4] += layer.activations
    groups = []
    for path, (count, params, macs, flops, activations) in sums.items():
        depth = len(path.split(".")) if path else 0
        if max_depth is not None and depth > max_depth:
            continue
        label = "  " * depth + (path.rsplit(".", 1)[-1] if path else "(model)")
        kind = analysis.module_types.get(path, "")
        groups.append(Group(path, label, kind, count, params, macs, flops, activations))
    return groups


def _by_operator(analysis: Analysis) -> list[Group]:
    ops = sorted(analysis.operators.items(), key=lambda item: (-item[1]["flops"], item[0]))
    return [Group(name, name, "", v["calls"], 0, v["macs"], v["flops"], v["activations"]) for name, v in ops]


def _by_type(analysis: Analysis) -> list[Group]:
    sums: dict[str, list[int]] = {}
    for layer in analysis.layers:
        entry = sums.setdefault(layer.type, [0, 0, 0, 0, 0])
        entry[0] += 1
        entry[1] += layer.params
        entry[2] += layer.macs
        entry[3] += layer.flops
        entry[4] += layer.activations
    ordered = sorted(sums.items(), key=lambda item: (-item[1][3], item[0]))
    return [Group(t, t, "", *values) for t, values in ordered]
