"""``kedro viz run`` shows the project: the real server (127.0.0.1, no browser) on a project copy,
started as users start it (``python -m croft_pipeline.tools.viz run``: ``make viz``) and opened in
headless Chromium. Each of the five pipelines renders with exactly its nodes, the data layers
appear in the order the data flows, every node carries its pipeline's tag, the page the tool
prints opens on one pipeline at a readable zoom, neither the server nor its page sends
telemetry, and stopping the tool by its PID frees the port (the module's last test)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from croft_pipeline.pipeline_registry import PIPELINE_ORDER, register_pipelines
from tests import network_guard
from tests.kedro_harness import kill_run, make_project_copy, start_kedro
from tests.reporting.browser import chromium_binary, dump_dom, evaluate_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed"),
]
LAYERS = [  # data folders 01..08; the CLIP the embed pipeline uses sits between primary and feature
    "raw",
    "intermediate",
    "primary",
    "pretrained_model",
    "feature",
    "models",
    "model_output",
    "reporting",
]
START_TIMEOUT = 300  # seconds: the server imports the project and builds its graph first
SITECUSTOMIZE = """\
# Written by tests/test_kedro_viz.py: every process of the viz server runs under the test guard
# and appends each outside connection it tried to the attempts file.
import importlib.util

spec = importlib.util.spec_from_file_location("network_guard", {guard!r})
guard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guard)


class LoggedAttempts(list):
    def append(self, attempt):
        super().append(attempt)
        with open({attempts!r}, "a", encoding="utf-8") as out:
            out.write(attempt + "\\n")


GUARD = guard.loopback_only(LoggedAttempts())  # kept: collecting it would lift the guard
GUARD.__enter__()
"""


@dataclass(frozen=True)
class VizServer:
    url: str
    attempts: Path
    profiles: Path  # a Chromium profile folder per page load
    tool: subprocess.Popen  # python -m croft_pipeline.tools.viz run
    port: int
    log: Path
    state: Path  # what the tool started: its PID, the group of kedro viz run, the page


class RenderedFlowchart(HTMLParser):
    """What a Kedro-Viz DOM shows: flowchart nodes (type, full name), layer labels in order, the
    pipeline the selector names and the titles of its menu options (and of other menus)."""

    def __init__(self, dom: str):
        super().__init__()
        self.nodes: set[tuple[str, str]] = set()
        self.layers: list[str] = []
        self.selected_pipeline: str | None = None
        self.menu_options: set[str] = set()
        self._in_selector = False
        self._capture: str | None = None  # "layer" or "pipeline": the next text is one
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "pipeline-node" in classes and "data-node-fullname" in attributes:
            self.nodes.add((attributes["data-node-type"], attributes["data-node-fullname"]))
        elif "pipeline-layer-name" in classes:
            self._capture = "layer"
        elif "menu-option__content" in classes:
            self.menu_options.add(attributes.get("title", ""))
        elif attributes.get("data-test") == "kedro-pipeline-selector":
            self._in_selector = True
        elif self._in_selector and "dropdown__label" in classes:
            self._in_selector, self._capture = False, "pipeline"

    def handle_data(self, data):
        if self._capture is None or not data.strip():
            return
        if self._capture == "layer":
            self.layers.append(data.strip())
        else:
            self.selected_pipeline = data.strip()
        self._capture = None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    """A free port below 49152: kedro-viz refuses the dynamic range the OS would hand out."""
    for port in random.sample(range(20000, 49000), 50):
        if not _listening(port):
            return port
    raise RuntimeError("no free port between 20000 and 49000")


def _wait_until_up(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"kedro viz run not up at {url} (exit {process.poll()}):\n{log.read_text()[-3000:]}"
    )


def _group_gone(group: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _clean_up(server: VizServer) -> None:
    """What the stop test left running, if it failed or did not run: the tool's group and
    kedro viz run's (the CLI, the server process it spawned, multiprocessing's resource
    tracker); the port must then close."""
    group = json.loads(server.state.read_text())["group"] if server.state.exists() else None
    kill_run(server.tool)
    if group is not None:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _listening(server.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _listening(server.port), f"still listening on port {server.port} after SIGKILL"


@pytest.fixture(scope="module")
def viz_server(tmp_path_factory) -> Iterator[VizServer]:
    """``kedro viz run`` in a project copy (the repository stays untouched), every one of its
    processes under the network guard, telemetry left to the project's own settings."""
    tmp = tmp_path_factory.mktemp("kedro_viz")
    project = make_project_copy(tmp / "project")
    guarded, attempts = tmp / "guarded", tmp / "attempts.txt"
    guarded.mkdir()
    attempts.touch()
    (guarded / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(guard=network_guard.__file__, attempts=str(attempts))
    )
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY")  # the project must turn it off
    }
    environ |= {
        "XDG_CONFIG_HOME": str(tmp / "config"),  # kedro-viz writes a telemetry user id there
        "OMP_NUM_THREADS": "1",
    }
    port, log, state = _free_port(), tmp / "viz.log", tmp / "viz-server.json"
    args = [
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--state",
        str(state),
    ]
    tool = start_kedro(
        project, args, log, environ, path_first=[str(guarded)], module="croft_pipeline.tools.viz"
    )
    server = VizServer(
        f"http://127.0.0.1:{port}/", attempts, tmp / "chromium", tool, port, log, state
    )
    try:
        _wait_until_up(tool, f"http://127.0.0.1:{port}/api/main", log)
        yield server
    finally:
        _clean_up(server)


def _render(server: VizServer, query: str = "") -> RenderedFlowchart:
    profile = server.profiles / (query.strip("?=") or "default")
    return RenderedFlowchart(dump_dom(server.url + query, profile, budget_ms=20000))


def _api_main(server: VizServer) -> dict:
    with urllib.request.urlopen(server.url + "api/main", timeout=60) as response:
        return json.load(response)


@pytest.mark.parametrize("name", PIPELINE_ORDER)
def test_each_pipeline_renders_with_exactly_its_nodes_and_datasets(viz_server, name):
    pipeline = register_pipelines()[name]
    page = _render(viz_server, f"?pid={name}")
    assert page.selected_pipeline == name
    tasks = {node for kind, node in page.nodes if kind == "task"}
    datasets = {node for kind, node in page.nodes if kind == "data"}
    assert tasks == {node.name for node in pipeline.nodes}
    assert datasets == {d for d in pipeline.datasets() if not d.startswith("params:")}


def test_the_default_view_lists_the_pipelines_and_shows_the_layers_in_data_order(viz_server):
    page = _render(viz_server)
    assert page.selected_pipeline == "__default__"
    assert {*PIPELINE_ORDER, "__default__"} <= page.menu_options
    assert page.layers == LAYERS
    api = _api_main(viz_server)
    assert api["layers"] == LAYERS  # a cycle among layers would turn them all off ([])
    unlayered = {
        node["name"]
        for node in api["nodes"]
        if node["type"] == "data" and node["layer"] is None and node["name"] != "project_dir"
    }
    assert unlayered == set(), "give each dataset a kedro-viz layer in conf/base/catalog_*.yml"


def test_every_node_carries_its_pipelines_tag(viz_server):
    api = _api_main(viz_server)
    assert {tag["id"] for tag in api["tags"]} == set(PIPELINE_ORDER)
    pipelines = register_pipelines()
    expected = {node.name: [name] for name in PIPELINE_ORDER for node in pipelines[name].nodes}
    tagged = {node["name"]: node["tags"] for node in api["nodes"] if node["type"] == "task"}
    assert tagged == expected


def test_neither_the_server_nor_its_page_sends_telemetry(viz_server):
    """Consent comes from the project (``.telemetry``, the package's offline defaults): the page is
    kedro-viz's own index.html with no analytics snippet injected, and the only outside address
    any server process tried is kedro-viz's update check (at start, and ``/api/version`` on each
    page load), whose name lookup the guard refused."""
    import kedro_viz
    from kedro_viz.integrations import pypi as update_check

    shipped = (Path(kedro_viz.__file__).parent / "html" / "index.html").read_text(encoding="utf-8")
    with urllib.request.urlopen(viz_server.url, timeout=60) as response:
        assert response.read().decode("utf-8") == shipped
    host = urlparse(update_check._PYPI_ENDPOINT).hostname
    assert set(viz_server.attempts.read_text().splitlines()) == {f"getaddrinfo({host!r})"}


# Kedro-Viz's flowchart once its layout has settled: the zoom level its toolbar shows, the
# pipeline its selector names, the nodes drawn; null until the zoom has held for two seconds.
SETTLED_FLOWCHART = """(function () {
  var wrapper = document.querySelector("g.pipeline-zoom-wrapper");
  var scale = document.querySelector(".pipeline-minimap-toolbar__scale");
  var nodes = document.querySelectorAll(".pipeline-node[data-node-fullname]").length;
  if (!wrapper || !scale || !nodes ||
      wrapper.classList.contains("pipeline-flowchart__zoom-wrapper--animating")) return null;
  var now = scale.textContent + " " + wrapper.getAttribute("transform");
  if (window.__seen !== now) { window.__seen = now; window.__since = Date.now(); return null; }
  if (Date.now() - window.__since < 2000) return null;
  var label = document.querySelector('[data-test="kedro-pipeline-selector"] .dropdown__label');
  return {zoom: parseInt(scale.textContent, 10), nodes: nodes,
          pipeline: label && label.textContent.trim()};
})()"""


def _printed_page(server: VizServer) -> str:
    """The page the tool prints once the server answers (it asks every half second)."""
    deadline = time.monotonic() + 30
    while not (match := re.search(r"^Kedro-Viz: (\S+)", server.log.read_text(), flags=re.M)):
        assert time.monotonic() < deadline, f"no page printed:\n{server.log.read_text()[-2000:]}"
        time.sleep(0.5)
    return match.group(1)


def test_the_printed_page_opens_on_one_pipeline_at_a_readable_zoom(viz_server):
    """Kedro-Viz fits the whole graph into the window: __default__'s 75 nodes at 12 % in a
    1400 x 900 window. The page the tool prints selects train instead (``?pid=train``)."""
    page = _printed_page(viz_server)
    assert page == viz_server.url + "?pid=train"
    first = evaluate_until(page, SETTLED_FLOWCHART)
    default = evaluate_until(viz_server.url, SETTLED_FLOWCHART)  # a fresh profile: no memory
    assert first and default, "the flowchart did not settle"
    assert first["pipeline"] == "train" and default["pipeline"] == "__default__"
    assert first["nodes"] < default["nodes"]
    assert first["zoom"] >= 3 * default["zoom"], (first, default)


def test_stopping_the_tool_by_its_pid_frees_the_port(viz_server):
    """Last: it stops the module's server. ``make viz-stop`` (``viz stop``) sends SIGTERM to the
    PID the tool recorded; the tool, kedro viz run's group and the port are all gone after it
    (SIGTERM to kedro viz run's own PID would leave its server process on the port)."""
    group = json.loads(viz_server.state.read_text())["group"]
    assert _listening(viz_server.port)
    stop = [sys.executable, "-m", "croft_pipeline.tools.viz", "stop", "--state"]
    done = subprocess.run([*stop, str(viz_server.state)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("stopped Kedro-Viz"), done.stderr
    assert viz_server.tool.wait(timeout=30) == 0
    assert not _listening(viz_server.port) and not viz_server.state.exists()
    assert _group_gone(group), f"a process of group {group} survived"
