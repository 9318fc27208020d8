"""Rules on configuration values, stated once and used both where a value is consumed and by
the typed parameter models (:mod:`croft_pipeline.config.schema`).

A :class:`Rule` is a predicate with the words that describe it. :meth:`Rule.check` raises a
:class:`ParameterError` whose message names the key, the rule and the value
(``train.methods.croft_clean.lr must be > 0, got -0.5``). A rule is also a pydantic type
annotation (``lr: Annotated[float, POSITIVE]``): the field accepts what the rule allows and
keeps the value as given (an ``int`` stays an ``int``), and :func:`parameter_error` turns a
pydantic ``ValidationError`` into the same one-line message.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError, core_schema

RULE_ERROR = "project_rule"  # the pydantic error type of a broken Rule


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

    def allows(self, value: Any) -> bool:
        try:
            return bool(self.holds(value))
        except (TypeError, ValueError):
            return False

    def check(self, key: str, value: Any) -> Any:
        """``value`` if it holds, else a :class:`ParameterError` naming ``key``."""
        if not self.allows(value):
            raise ParameterError(key, self.text, value)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(value: Any) -> Any:
            if not self.allows(value):
                raise PydanticCustomError(RULE_ERROR, "{rule}", {"rule": self.text})
            return value

        return core_schema.no_info_plain_validator_function(validate)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


POSITIVE = Rule("be > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Rule("be >= 0", lambda v: _number(v) and v >= 0)
UNIT = Rule("be in [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
SHARE = Rule("be in (0, 1]", lambda v: _number(v) and 0 < v <= 1)
LEVEL = Rule("be in (0, 1)", lambda v: _number(v) and 0 < v < 1)
NUMBER = Rule("be a finite number", _number)
BOOLEAN = Rule("be true or false", lambda v: isinstance(v, bool))
TEXT = Rule("be a non-empty string", lambda v: isinstance(v, str) and bool(v))
NONE_OR_TEXT = Rule("be null or a non-empty string", lambda v: v is None or TEXT.allows(v))
ZERO = Rule("be 0", lambda v: _number(v) and v == 0)


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


def invalid(reason: Any) -> PydanticCustomError:
    """The error a model validator raises for a value that fails a consumer's own check: the
    message reads "<key> must be valid (<reason>)"."""
    return PydanticCustomError(RULE_ERROR, "{rule}", {"rule": f"be valid ({reason})"})


def broken(rule: str) -> PydanticCustomError:
    """The error a model validator raises for a broken cross-field rule ("<key> must <rule>")."""
    return PydanticCustomError(RULE_ERROR, "{rule}", {"rule": rule})


# pydantic's own error types -> the rule they report, for the few checks no Rule makes
PYDANTIC_RULES = {
    "extra_forbidden": "not be set",
    "missing": "be set",
    "dict_type": "be a mapping of parameters",
    "model_type": "be a mapping of parameters",
    "model_attributes_type": "be a mapping of parameters",
    "list_type": "be a list",
    "too_short": "be a non-empty list",
}


def parameter_error(error: ValidationError, prefix: str = "", skip: int = 0) -> ParameterError:
    """The first error of ``error`` as a :class:`ParameterError` whose key is the full dotted
    name (``prefix`` then pydantic's location past its first ``skip`` parts; list indices as
    ``[i]``) and whose rule reads as the project's (``be > 0``), not pydantic's. A
    :class:`ParameterError` a validator raised (it names its full key) comes back as it is."""
    first = error.errors(include_url=False)[0]
    context = first.get("ctx") or {}
    if isinstance(context.get("error"), ParameterError):
        return context["error"]
    key = prefix
    for part in first["loc"][skip:]:
        if part == "[key]":  # pydantic's mark of a mapping's key (the key itself comes before)
            continue
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    if first["type"] == RULE_ERROR:
        rule = context["rule"]
    else:
        rule = PYDANTIC_RULES.get(first["type"], f"be valid ({first['msg']})")
    return ParameterError(key, rule, None if first["type"] == "missing" else first.get("input"))


THREAD_COUNT = Rule(
    "be auto, null or an integer >= 1",
    lambda v: v is None or v == "auto" or (_integer(v) and v >= 1),
)  # torch CPU threads, and worker processes
RUNNERS = ("local", "ray")  # this machine's processes | Ray (croft_pipeline.distributed)
RUNNER = one_of(RUNNERS)
