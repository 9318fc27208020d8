"""Grid search on ID validation: the best point is kept, a diverging point is skipped."""

from __future__ import annotations

import pytest

from croft_pipeline.methods import NonFiniteLossError, fit_selected, grid_points
from croft_pipeline.methods.selection import varied_keys
from tests.methods.synthetic import CONFIGS, make_synthetic


def test_grid_points_and_labels():
    assert grid_points({}) == [{}]
    points = grid_points({"lambda2": [1.0, 10.0], "gen_step": [0, 1]})
    assert points[0] == {"gen_step": 0, "lambda2": 1.0} and len(points) == 4
    assert varied_keys({"lr": [0.01, 0.05], "lambda2": [10.0], "ratio": [0.2, 0.5]}) == [
        "lr",
        "ratio",
    ]


def test_best_validation_point_is_kept_and_diverging_points_are_recorded():
    data = make_synthetic()
    config = {**CONFIGS["linear_probe"], "warmup_epochs": 0}
    probed = []

    def probe(method):
        probed.append(method.config["lr"])
        return {
            "shifted": float(
                (method.logits(data.shifted.features).argmax(1) == data.shifted.labels)
                .float()
                .mean()
            )
        }

    selected = fit_selected(
        "linear_probe",
        config,
        {"lr": [1e30, 0.002, 0.02]},
        data.text,
        data.logit_scale,
        1,
        data.train,
        data.val,
        probe,
    )
    assert "error" in selected.grid[0] and "non-finite" in selected.grid[0]["error"]
    assert selected.grid[0]["point"] == {"lr": 1e30}
    accs = [row["val_accuracy"] for row in selected.grid[1:]]
    assert selected.report.best_val_accuracy == max(accs)
    assert selected.config["lr"] == [0.002, 0.02][accs.index(max(accs))]  # first on ties
    assert probed == [0.002, 0.02]  # every fitted point is probed after its fit
    for row in selected.grid[1:]:
        assert [r["val_accuracy"] for r in row["history"]] and 0 <= row["probe"]["shifted"] <= 1

    with pytest.raises(NonFiniteLossError) as info:
        fit_selected(
            "linear_probe",
            config,
            {"lr": [1e30]},
            data.text,
            data.logit_scale,
            1,
            data.train,
            data.val,
        )
    # the run fails and keeps nothing: the message must not promise kept weights
    assert "no weights were kept and nothing is written" in str(info.value)
    assert "train.grids.linear_probe" in str(info.value)
    assert "were kept" not in str(info.value).replace("no weights were kept", "")
