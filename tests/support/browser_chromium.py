"""Headless Chromium (Debian's `chromium` package) driven by Playwright, for tests that look at a page.

`playwright install` (a browser download) is not available here, so Playwright launches the
system binary through ``executable_path``. Each launch gets a fresh profile directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_executable() -> str | None:
    """Path of the system Chromium (installed by `scripts/setup.sh`), or None."""
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@contextmanager
def chromium_page(timeout_ms: float = 90_000) -> Iterator:
    """A Playwright page in a headless Chromium with a fresh profile; closed on exit.

    ``timeout_ms`` is the default for every action and navigation (the test machine is shared and slow).
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    if executable is None:
        raise RuntimeError("no Chromium found: install Debian's `chromium` package (scripts/setup.sh does)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(timeout_ms)
            page.set_default_navigation_timeout(timeout_ms)
            yield page
        finally:
            context.close()
