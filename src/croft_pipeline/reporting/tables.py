"""Wide, human-readable tables (mean ± std over seeds) from the long summaries."""

from __future__ import annotations

import math
import re

import pandas as pd

from croft_pipeline.ood.metrics import CORRECT_ID_METRICS, DETECTION_METRICS
from croft_pipeline.ood.scores import SCORES

SHIFT_ORDER = {"id": 0, "covariate": 1, "openset": 2, "fsood_id": 3, "fsood": 4}
MEASURES = (*DETECTION_METRICS, *CORRECT_ID_METRICS)  # the detection table's column order
HEADLINE_SCORE = "energy"  # the score whose detection metrics the results table shows
_DETECTION = re.compile(
    rf"^(?P<score>{'|'.join(map(re.escape, SCORES))})_(?P<metric>{'|'.join(MEASURES)})$"
)


def format_mean_std(mean: float, std: float, n_seeds: int, digits: int = 3) -> str:
    """``0.812 ± 0.014`` (std only when there is more than one seed); ``nan`` stays visible."""
    if not math.isfinite(mean):
        return "nan"
    if n_seeds > 1:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def _cells(summary: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            format_mean_std(m, s, n)
            for m, s, n in zip(summary["mean"], summary["std"], summary["n_seeds"], strict=True)
        ],
        index=summary.index,
        dtype=object,
    )


def _wide(summary: pd.DataFrame, index: list[str], columns: list[str]) -> pd.DataFrame:
    """Pivot to index × columns, keeping the order in which the columns first appear."""
    if summary.empty:
        return pd.DataFrame()
    cells = summary.assign(cell=_cells(summary))
    order = list(dict.fromkeys(zip(*(cells[k] for k in columns), strict=True)))
    wide = cells.pivot(index=index, columns=columns, values="cell")
    if len(columns) > 1:
        wide = wide.reindex(columns=pd.MultiIndex.from_tuples(order, names=columns))
    else:
        wide = wide.reindex(columns=[key[0] for key in order])
    return wide.fillna("–")


def shift_rank(shift: str) -> int:
    """A shift's place in the tables: its own, or its family's (``openset_near``: openset's)."""
    family = SHIFT_ORDER.get(shift.split("_")[0], len(SHIFT_ORDER))
    return SHIFT_ORDER.get(shift, family)


def _sorted_by_shift(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    rank = frame["shift"].map(shift_rank)
    return frame.assign(_rank=rank).sort_values(["_rank", *keys]).drop(columns="_rank")


def _split_detection(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = summary["metric"].str.extract(_DETECTION)
    is_detection = parts["score"].notna()
    detection = summary[is_detection].assign(score=parts["score"], measure=parts["metric"])
    return summary[~is_detection], detection


def headline_rows(frame: pd.DataFrame, headline_score: str = HEADLINE_SCORE) -> pd.DataFrame:
    """The rows of a long metric table (``metric`` column) that the results table shows:
    accuracy, ``headline_score`` detection, deploy and paper; other scores' detection is left
    to the detection table."""
    other, detection = _split_detection(frame)
    headline = pd.concat([other, detection[detection["score"] == headline_score]])
    return headline.drop(columns=["score", "measure"], errors="ignore")


def summary_table(summary: pd.DataFrame, headline_score: str = HEADLINE_SCORE) -> pd.DataFrame:
    """Method × (shift, metric): accuracy, ``headline_score`` detection, deploy and paper rows."""
    if summary.empty:
        return pd.DataFrame()
    headline = headline_rows(summary, headline_score)
    return _wide(_sorted_by_shift(headline, "metric"), ["method"], ["shift", "metric"])


def detection_table(summary: pd.DataFrame) -> pd.DataFrame:
    """(Method, score) × (open-set part, detection metric): classic (ID test against each
    open-set part), then full-spectrum (``fsood*``: ID test ∪ covariate against them)."""
    if summary.empty:
        return pd.DataFrame()
    _, detection = _split_detection(summary)
    measure_rank = detection["measure"].map({m: i for i, m in enumerate(MEASURES)})
    detection = _sorted_by_shift(
        detection.assign(_r=measure_rank), "shift", "_r", "method", "score"
    )
    return _wide(detection.drop(columns="_r"), ["method", "score"], ["shift", "measure"])


def domain_table(domain_summary: pd.DataFrame) -> pd.DataFrame:
    """Method × (shift, domain) accuracy, cells ``mean ± std``."""
    if domain_summary.empty:
        return pd.DataFrame()
    return _wide(_sorted_by_shift(domain_summary, "domain"), ["method"], ["shift", "domain"])
