"""Open a page in headless Chromium: read back what a small inline script saw in an HTML file
(images, tables and links; the Vega charts drawn), the DOM a served app rendered, or what an
expression evaluates to in it once it is ready."""

from __future__ import annotations

import contextlib
import fcntl
import html
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from croft_pipeline.tools.screenshot import chromium_binary, headless_command

__all__ = ["CHECK_SCRIPT", "chromium_binary", "dump_dom", "evaluate_until", "inspect_page"]
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var images = Array.from(document.querySelectorAll("img"));
  var result = {
    images: images.length,
    loaded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    widths: images.map(function (i) { return i.naturalWidth; }),
    tables: Array.from(document.querySelectorAll("table")).map(function (t) {
      return {
        id: t.id,
        rows: t.querySelectorAll("tbody tr").length,
        cells: Array.from(t.querySelectorAll("tbody tr")).map(function (r) {
          return Array.from(r.cells).map(function (c) { return c.textContent; });
        }),
        visible: t.getBoundingClientRect().height > 0
      };
    }),
    links: Array.from(document.querySelectorAll("a")).map(function (a) {
      return a.getAttribute("href");
    }),
    first_heading: document.querySelector("h2") && document.querySelector("h2").textContent,
    title: document.title
  };
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""

CHARTS_SCRIPT = """
<script>
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message)); });
window.addEventListener("unhandledrejection", function (e) { errors.push(String(e.reason)); });
function drawn() {  // vega-embed's SVGs (or canvases) with a size: the charts that rendered
  return Array.from(document.querySelectorAll("div[id] svg.marks, div[id] canvas.marks"))
    .filter(function (c) { return c.getBoundingClientRect().width > 0; }).length;
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
"""


def charts_drawn(page: Path, expected: int) -> dict:
    """``{"charts": n, "errors": [...]}``: how many Vega charts ``page`` drew (waiting for
    ``expected`` of them) with every host unreachable, and the script errors it raised meanwhile."""
    return inspect_page(page, script=CHARTS_SCRIPT.replace("EXPECTED", str(int(expected))))


def dump_dom(
    url: str,
    profile: Path,
    timeout: float = 120.0,
    budget_ms: int = 10000,
    window: tuple[int, int] | None = None,
) -> str:
    """The DOM of ``url`` after its scripts ran for ``budget_ms`` of virtual time, as headless
    Chromium serialises it (in a ``window`` of width × height pixels, if given); every host but
    127.0.0.1 is unresolvable, so the page stays offline."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH")
    size = [f"--window-size={window[0]},{window[1]}"] if window else []
    command = headless_command(
        binary, profile, *size, f"--virtual-time-budget={budget_ms}", "--dump-dom", url
    )
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if "</html>" not in completed.stdout:
        raise RuntimeError(
            f"chromium printed no DOM for {url} (rc {completed.returncode}): {completed.stderr[-2000:]}"
        )
    return completed.stdout


def inspect_page(
    page: Path,
    timeout: float = 120.0,
    script: str = CHECK_SCRIPT,
    window: tuple[int, int] | None = None,
) -> dict:
    """Load a copy of ``page`` with a check script appended (it writes its JSON result into
    ``<pre id="browser-check">``) and return the script's result."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        head, end, tail = page.read_text(encoding="utf-8").rpartition("</body>")
        probe.write_text(head + script + end + tail)  # the last one: a script may hold "</body>"
        dom = dump_dom(probe.as_uri(), Path(tmp) / "profile", timeout, window=window)
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, flags=re.S)
    if match is None:
        raise RuntimeError(f"the check script left no result in {page}")
    return json.loads(html.unescape(match.group(1)))


def evaluate_until(
    url: str, expression: str, window: tuple[int, int] = (1400, 900), timeout: float = 90.0
):
    """Open ``url`` in headless Chromium (offline, a fresh profile) and evaluate ``expression``
    in the page every half second of real time, until it returns a value other than null or
    false; that value (None after ``timeout``). Real time, unlike :func:`dump_dom`'s virtual
    time, lets a web worker (Kedro-Viz's layout) finish. Chromium is driven over its DevTools
    pipe: commands on its fd 3, replies on its fd 4, each a JSON text ended by a NUL byte."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH")
    commands, replies = os.pipe(), os.pipe()  # (read end, write end) each

    def as_fds_3_and_4():  # in the child, before exec
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands[0], replies[1])]
        os.dup2(ends[0], 3)
        os.dup2(ends[1], 4)

    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        size = f"--window-size={window[0]},{window[1]}"
        process = subprocess.Popen(
            headless_command(binary, Path(profile), size, "--remote-debugging-pipe", url),
            preexec_fn=as_fds_3_and_4,
            close_fds=False,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands[0])
        os.close(replies[1])
        pipe = _DevtoolsPipe(commands[1], replies[0], deadline)
        try:
            page = next(
                t for t in pipe.call("Target.getTargets")["targetInfos"] if t["type"] == "page"
            )
            session = pipe.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
            while time.monotonic() < deadline:
                reply = pipe.call(
                    "Runtime.evaluate",
                    session=session["sessionId"],
                    expression=expression,
                    returnByValue=True,
                )
                if value := reply["result"].get("value"):
                    return value
                time.sleep(0.5)
            return None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the browser and its renderers
            process.wait()
            os.close(commands[1])
            os.close(replies[0])


class _DevtoolsPipe:
    """Chromium's DevTools protocol over two pipe ends: a command, then its reply."""

    def __init__(self, commands: int, replies: int, deadline: float):
        self.commands, self.replies, self.deadline = commands, replies, deadline
        self.buffer, self.last_id = b"", 0

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = json.loads(self._next())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method}: {reply['error']}")
                return reply["result"]

    def _next(self) -> bytes:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return message
