"""The page in a real browser: `streamlit run serve/app.py` + headless Chromium -> upload, Process, verdicts with
heatmaps and errors shown, "That's wrong" keeps the photo in the review folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest
from helpers.serving import real_photos, register_tiny_model

from serve.process import free_port, launch, stop, wait_until_up

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `apt-get install chromium`

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


@pytest.fixture
def page_url(tmp_path_factory, tmp_path):
    """`streamlit run serve/app.py` on a free 127.0.0.1 port, loading the tiny model itself -> its URL."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": register_tiny_model(tmp_path_factory.getbasetemp() / "serve_store"), "REVIEW_DIR": str(tmp_path / "review")}
    env.pop("SERVING_URL", None)
    env.pop("MODEL_URI", None)
    command = [sys.executable, "-m", "streamlit", "run", "serve/app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = tmp_path / "streamlit.log"
    process = launch(command, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/_stcore/health", log, limit_s=60)
        yield url
    finally:
        stop(process)


def test_upload_process_and_read_the_verdict(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = real_photos(per_folder=1)[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.goto(page_url, timeout=60_000)
            page.locator("input[type=file]").set_input_files([str(photo), str(broken)], timeout=60_000)
            expect(page.get_by_role("button", name=f"Remove {broken.name}")).to_be_visible(timeout=30_000)  # uploads listed
            page.get_by_role("button", name="Process").click(timeout=30_000)
            expect(page.get_by_text("confidence")).to_be_visible(timeout=90_000)
            expect(page.get_by_text("random-init weights: its answers are not meaningful")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("broken.jpg: image 0: not an image")).to_be_visible(timeout=30_000)
            assert "Traceback" not in page.content()
        finally:
            browser.close()


def test_two_photos_two_heatmaps_and_a_correction_kept(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    airplane, automobile, other = real_photos(per_folder=1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_url, timeout=60_000)
            page.locator("input[type=file]").set_input_files([str(airplane), str(other)], timeout=60_000)
            expect(page.get_by_role("button", name=f"Remove {other.name}")).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Process").click(timeout=30_000)
            expect(page.get_by_text("confidence")).to_have_count(2, timeout=120_000)
            heatmaps = page.get_by_test_id("stImageContainer").filter(has_text="where the model looked").locator("img")
            expect(heatmaps).to_have_count(2, timeout=30_000)
            pixels = [page.request.get(urljoin(page_url + "/", heatmaps.nth(i).get_attribute("src"))).body() for i in range(2)]
            assert pixels[0] != pixels[1]  # each photo's own heatmap

            page.get_by_role("button", name="That's wrong").first.click(timeout=30_000)
            expect(page.get_by_text("Kept for the next training run")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("1 corrected photo waiting")).to_be_visible(timeout=30_000)
            kept = [p for p in (tmp_path / "review").rglob("*.png")]
            assert len(kept) == 1 and kept[0].parent.name in {"airplane", "automobile", "other"}
            assert "Traceback" not in page.content()
        finally:
            browser.close()
