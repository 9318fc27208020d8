"""Run GX Core 1.x expectation suites on pandas tables; one readable message for the failures."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

FIRST_ROWS = 5


@dataclass
class Suite:
    name: str
    expectations: list[Any]  # great_expectations.expectations.Expectation instances
    index_columns: list[str]  # identify offending rows in the report (e.g. root, path)


def run_suites(batches: dict[str, tuple[Suite, pd.DataFrame]]) -> dict[str, Any]:
    """Validate each table with its suite in one ephemeral GX context."""
    import great_expectations as gx

    # GX sets one module's logger to INFO itself ("Created temporary directory ... docs site")
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("ingest")
    results: dict[str, Any] = {}
    for name, (suite_spec, frame) in batches.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=suite_spec.name))
        for expectation in suite_spec.expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        index_columns = [c for c in suite_spec.index_columns if c in frame.columns]
        result = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": 20,
                "unexpected_index_column_names": index_columns,
            },
        )
        results[name] = _reproducible(json.loads(json.dumps(result.to_json_dict(), default=str)))
    failures = [
        message for name, result in results.items() for message in failure_messages(name, result)
    ]
    return {
        "success": not failures,
        "failure_message": _summary(failures) if failures else None,
        "failures": failures,
        "suites": results,
    }


RUN_IDENTITY = ("validation_id", "run_id", "validation_time")  # GX's per-run ids and times


def _reproducible(result: dict[str, Any]) -> dict[str, Any]:
    """The result without what GX makes new on every run (random ids, timestamps), so equal
    data gives an equal report (and an equal hash in dvc.lock)."""
    result.pop("id", None)
    meta = result.get("meta", {})
    for key in RUN_IDENTITY:
        meta.pop(key, None)
    meta.get("batch_markers", {}).pop("ge_load_time", None)
    for row in result.get("results", []):
        row.get("expectation_config", {}).pop("id", None)
    return result


def _summary(failures: list[str]) -> str:
    return f"Data validation failed ({len(failures)} expectation(s)):\n" + "\n".join(
        f"- {message}" for message in failures
    )


def _rule(config: dict) -> str:
    kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
    condition = kwargs.pop("row_condition", None)
    kwargs.pop("condition_parser", None)
    if isinstance(kwargs.get("value_set"), list) and len(kwargs["value_set"]) > 12:
        kwargs["value_set"] = kwargs["value_set"][:12] + ["..."]
    args = ", ".join(f"{k}={_number(v)!r}" for k, v in kwargs.items())
    where = ""
    if condition:
        text = condition.get("pass_through_filter") if isinstance(condition, dict) else condition
        where = f" where {text}"
    return f"{config.get('type')}({args}){where}"


def failure_messages(suite_name: str, result: dict) -> list[str]:
    """One line per failed expectation: the rule, how many rows, the first offending rows."""
    messages = []
    for item in result.get("results", []):
        if item.get("success"):
            continue
        rule = f"[{suite_name}] {_rule(item.get('expectation_config', {}))}"
        info = item.get("result") or {}
        exception = item.get("exception_info") or {}
        if exception.get("raised_exception"):
            messages.append(
                f"{rule}: could not be evaluated ({exception.get('exception_message')})"
            )
        elif "unexpected_count" in info:
            rows = info.get("partial_unexpected_index_list") or info.get("partial_unexpected_list")
            shown = "; ".join(_row(r) for r in (rows or [])[:FIRST_ROWS])
            messages.append(
                f"{rule}: {info['unexpected_count']} of {info.get('element_count')} rows fail; "
                f"first: {shown}"
            )
        else:
            messages.append(f"{rule}: observed {json.dumps(info, default=str)[:300]}")
    return messages


def _number(value: Any) -> Any:
    """GX stores bounds as floats: show 16.0 as 16."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _row(row: Any) -> str:
    if isinstance(row, dict):
        return ", ".join(f"{k}={v}" for k, v in row.items())
    return repr(row)
