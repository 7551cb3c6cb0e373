"""The `vlconvert inspect --html` report renders in a real browser: headless Chromium driven by Playwright.

The system chromium (Debian's `chromium` package) is used, never a downloaded one
(`playwright install` is not needed).  Without it the test skips, except under CI,
where .ci/run installs it and a skip would hide a broken report; if .ci/run cannot
install it (no Debian mirror), it says so and the test skips with that reason.
"""

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from inat_layout import EXAMPLE
from optional import require

import vlconvert
from vlconvert.cli.root import cli


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    reason = "no system chromium (apt-get install chromium); .ci/run installs it"
    unavailable = os.environ.get("VLCONVERT_BROWSER_UNAVAILABLE")
    if unavailable:  # .ci/run tried to install it and could not: say why rather than fail the machine
        pytest.skip(f"{reason}, but on this machine: {unavailable}")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    chromium()  # skip (or fail under CI) before spending time on a build
    require("matplotlib")
    base = tmp_path_factory.mktemp("browser")
    vlconvert.build("inat2021", root=str(EXAMPLE), out=str(base / "out"))
    result = CliRunner().invoke(cli, ["inspect", str(base / "out"), "--report", str(base / "report")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return base / "report"


@pytest.mark.slow
def test_the_report_renders_in_chromium(report, tmp_path):
    executable = chromium()
    sync_api = require("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to start as root with its sandbox, as CI containers run.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            failed = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto((report / "index.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({src: e.getAttribute('src'), width: e.naturalWidth, complete: e.complete}))")
            grid = page.eval_on_selector_all(".grid figure img", "els => els.length")
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
            screenshot = tmp_path / "inspect-report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not failed, failed
    assert grid == 24
    sources = [i["src"] for i in images]
    assert "long_tail.png" in sources and "caption_lengths.png" in sources and len(images) == grid + 2
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not decode: {broken}"
    assert headings[:2] == ["Manifest", "Images per class (train)"] and "Samples" in headings
    assert screenshot.stat().st_size > 50_000  # a page of 26 images, not a blank or an error page
    keep = os.environ.get("VLCONVERT_KEEP_SCREENSHOT")  # to look at it: VLCONVERT_KEEP_SCREENSHOT=/tmp/report.png
    if keep:
        shutil.copy(screenshot, keep)
