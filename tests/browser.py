"""Pages checked in a real headless Chromium (the review queue, the audit): a screenshot, and the DOM after load.

Shared by tests/test_review.py and tests/test_weak_labels.py so both drive the browser the same way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

LOADED_IMAGES = "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length"  # a probe expression
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _args(height: int) -> list[str]:
    return [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", "--hide-scrollbars", f"--window-size=1280,{height}"]  # fmt: skip


def screenshot(page: Path, shot: Path, height: int) -> None:
    """Render ``page`` at 1280 × ``height`` into the PNG ``shot``."""
    cmd = [*_args(height), f"--screenshot={shot}", page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)


def probed_dom(page: Path, tmp: Path, attributes: dict[str, str], height: int) -> str:
    """The DOM of a copy of ``page`` (the page itself has no script) whose body gets, once loaded, an attribute
    ``data-NAME`` per entry set to the JavaScript expression's value; --dump-dom prints it."""
    sets = ";".join(f"document.body.setAttribute('data-{name}',{expr})" for name, expr in attributes.items())
    probe = tmp / "probe.html"
    script = f"<script>window.addEventListener('load',()=>{{{sets}}})</script></body>"
    probe.write_text(page.read_text().replace("</body>", script))
    return subprocess.run(
        [*_args(height), "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
