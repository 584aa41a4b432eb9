"""The Streamlit page with no SERVING_URL: it loads the champion itself -> verdicts and heatmaps for photos, st.error
for bad files, a correction kept once in the review folder, and the version @champion names now."""

from __future__ import annotations

import time

import pytest
from conftest import ROOT, encode, gradient
from helpers.serving import ANSWERS, MODEL_NAME, real_photos, register_tiny_model

pytestmark = pytest.mark.slow  # registers a model, runs the page

@pytest.fixture
def page(tmp_path_factory, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("REVIEW_DIR", str(tmp_path / "review"))
    monkeypatch.setenv("AUDIT_FILE", str(tmp_path / "audit" / "label_issues.csv"))  # none: the tab says how to make one
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


def test_the_page_follows_the_alias_to_a_new_version(tmp_path_factory, monkeypatch, tmp_path):
    """@champion moves from v1 to v2 in a real store: once SERVE_ALIAS_SECONDS have passed, the page's
    next answer is v2's, without a restart."""
    from mlflow import MlflowClient
    from streamlit.testing.v1 import AppTest

    uri = register_tiny_model(tmp_path_factory.mktemp("page_alias_store"))  # its own store: the others' champion stays v1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SERVE_ALIAS_SECONDS", "1")
    monkeypatch.setenv("REVIEW_DIR", str(tmp_path / "review"))
    monkeypatch.delenv("SERVING_URL", raising=False)
    monkeypatch.delenv("MODEL_URI", raising=False)
    photo = real_photos(per_folder=1)[0]

    def answered_by(page) -> list[str]:
        page.file_uploader[0].set_value([(photo.name, photo.read_bytes(), "image/jpeg")])
        page.button[0].click().run()
        assert not page.exception
        return [c.value for c in page.caption if c.value.startswith(f"model {MODEL_NAME} version")]

    page = AppTest.from_file(str(ROOT / "serve" / "app.py"), default_timeout=120).run()
    assert answered_by(page) == [f"model {MODEL_NAME} version 1, weights: random init, runtime: openvino f32"]
    client = MlflowClient(uri)
    v1 = client.get_model_version_by_alias(MODEL_NAME, "champion")
    v2 = client.create_model_version(MODEL_NAME, v1.source, run_id=v1.run_id)
    client.set_registered_model_alias(MODEL_NAME, "champion", v2.version)
    time.sleep(1.5)  # past SERVE_ALIAS_SECONDS: the page resolves the alias again
    assert answered_by(page) == [f"model {MODEL_NAME} version {v2.version}, weights: random init, runtime: openvino f32"]
