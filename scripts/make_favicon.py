"""Render webapp/static/favicon.svg to webapp/static/favicon.ico (16, 32 and 48 px PNG frames).

Run once after changing the SVG: `.venv/bin/python scripts/make_favicon.py` (uses the test
suite's Playwright Chromium; the .ico is committed, nothing renders it at run time).
"""

from __future__ import annotations

import struct
from pathlib import Path

from playwright.sync_api import sync_playwright

STATIC = Path(__file__).resolve().parent.parent / "webapp" / "static"
SIZES = (16, 32, 48)


def ico(frames: list[tuple[int, bytes]]) -> bytes:
    """An ICO file whose images are PNGs (supported by every browser since Vista-era IE)."""
    header = struct.pack("<HHH", 0, 1, len(frames))
    offset = 6 + 16 * len(frames)
    entries, blobs = b"", b""
    for size, png in frames:
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    return header + entries + blobs


def main() -> None:
    svg = (STATIC / "favicon.svg").read_text()
    frames = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless"])
        for size in SIZES:
            page = browser.new_page(viewport={"width": size, "height": size})
            page.set_content(
                f"<style>html,body{{margin:0;background:transparent}}svg{{width:{size}px;"
                f"height:{size}px;display:block}}</style>{svg}"
            )
            frames.append((size, page.screenshot(omit_background=True)))
            page.close()
        browser.close()
    (STATIC / "favicon.ico").write_bytes(ico(frames))


if __name__ == "__main__":
    main()
