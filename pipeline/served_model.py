"""The registered MLflow pyfunc model: a DataFrame of image bytes -> one verdict row per image.

Everything serving needs travels inside the model artifact: the Keras model (preprocessing
included), the class names, the input size and the "neither" threshold, plus the config that made it.
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.images import ImageError, load_image

IMAGE_COLUMN = "image"
NEITHER = "neither"


def neither_score(p_positive: np.ndarray) -> np.ndarray:
    """How unsure the head is, 0 (certain) to 0.5 (a coin toss): high means the "neither" answer."""
    return 0.5 - np.abs(np.asarray(p_positive) - 0.5)


def verdicts(p_positive: np.ndarray, classes: list[str], threshold: float) -> pd.DataFrame:
    """Head probabilities -> answer, per-class probabilities and the score behind "neither"."""
    p_positive = np.asarray(p_positive, dtype="float64")
    scores = neither_score(p_positive)
    answers = np.where(scores > threshold, NEITHER, np.where(p_positive >= 0.5, classes[1], classes[0]))
    return pd.DataFrame(
        {
            "answer": answers,
            f"p_{classes[0]}": 1.0 - p_positive,
            f"p_{classes[1]}": p_positive,
            "neither_score": scores,
            "neither_threshold": threshold,
        }
    )


class ImageClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        import pipeline.model  # noqa: F401  registers the custom preprocessing layer

        self.model = keras.saving.load_model(context.artifacts["keras_model"])
        with open(context.artifacts["model_info"]) as f:
            self.info = json.load(f)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if IMAGE_COLUMN not in model_input:
            raise MlflowException(f"missing column {IMAGE_COLUMN!r} of image bytes", INVALID_PARAMETER_VALUE)
        images = []
        for i, data in enumerate(model_input[IMAGE_COLUMN]):
            try:
                images.append(load_image(data, self.info["input_size"], self.info["max_pixels"]))
            except ImageError as err:
                raise MlflowException(f"image {i}: {err}", INVALID_PARAMETER_VALUE) from None
        p_positive = self.model.predict(np.stack(images), verbose=0).ravel()
        return verdicts(p_positive, self.info["classes"], self.info["reject_threshold"])
