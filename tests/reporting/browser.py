"""Open a page in headless Chromium: read back what a small inline script saw in an HTML file,
or the DOM a served app rendered."""

from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
from pathlib import Path

from croft_pipeline.tools.screenshot import chromium_binary, headless_command

__all__ = ["CHECK_SCRIPT", "chromium_binary", "dump_dom", "inspect_page"]
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
