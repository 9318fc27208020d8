"""Quality gates as data: when may the ``champion`` alias move to a new model version?

``gates`` (from ``parameters_evaluate.yml``)::

    require_finite: true          # every summary metric of the registered method is finite
    comparisons:
      - {shift: covariate, metric: accuracy, op: ">", baseline: zero_shot, interval: true}
      - {shift: openset, metric: energy_auroc, op: ">=", value: 0.6}

A comparison checks the registered method's mean over seeds against a baseline method's mean
(``baseline``) or a fixed ``value``. With ``interval: true`` it checks the paired difference's
confidence interval instead (``ood.comparisons``): ``>`` passes only when the whole interval is
above zero (better beyond noise), ``>=`` unless the whole interval is below zero (not worse
beyond noise), and ``<`` / ``<=`` likewise; a difference within seed and test-set noise never
counts as a win. A metric that is missing fails its gate.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from croft_pipeline.ood.evaluation import non_finite_metrics
from croft_pipeline.ood.intervals import beyond_noise

OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
INTERVAL_TESTS = {  # beyond_noise(low, high) of the difference's interval -> passed
    ">": lambda side: side == 1,  # better beyond noise
    ">=": lambda side: side != -1,  # not worse beyond noise
    "<": lambda side: side == -1,
    "<=": lambda side: side != 1,
}


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_gates(
    summary: pd.DataFrame, comparisons: pd.DataFrame, gates: Mapping[str, Any], method: str
) -> list[GateResult]:
    """Every gate's result for ``method`` on a summary table (method, shift, metric, mean, std)
    and the comparisons table (method, baseline, shift, metric, difference, low, high)."""
    results = [_finite_gate(summary, method)] if gates.get("require_finite", True) else []
    return results + [
        gate_result(summary, comparisons, gate, method) for gate in gates.get("comparisons", [])
    ]


def gate_result(
    summary: pd.DataFrame, comparisons: pd.DataFrame, gate: Mapping[str, Any], method: str
) -> GateResult:
    """One comparison gate's result (an entry of ``gates.comparisons``)."""
    if gate.get("interval"):
        return _interval_comparison(comparisons, gate, method)
    return _comparison(summary, gate, method)


def interval_row(
    comparisons: pd.DataFrame, gate: Mapping[str, Any], method: str
) -> pd.Series | None:
    """The comparisons row an interval gate judges: ``method`` against its baseline."""
    row = comparisons[
        (comparisons["method"] == method)
        & (comparisons["baseline"] == gate["baseline"])
        & (comparisons["shift"] == gate["shift"])
        & (comparisons["metric"] == gate["metric"])
    ]
    return None if row.empty else row.iloc[0]


def gate_lines(results: list[GateResult]) -> list[str]:
    """One line per gate, ``PASS``/``FAIL``, its name and figure (the end of evaluate's log)."""
    return [f"{'PASS' if r.passed else 'FAIL'} {r.name}: {r.detail}" for r in results]


def gates_outcome(results: list[GateResult], champion_alias: str, held: str = "") -> str:
    """What the gates did to ``champion_alias``, in one sentence; ``held``: why this run
    registers nothing (``publishing.experiments.held_reason``), so that nothing moves."""
    failed = [r.name for r in results if not r.passed]
    if not failed:
        verdict = f"all {len(results)} gates passed"
        if not held:
            return f"{verdict}: {champion_alias} moves to this run's version"
    else:
        verdict = f"{len(failed)} of {len(results)} gates failed ({'; '.join(failed)})"
    if held:
        verdict += f", {'and' if failed else 'but'} {held}"
    return f"{verdict}: {champion_alias} stays where it was"


def gated_metrics(summary: pd.DataFrame, gates: Mapping[str, Any], method: str) -> dict[str, float]:
    """``{"<shift>/<metric>": mean}`` of ``method`` for every metric a comparison gate judges."""
    values = {}
    for gate in gates.get("comparisons", []):
        mean = _mean(summary, method, gate["shift"], gate["metric"])
        if mean is not None:
            values[f"{gate['shift']}/{gate['metric']}"] = mean
    return values


def _interval_comparison(
    comparisons: pd.DataFrame, gate: Mapping[str, Any], method: str
) -> GateResult:
    shift, metric, op = gate["shift"], gate["metric"], gate.get("op", ">")
    if op not in INTERVAL_TESTS or "baseline" not in gate:
        raise ValueError(
            f"an interval gate needs op in {sorted(INTERVAL_TESTS)} and a baseline, got {dict(gate)}"
        )
    name = gate.get("name") or f"{method} {shift}/{metric} {op} {gate['baseline']} (interval)"
    r = interval_row(comparisons, gate, method)
    if r is None:
        return GateResult(
            name, False, f"no interval for {method} vs {gate['baseline']} on {shift}/{metric}"
        )
    passed = INTERVAL_TESTS[op](beyond_noise(float(r["low"]), float(r["high"])))
    detail = (
        f"{method} - {gate['baseline']} = {r['difference']:+.4f}, {r['level']:.0%} interval "
        f"[{r['low']:+.4f}, {r['high']:+.4f}] over {int(r['units'])} units"
    )
    return GateResult(name, bool(passed), detail)


def _finite_gate(summary: pd.DataFrame, method: str) -> GateResult:
    rows = summary[summary["method"] == method]
    if rows.empty:
        return GateResult("all metrics finite", False, f"no metrics for method {method!r}")
    bad = non_finite_metrics(rows)
    detail = f"non-finite: {bad}" if bad else f"{len(rows)} metrics finite"
    return GateResult("all metrics finite", not bad, detail)


def _comparison(summary: pd.DataFrame, gate: Mapping[str, Any], method: str) -> GateResult:
    shift, metric, op = gate["shift"], gate["metric"], gate.get("op", ">")
    if op not in OPERATORS:
        raise ValueError(f"gate operator must be one of {list(OPERATORS)}, got {op!r}")
    if ("baseline" in gate) == ("value" in gate):
        raise ValueError(f"gate {dict(gate)} needs exactly one of 'baseline' or 'value'")
    against = gate.get("baseline", gate.get("value"))
    name = gate.get("name") or f"{method} {shift}/{metric} {op} {against}"
    ours = _mean(summary, method, shift, metric)
    theirs = (
        _mean(summary, gate["baseline"], shift, metric) if "baseline" in gate else float(against)
    )
    if ours is None or theirs is None:
        return GateResult(name, False, f"{shift}/{metric} missing for {method} or {against}")
    passed = math.isfinite(ours) and math.isfinite(theirs) and OPERATORS[op](ours, theirs)
    return GateResult(name, bool(passed), f"{ours:.4f} {op} {theirs:.4f}")


def _mean(summary: pd.DataFrame, method: str, shift: str, metric: str) -> float | None:
    row = summary[
        (summary["method"] == method) & (summary["shift"] == shift) & (summary["metric"] == metric)
    ]
    return None if row.empty else float(row["mean"].iloc[0])
