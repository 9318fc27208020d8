"""DVC as a user drives it, on the test configuration in a git clone of the project:
``dvc repro`` twice (the second does nothing), ``dvc push`` and ``dvc pull`` into a second clone
(which then has nothing to reproduce), a forced rerun with identical hashes, an experiment that
is tracked in MLflow, and the ``dvc plots`` pages rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from croft_pipeline.config.loader import config_loader
from croft_pipeline.pipeline_registry import PIPELINE_ORDER
from croft_pipeline.tools.dvc_stages import RUN_RECORDS, entry_storage
from croft_pipeline.tools.plots_page import write_page
from tests.dvc_harness import dvc, git, git_project, stage_outs
from tests.kedro_harness import load_params
from tests.reporting.browser import charts_drawn, chromium_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# `+`: a key the file does not hold yet (the code default 0.2 stands until it is set)
EXPERIMENT_PARAM = "conf/base/parameters_train.yml:+train.method_params.croft_clean.ratio=0.3"
PLOT_NAMES = ("roc_curve", "score_histogram", "validation_accuracy_curve")
HEADLINE = entry_storage(config_loader(ROOT)["catalog"]["evaluation_headline"])["filepath"]


def _out_hashes(project: Path) -> dict[str, str]:
    """Every output path in dvc.lock -> its md5 (a folder's: the hash of its listing)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


def _persisted_outs() -> list[str]:
    """dvc.yaml's ``persist: true`` outputs: what a stage keeps between its runs and reuses (the
    rendered images, the CLIP checkpoint and its trunk features, the embed cache)."""
    return [path for outs in stage_outs(ROOT).values() for path, persist in outs.items() if persist]


def _seed_persisted_outs(source: Path, project: Path) -> None:
    """Copy the persisted outputs of a run of the `test` environment into ``project``."""
    for path in _persisted_outs():
        if (source / path).is_dir():
            shutil.copytree(source / path, project / path)
        else:
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / path, project / path)


@pytest.fixture(scope="module")
def repo(tiny_project, tmp_path_factory) -> dict:
    """A git repository with the project's files, reproduced once with DVC (test env). Its
    persisted outputs are the shared tiny run's, as a user's workspace that ran before has them:
    every stage runs, and each reuses what they hold instead of computing it again."""
    project = git_project(tmp_path_factory.mktemp("dvc") / "project")
    _seed_persisted_outs(tiny_project, project)
    write_page(project / ".dvc")  # as `make run` does: dvc plots offline
    started = time.perf_counter()
    cold = dvc(project, "repro")
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = dvc(project, "repro")
    warm_s = time.perf_counter() - started
    git(project, "add", "dvc.lock")  # docs/dvc.md: the baseline `dvc exp show` compares with
    git(project, "commit", "-qm", "dvc.lock: the reproduced pipeline")
    print(f"\ndvc repro on the test env: cold {cold_s:.1f} s, warm {warm_s:.1f} s")
    return {"path": project, "cold": cold, "warm": warm, "hashes": _out_hashes(project)}


def test_repro_runs_every_stage_then_has_nothing_to_do(repo):
    for stage in PIPELINE_ORDER:
        assert f"Running stage '{stage}'" in repo["cold"]
    assert "Running stage" not in repo["warm"]
    assert json.loads(dvc(repo["path"], "status", "--json")) == {}


def test_push_then_pull_in_a_second_clone_restores_everything(repo, tmp_path):
    source = repo["path"]
    dvc(source, "push")
    assert (source / ".dvc-storage").is_dir()  # the default remote, git-ignored
    assert ".dvc-storage" not in git(source, "status", "--porcelain", "--ignored=no")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(source), str(clone))
    dvc(clone, "remote", "modify", "--local", "storage", "url", str(source / ".dvc-storage"))
    dvc(clone, "pull")
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    checkpoint = lock["stages"]["pretrain"]["outs"]
    assert all((clone / out["path"]).exists() for out in checkpoint)
    for path in ("data/04_feature/cache", "data/01_raw/emojishift", "data/06_models/clip"):
        assert any((clone / path).rglob("*")), f"{path} was not restored"
    assert json.loads(dvc(clone, "status", "--json")) == {}
    again = dvc(clone, "repro")
    assert "Running stage" not in again
    assert not (clone / "mlflow.db").exists()  # no Kedro run happened


def test_forced_rerun_gives_identical_hashes(repo):
    """Every output is byte-identical after ``dvc repro --force`` except the run records, which
    say what one run did (dvc_stages.RUN_RECORDS: the reason for each)."""
    dvc(repo["path"], "repro", "--force")
    after = _out_hashes(repo["path"])
    catalog = config_loader(ROOT)["catalog"]
    records = {entry_storage(catalog[name])["filepath"] for name in RUN_RECORDS}
    assert records <= set(after)
    differ = {path for path, md5 in after.items() if repo["hashes"].get(path) != md5}
    assert not differ - records, f"outputs whose hash changed on a forced rerun: {differ}"
    assert {"data/06_models/training_runs.json", "data/08_reporting/report.html"} <= differ
    git(repo["path"], "checkout", "-q", "--", "dvc.lock")


def test_a_new_deploy_tpr_reruns_calibrate_and_evaluate_only(repo):
    """The deploy threshold is its own stage: a new ``calibrate.tpr`` leaves the fits and the
    scores alone, and changes the deploy rates the report and metrics give."""
    project, params = repo["path"], Path("conf/base/parameters_calibrate.yml")
    text = (project / params).read_text()
    (project / params).write_text(text.replace("tpr: 0.95", "tpr: 0.8"))
    started = time.perf_counter()
    output = dvc(project, "repro")
    print(f"\ndvc repro after a new calibrate.tpr: {time.perf_counter() - started:.1f} s")
    assert re.findall(r"Running stage '(\w+)'", output) == ["calibrate", "evaluate"]
    tpr = json.loads((project / "data/08_reporting/metrics.json").read_text())["zero_shot"]
    assert 0.7 < tpr["id/deploy_tpr"] < 0.9  # 0.95 before (a test-set share, near the target)
    git(project, "checkout", "-q", "--", str(params), "dvc.lock")
    dvc(project, "checkout", "-q")
    assert json.loads(dvc(project, "status", "--json")) == {}


def _plot_specs(page: Path) -> list[dict]:
    """The Vega-Lite specs DVC wrote into the page (``var spec = {...};``)."""
    text = page.read_text(encoding="utf-8")
    return [json.loads(m) for m in re.findall(r"var spec = (\{.*?\});\n", text, flags=re.S)]


def _assert_renders_offline(page: Path) -> None:
    """The page loads no script from elsewhere, and Chromium, every host unreachable, draws
    each plot in it (tools.plots_page's template: Vega inlined)."""
    assert "<script src=" not in page.read_text(encoding="utf-8")
    if chromium_binary() is None:
        pytest.skip("no chromium binary on PATH")
    seen = charts_drawn(page, len(PLOT_NAMES))
    assert seen["errors"] == []
    assert seen["charts"] == len(PLOT_NAMES)


def test_plots_show_renders_the_three_curves(repo, tmp_path):
    dvc(repo["path"], "plots", "show", "-o", str(tmp_path / "plots"))
    page = tmp_path / "plots" / "index.html"
    specs = _plot_specs(page)
    assert len(specs) == len(PLOT_NAMES)
    methods = {row["method"] for spec in specs for row in spec["data"]["values"]}
    assert {"zero_shot", "croft_clean"} <= methods
    _assert_renders_offline(page)


def test_experiment_is_tracked_in_mlflow_and_diffed_by_plots(repo, tmp_path):
    project = repo["path"]
    registry = mlflow.MlflowClient(registry_uri=f"sqlite:///{project / 'mlflow.db'}")
    before = registry.get_registered_model("croft-clip")
    versions = len(registry.search_model_versions("name = 'croft-clip'"))
    dvc(project, "exp", "run", "--temp", "-n", "ratio-0.3", "-S", EXPERIMENT_PARAM)
    table = json.loads(dvc(project, "exp", "show", "--json"))
    (main,) = [rev for rev in table if rev.get("name") == "main"]
    (experiment,) = [e for e in main["experiments"] if e.get("name") == "ratio-0.3"]
    served = load_params("test")["evaluate"]["register"]["method"]
    for row in (main, experiment["revs"][0]):  # headline.json's numbers, no `!` for main
        headline = row["data"]["metrics"][HEADLINE]["data"]
        assert set(headline[served]) >= {"id/accuracy", "covariate/accuracy"}, row["rev"]
    baseline_metrics = repo["hashes"]  # the experiment must not touch the workspace
    assert _out_hashes(project) == baseline_metrics
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (experiment,) = client.search_experiments(filter_string="name = 'croft-pipeline'")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`croft.dvc_experiment` = 'ratio-0.3'"
    )
    assert runs, "the experiment's Kedro runs are not in the repository's MLflow store"
    head = git(project, "rev-parse", "HEAD").strip()
    assert {run.data.tags.get("croft.git_commit") for run in runs} == {head}
    # an experiment registers nothing and moves no alias (publishing.experiments)
    assert registry.get_registered_model("croft-clip").aliases == before.aliases
    assert len(registry.search_model_versions("name = 'croft-clip'")) == versions
    (evaluated,) = [  # the evaluate stage's pipeline run
        run
        for run in runs
        if run.data.tags.get("croft.role") == "pipeline"
        and run.data.tags.get("croft.pipeline") == "evaluate"
    ]
    recorded = mlflow.artifacts.download_artifacts(
        run_id=evaluated.info.run_id,
        artifact_path="evaluation/model_registration.json",
        tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
    )
    reason = json.loads(Path(recorded).read_text())["reason"]
    assert reason.startswith("DVC experiment ratio-0.3 registers no version")
    dvc(project, "plots", "diff", "main", "ratio-0.3", "-o", str(tmp_path / "diff"))
    specs = _plot_specs(tmp_path / "diff" / "index.html")
    revisions = {row["rev"] for spec in specs for row in spec["data"]["values"]}
    assert len(revisions) == 2, revisions
    _assert_renders_offline(tmp_path / "diff" / "index.html")
