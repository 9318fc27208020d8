"""Start-of-run parameter checks: every rule names the full key, an unknown key is named with
the closest declared one, and a run with a bad parameter or key stops before any node runs (an
unknown key: before anything is written)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from croft_pipeline.config.keys import UnknownKeysError
from croft_pipeline.config.loader import ConfigError
from croft_pipeline.config.rules import ParameterError
from croft_pipeline.config.schema import check_known_keys, check_parameters
from croft_pipeline.hooks.run_lock import LOCK_FILE
from tests.kedro_harness import (
    load_params,
    make_project_copy,
    pin_tracking_store,
    run_pipeline,
    start_kedro,
)

GATE0, GATE1 = "evaluate.gates.comparisons[0]", "evaluate.gates.comparisons[1]"


def _set(params: dict, path: str, value) -> dict:
    """A copy of ``params`` with the dotted ``path`` (``[i]`` indexes a list) set to ``value``."""
    params = copy.deepcopy(params)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node = params
    for part in parents:  # a mapping not set yet (a method's own block) is created
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(last) if isinstance(node, list) else last] = value
    return params


@pytest.mark.parametrize("env", [None, "test", "pacs", "vlcs", "fashion_mnist", "local", "setup1"])
def test_every_shipped_environment_passes(env):
    check_parameters(load_params(env))


BAD = [  # (dotted path, bad value, start of the message: the full key and the rule)
    (
        "train.method_params.linear_probe.lr",
        -0.5,
        "train.method_params.linear_probe.lr must be > 0, got -0.5",
    ),
    (
        "train.method_params.croft_clean.lr",
        0,
        "train.method_params.croft_clean.lr must be > 0, got 0",
    ),
    ("train.grids.linear_probe.lr", [1e-3, 0.0], "train.grids.linear_probe.lr[1] must be > 0"),
    ("train.grids.clip_adapter.lr", [], "train.grids.clip_adapter.lr must be a non-empty list"),
    (
        "train.method_params.clip_adapter.epochs",
        0,
        "train.method_params.clip_adapter.epochs must be an integer >= 1, got 0",
    ),
    (
        "train.method_params.croft_faithful.edr_setup",
        "setup3",
        "train.method_params.croft_faithful.edr_setup must be one of",
    ),
    (
        "train.method_params.croft_no_edr.lambda2",
        1.0,
        "train.method_params.croft_no_edr.lambda2 must be 0",
    ),
    (
        "train.method_params.clip_adapter.ratio",
        2.0,
        "train.method_params.clip_adapter.ratio must be in [0, 1]",
    ),
    ("train.methods", ["zero_shot", "nope"], "train.methods[1] must be one of"),
    ("train.wise.alphas", [0.0, 1.5], "train.wise.alphas[1] must be in [0, 1], got 1.5"),
    ("train.workers", 0, "train.workers must be auto, null or an integer >= 1, got 0"),
    ("train.device", "tpu", "train.device must be valid"),
    ("calibrate.tpr", 1.5, "calibrate.tpr must be in (0, 1], got 1.5"),
    ("calibrate.score", "enrgy", "calibrate.score must be one of evaluate.scores"),
    ("evaluate.tpr", 0.0, "evaluate.tpr must be in (0, 1], got 0.0"),
    ("evaluate.scores.knn.k", 0, "evaluate.scores.knn.k must be an integer >= 1, got 0"),
    ("evaluate.scores.energy.temperature", 0.0, "evaluate.scores.energy.temperature must be > 0"),
    ("evaluate.knn_bank_split", "trian", "evaluate.knn_bank_split must be one of"),
    ("evaluate.paper.score", "odin", "evaluate.paper.score must be one of"),
    ("evaluate.comparisons.level", 1.0, "evaluate.comparisons.level must be in (0, 1)"),
    ("evaluate.register.method", "croft", "evaluate.register.method must be one of"),
    (
        "evaluate.register.model_config",
        {"allowed_root": ["/data"]},
        "evaluate.register.model_config must be valid (model config keys ['allowed_root'] are "
        "unknown; it takes allowed_roots, max_input_bytes)",
    ),
    (f"{GATE0}.baseline", "zero_shott", f"{GATE0}.baseline must be one of"),
    (f"{GATE1}.metric", "energy_aurco", f"{GATE1}.metric must be one of"),
    (f"{GATE1}.shift", "open", f"{GATE1}.shift must be one of"),
    (f"{GATE0}.op", "=>", f"{GATE0} must be valid (an interval gate needs op in"),
    (
        GATE0,
        {"shift": "openset", "metric": "energy_aurco", "op": ">=", "value": 0.5},
        f"{GATE0}.metric must be one of",
    ),
    (
        GATE0,
        {"shift": "id", "metric": "accuracy", "op": ">", "value": 0.5, "baseline": "zero_shot"},
        f"{GATE0} must be valid",
    ),
    ("clip.precision", "fp16", "clip.precision must be one of ['fp32', 'bf16']"),
    ("clip.model_name", "ViT-Q-99", "clip.model_name must be valid (unknown CLIP model name"),
    ("clip.templates", ["no placeholder"], "clip.templates must be one prompt template"),
    ("clip.num_threads", -1, "clip.num_threads must be auto, null or an integer >= 1"),
    ("embed.n_views", 0, "embed.n_views must be an integer >= 1"),
    ("embed.augment.scale", [0.9, 0.1], "embed.augment.scale must be a pair [low, high]"),
    ("embed.runner", "dask", "embed.runner must be one of ['local', 'ray'], got 'dask'"),
    ("embed.ray.actors", 0, "embed.ray.actors must be auto or an integer >= 1, got 0"),
    ("embed.ray.decode_cpus", 0, "embed.ray.decode_cpus must be > 0, got 0"),
    ("train.runner", "Ray", "train.runner must be one of ['local', 'ray'], got 'Ray'"),
    ("train.ray.max_retries", -1, "train.ray.max_retries must be an integer >= 0, got -1"),
    ("pretrain.lr", 0.0, "pretrain.lr must be > 0"),
    ("pretrain.num_threads", "auto", "pretrain.num_threads must be an integer >= 1"),
    ("pretrain.zero_shot.enabled", "yes", "pretrain.zero_shot.enabled must be true or false"),
    ("evaluate.register.experiments", "yes", "evaluate.register.experiments must be true or false"),
    ("ingest.source", "web", "ingest.source must be one of ['emojishift', 'folder']"),
    ("ingest.splits.val_fraction", 1.5, "ingest.splits.val_fraction must be in [0, 1]"),
    ("ingest.sources[0].layout", "flat", "ingest.sources[0].layout must be one of"),
    (
        "ingest.dataset.group_pattern",
        "(?P<g>x)",
        "ingest.dataset.group_pattern must have a named group",
    ),
    ("seeds", [], "seeds must be a non-empty list"),
    (
        "ingest.emojishift.class_split",
        {"id_share": 0.8, "openset_val_share": 0.2},
        "ingest.emojishift.class_split.openset_val_share must leave open-set test classes",
    ),
    ("ingest.corruptions.kinds", ["fog"], "ingest.corruptions.kinds[0] must be one of"),
    ("ingest.corruptions.severities", [6], "ingest.corruptions.severities[0] must be one of"),
    (
        "ingest.corruptions",
        {"kinds": ["contrast"], "root": "nowhere"},
        "ingest.corruptions.root must be one of ['main', 'pretrain']",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_parameter_is_named_by_its_full_key(path, value, message):
    with pytest.raises(ParameterError) as info:
        check_parameters(_set(load_params("test"), path, value))
    assert str(info.value).startswith(message), str(info.value)


# settings that are code constants now (the module that uses each names it): a run that still
# sets one is told so, in one line naming the key and what its block takes
CONSTANTS = {
    "ingest.emojishift.glyph_share": 0.8,  # data.emojishift.GLYPH_SHARE
    "ingest.emojishift.supersample": 2,  # data.emojishift.SUPERSAMPLE
    "ingest.emojishift.background": [255, 255, 255],  # data.emojishift.BACKGROUND
    "ingest.emojishift.split_seed": 0,  # data.emojishift.PRETRAIN_SPLIT_SEED
    "pretrain.log_every": 25,  # pretraining.contrastive.LOG_EVERY
    "pretrain.zero_shot.splits": ["tst"],  # pipelines.pretrain.nodes.ZERO_SHOT_SPLITS
    "evaluate.report.histogram_bins": 40,  # reporting.curves.HISTOGRAM_BINS
}


@pytest.mark.parametrize(("path", "value"), CONSTANTS.items(), ids=list(CONSTANTS))
def test_a_setting_that_is_a_code_constant_is_refused_by_name(path, value):
    with pytest.raises(UnknownKeysError) as info:
        check_parameters(_set(load_params("test"), path, value))
    block = path.rsplit(".", 1)[0]
    assert str(info.value).startswith(f"{path}: unknown key; {block} takes "), str(info.value)


UNKNOWN = [  # (dotted path set, the message: the full key and the closest declared key)
    ("train.seeds", "train.seeds: unknown key; did you mean seeds?"),
    ("trian", "trian: unknown key; did you mean train?"),
    ("train.equal_budgt", "train.equal_budgt: unknown key; did you mean train.equal_budget?"),
    ("calibrate.tprr", "calibrate.tprr: unknown key; did you mean calibrate.tpr?"),
    ("train.calibration", "train.calibration: unknown key; did you mean calibrate?"),  # moved
    (
        "train.method_params.croft_faithful.lamda1",
        "train.method_params.croft_faithful.lamda1: unknown key; "
        "did you mean train.method_params.croft_faithful.lambda1?",
    ),
    (
        "train.method_params.linear_prob",
        "train.method_params.linear_prob: unknown key; "
        "did you mean train.method_params.linear_probe?",
    ),
    (
        "train.grids.linear_probe.lrr",
        "train.grids.linear_probe.lrr: unknown key; did you mean train.grids.linear_probe.lr?",
    ),
    (
        "evaluate.scores.enrgy",
        "evaluate.scores.enrgy: unknown key; did you mean evaluate.scores.energy?",
    ),
    (
        "evaluate.register.model_confg",
        "evaluate.register.model_confg: unknown key; did you mean evaluate.register.model_config?",
    ),
    (
        f"{GATE0}.bseline",
        f"{GATE0}.bseline: unknown key; did you mean {GATE0}.baseline?",
    ),
    (
        "train.zzz",
        "train.zzz: unknown key; train takes device, equal_budget, grids, "
        "method_params, methods, num_threads, ray, runner, wise, workers",
    ),
    (
        "zzz",
        "zzz: unknown key; the top level takes "
        "calibrate, clip, embed, evaluate, ingest, pretrain, seeds, train",
    ),
    ("evaluate.scores.knn.kk", "evaluate.scores.knn.kk: unknown key; evaluate.scores.knn takes k"),
]


@pytest.mark.parametrize(("path", "message"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_an_unknown_key_is_named_with_the_closest_declared_key(path, message):
    with pytest.raises(UnknownKeysError) as info:
        check_parameters(_set(load_params("test"), path, []))
    assert str(info.value) == message
    assert isinstance(info.value, ParameterError) and info.value.key == path


def test_every_unknown_key_is_named_at_once_with_where_it_is_set():
    params = load_params("test")
    for path, _ in UNKNOWN:
        params = _set(params, path, [])
    files = {"--params": {"train": {"seeds": []}}, "conf/test/x.yml": {"zzz": 1, "train": {}}}
    with pytest.raises(UnknownKeysError) as info:
        check_known_keys(params, files)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{len(UNKNOWN)} unknown parameter keys:"
    assert sorted(lines[1:]) == lines[1:] and len(lines) == len(UNKNOWN) + 1
    assert "  train.seeds: unknown key; did you mean seeds? (from --params)" in lines
    assert any(
        line.startswith("  zzz: unknown key;") and line.endswith("(from conf/test/x.yml)")
        for line in lines
    )
    assert {key.key for key in info.value.unknown} == {path for path, _ in UNKNOWN}


def test_the_message_is_the_projects_not_the_librarys():
    with pytest.raises(ParameterError) as info:
        check_parameters(_set(load_params("test"), "train.method_params.linear_probe.lr", -0.5))
    assert str(info.value) == "train.method_params.linear_probe.lr must be > 0, got -0.5"
    assert info.value.key == "train.method_params.linear_probe.lr"


def test_a_run_with_a_bad_parameter_stops_before_any_node_writes(tmp_path):
    """The ingest pipeline does not even read calibrate: every block is checked."""
    project = make_project_copy(tmp_path / "project")
    with pytest.raises(ConfigError, match=r"calibrate\.tpr must be in \(0, 1\]") as info:
        run_pipeline(project, "ingest", extra_params={"calibrate": {"tpr": 1.5}})
    assert isinstance(info.value.__cause__, ParameterError)
    written = [p for p in (project / "data").rglob("*") if p.is_file()]
    assert written in ([], [project / LOCK_FILE])  # the run lock is the run's, not an output


def _files(project: Path) -> set[Path]:
    return {p.relative_to(project) for p in project.rglob("*") if p.is_file()}


def test_an_unknown_key_in_an_environment_file_stops_the_session_before_it_writes(tmp_path):
    """Before kedro-mlflow opens its store (no mlflow.db) and before the run lock."""
    project = make_project_copy(tmp_path / "project")
    pin_tracking_store(project, "test")
    path = project / "conf" / "test" / "parameters_train.yml"
    params = yaml.safe_load(path.read_text())
    params["train"]["method_params"]["linear_probe"]["epoch"] = 3
    path.write_text(yaml.safe_dump(params))
    before = _files(project)
    with pytest.raises(ConfigError) as info:
        run_pipeline(project, "ingest", env="test")
    assert str(info.value) == (
        "train.method_params.linear_probe.epoch: unknown key; "
        "did you mean train.method_params.linear_probe.epochs? "
        "(from conf/test/parameters_train.yml)"
    )
    assert isinstance(info.value.__cause__, UnknownKeysError)
    assert _files(project) == before


def _kedro(project: Path, args: list[str], log: Path) -> tuple[int, str]:
    process = start_kedro(project, args, log)
    try:
        process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, log.read_text()


@pytest.mark.slow
def test_kedro_run_with_a_mistyped_params_key_prints_one_line_and_writes_nothing(tmp_path):
    project = make_project_copy(tmp_path / "project")
    pin_tracking_store(project, "test")
    before = _files(project)
    # --pipeline, the form this project's users type, which Kedro 1.x calls deprecated
    args = ["run", "--env=test", "--pipeline=ingest", "--params", "train.seeds=[]"]
    code, output = _kedro(project, args, tmp_path / "kedro.log")
    assert code == 1, output
    assert output.rstrip().splitlines()[-1] == (
        "Error: train.seeds: unknown key; did you mean seeds? (from --params)"
    )
    assert "Traceback" not in output
    assert "Warning" not in output  # kedro-mlflow's untyped predict, Kedro's --pipeline notice
    assert _files(project) == before  # no mlflow.db, no run lock, no output


@pytest.mark.parametrize("block", ["embed", "train"])
def test_runner_ray_without_ray_installed_says_what_to_install(block, monkeypatch):
    import croft_pipeline.distributed as distributed

    monkeypatch.setattr(distributed, "ray_installed", lambda: False)
    with pytest.raises(distributed.RayMissingError) as info:
        check_parameters(_set(load_params("test"), f"{block}.runner", "ray"))
    assert str(info.value) == (
        f'{block}.runner: ray needs Ray, which is not installed: pip install -e ".[ray]"'
    )


@pytest.mark.slow
def test_kedro_run_with_an_unknown_env_prints_one_line_naming_the_envs(tmp_path):
    """Before kedro-mlflow, whose default store on a missing env ends in a long traceback."""
    project = make_project_copy(tmp_path / "project")
    envs = sorted(p.name for p in (project / "conf").iterdir() if p.is_dir())
    before = _files(project)
    code, output = _kedro(project, ["run", "--env=nope", "--pipelines=ingest"], tmp_path / "log")
    assert code == 1, output
    assert output.rstrip().splitlines()[-1] == (
        "Error: environment 'nope' does not exist (no folder conf/nope); "
        f"the environments are {', '.join(envs)}"
    )
    assert "Traceback" not in output
    assert _files(project) == before  # no mlflow.db, no mlruns/
