"""Kedro-Viz opened on one pipeline, and stopped whole.

    python -m croft_pipeline.tools.viz run  [--pipeline train] [--host 127.0.0.1] [--port 4141]
                                            [--no-browser] [--state .viz-server.json]
                                            [-- <more kedro viz run options>]
    python -m croft_pipeline.tools.viz stop [--state .viz-server.json]

``kedro viz run`` serves from a child process (multiprocessing, spawn) beside multiprocessing's
resource tracker; SIGTERM to the CLI's PID ends the CLI alone, and the child keeps serving the
port (a later ``kedro viz run`` then moves to the next free port). ``run`` starts it in a process
group of its own, prints (and opens) the page with one pipeline selected (``?pid=<name>``), and
on SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops the whole group; ``stop`` sends that SIGTERM to the
PID ``run`` recorded in ``--state``. docs/kedro_viz.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path
from urllib.parse import quote

from croft_pipeline.tools.team import alive, stop_group

HOST, PORT = "127.0.0.1", 4141  # kedro viz run's defaults
PIPELINE = "train"  # the first view: one pipeline, not __default__'s five (docs/kedro_viz.md)
STATE = Path(".viz-server.json")
START_TIMEOUT_S = 300  # the server imports the project and builds its graph first
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class VizError(RuntimeError):
    """Why Kedro-Viz did not start or stop; one line."""


class Stopped(Exception):
    """A stop signal reached ``run``."""


def page_url(host: str, port: int, pipeline: str | None) -> str:
    """The page with ``pipeline`` selected (Kedro-Viz's ``pid`` query parameter)."""
    return f"http://{host}:{port}/" + (f"?pid={quote(pipeline)}" if pipeline else "")


def listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def group_members(group: int) -> list[int]:
    """The processes of process group ``group`` that still run (not zombies), from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if state != "Z" and int(pgrp) == group:
                members.append(int(stat.parent.name))
    return members


def stop_whole_group(group: int, timeout: float = 10) -> None:
    """:func:`~croft_pipeline.tools.team.stop_group` (SIGTERM, then SIGKILL once its leader
    is gone), then wait until none of its processes runs: until then one may hold the port."""
    stop_group(group, timeout)
    deadline = time.monotonic() + timeout
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)


def has_display() -> bool:
    """Whether a graphical browser can open here (without one, :mod:`webbrowser` would start a
    text browser such as lynx in this terminal)."""
    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return bool(graphical) or sys.platform in ("darwin", "win32")


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _wait_until_up(process: subprocess.Popen, host: str, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VizError(f"kedro viz run exited ({process.returncode}) before serving")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://{host}:{port}/api/main", timeout=5),
        ):
            return
        time.sleep(0.5)
    raise VizError(f"kedro viz run not serving http://{host}:{port}/ after {START_TIMEOUT_S} s")


def run(
    pipeline: str | None,
    host: str = HOST,
    port: int = PORT,
    browser: bool = True,
    state: Path = STATE,
    extra: list[str] | tuple[str, ...] = (),
) -> int:
    """Serve Kedro-Viz until a stop signal (0) or until it exits (its exit status)."""
    if listening(host, port):
        raise VizError(
            f"port {port} is in use: a Kedro-Viz left running? `make viz-stop` stops the one "
            f"this tool started; `ss -ltnp 'sport = :{port}'` names the process"
        )
    command = [sys.executable, "-m", "kedro", "viz", "run", "--host", host, "--port", str(port)]
    command += ["--no-browser", *extra]
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    process = None  # from here on, a stop signal stops the group started below
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        url = page_url(host, port, pipeline)
        state.write_text(json.dumps({"pid": os.getpid(), "group": process.pid, "url": url}))
        _wait_until_up(process, host, port)
        print(f"Kedro-Viz: {url}  (stop: Ctrl-C, or `make viz-stop`, or kill {os.getpid()})")
        sys.stdout.flush()
        if browser and has_display():
            webbrowser.open(url)
        return process.wait()
    except Stopped:
        return 0
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        if process is not None:
            stop_whole_group(process.pid)
            process.wait()
        state.unlink(missing_ok=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop(state: Path = STATE, timeout: float = 30) -> str:
    """SIGTERM the ``run`` recorded in ``state`` and wait for it; what was stopped."""
    if not state.exists():
        return f"nothing to stop ({state} does not exist)"
    started = json.loads(state.read_text())
    if not alive(started["pid"]):  # SIGKILLed: it left its group behind
        stop_whole_group(started["group"])
        state.unlink(missing_ok=True)
        return f"stopped what PID {started['pid']} left ({started['url']})"
    os.kill(started["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(started["pid"]):
        raise VizError(f"PID {started['pid']} still runs {timeout:.0f} s after SIGTERM")
    return f"stopped Kedro-Viz (PID {started['pid']}, {started['url']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m croft_pipeline.tools.viz",
        description=__doc__.splitlines()[0],
        allow_abbrev=False,
    )
    parser.add_argument("command", choices=("run", "stop"))
    parser.add_argument(
        "--pipeline",
        default=PIPELINE,
        help=f"the pipeline the page opens on (default: {PIPELINE}; '' for Kedro-Viz's choice)",
    )
    parser.add_argument("--host", default=HOST, help=f"default: {HOST}")
    parser.add_argument("--port", type=int, default=PORT, help=f"default: {PORT}")
    parser.add_argument(
        "--browser",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open the page in the default browser where there is a display (default: yes)",
    )
    parser.add_argument(
        "--state", type=Path, default=STATE, help=f"what run started, for stop (default: {STATE})"
    )
    args, extra = parser.parse_known_args(argv)
    extra = [option for option in extra if option != "--"]
    try:
        if args.command == "stop":
            print(stop(args.state))
            return 0
        return run(args.pipeline or None, args.host, args.port, args.browser, args.state, extra)
    except VizError as error:
        print(f"viz {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
