"""Small type-and-range checks for JSON read back from disk (checkpoint states, config.json).

A field rule is a :class:`Rule`: a predicate and the words that describe what it accepts, so a
failed check says what was expected and what was found, in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cnnatlas.errors import CnnAtlasError

#: Largest integer accepted in a JSON field that counts something (steps, epochs, sizes): far
#: above any real run, far below where float conversions or tensor sizes would misbehave.
MAX_COUNT = 2**53


@dataclass(frozen=True)
class Rule:
    accepts: Callable[[Any], bool]
    description: str
    optional: bool = False  # the field may be missing

    def or_none(self) -> "Rule":
        return Rule(lambda v: v is None or self.accepts(v), f"{self.description} or null", self.optional)

    def maybe_missing(self) -> "Rule":
        return Rule(self.accepts, self.description, True)


def is_int(value: Any, low: int = -MAX_COUNT, high: int = MAX_COUNT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value: Any, low: float = -math.inf, high: float = math.inf, *, finite: bool = True) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if finite and not math.isfinite(value):
        return False
    return low <= value <= high


def int_rule(low: int = 0, high: int = MAX_COUNT) -> Rule:
    if low == 1:
        words = f"a positive integer (at most {high})"
    elif low == 0:
        words = f"an integer ≥ 0 (at most {high})"
    else:
        words = f"an integer in [{low}, {high}]"
    return Rule(lambda v: is_int(v, low, high), words)


def number_rule(low: float = -math.inf, high: float = math.inf) -> Rule:
    return Rule(lambda v: is_number(v, low, high), f"a finite number in [{low:g}, {high:g}]")


def str_rule(max_len: int = 4096) -> Rule:
    return Rule(lambda v: isinstance(v, str) and len(v) <= max_len, f"a string of at most {max_len} characters")


def list_rule(item: Rule, max_len: int) -> Rule:
    return Rule(
        lambda v: isinstance(v, list) and len(v) <= max_len and all(item.accepts(x) for x in v),
        f"a list of at most {max_len} × {item.description}",
    )


BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
OBJECT = Rule(lambda v: isinstance(v, dict), "a JSON object")


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_fields(
    obj: Any, rules: Mapping[str, Rule], *, source: str, error: type[CnnAtlasError], where: str = ""
) -> None:
    """Raise ``error`` for the first field of ``obj`` that is missing or breaks its rule."""
    prefix = f"{where}." if where else ""
    if not isinstance(obj, dict):
        raise error(f"{source}: {where or 'the file'} must be a JSON object, got {type(obj).__name__}")
    for key, rule in rules.items():
        if key not in obj:
            if rule.optional:
                continue
            raise error(f"{source}: field {prefix}{key} is missing (expected {rule.description})")
        if not rule.accepts(obj[key]):
            raise error(f"{source}: field {prefix}{key} must be {rule.description}, got {short_repr(obj[key])}")
