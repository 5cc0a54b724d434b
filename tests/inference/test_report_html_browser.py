"""``report.html`` of a real mixed run, opened in a real headless browser.

The unet bundle's inference runs with the fixture model (``tests/data/binary_model_964005e``) on 2D slices, the
synthetic DICOM demo study and one broken file; the page is then opened from disk in Chromium (the Debian package
``chromium``; ``PIPELINE_CHROMIUM`` names another binary) driven by Playwright, with every network feature off and a
fresh profile: nothing is downloaded, and ``playwright install`` is never needed.

Without the browser or the ``playwright`` package the test skips and says which is missing, unless
``PIPELINE_REQUIRE_BROWSER=1`` (set by CI), where it fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from pipeline.demo.study import DEMO_PATIENT_ID, DEMO_PATIENT_NAME, write_demo_study
from pipeline.inference import InferenceError

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "binary_model_964005e"
SMALL_UNET = {"network_def#channels": [4, 8, 16, 32, 64]}  # as the fixture model was trained (its README)
CHROMIUM = os.environ.get("PIPELINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing() -> list[str]:
    missing = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"no Chromium at {CHROMIUM} (Debian package chromium, or set PIPELINE_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright is not installed")
    return missing


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, bundle_workflow) -> tuple[Path, dict]:
    """The bundle's inference over three 2D slices, the demo DICOM study (two CT series and a localizer that is not
    selected) and a PNG that cannot be read; it ends in ``InferenceError`` for the broken file."""
    root = tmp_path_factory.mktemp("report_html")
    inputs = root / "in"
    write_demo_study(inputs / "study", size=64, num_slices=8)
    (inputs / "slices").mkdir()
    for path in sorted((FIXTURE / "images").glob("*.tif"))[:3]:
        shutil.copyfile(path, inputs / "slices" / path.name)
    (inputs / "slices" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    workflow = bundle_workflow(
        "inference",
        input=str(inputs),
        output_dir=str(root / "out"),
        checkpoint=str(FIXTURE / "model.pt"),
        **SMALL_UNET,
    )
    workflow.initialize()
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the expression's error; ours is the cause
        workflow.run()
    assert isinstance(raised.value.__cause__, InferenceError), raised.value
    summary = json.loads((root / "out" / "summary.json").read_text())
    page = (root / "out" / "report.html").read_text()
    for phi in (DEMO_PATIENT_NAME, DEMO_PATIENT_ID, str(inputs)):  # the demo patient, the input folder
        assert phi not in page
    return root / "out", summary


def test_report_html_in_a_headless_browser(mixed_run, tmp_path, skip_unless_installed):
    skip_unless_installed(_browser_missing(), "report.html browser test", "PIPELINE_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    out, summary = mixed_run
    kinds = [record["kind"] for record in summary["inputs"]]
    assert kinds.count("dicom series") == 2 and kinds.count("image") == 4  # a mixed run, as the test needs
    failed = [record for record in summary["inputs"] if record["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["input"].endswith("broken") and failed[0]["error"]

    console, errors, requests = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.on("console", lambda message: console.append((message.type, message.text)))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: errors.append(f"{request.url[:80]}: {request.failure}"))
            page.on("request", lambda request: requests.append(request.url))
            page.goto((out / "report.html").as_uri(), wait_until="load")

            assert not errors and not [text for kind, text in console if kind == "error"], (errors, console)
            assert {urlparse(url).scheme for url in requests} <= {"file", "data"}, requests

            # every input, with its status; the failed one with its reason
            cards = page.locator("article.input")
            shown = {cards.nth(i).get_attribute("data-input"): cards.nth(i) for i in range(cards.count())}
            assert set(shown) == {record["input"] for record in summary["inputs"]}
            for record in summary["inputs"]:
                card = shown[record["input"]]
                assert card.is_visible() and card.get_attribute("data-status") == record["status"]
                assert record["input"] in card.locator("h4").inner_text()
            assert failed[0]["error"] in shown[failed[0]["input"]].inner_text()
            for series in summary["not_selected"]:  # the localizer
                assert series["input"] in page.locator("#left-out").inner_text()

            # every picture decoded, every link leads to a file of the run
            pictures = page.locator("img.view")
            assert pictures.count() == len(summary["inputs"]) - 1
            for i in range(pictures.count()):
                assert pictures.nth(i).evaluate("i => i.complete && i.naturalWidth > 0")
            links = page.locator("a").evaluate_all("links => links.map(a => a.href)")
            assert len(links) == 2 * 5 + 3 * 2  # each series' SEG, SR, NIfTI, overlay and report; each slice's two PNGs
            for link in links:
                target = Path(unquote(urlparse(link).path))
                assert target.is_file() and out in target.parents, link

            # the slice scroller shows another slice
            scroller = page.locator(".scroller").first
            view, slider = scroller.locator("img.view"), scroller.locator("input[type=range]")
            assert view.get_attribute("data-slice") != "0"  # it opens on the slice with the most foreground
            slider.focus()
            slider.press("Home")
            first = view.get_attribute("src")
            assert view.get_attribute("data-slice") == "0" and scroller.locator(".slice").inner_text() == "slice 0"
            slider.press("ArrowRight")
            assert view.get_attribute("data-slice") == "1" and scroller.locator(".slice").inner_text() == "slice 1"
            assert view.get_attribute("src") != first
            assert view.evaluate("i => i.complete && i.naturalWidth > 0")
            assert not errors and not [text for kind, text in console if kind == "error"]
        finally:
            browser.close()
