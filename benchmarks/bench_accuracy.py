"""Accuracy benchmark: leave-one-style-out × seeds × every method (croft_pipeline.benchmark).

    python benchmarks/bench_accuracy.py                 # every style of the default EmojiShift
    python benchmarks/bench_accuracy.py --folds symbola --out /tmp/acc

Writes ``accuracy.json`` (every number) and ``accuracy.md`` (the tables, with machine, command,
date and commit) under ``--out`` (default benchmarks/results/), and logs one MLflow parent run
(experiment ``croft-pipeline-benchmark`` in the project's ``mlflow.db``). Needs the default run's
ingest and pretrain outputs; runs those first when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import croft_pipeline  # noqa: F401  (offline defaults first)
from croft_pipeline.benchmark import run_benchmark
from croft_pipeline.io_utils import atomic_write_bytes
from croft_pipeline.reporting.verdict import format_interval

ROOT = Path(__file__).resolve().parents[1]
SHIFT_LABELS = {
    "id": "ID",
    "covariate": "covariate",
    "covariate_novel": "novel glyphs",
    "openset": "open-set",
    "openset_near": "near",
    "openset_far": "far",
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, no GPU used (train.device auto)"
    )


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cell(summary: pd.DataFrame, method: str, shift: str, metric: str) -> str:
    row = summary[
        (summary["method"] == method) & (summary["shift"] == shift) & (summary["metric"] == metric)
    ]
    if row.empty:
        return "–"
    return f"{row['mean'].iloc[0]:.3f} ± {row['std'].iloc[0]:.3f}"


def method_table(summary: pd.DataFrame) -> list[str]:
    columns = [("id", "accuracy"), ("covariate", "accuracy"), ("covariate_novel", "accuracy")]
    for shift in ("openset", "openset_near", "openset_far"):
        columns += [
            (shift, f"{score}_{m}") for score in ("energy", "knn") for m in ("auroc", "fpr95")
        ]
    header = ["method"] + [f"{SHIFT_LABELS[s]} {m.replace('_', ' ')}" for s, m in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in sorted(summary["method"].unique()):
        lines.append(
            "| " + " | ".join([method] + [cell(summary, method, s, m) for s, m in columns]) + " |"
        )
    return lines


def comparison_table(comparisons: pd.DataFrame, role: str) -> list[str]:
    rows = comparisons[comparisons["role"] == role]
    metrics = list(dict.fromkeys(zip(rows["shift"], rows["metric"], strict=True)))
    header = ["method − baseline"] + [
        f"{SHIFT_LABELS.get(s, s)} {m.replace('_', ' ')}" for s, m in metrics
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, baseline), part in rows.groupby(["method", "baseline"], sort=True):
        cells = []
        for shift, metric in metrics:
            hit = part[(part["shift"] == shift) & (part["metric"] == metric)]
            cells.append(
                "–" if hit.empty else format_interval(*hit[["difference", "low", "high"]].iloc[0])
            )
        lines.append(f"| {method} − {baseline} | " + " | ".join(cells) + " |")
    return lines


def selection_rows(selection: dict[str, dict]) -> list[dict[str, Any]]:
    """Per fold, method and seed: the chosen point, its epoch, val accuracy, zero-shot's, oracle."""
    rows = []
    for fold, summary in selection.items():
        for name, entry in summary["methods"].items():
            for seed, run in entry["seeds"].items():
                row = {
                    "fold": fold,
                    "method": name,
                    "seed": int(seed),
                    "val_accuracy": run.get("best_val_accuracy"),
                }
                if "base" in entry:
                    row["alpha"] = run["alpha"]
                else:
                    row.update(
                        point={k: run["config"][k] for k in entry.get("grid", {})},
                        best_epoch=run.get("best_epoch"),
                        zero_shot_val_accuracy=run.get("zero_shot_val_accuracy"),
                        oracle=run.get("oracle"),
                        selected_heldout_accuracy=_selected_probe(run).get("test_covariate"),
                    )
                rows.append(row)
    return rows


def _selected_probe(run: dict) -> dict:
    for row in run.get("grid", []):
        if all(run["config"].get(k) == v for k, v in row.get("point", {}).items()):
            return row.get("probe", {})
    return {}


def selection_table(rows: list[dict[str, Any]]) -> list[str]:
    frame = pd.DataFrame(
        [
            r
            for r in rows
            if "best_epoch" in r and r["best_epoch"] is not None and r["best_epoch"] >= 0
        ]
    )
    lines = [
        "| method | best epoch (min–max) | val acc | zero-shot val acc | held-out acc, selected | held-out acc, oracle (upper bound) | oracle gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, part in frame.groupby("method", sort=True):
        oracle = np.mean([r["test_covariate"] for r in part["oracle"]])
        chosen = part["selected_heldout_accuracy"].mean()
        lines.append(
            f"| {method} | {part['best_epoch'].min()}–{part['best_epoch'].max()} | {part['val_accuracy'].mean():.3f} "
            f"| {part['zero_shot_val_accuracy'].mean():.3f} | {chosen:.3f} | {oracle:.3f} | {oracle - chosen:+.3f} |"
        )
    alphas = pd.DataFrame([r for r in rows if "alpha" in r])
    if not alphas.empty:
        lines += ["", "WiSE-FT α chosen on ID validation (mean, min–max over folds × seeds): " + ", ".join(
            f"{m} {p['alpha'].mean():.2f} ({p['alpha'].min():g}–{p['alpha'].max():g})"
            for m, p in alphas.groupby("method", sort=True)
        )]  # fmt: skip
    return lines


def write_results(results: dict[str, Any], out: Path, command: str, seconds: float) -> None:
    summary, comparisons = results["summary"], results["comparisons"]
    selection = selection_rows(results["selection"])
    meta = {
        "command": command,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit(),
        "wall_seconds": round(seconds, 1),
        "fold_seconds": results["fold_seconds"],
        "mlflow_run_id": results["mlflow_run_id"],
        "units": "folds x seeds (held-out style x training seed)",
    }
    document = {
        **meta,
        "summary": summary.to_dict("records"),
        "comparisons": comparisons.to_dict("records"),
        "selection": selection,
        "wise_curves": results["wise_curves"].groupby(["method", "alpha", "split"])["accuracy"].mean().reset_index().to_dict("records"),
    }  # fmt: skip
    atomic_write_bytes(
        out / "accuracy.json", json.dumps(document, indent=1, default=float).encode()
    )
    lines = [
        "# Accuracy benchmark (leave-one-style-out)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {meta['machine']}  ",
        f"Date: {meta['date']}, commit {meta['commit']}, wall {seconds / 60:.1f} min "
        f"(per fold: {', '.join(f'{k} {v:.0f} s' for k, v in meta['fold_seconds'].items())}); "
        f"MLflow run {meta['mlflow_run_id']} (experiment croft-pipeline-benchmark).",
        "",
        "Every style of EmojiShift is held out in turn (covariate test); each method is tuned on ID "
        "validation only, with the same number of grid points (conf/base/parameters_train.yml). "
        "Cells: mean ± std over folds × seeds (numpy std, ddof 0). Open-set detection: ID test "
        "against every open-set class, the near ones (same CLDR group as an ID class) and the far "
        "ones; higher AUROC is better, lower FPR95 is better.",
        "",
        "## Every method",
        "",
        *method_table(summary),
        "",
        "## Paired differences with 95% intervals (folds × seeds and test images resampled)",
        "",
        "▲ the whole interval above 0, ▼ below 0, no mark: within noise.",
        "",
        "### Against zero-shot CLIP",
        "",
        *comparison_table(comparisons, "vs zero-shot"),
        "",
        "### Does the energy term help? CRoFT against croft_no_edr",
        "",
        *comparison_table(comparisons, "vs no EDR"),
        "",
        "### CRoFT against the best baseline on each metric (chosen on these test results)",
        "",
        *comparison_table(comparisons, "vs best baseline"),
        "",
        "## Model selection (ID validation) and the oracle (held-out style, an upper bound no user could select)",
        "",
        *selection_table(selection),
        "",
    ]
    atomic_write_bytes(out / "accuracy.md", "\n".join(lines).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--env", default=None, help="Kedro environment (default: base)")
    parser.add_argument(
        "--folds", nargs="*", default=None, help="held-out domains (default: every one)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    command = "python " + " ".join(
        shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]
    )
    started = time.perf_counter()
    results = run_benchmark(args.project, args.env, args.folds)
    write_results(results, args.out, command, time.perf_counter() - started)
    print(f"wrote {args.out / 'accuracy.json'} and {args.out / 'accuracy.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
