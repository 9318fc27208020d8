"""Rules on configuration values, stated once and used both where a value is consumed and by
the start-of-run check (:mod:`croft_pipeline.config_checks`).

A :class:`Rule` is a predicate with the words that describe it; :meth:`Rule.check` raises a
:class:`ParameterError` whose message names the key, the rule and the value
(``train.common.lr must be > 0, got -0.5``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A parameter that breaks a rule; ``key`` is its full dotted name."""

    def __init__(self, key: str, rule: str, value: Any):
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"{key} must {rule}, got {value!r}")


@dataclass(frozen=True)
class Rule:
    """``holds(value)`` is true for an allowed value; ``text`` completes "<key> must ..."."""

    text: str
    holds: Callable[[Any], bool]

    def check(self, key: str, value: Any) -> Any:
        """``value`` if it holds, else a :class:`ParameterError` naming ``key``."""
        try:
            ok = bool(self.holds(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ParameterError(key, self.text, value)
        return value


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


POSITIVE = Rule("be > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Rule("be >= 0", lambda v: _number(v) and v >= 0)
UNIT = Rule("be in [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
SHARE = Rule("be in (0, 1]", lambda v: _number(v) and 0 < v <= 1)
NUMBER = Rule("be a finite number", _number)
BOOLEAN = Rule("be true or false", lambda v: isinstance(v, bool))
TEXT = Rule("be a non-empty string", lambda v: isinstance(v, str) and bool(v))


def at_least(least: int) -> Rule:
    """An integer ``>= least``."""
    return Rule(f"be an integer >= {least}", lambda v: _integer(v) and v >= least)


def one_of(choices: Sequence[Any]) -> Rule:
    return Rule(f"be one of {list(choices)}", lambda v: v in choices)


def optional(rule: Rule) -> Rule:
    """``null`` or a value ``rule`` allows."""
    return Rule(f"be null or {rule.text.removeprefix('be ')}", lambda v: v is None or rule.holds(v))


def interval(low_rule: Rule) -> Rule:
    """A pair ``[low, high]`` with ``low <= high``, both allowed by ``low_rule``."""
    return Rule(
        f"be a pair [low, high] with low <= high, each {low_rule.text.removeprefix('be ')}",
        lambda v: len(v) == 2 and all(low_rule.holds(x) for x in v) and v[0] <= v[1],
    )
