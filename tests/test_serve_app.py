"""The Streamlit page with no SERVING_URL: it loads the champion itself -> verdicts for photos, st.error for bad files."""

from __future__ import annotations

import pytest
from conftest import ROOT, encode, gradient
from test_serve_rest import ANSWERS, MODEL_NAME, real_photos, register_tiny_model

pytestmark = pytest.mark.slow  # registers a model, runs the page

@pytest.fixture
def page(tmp_path_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest

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
