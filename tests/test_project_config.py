"""The committed configuration keeps the project offline, quiet and tracked in one place, and an
environment that does not exist is refused before anything reads the configuration."""

import shutil
from pathlib import Path

import pytest
import yaml

from croft_pipeline.config.loader import (
    ConfigError,
    config_loader,
    missing_environment,
    parameter_files,
    parameters,
)
from croft_pipeline.pipeline_registry import PIPELINE_ORDER, register_pipelines
from croft_pipeline.publishing.params import registered_model_name

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ENVS = ["base", "fashion_mnist", "local", "pacs", "setup1", "team", "test", "vlcs"]


def test_telemetry_is_off_in_what_we_ship():
    assert yaml.safe_load((ROOT / ".telemetry").read_text()) == {"consent": False}
    dvc_config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in dvc_config
    assert "check_update = false" in dvc_config


def test_mlflow_tracks_to_sqlite_in_the_project_root(monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    config = config_loader(ROOT)["mlflow"]
    assert config["server"]["mlflow_tracking_uri"] == "sqlite:///mlflow.db"
    assert config["tracking"]["experiment"]["name"] == "croft-pipeline"
    # a stage DVC runs (a queued experiment: in a copy under .dvc/tmp) tracks into the
    # repository's store, named by DVC_ROOT
    monkeypatch.setenv("DVC_ROOT", "/repo")
    assert (
        config_loader(ROOT)["mlflow"]["server"]["mlflow_registry_uri"]
        == "sqlite:////repo/mlflow.db"
    )


def test_no_module_takes_the_name_kedro_loads_project_commands_from():
    """``kedro`` imports ``<package>.cli`` and expects a click group there: a module of another
    kind under that name breaks every ``kedro run`` (the console script lives in ``console``)."""
    import importlib.util

    assert importlib.util.find_spec("croft_pipeline.cli") is None


def test_registry_names_the_five_pipelines_and_default_chains_them():
    pipelines = register_pipelines()
    assert set(pipelines) == {*PIPELINE_ORDER, "__default__"}
    default_nodes = {node.name for node in pipelines["__default__"].nodes}
    for name in PIPELINE_ORDER:
        assert pipelines[name].nodes, f"pipeline {name} has no nodes"
        assert {node.name for node in pipelines[name].nodes} <= default_nodes


def test_dvc_yaml_is_the_generated_one():
    from croft_pipeline.tools.dvc_stages import render

    assert (ROOT / "dvc.yaml").read_text() == render(ROOT), (
        "dvc.yaml is stale: run `python -m croft_pipeline.tools.dvc_stages`"
    )


def test_dvc_stages_mirror_the_kedro_pipelines():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(PIPELINE_ORDER)
    for name, stage in stages.items():
        assert stage["cmd"] == f"sh scripts/kedro run --pipelines={name}"
        assert stage.get("outs") or stage.get("metrics"), f"stage {name} declares no outputs"


def _leaves(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, tree


def _at(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return KeyError
        tree = tree[key]
    return tree


@pytest.mark.parametrize("env", ["test", "pacs", "vlcs", "fashion_mnist", "setup1"])
def test_environments_hold_only_the_keys_they_change(env):
    """Parameters merge key by key over base, so an environment that repeats a base value is a
    copy that silently goes stale; every key it sets must change something."""
    base = parameters(ROOT)
    merged = parameters(ROOT, env)
    for path in sorted((ROOT / "conf" / env).glob("parameters*.yml")):
        for key, value in _leaves(yaml.safe_load(path.read_text()) or {}):
            where = f"{path.relative_to(ROOT)}: {'.'.join(map(str, key))}"
            assert _at(merged, key) == value, f"{where} is not what the environment resolves to"
            assert _at(base, key) != value, f"{where} repeats the base value {value!r}"


def _data_paths(entry: dict) -> list[str]:
    """The ``data/`` paths a catalog entry (or the dataset it wraps) writes."""
    inner = [entry, entry.get("dataset") if isinstance(entry.get("dataset"), dict) else {}]
    return [
        part[key]
        for part in inner
        for key in ("filepath", "path")
        if isinstance(part.get(key), str) and part[key].startswith("data/")
    ]


def test_setup1_writes_its_own_outputs_and_reuses_the_default_clip():
    """Setup I moves every output of the catalog and every rendered root under data/setup1 (an
    entry added to the base catalog without its move here fails), and reads the default run's
    CLIP checkpoint without training it or registering a model."""
    base, setup1 = config_loader(ROOT)["catalog"], config_loader(ROOT, "setup1")["catalog"]
    for name, entry in base.items():
        if isinstance(entry, dict):
            for old, new in zip(_data_paths(entry), _data_paths(setup1[name]), strict=True):
                assert new == "data/setup1/" + old.removeprefix("data/"), name
    default, params = parameters(ROOT), parameters(ROOT, "setup1")
    for name, root in params["ingest"]["roots"].items():
        assert root.startswith("data/setup1/"), name
    assert params["clip"]["pretrained"] == default["clip"]["pretrained"]
    assert params["pretrain"]["checkpoint"] == default["pretrain"]["checkpoint"]
    assert params["evaluate"]["register"]["enabled"] is False
    split = params["ingest"]["emojishift"]["class_split"]
    assert split["id_share"] == 0.4 and params["ingest"]["corruptions"]["kinds"]


def test_values_two_files_share_come_from_globals():
    params = parameters(ROOT)
    assert params["pretrain"]["checkpoint"] == params["clip"]["pretrained"]
    assert params["pretrain"]["emojishift_roots"] == params["ingest"]["roots"]


@pytest.mark.parametrize(
    ("env", "model", "templates"),
    [
        (None, "CroftLite0-MiniLM-112", ["an emoji of a {}"]),
        ("test", "CroftRN-Tiny-32", ["an emoji of a {}"]),
        ("pacs", "ViT-B-16", ["a photo of a {}."]),
        ("vlcs", "ViT-B-16", ["a photo of a {}."]),
    ],
)
def test_each_shipped_environment_gets_the_model_and_prompts_it_promises(env, model, templates):
    clip = parameters(ROOT, env)["clip"]
    assert (clip["model_name"], clip["templates"]) == (model, templates)


def test_the_shipped_environments_are_the_folders_of_conf():
    assert sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir()) == SHIPPED_ENVS
    for env in SHIPPED_ENVS:
        assert missing_environment(ROOT / "conf", env) is None
        parameters(ROOT, env)


@pytest.mark.parametrize(
    ("env", "hint"),
    [("nope", "the"), ("tset", "did you mean test? The"), ("PACS", "did you mean pacs? The")],
)
def test_an_environment_without_a_folder_is_refused_naming_the_ones_that_exist(env, hint):
    with pytest.raises(ConfigError) as info:
        config_loader(ROOT, env)
    assert str(info.value) == (
        f"environment {env!r} does not exist (no folder conf/{env}); "
        f"{hint} environments are {', '.join(SHIPPED_ENVS)}"
    )


def test_a_configuration_that_is_not_a_folder_is_left_to_kedro(tmp_path):
    assert missing_environment(tmp_path / "conf.tar.gz", "nope") is None
    assert missing_environment("s3://bucket/conf", "nope") is None


def test_parameter_files_are_each_file_of_the_run_as_written_and_the_runtime_params():
    loader = config_loader(ROOT, "test")
    loader.runtime_params = {"seeds": [7]}
    files = parameter_files(loader)
    expected = sorted(
        f"conf/{p.parent.name}/{p.name}"
        for e in ("base", "test")
        for p in (ROOT / "conf" / e).glob("parameters*.yml")
    )
    assert list(files)[:-1] == expected and list(files)[-1] == "--params"
    assert files["conf/test/parameters.yml"] == {"seeds": [1, 2]}
    assert files["--params"] == {"seeds": [7]}


@pytest.mark.parametrize(
    ("env", "name"),
    [
        (None, "croft-clip"),
        ("test", "croft-clip"),
        ("pacs", "croft-clip-pacs"),
        ("vlcs", "croft-clip-vlcs"),
        ("fashion_mnist", "croft-clip-fashion-mnist"),
    ],
)
def test_each_dataset_registers_its_own_model(env, name):
    params = parameters(ROOT, env)
    assert registered_model_name(params["evaluate"]["register"], params["ingest"]) == name


def test_a_registered_model_name_that_is_set_wins_and_odd_folders_get_a_clean_one():
    folder = {"source": "folder", "roots": {"main": "/data/My Photos (2024)/"}}
    assert registered_model_name({"model_name": None}, folder) == "croft-clip-my-photos-2024"
    assert registered_model_name({"model_name": "mine"}, folder) == "mine"
    assert registered_model_name({}, {"source": "folder", "roots": {"main": "/"}}) == (
        "croft-clip-folder"
    )


def test_credentials_come_from_conf_local_whatever_the_env(tmp_path):
    """conf/local's credentials (never committed) reach `--env=team` too, an env's own entry
    wins, and reading them leaves the ``globals`` resolver of the run's loader in place."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("credentials*"))
    (conf / "local" / "credentials.yml").write_text(
        "mlflow_team: {MLFLOW_TRACKING_USERNAME: alice}\nother: {key: local}\n"
    )
    (conf / "test" / "credentials.yml").write_text("other: {key: test}\n")
    for env, other in (("team", "local"), ("test", "test"), (None, "local")):
        loader = config_loader(tmp_path, env)
        credentials = loader["credentials"]
        assert credentials["mlflow_team"] == {"MLFLOW_TRACKING_USERNAME": "alice"}, env
        assert credentials["other"] == {"key": other}, env
        assert loader["catalog"] == config_loader(ROOT, env)["catalog"], env
