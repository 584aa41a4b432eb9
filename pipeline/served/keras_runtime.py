"""A saved Keras classifier -> Outputs for raw images: the custom preprocessing layer its file names, and one compiled forward pass.

Training builds the layer into every model it saves (pipeline/model.py); the served model, when
Keras is its runtime, loads the file with it registered.
"""

from __future__ import annotations

import importlib

import keras
import numpy as np

from pipeline.served.settings import Outputs


# Registered as "pipeline>BackbonePreprocess": the name every saved model.keras carries, before and after this module moved.
@keras.saving.register_keras_serializable(package="pipeline")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own keras.applications.<module>.preprocess_input, as a saveable layer."""

    def __init__(self, module: str, **kwargs):
        super().__init__(**kwargs)
        self.module = module
        self._preprocess = importlib.import_module(f"keras.applications.{module}").preprocess_input

    def call(self, images):
        return self._preprocess(keras.ops.cast(images, "float32"))

    def get_config(self):
        return {**super().get_config(), "module": self.module}


class Predictor:
    """Raw images -> Outputs, the backbone run once for all of them.

    One compiled `tf.function` over the whole model, called per batch: `predict()` rebuilds its data
    pipeline on every call, which costs more than a small model's forward pass when serving one image.
    """

    def __init__(self, model: keras.Model, batch_size: int = 32):
        import tensorflow as tf

        self.batch_size = batch_size
        self.step = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> Outputs:
        return Outputs.from_batches([self.step(images[start : start + self.batch_size]) for start in range(0, len(images), self.batch_size)])
