"""Grad-CAM: a heatmap per image and answer, on the backbone's feature-map grid, in [0, 1]; laid over a photo of any shape."""

import keras
import numpy as np
from helpers.models import GAP
from PIL import Image

from pipeline import gradcam
from pipeline.config import BackboneConfig
from pipeline.model import build_backbone, build_classifier, build_extractor, build_head

CLASSES = ["airplane", "automobile"]


def test_heatmaps_follow_the_image_and_the_answer():
    keras.utils.set_random_seed(0)  # a random-init network: the same one on every run
    spec = BackboneConfig("vgg16", "VGG16", "vgg16", input_size=96, min_input_size=32, weights=None,
                          weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    extractor = build_extractor(spec, build_backbone(spec))
    images = np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    maps = np.asarray(extractor(images))  # (8, 3, 3, 512)
    head, other_head = (build_head(maps.mean(axis=(1, 2)), GAP, name) for name in ("probability", "other_probability"))
    model = build_classifier(extractor, head, "avg", other_head, "avg")

    found = gradcam.heatmaps(model, images[:2], ["airplane", "airplane"], CLASSES)
    # Each map is scaled to a peak of 1; one with no evidence for the answer at all stays 0.
    assert found.shape == (2, 3, 3) and found.min() >= 0 and np.isclose(found.max(axis=(1, 2)), 1).any()
    assert all(np.isclose(peak, 1) or peak == 0 for peak in found.max(axis=(1, 2)))
    assert not np.allclose(found[0], found[1])  # two photos, two heatmaps
    both = gradcam.heatmaps(model, images[:1].repeat(2, axis=0), ["airplane", "automobile"], CLASSES)
    assert not np.allclose(both[0], both[1])  # the evidence for one class is not the evidence for the other
    assert gradcam.heatmaps(model, images[:1], ["neither"], CLASSES).shape == (1, 3, 3)

    photo = Image.new("RGB", (300, 200), "white")
    assert gradcam.overlay(photo, found[0]).size == (300, 200)
