"""Per-backbone agreement of a pooled comparison (the benchmark's backbones tables)."""

from __future__ import annotations

import pandas as pd

from croft_pipeline.reporting.verdict import backbone_agreement, backbone_table

KEY = {
    "role": "vs zero-shot",
    "method": "croft_clean",
    "baseline": "zero_shot",
    "shift": "id",
    "metric": "accuracy",
}


def test_a_claim_holds_on_the_backbones_whose_own_interval_has_its_sign():
    """Pooled: +0.05, beyond noise. Backbone 0 agrees beyond noise, backbone 1 within noise,
    backbone 2 beyond noise the other way: the claim holds on 1 of 3."""
    pooled = pd.DataFrame([{**KEY, "difference": 0.05, "low": 0.01, "high": 0.09}])
    per_backbone = pd.DataFrame(
        [
            {**KEY, "backbone": b, "difference": d, "low": lo, "high": hi}
            for b, d, lo, hi in (
                (0, 0.08, 0.02, 0.12),
                (1, 0.03, -0.01, 0.07),
                (2, -0.02, -0.05, -0.01),
            )
        ]
    )
    (row,) = backbone_agreement(pooled, per_backbone).to_dict("records")
    assert (row["holds_on"], row["backbones"]) == (1, 3)
    assert [d["backbone"] for d in row["differences"]] == [0, 1, 2]
    table = backbone_table(pooled, per_backbone, "vs zero-shot")
    assert table.loc["croft_clean", ("id", "accuracy")] == "1/3: +0.080▲ +0.030 -0.020▼"
    assert backbone_table(pooled, per_backbone, "vs no EDR").empty
