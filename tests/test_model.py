"""Backbone and head: weights file loaded, failed download explained, bfloat16 precision, variance floor."""

import keras
import numpy as np
import pytest

from pipeline.config import BackboneConfig, HeadConfig
from pipeline.model import VARIANCE_FLOOR, Predictor, WeightsUnavailable, assemble, build_backbone, build_extractor, build_head


def vgg16(weights, precision="float32"):
    return BackboneConfig("vgg16", "VGG16", "vgg16", input_size=32, min_input_size=32, weights=weights, precision=precision)


def test_configured_weights_file_is_the_one_loaded(tmp_path):
    saved = build_backbone(vgg16(None))
    path = tmp_path / "vgg16_notop.weights.h5"
    saved.save_weights(path)

    loaded = build_backbone(vgg16(str(path)))
    fresh = build_backbone(vgg16(None))
    for a, b in zip(saved.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), fresh.get_weights()))


def test_failed_imagenet_download_names_the_file_and_the_options(monkeypatch):
    from pathlib import Path

    if (Path.home() / ".keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").exists():
        pytest.skip("the ImageNet weights are cached here, so no download is attempted")
    # Route the download to a closed port on this machine: the real download path, failing fast.
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(WeightsUnavailable) as error:
        build_backbone(vgg16("imagenet"))
    message = str(error.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "~/.keras/models/" in message and "backbones.vgg16.weights" in message


def test_bfloat16_backbone_gives_float32_embeddings_close_to_float32_and_survives_saving(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    build_backbone(vgg16(None)).save_weights(path)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    full = build_extractor(vgg16(None), build_backbone(vgg16(str(path))))
    half = build_extractor(vgg16(None), build_backbone(vgg16(str(path), "mixed_bfloat16")))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in half.layers[-1].layers)

    expected, got = full.predict(images, verbose=0), half.predict(images, verbose=0)
    assert got.dtype == np.float32
    assert np.abs(got - expected).mean() / np.abs(expected).mean() < 0.03

    classifier = assemble(half, build_head(got, HeadConfig("gap", "avg", 0, 0.0)))
    classifier.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(Predictor(loaded)(images)[0], Predictor(classifier)(images)[0], rtol=1e-5)


def test_head_standardisation_floors_the_variance_of_a_dead_feature():
    embeddings = np.random.default_rng(0).normal(size=(64, 1, 1, 8)).astype("float32")
    embeddings[..., 0] = 0.0  # a ReLU unit that never fires on the training images
    head = build_head(embeddings, HeadConfig("gap", "avg", 0, 0.0))
    variance = keras.ops.convert_to_numpy(head.get_layer("standardise").variance).ravel()
    assert variance[0] >= VARIANCE_FLOOR * variance.mean() * 0.99
    firing = np.zeros((1, 1, 1, 8), "float32")
    firing[..., 0] = 1.0
    standardised = keras.Model(head.input, head.get_layer("standardise").output)(firing)
    assert np.abs(keras.ops.convert_to_numpy(standardised)).max() < 100
