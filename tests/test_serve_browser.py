"""The page in a real browser: `streamlit run serve/app.py` + headless Chromium -> upload, Process, verdicts with
heatmaps and errors shown, "That's wrong" keeps the photo in the review folder; the "Label audit" tab relabels a team image into it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pandas as pd
import pytest
from helpers.serving import real_photos, register_tiny_model

from serve.process import free_port, launch, stop, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `apt-get install chromium`

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


@pytest.fixture
def page_url(tmp_path_factory, tmp_path):
    """`streamlit run serve/app.py` on a free 127.0.0.1 port, loading the tiny model itself -> its URL."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": register_tiny_model(tmp_path_factory.getbasetemp() / "serve_store"), "REVIEW_DIR": str(tmp_path / "review"),
           "AUDIT_FILE": str(tmp_path / "audit" / "label_issues.csv")}
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


def audit_of_team_images(path: Path, per_class: int = 30) -> pd.DataFrame:
    """The real audit (pipeline.audit: out-of-fold logistic regression, cleanlab) over a few team images
    per folder, on their pixels instead of a backbone's maps: doubtful labels aplenty, in seconds."""
    from PIL import Image

    from pipeline.audit import label_issues, out_of_fold_probabilities

    classes = ["airplane", "automobile", "other"]
    paths = [p for name in classes for p in sorted((ROOT / "data" / name).glob("*.jpg"))[:per_class]]
    vectors = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32)), dtype="float32").ravel() for p in paths])
    labels = np.repeat(np.arange(len(classes)), per_class)
    images = pd.DataFrame({"path": [p.relative_to(ROOT).as_posix() for p in paths], "split": "train"})
    issues = label_issues(images, labels, out_of_fold_probabilities(vectors, labels, folds=3, c=0.1, seed=0), classes)
    path.parent.mkdir(parents=True)
    issues.to_csv(path, index=False)
    return issues


@pytest.mark.skipif(not (ROOT / "data" / "airplane").is_dir(), reason="needs the team data: dvc pull data.dvc")
def test_the_audit_tab_relabels_a_team_image_into_the_review_folder(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    issues = audit_of_team_images(tmp_path / "audit" / "label_issues.csv")
    assert len(issues) > 0
    first = issues.iloc[0]
    target = next(label for label in ("airplane", "automobile", "other") if label != first.label)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_url, timeout=60_000)
            page.get_by_role("tab", name="Label audit").click(timeout=60_000)
            expect(page.get_by_text(f"{len(issues)} team images whose labels the audit doubts")).to_be_visible(timeout=90_000)
            expect(page.get_by_text(first.path)).to_be_visible(timeout=30_000)
            # The whole list drawn (the run that draws it has ended) before anything is pressed.
            expect(page.get_by_role("button", name="Relabel for review")).to_have_count(min(len(issues), 20), timeout=90_000)
            choice = page.get_by_role("radiogroup").first.get_by_role("radio", name="neither" if target == "other" else target, exact=True)
            choice.check(force=True, timeout=30_000)  # Streamlit draws its own circle over the input
            expect(choice).to_be_checked(timeout=30_000)
            page.get_by_role("button", name="Relabel for review").first.click(timeout=30_000)
            expect(page.get_by_text("Kept for the next training run as")).to_be_visible(timeout=60_000)
            kept = list((tmp_path / "review").rglob("*.png"))
            assert [p.parent.name for p in kept] == [target]
            assert (tmp_path / "review" / "remove_from_data.txt").read_text() == f"{first.path}\n"
            assert "Traceback" not in page.content()
        finally:
            browser.close()
