"""The registered MLflow pyfunc model: a DataFrame of image bytes -> one verdict row per image.

Everything serving needs travels inside the model artifact: the Keras model (preprocessing
included), the class names, the input size, the temperature, the "neither" score with its
threshold and the embedding statistics it needs, the weights it was built from, the config that
made it and its model card. Every answer names the model version and its weights
(`model_weights`: "random init" means the answers are not meaningful).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline import calibration
from pipeline.images import ImageError, load_image

IMAGE_COLUMN = "image"
# Pillow releases the GIL while it decodes, so the images of a batch decode in parallel. Measured on 2 cores
# (benchmarks/README.md, Serving): 16 one-megapixel JPEGs for the 32-pixel model decode in 23.7 ms one after
# another, 13.6 ms on 2 threads, beside a 54 ms forward; a single image is decoded inline.
DECODE_THREADS = 2


def verdicts(p_positive: np.ndarray, scores: np.ndarray, classes: list[str], threshold: float) -> pd.DataFrame:
    """Calibrated probabilities and "neither" scores -> answer, per-class probabilities, the score."""
    return pd.DataFrame(
        {
            "answer": calibration.answers(p_positive, scores, threshold, classes),
            f"p_{classes[0]}": 1.0 - p_positive,
            f"p_{classes[1]}": p_positive,
            "neither_score": scores,
            "neither_threshold": threshold,
        }
    )


def registered_as(model_dir: Path, default_name: str) -> tuple[str, str]:
    """(registered model name, version) of a loaded model.

    MLflow writes `registered_model_meta` into the model folder when it fetches a `models:/` URI
    (what `mlflow models serve -m models:/...@champion` and the Dockerfile's download do); a model
    loaded from a run or a path has none, and is answered as version "unregistered".
    """
    meta = model_dir / "registered_model_meta"
    if not meta.exists():
        return default_name, "unregistered"
    fields = yaml.safe_load(meta.read_text())
    return str(fields["model_name"]), str(fields["model_version"])


class ImageClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        import pipeline.model  # registers the custom preprocessing layer

        self.predictor = pipeline.model.Predictor(keras.saving.load_model(context.artifacts["keras_model"]))
        with open(context.artifacts["model_info"]) as f:
            self.info = json.load(f)
        self.embedding_stats = dict(np.load(context.artifacts["embedding_stats"]))
        model_dir = Path(context.artifacts["model_info"]).parent.parent  # <model>/artifacts/model_info.json
        self.model_name, self.model_version = registered_as(model_dir, self.info["registered_model"])
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or IMAGE_COLUMN not in model_input:
            raise MlflowException(
                f"expected a column {IMAGE_COLUMN!r} of image bytes (dataframe_split or dataframe_records, base64)",
                INVALID_PARAMETER_VALUE,
            )
        if model_input.empty:
            raise MlflowException("empty batch: send at least one image", INVALID_PARAMETER_VALUE)
        column = list(model_input[IMAGE_COLUMN])
        for i, data in enumerate(column):
            if not isinstance(data, bytes):
                # A str would be read as a file path by Pillow: never open server files on request.
                raise MlflowException(f"image {i}: expected image bytes, got {type(data).__name__}", INVALID_PARAMETER_VALUE)

        def load(data: bytes):
            try:
                return load_image(data, self.info["input_size"], self.info["max_pixels"])
            except ImageError as err:
                return err

        images = [load(column[0])] if len(column) == 1 else list(self.decoder.map(load, column))
        for i, image in enumerate(images):
            if isinstance(image, ImageError):
                raise MlflowException(f"image {i}: {image}", INVALID_PARAMETER_VALUE)
        out = self.predictor(np.stack(images))
        p_positive = calibration.apply_temperature(out.probability, self.info["temperature"])
        scores = calibration.neither_score(self.info["neither_score"], p_positive, out.other_probability, out.embedding, self.embedding_stats)
        answer = verdicts(p_positive, scores, self.info["classes"], self.info["reject_threshold"])
        return answer.assign(model_name=self.model_name, model_version=self.model_version, model_weights=self.info["weights"])
