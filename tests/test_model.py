"""Backbone and heads: weights resolved and loaded (the DVC-tracked file, offline), failed download
explained, bfloat16 precision, variance floor, named outputs."""

import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import ROOT
from helpers.models import GAP, vgg16

from pipeline import config
from pipeline.model import (
    VARIANCE_FLOOR,
    WeightsUnavailable,
    build_backbone,
    build_classifier,
    build_extractor,
    build_head,
)
from pipeline.served.keras_runtime import Predictor
from pipeline.weights import resolve_weights, sha256

MOBILENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every download goes to a closed port here) and an empty Keras cache."""
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def dvc_recorded_md5(folder: str, name: str) -> str:
    """The md5 DVC records for folder/name: its .dvc file names the directory listing in the cache."""
    import yaml

    listing_md5 = yaml.safe_load((ROOT / f"{folder}.dvc").read_text())["outs"][0]["md5"]
    listing = ROOT / ".dvc/cache/files/md5" / listing_md5[:2] / listing_md5[2:]
    return next(entry["md5"] for entry in json.loads(listing.read_text()) if entry["relpath"] == name)


@pytest.mark.skipif(not (ROOT / "weights" / MOBILENET_FILE).exists(), reason="needs `dvc pull weights.dvc`")
def test_imagenet_weights_come_from_the_dvc_tracked_file_with_no_network(offline):
    import hashlib

    cfg = config.compose(["backbone=mobilenet_v2", f"paths.weights={ROOT / 'weights'}"])
    spec = config.backbone_spec(cfg)
    assert spec.weights == "imagenet"
    source = resolve_weights(spec, cfg.paths.weights)
    path = Path(source.path)
    assert path == ROOT / "weights" / MOBILENET_FILE and source.sha256 == sha256(path)
    assert hashlib.md5(path.read_bytes()).hexdigest() == dvc_recorded_md5("weights", MOBILENET_FILE)

    backbone = build_backbone(spec, cfg.paths.weights)  # would fail at the closed port if it downloaded
    with h5py.File(path, "r") as weights:
        kernel = np.asarray(weights["Conv1"]["Conv1"]["kernel:0"])
    np.testing.assert_array_equal(backbone.get_layer("Conv1").get_weights()[0], kernel)


def test_weights_resolve_project_folder_then_keras_cache_then_download(offline, tmp_path):
    spec = vgg16("imagenet")
    cache = tmp_path / "keras_home" / "models"
    project = tmp_path / "weights"
    assert resolve_weights(spec, project).path is None  # neither has it: Keras would download
    cache.mkdir(parents=True)
    (cache / spec.weights_file).write_bytes(b"cached")
    assert resolve_weights(spec, project).path == str(cache / spec.weights_file)
    project.mkdir()
    (project / spec.weights_file).write_bytes(b"tracked")
    found = resolve_weights(spec, project)
    assert found.path == str(project / spec.weights_file) and found.kind == "imagenet" and found.meaningful
    assert not resolve_weights(vgg16(None), project).meaningful


def test_configured_weights_file_is_the_one_loaded(tmp_path):
    saved = build_backbone(vgg16(None))
    path = tmp_path / "vgg16_notop.weights.h5"
    saved.save_weights(path)

    loaded = build_backbone(vgg16(str(path)))
    fresh = build_backbone(vgg16(None))
    for a, b in zip(saved.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), fresh.get_weights()))


def test_failed_imagenet_download_names_the_file_and_the_options(offline, tmp_path):
    # The real download path, routed to a closed port on this machine so that it fails fast.
    with pytest.raises(WeightsUnavailable) as error:
        build_backbone(vgg16("imagenet"), tmp_path / "weights")
    message = str(error.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "dvc pull weights.dvc" in message and str(tmp_path / "keras_home" / "models") in message
    assert "backbones.vgg16.weights" in message


def test_bfloat16_backbone_gives_float32_embeddings_close_to_float32_and_survives_saving(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    build_backbone(vgg16(None)).save_weights(path)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    full = build_extractor(vgg16(None), build_backbone(vgg16(str(path))))
    half = build_extractor(vgg16(None), build_backbone(vgg16(str(path), "mixed_bfloat16")))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in half.get_layer("vgg16").layers)

    expected, got = full.predict(images, verbose=0), half.predict(images, verbose=0)
    assert got.dtype == np.float32
    assert np.abs(got - expected).mean() / np.abs(expected).mean() < 0.03

    pooled = got.mean(axis=(1, 2))
    head, other_head = (build_head(pooled, GAP, name) for name in ("probability", "other_probability"))
    classifier = build_classifier(half, head, "avg", other_head, "avg")
    classifier.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    before, after = Predictor(classifier)(images), Predictor(loaded)(images)
    for name in ("probability", "other_probability", "embedding"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name), rtol=1e-5)
    assert after.probability.shape == (4,) and after.embedding.shape == (4, 512)
    np.testing.assert_allclose(after.embedding, pooled, rtol=1e-3, atol=1e-3)  # the embedding output is the pooled map


def test_head_standardisation_floors_the_variance_of_a_dead_feature():
    embeddings = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    embeddings[..., 0] = 0.0  # a ReLU unit that never fires on the training images
    head = build_head(embeddings, GAP, "probability")
    variance = keras.ops.convert_to_numpy(head.get_layer("standardise").variance).ravel()
    assert variance[0] >= VARIANCE_FLOOR * variance.mean() * 0.99
    firing = np.zeros((1, 8), "float32")
    firing[..., 0] = 1.0
    standardised = keras.Model(head.input, head.get_layer("standardise").output)(firing)
    assert np.abs(keras.ops.convert_to_numpy(standardised)).max() < 100


def test_the_served_code_imports_nothing_of_training():
    """What the registered model loads must be covered by its own pip requirements (tensorflow,
    keras, openvino, pillow, numpy, pandas, scikit-learn) and its code_paths (pipeline/served/ only)."""
    import subprocess
    import sys

    # Through OpenVINO, as registered champions serve; Keras itself imports matplotlib and scikit-learn,
    # so on the Keras runtime only lint-imports can tell that our own code does not.
    probe = (
        "import sys, pipeline.served.pyfunc, pipeline.served.openvino_runtime; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'omegaconf', 'hydra', 'dvc', 'matplotlib', 'sklearn'}), "
        "sorted(m for m in sys.modules if m.startswith('pipeline') and not m.startswith(('pipeline.served', 'pipeline.__'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "[] ['pipeline']"


def test_a_logistic_head_is_the_regression_with_the_best_validation_loss_inside_a_keras_head():
    """head=logistic: scikit-learn fits one logistic regression per C, validation log loss picks one, and the saved
    Keras head (standardise -> Dense) gives its probabilities, so export, serving and Grad-CAM are unchanged."""
    from omegaconf import OmegaConf
    from sklearn.linear_model import LogisticRegression

    from pipeline.heads import fit_known_head

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400).astype("float32")
    x = (rng.normal(size=(400, 50)) + y[:, None] * 0.3).astype("float32") * 7.0 + 3.0  # unstandardised, as backbones are
    cfg = OmegaConf.create({"head": {"name": "logistic", "pooling": "avg", "hidden_units": 0, "dropout": 0.0, "fit": "logistic", "c_grid": [1e-4, 1e-2, 1.0]}})
    head, history = fit_known_head(cfg, x[:300], y[:300], (x[300:], y[300:]), verbose=0)
    assert list(history.c) == [1e-4, 1e-2, 1.0] and history.val_loss.notna().all()
    best_c = history.c[history.val_loss.idxmin()]
    z = (x - x[:300].mean(axis=0)) / x[:300].std(axis=0)
    reference = LogisticRegression(C=best_c, max_iter=2000).fit(z[:300], y[:300]).predict_proba(z[300:])[:, 1]
    np.testing.assert_allclose(np.asarray(head(x[300:])).ravel(), reference, atol=2e-3)


def test_versions_registered_before_the_move_find_their_class_and_layer():
    """Their pickle names pipeline.served_model.ImageClassifier, their model.keras the layer "pipeline>BackbonePreprocess"."""
    import importlib

    from pipeline.served.keras_runtime import BackbonePreprocess
    from pipeline.served.pyfunc import ImageClassifier

    assert importlib.import_module("pipeline.served_model").ImageClassifier is ImageClassifier
    assert keras.saving.get_registered_object("pipeline>BackbonePreprocess") is BackbonePreprocess
