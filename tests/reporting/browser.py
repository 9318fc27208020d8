"""Open a page in headless Chromium: read back what a small inline script saw in an HTML file
(images, tables and links; the Vega charts drawn), or the DOM a served app rendered."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
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


def chromium_binary() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


def dump_dom(url: str, profile: Path, timeout: float = 120.0, budget_ms: int = 10000) -> str:
    """The DOM of ``url`` after its scripts ran for ``budget_ms`` of virtual time, as headless
    Chromium serialises it; every host but 127.0.0.1 is unresolvable, so the page stays offline."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH")
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if "</html>" not in completed.stdout:
        raise RuntimeError(
            f"chromium printed no DOM for {url} (rc {completed.returncode}): {completed.stderr[-2000:]}"
        )
    return completed.stdout


def inspect_page(page: Path, timeout: float = 120.0, script: str = CHECK_SCRIPT) -> dict:
    """Load a copy of ``page`` with a check script appended (it writes its JSON result into
    ``<pre id="browser-check">``) and return the script's result."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        head, end, tail = page.read_text(encoding="utf-8").rpartition("</body>")
        probe.write_text(head + script + end + tail)  # the last one: a script may hold "</body>"
        dom = dump_dom(probe.as_uri(), Path(tmp) / "profile", timeout)
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, flags=re.S)
    if match is None:
        raise RuntimeError(f"the check script left no result in {page}")
    return json.loads(html.unescape(match.group(1)))
