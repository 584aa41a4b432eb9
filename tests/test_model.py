"""Backbone weights: a configured weights file is the one loaded; a failed download says what to do."""

import numpy as np
import pytest

from pipeline.config import BackboneConfig
from pipeline.model import WeightsUnavailable, build_backbone


def vgg16(weights):
    return BackboneConfig("vgg16", "VGG16", "vgg16", input_size=32, min_input_size=32, weights=weights)


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
