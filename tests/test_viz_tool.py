"""``croft_pipeline.tools.viz`` without a server: what it refuses and reports (the served
page and the stop are in tests/test_kedro_viz.py)."""

from __future__ import annotations

import socket

from croft_pipeline.tools import viz


def test_run_refuses_a_port_in_use_instead_of_moving_to_the_next(tmp_path, capsys):
    """Kedro-Viz would take the next free port, and the printed page would name the wrong one."""
    state = tmp_path / "viz-server.json"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["run", "--port", str(port), "--no-browser", "--state", str(state)]
        assert viz.main(argv) == 1
    assert f"port {port} is in use" in capsys.readouterr().err and not state.exists()


def test_stop_without_a_run_says_so(tmp_path, capsys):
    assert viz.main(["stop", "--state", str(tmp_path / "viz-server.json")]) == 0
    assert capsys.readouterr().out.startswith("nothing to stop")


def test_the_page_selects_the_pipeline():
    assert viz.page_url("127.0.0.1", 4141, "train") == "http://127.0.0.1:4141/?pid=train"
    assert viz.page_url("127.0.0.1", 4141, None) == "http://127.0.0.1:4141/"
