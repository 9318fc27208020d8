"""Accuracy benchmark: backbones × leave-one-style-out × seeds × every method
(benchmarks.protocol).

    python benchmarks/bench_accuracy.py                 # every style, backbones 0, 1 and 2
    python benchmarks/bench_accuracy.py --folds symbola --backbones 0 --out /tmp/acc

A backbone is a pretraining of the project's CLIP with one seed (``pretrain.seed``; the configured
one is the default run's checkpoint, the others are pretrained next to it, about a minute each).

Writes ``accuracy.json`` (every number) and ``accuracy.md`` (the tables, with machine, command,
date and commit) under ``--out`` (default benchmarks/results/), and logs one MLflow parent run
(experiment ``croft-pipeline-benchmark`` in the project's ``mlflow.db``). Needs the default run's
ingest and pretrain outputs; runs those first when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` as a script

import croft_pipeline  # noqa: E402, F401  (offline defaults first)
from benchmarks.common import ROOT, commit, cpu_model  # noqa: E402
from benchmarks.protocol import run_benchmark
from croft_pipeline.common.files import atomic_write_bytes
from croft_pipeline.ood.comparisons import score_role
from croft_pipeline.ood.evaluation import DETECTION_SHIFTS, OPENSET_SHIFTS
from croft_pipeline.reporting.tables import format_mean_std
from croft_pipeline.reporting.verdict import (
    VERDICT_NOTE,
    backbone_agreement,
    backbone_table,
    selection_records,
    selection_table,
    verdict_table,
)


def machine() -> str:
    import torch

    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, no GPU used "
        "(train.device auto)"
    )


METHOD_COLUMNS = [
    ("id", "accuracy"),
    ("covariate", "accuracy"),
    ("covariate_novel", "accuracy"),
    ("fsood_id", "accuracy"),
    *((shift, f"energy_{m}") for shift in OPENSET_SHIFTS for m in ("auroc", "fpr95_id_positive")),
    ("openset", "energy_aupr_in"),
    ("openset", "energy_aupr_out"),
    *((shift, "knn_auroc") for shift in OPENSET_SHIFTS),
]
ROLES = {
    "vs zero-shot": "Against zero-shot CLIP",
    "vs no EDR": "Does the energy term help? CRoFT against croft_no_edr",
    "vs best baseline": "CRoFT against the best baseline on each metric (chosen on these test results)",
    "wise vs fine-tuned": "Does WiSE-FT help? Each interpolation against its fine-tuned method",
}


def method_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Method × the headline metrics, mean ± std over folds × seeds."""
    cells = {}
    for shift, metric in METHOD_COLUMNS:
        rows = summary[(summary["shift"] == shift) & (summary["metric"] == metric)]
        cells[f"{shift} {metric}"] = {
            r.method: format_mean_std(r.mean, r.std, r.n_seeds) for r in rows.itertuples()
        }
    return pd.DataFrame(cells).fillna("–")


DETECTION_SCORES = ("energy", "mcm", "neglabel")  # the score table's scores, side by side
SCORE_ROLES = {
    score_role(score, baseline): f"Does NegLabel help? {score} against {baseline}, per method"
    for score, baseline in (("neglabel", "energy"), ("neglabel", "mcm"))
}


def score_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Method × (shift, score) AUROC, classic then full-spectrum, mean ± std."""
    cells = {}
    for shift in DETECTION_SHIFTS:
        for score in DETECTION_SCORES:
            metric = f"{score}_auroc"
            rows = summary[(summary["shift"] == shift) & (summary["metric"] == metric)]
            if not rows.empty:
                cells[f"{shift} {score}"] = {
                    r.method: format_mean_std(r.mean, r.std, r.n_seeds) for r in rows.itertuples()
                }
    return pd.DataFrame(cells).fillna("–")


def markdown(table: pd.DataFrame) -> str:
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" ".join(map(str, c)) for c in flat.columns]
    return flat.to_markdown()


def backbone_rows(backbones: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per backbone: its checkpoint, where it came from, its zero-shot accuracy (its
    ``clip_model_spec``: per style and mean, on the default run's ID and held-out test images)."""
    if not backbones:
        return pd.DataFrame()
    rows = []
    for backbone in backbones:
        row = {
            "pretraining seed": backbone["seed"],
            "checkpoint": f"`{backbone['checkpoint']}`",
            "sha256": str(backbone["checkpoint_sha256"])[:12],
            "source": backbone["source"],
        }
        for style, accuracy in (backbone.get("zero_shot_accuracy") or {}).items():
            row[f"zero-shot {style}"] = f"{accuracy:.3f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("pretraining seed").fillna("–")


def fold_times(fold_seconds: dict[int, dict[str, float]]) -> str:
    """``backbone 0: noto 40 s, symbola 42 s; backbone 1: …``."""
    return "; ".join(
        f"backbone {seed}: " + ", ".join(f"{fold} {s:.0f} s" for fold, s in folds.items())
        for seed, folds in fold_seconds.items()
    )


def write_results(results: dict[str, Any], out: Path, command: str, seconds: float) -> None:
    summary, backbones = results["summary"], results["backbones"]
    comparisons = pd.concat([results["comparisons"], results["score_comparisons"]])
    per_backbone = pd.concat(
        [results["backbone_comparisons"], results["backbone_score_comparisons"]]
    )
    records = [
        record
        for seed, folds in results["selection"].items()
        for fold, train_summary in folds.items()
        for record in selection_records(train_summary, backbone=seed, fold=fold)
    ]
    meta = {
        "command": command,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit(),
        "wall_seconds": round(seconds, 1),
        "fold_seconds": results["fold_seconds"],
        "mlflow_run_id": results["mlflow_run_id"],
        "units": "backbones x folds x seeds (CLIP pretraining seed x held-out style x "
        "training seed); intervals resample the backbones, then the folds x seeds within them",
        "backbones": backbones,
    }
    curves = results["wise_curves"].groupby(["method", "alpha", "split"])["accuracy"].mean()
    document = {
        **meta,
        "summary": summary.to_dict("records"),
        "comparisons": comparisons.to_dict("records"),
        "backbone_comparisons": per_backbone.to_dict("records"),
        "backbone_agreement": backbone_agreement(comparisons, per_backbone).to_dict("records"),
        "selection": records,
        "wise_curves": curves.reset_index().to_dict("records"),
    }
    atomic_write_bytes(
        out / "accuracy.json", json.dumps(document, indent=1, default=float).encode()
    )
    lines = [
        "# Accuracy benchmark (leave-one-style-out)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {meta['machine']}  ",
        f"Date: {meta['date']}, commit {meta['commit']}, wall {seconds / 60:.1f} min "
        f"(per fold: {fold_times(meta['fold_seconds'])}); "
        f"MLflow run {meta['mlflow_run_id']} (experiment croft-pipeline-benchmark).",
        "",
        "Every style of EmojiShift is held out in turn (covariate test), on every backbone (a "
        "pretraining of the small CLIP with its own seed); each method is tuned on ID "
        "validation only, with the same number of grid points (conf/base/parameters_train.yml). "
        "Cells: mean ± std over backbones × folds × seeds (numpy std, ddof 0). Open-set "
        "detection: ID test "
        "against every open-set class (openset), the near ones (same CLDR group as an ID class) "
        "and the far ones; higher AUROC and AUPR are better, lower FPR95 is better. "
        "docs/benchmark.md explains the protocol.",
        "",
        "## Backbones",
        "",
        "Zero-shot accuracy of each backbone on the default run's ID and held-out test images "
        "(its clip_model_spec; `default run`: the default run's checkpoint).",
        "",
        markdown(backbone_rows(backbones)),
        "",
        "## Every method",
        "",
        markdown(method_table(summary)),
        "",
        "## Open-set detection by score: AUROC, classic and full-spectrum",
        "",
        "openset*: ID test against the unseen classes (classic OOD); fsood*: ID test ∪ the "
        "held-out style (covariate-shifted ID counts as ID, OpenOOD's full-spectrum) against "
        "them; near / far: the unseen classes that share a CLDR group with an ID class, or not. "
        "NegLabel's share of negative labels and group count are chosen per method and unit on "
        "ID validation against the OOD validation classes (score_choices.json).",
        "",
        markdown(score_table(summary)),
        "",
        "## Paired differences with 95% intervals (backbones, folds × seeds within them, and "
        "test images resampled)",
        "",
        VERDICT_NOTE,
        "",
    ]
    seeds = ", ".join(str(backbone["seed"]) for backbone in backbones)
    for role, heading in {**ROLES, **SCORE_ROLES}.items():
        lines += [f"### {heading}", "", markdown(verdict_table(comparisons, role)), ""]
        if len(backbones) > 1:
            lines += [
                f"Per backbone (pretraining seeds {seeds}): `k/n` the difference has the sign "
                "above with its own interval (folds × seeds) excluding 0 on k of the n "
                "backbones, then each backbone's difference, in that order.",
                "",
                markdown(backbone_table(comparisons, per_backbone, role)),
                "",
            ]
    lines += [
        "## Model selection on ID validation, and the oracle",
        "",
        "The oracle is the grid point with the best held-out-style accuracy: an upper bound no "
        "user could select.",
        "",
        markdown(selection_table(records)),
        "",
    ]
    atomic_write_bytes(out / "accuracy.md", "\n".join(lines).encode())


def seed_list(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seeds: {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("at least one backbone seed")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--env", default=None, help="Kedro environment (default: base)")
    parser.add_argument(
        "--folds", nargs="*", default=None, help="held-out domains (default: every one)"
    )
    parser.add_argument(
        "--backbones",
        type=seed_list,
        default=seed_list("0,1,2"),
        help="CLIP pretraining seeds, comma-separated (default: 0,1,2; the configured "
        "pretrain.seed is the default run's checkpoint)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    command = "python " + " ".join(
        shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]
    )
    started = time.perf_counter()
    results = run_benchmark(args.project, args.env, args.folds, args.backbones)
    write_results(results, args.out, command, time.perf_counter() - started)
    print(f"wrote {args.out / 'accuracy.json'} and {args.out / 'accuracy.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
