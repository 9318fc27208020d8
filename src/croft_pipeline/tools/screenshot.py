"""A PNG of the top of an HTML page (the evaluation report), rendered by headless Chromium.

Offline: every host but 127.0.0.1 is unresolvable, so nothing is fetched from outside.

    python -m croft_pipeline.tools.screenshot data/08_reporting/report.html docs/images/report.png \\
        [--width 1400] [--height 1000]

The tests' browser helper (tests/reporting/browser.py) starts Chromium with the same flags."""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "install Debian's chromium package (`apt-get install chromium`)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ScreenshotError(RuntimeError):
    """Why no picture was written; one line."""


def chromium_binary() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


def headless_command(binary: str, profile: Path, *args: str) -> list[str]:
    """``binary`` headless and offline with a fresh ``profile`` folder, then ``args``."""
    return [
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
        *args,
    ]


def png_size(png: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = png.read_bytes()[:24]
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ScreenshotError(f"{png} is not a PNG")
    return struct.unpack(">II", head[16:24])


def screenshot(
    page: Path, out: Path, width: int = 1400, height: int = 1000, timeout: float = 120
) -> tuple[int, int]:
    """Render the top ``width`` × ``height`` pixels of ``page`` into ``out``; the PNG's size."""
    if not page.is_file():
        raise ScreenshotError(f"no such file: {page}")
    binary = chromium_binary()
    if binary is None:
        raise ScreenshotError(
            f"no Chromium on PATH ({', '.join(CHROMIUM_CANDIDATES)}): {INSTALL_HINT}"
        )
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        command = headless_command(
            binary,
            Path(profile),
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise ScreenshotError(
            f"chromium wrote no picture (exit {done.returncode}): {done.stderr.strip()[-600:]}"
        )
    return png_size(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m croft_pipeline.tools.screenshot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("page", type=Path, help="the HTML file, e.g. data/08_reporting/report.html")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400, help="pixels (default: 1400)")
    parser.add_argument("--height", type=int, default=1000, help="pixels (default: 1000)")
    args = parser.parse_args(argv)
    try:
        width, height = screenshot(args.page, args.out, args.width, args.height)
    except ScreenshotError as error:
        print(f"screenshot: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({width} × {height} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
