"""The OpenVINO runtime: a classifier exported to OpenVINO IR answers as Keras does (f32), the agreement
counts what a runtime changes, and serving through OpenVINO loads no TensorFlow."""

import subprocess
import sys

import numpy as np
from helpers.models import GAP, vgg16

from pipeline.model import build_backbone, build_classifier, build_extractor, build_head
from pipeline.served import openvino_runtime
from pipeline.served.keras_runtime import Predictor
from pipeline.served.settings import Outputs, ServingSettings

CLASSES = ["airplane", "automobile"]


def settings(**changes) -> ServingSettings:
    fields = dict(classes=CLASSES, input_size=32, source_size=None, max_pixels=10**6, weights="random init", weights_meaningful=False,
                  temperature=1.0, neither_score="other_probability", reject_threshold=0.5, accept_rate=0.9)
    return ServingSettings(**{**fields, **changes})


def test_exported_network_answers_as_keras_does_at_f32(tmp_path):
    spec = vgg16(None)
    extractor = build_extractor(spec, build_backbone(spec))
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    maps = np.asarray(extractor(images))
    head, other_head = (build_head(maps.mean(axis=(1, 2)), GAP, name) for name in ("probability", "other_probability"))
    build_classifier(extractor, head, "avg", other_head, "avg").save(tmp_path / "model.keras")
    import keras

    saved = keras.saving.load_model(tmp_path / "model.keras")
    ir = openvino_runtime.export(saved, tmp_path / "openvino")
    assert ir.exists() and ir.with_suffix(".bin").exists()
    reference = Predictor(saved)(images)
    served = openvino_runtime.OpenVINOPredictor(ir, "f32")(images)  # 40 images: two inference batches
    for name in ("probability", "other_probability", "embedding"):
        np.testing.assert_allclose(getattr(served, name), getattr(reference, name), rtol=1e-4, atol=1e-5)
    found = openvino_runtime.agreement(reference, served, settings())
    assert found.images == 40 and found.flipped_answers == 0 and found.max_probability_difference < 1e-4


def test_agreement_counts_flipped_answers_and_the_largest_differences():
    reference = Outputs(np.array([0.9, 0.2, 0.6, 0.4]), np.array([0.1, 0.1, 0.45, 0.2]), np.zeros((4, 2)))
    # Image 2 crosses the neither threshold (0.5), image 3 the class boundary; images 0 and 1 barely move.
    candidate = Outputs(np.array([0.89, 0.2, 0.6, 0.55]), np.array([0.1, 0.1, 0.55, 0.2]), np.zeros((4, 2)))
    found = openvino_runtime.agreement(reference, candidate, settings())
    assert found.flipped_answers == 2 and found.flip_rate == 0.5
    assert np.isclose(found.max_probability_difference, 0.15) and np.isclose(found.max_neither_score_difference, 0.1)


def test_serving_through_openvino_loads_no_tensorflow():
    probe = (
        "import sys, pipeline.served.pyfunc, pipeline.served.openvino_runtime, openvino; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "False False"
