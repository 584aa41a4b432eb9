"""The Streamlit page with no SERVING_URL: it loads the champion itself -> verdicts and heatmaps for photos, st.error
for bad files, a correction kept once in the review folder."""

from __future__ import annotations

import pytest
from conftest import ROOT, encode, gradient
from helpers.serving import ANSWERS, MODEL_NAME, real_photos, register_tiny_model

pytestmark = pytest.mark.slow  # registers a model, runs the page

@pytest.fixture
def page(tmp_path_factory, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("REVIEW_DIR", str(tmp_path / "review"))
    monkeypatch.delenv("SERVING_URL", raising=False)
    monkeypatch.delenv("MODEL_URI", raising=False)  # the page's default: the configured name @champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", register_tiny_model(tmp_path_factory.getbasetemp() / "serve_store"))
    return AppTest.from_file(str(ROOT / "serve" / "app.py"), default_timeout=120).run()


def test_photos_get_a_verdict_and_bad_files_a_readable_error(page, bad_images):
    photos = real_photos(per_folder=1)
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in photos]
    files += [("wide.png", encode(gradient(4000, 3), "PNG"), "image/png")]
    files += [(f"{name}.jpg", data, "image/jpeg") for name, data in bad_images.items()]
    page.file_uploader[0].set_value(files)
    page.button[0].click().run()

    assert not page.exception
    verdicts = [m.value for m in page.markdown if "confidence" in m.value]
    assert len(verdicts) == len(photos) + 1
    assert all(any(answer in v for answer in ANSWERS) for v in verdicts)
    assert len(page.image) == len(photos) + 1
    caption = f"model {MODEL_NAME} version 1, weights: random init, runtime: openvino f32"
    assert sum(c.value == caption for c in page.caption) == len(photos) + 1
    assert sum("not meaningful" in w.value for w in page.warning) == len(photos) + 1  # the demo model is flagged
    errors = {e.value.partition(":")[0]: e.value for e in page.error}
    assert set(errors) == {f"{name}.jpg" for name in bad_images}
    assert "empty file" in errors["empty.jpg"] and "not an image" in errors["not an image.jpg"]
    assert "over the limit" in errors["pixels.jpg"]
    assert not any("Traceback" in e for e in errors.values())


def test_process_with_no_file_asks_for_one(page):
    page.button[0].click().run()
    assert not page.exception and "Pick or drop" in page.info[0].value


def test_thats_wrong_keeps_the_photo_once_in_the_review_folder_laid_out_as_data(page, tmp_path):
    photos = real_photos(per_folder=1)[:2]
    page.file_uploader[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in photos])
    page.button[0].click().run()
    answer = next(m.value for m in page.markdown if m.value.startswith(f"**{photos[0].name}**"))
    first = page.radio(key="label-0")
    label = first.options[-1]  # "neither" unless that was the answer, then the second class
    first.set_value(label)
    for _ in range(2):  # pressed twice: still one file
        page.button(key="wrong-0").click().run()
        assert not page.exception
    folder = "other" if label == "neither" else label
    kept = list((tmp_path / "review").rglob("*"))
    assert [p.relative_to(tmp_path / "review").parent.name for p in kept if p.is_file()] == [folder], (answer, kept)
    stored = next(p for p in kept if p.is_file())
    assert stored.suffix == ".png" and photos[0].stem not in stored.name  # pixels only: not the person's file name
    assert any("1 corrected photo waiting" in c.value for c in page.caption)
    assert sum("confidence" in m.value for m in page.markdown) == 2  # the answers stay on the page
