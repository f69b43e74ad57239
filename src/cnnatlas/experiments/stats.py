"""Summaries over seeds and the significance rule the experiments use.

A difference between two arms is called a difference only when Welch's two-sided t-test
(unequal variances; Welch 1947) gives p < :data:`ALPHA`. With 3 seeds per arm this only
fires for gaps several times larger than the seeds' spread, which is the point: the
experiments say "no measurable difference at this scale" otherwise.
"""

from __future__ import annotations

import math
from typing import Sequence

ALPHA = 0.05
RULE = f"Welch's two-sided t-test against the first (baseline) arm, difference called when p < {ALPHA}"


def summary(values: Sequence[float]) -> dict[str, object]:
    """Mean, sample standard deviation (n − 1; 0 for one value) and the values themselves."""
    data = [float(v) for v in values]
    if not data:
        return {"mean": None, "std": None, "n": 0, "values": []}
    mean = sum(data) / len(data)
    var = sum((v - mean) ** 2 for v in data) / (len(data) - 1) if len(data) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": len(data), "values": data}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Numerical Recipes §6.4, modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, dof: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``dof`` degrees of freedom: I_{ν/(ν+t²)}(ν/2, 1/2)."""
    if not math.isfinite(t):
        return 0.0
    return regularized_beta(dof / 2.0, 0.5, dof / (dof + t * t))


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, object]:
    """Welch's t-test of mean(b) − mean(a): difference, t, Welch–Satterthwaite dof, two-sided p
    and whether p < ALPHA. Needs two values per side; identical constant samples give p = 1."""
    xa, xb = [float(v) for v in a], [float(v) for v in b]
    if len(xa) < 2 or len(xb) < 2:
        return {"difference": None, "t": None, "dof": None, "p": None, "significant": False, "rule": RULE}
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    va = sum((v - ma) ** 2 for v in xa) / (len(xa) - 1) / len(xa)
    vb = sum((v - mb) ** 2 for v in xb) / (len(xb) - 1) / len(xb)
    diff = mb - ma
    if va + vb == 0.0:
        p = 1.0 if diff == 0 else 0.0
        return {"difference": diff, "t": None, "dof": None, "p": p, "significant": p < ALPHA, "rule": RULE}
    t = diff / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / ((va**2 / (len(xa) - 1) if va else 0.0) + (vb**2 / (len(xb) - 1) if vb else 0.0))
    p = student_t_two_sided_p(t, dof)
    return {"difference": diff, "t": t, "dof": dof, "p": p, "significant": p < ALPHA, "rule": RULE}
