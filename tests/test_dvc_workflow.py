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
from croft_pipeline.tools.dvc_stages import RUN_RECORDS, entry_storage
from tests.dvc_harness import dvc, git, git_project, stage_outs
from tests.reporting.browser import chromium_binary, inspect_page

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# `+`: a key the file does not hold yet (the code default 0.2 stands until it is set)
EXPERIMENT_PARAM = "conf/base/parameters_train.yml:+train.method_params.croft_clean.ratio=0.3"
PLOT_NAMES = ("roc_curve", "score_histogram", "validation_accuracy_curve")
RENDER_CHECK = """
<script>
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message)); });
window.addEventListener("unhandledrejection", function (e) { errors.push(String(e.reason)); });
function drawn() {  // vega-embed's canvases (or SVGs) with a size: the charts that rendered
  return Array.from(document.querySelectorAll("div[id] canvas.marks, div[id] svg.marks"))
    .filter(function (c) { return (c.width || c.clientWidth) > 0; }).length;
}
var waited = 0, poll = setInterval(function () {
  waited += 250;
  if (drawn() < EXPECTED && waited < 8000) { return; }
  clearInterval(poll);
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({charts: drawn(), errors: errors});
  document.body.appendChild(out);
}, 250);
</script>
""".replace("EXPECTED", str(len(PLOT_NAMES)))


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
    started = time.perf_counter()
    cold = dvc(project, "repro")
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = dvc(project, "repro")
    warm_s = time.perf_counter() - started
    git(project, "add", "dvc.lock")
    git(project, "commit", "-qm", "reproduced")
    print(f"\ndvc repro on the test env: cold {cold_s:.1f} s, warm {warm_s:.1f} s")
    return {"path": project, "cold": cold, "warm": warm, "hashes": _out_hashes(project)}


def test_repro_runs_every_stage_then_has_nothing_to_do(repo):
    for stage in ("ingest", "pretrain", "embed", "train", "evaluate"):
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


def _plot_specs(page: Path) -> list[dict]:
    """The Vega-Lite specs DVC wrote into the page (``var spec = {...};``)."""
    text = page.read_text(encoding="utf-8")
    return [json.loads(m) for m in re.findall(r"var spec = (\{.*?\});\n", text, flags=re.S)]


def _offline_copy(page: Path) -> Path:
    """The page with DVC's Vega script tags (a CDN) pointed at local copies of the libraries
    (altair_viewer's Vega 5, Vega-Lite 4.17 and vega-embed 6: the specs use nothing newer)."""
    scripts = Path(__import__("altair_viewer").__file__).parent / "scripts"

    def local(match: re.Match) -> str:
        library = match.group(1)
        path = max(
            scripts.glob(f"{library}-[0-9]*.js"),
            key=lambda p: tuple(map(int, p.stem.rsplit("-", 1)[1].split("."))),
        )
        return f'<script src="{path.as_uri()}"></script>'

    text = re.sub(
        r'<script src="https://cdn\.jsdelivr\.net/npm/(vega|vega-lite|vega-embed)@[^"]+"></script>',
        local,
        page.read_text(encoding="utf-8"),
    )
    offline = page.with_name("offline.html")
    offline.write_text(text, encoding="utf-8")
    return offline


def _assert_renders(page: Path) -> None:
    if chromium_binary() is None:
        pytest.skip("no chromium binary on PATH")
    seen = inspect_page(_offline_copy(page), script=RENDER_CHECK)
    assert seen["errors"] == []
    assert seen["charts"] == len(PLOT_NAMES)


def test_plots_show_renders_the_three_curves(repo, tmp_path):
    dvc(repo["path"], "plots", "show", "-o", str(tmp_path / "plots"))
    page = tmp_path / "plots" / "index.html"
    specs = _plot_specs(page)
    assert len(specs) == len(PLOT_NAMES)
    methods = {row["method"] for spec in specs for row in spec["data"]["values"]}
    assert {"zero_shot", "croft_clean"} <= methods
    _assert_renders(page)


def test_experiment_is_tracked_in_mlflow_and_diffed_by_plots(repo, tmp_path):
    project = repo["path"]
    registry = mlflow.MlflowClient(registry_uri=f"sqlite:///{project / 'mlflow.db'}")
    before = registry.get_registered_model("croft-clip")
    versions = len(registry.search_model_versions("name = 'croft-clip'"))
    dvc(project, "exp", "run", "--temp", "-n", "ratio-0.3", "-S", EXPERIMENT_PARAM)
    table = json.loads(dvc(project, "exp", "show", "--json"))
    names = [exp.get("name") for rev in table for exp in rev.get("experiments") or []]
    assert "ratio-0.3" in names
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
    dvc(project, "plots", "diff", "HEAD", "ratio-0.3", "-o", str(tmp_path / "diff"))
    specs = _plot_specs(tmp_path / "diff" / "index.html")
    revisions = {row["rev"] for spec in specs for row in spec["data"]["values"]}
    assert len(revisions) == 2, revisions
    _assert_renders(tmp_path / "diff" / "index.html")
