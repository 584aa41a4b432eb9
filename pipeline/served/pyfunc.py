"""The registered MLflow pyfunc model: a DataFrame of image bytes -> one verdict row per image.

Everything serving needs travels inside the model artifact: the Keras model (preprocessing
included, named outputs), the same network as OpenVINO IR, and the ServingSettings evaluate fitted
and register completed (class names, input size, temperature, the "neither" score with its threshold
and embedding statistics, the weights it was built from, the runtime). Every answer names the model
version, its weights (`model_weights`: "random init" means the answers are not meaningful) and the
runtime that computed it (`model_runtime`). Imports no config, Hydra or DVC code: the model's own
requirements and pipeline/served/ (all its code_paths ship) are all it needs.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.served.images import ImageError, load_views
from pipeline.served.schema import IMAGE_COLUMN, MODEL_COLUMNS, ON_BAD_IMAGE, REFUSED
from pipeline.served.settings import Outputs, ServingSettings

# Pillow releases the GIL while it decodes, so the images of a batch decode in parallel. Measured on 2 cores
# (benchmarks/README.md, Serving): 16 one-megapixel JPEGs for the 32-pixel model decode in 23.7 ms one after
# another, 13.6 ms on 2 threads, beside a 54 ms forward; a single image is decoded inline.
DECODE_THREADS = 2
BATCH = 16  # images per forward pass (each with its views: ServingSettings.view_sizes); a request past the server's timeout stops between two (serving_deadline)
UNREGISTERED = "unregistered"


def registered_as(model_dir: Path) -> tuple[str, str]:
    """(registered model name, version) of a loaded model.

    MLflow writes `registered_model_meta` into the model folder when it fetches a `models:/` URI
    (what `mlflow models serve -m models:/...@champion` and the Dockerfile's download do); a model
    loaded from a run or a path has none, and answers as "unregistered".
    """
    meta = model_dir / "registered_model_meta"
    if not meta.exists():
        return UNREGISTERED, UNREGISTERED
    fields = yaml.safe_load(meta.read_text())
    return str(fields["model_name"]), str(fields["model_version"])


def load_predictor(settings: ServingSettings, artifacts: dict):
    """The network on the runtime the settings name: images -> Outputs. OpenVINO loads no TensorFlow."""
    if settings.runtime == "openvino":
        from pipeline.served.openvino_runtime import IR_FILE, OpenVINOPredictor

        return OpenVINOPredictor(Path(artifacts["openvino_model"]) / IR_FILE, settings.openvino_precision)
    import keras

    from pipeline.served.keras_runtime import Predictor  # registers the custom preprocessing layer too

    return Predictor(keras.saving.load_model(artifacts["keras_model"]))


def serving_deadline() -> float | None:
    """When a request's work must stop (time.monotonic()), inside a scoring server; None elsewhere.

    `mlflow models serve` (and serve.asgi) answer 504 after MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    seconds but cannot stop the prediction's thread; the model stops itself instead, between batches.
    """
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT as TIMEOUT

    return time.monotonic() + TIMEOUT.get() if TIMEOUT.is_set() else None


class ImageClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.settings = ServingSettings.load(context.artifacts["serving_settings"])
        self.predictor = load_predictor(self.settings, context.artifacts)
        model_dir = Path(context.artifacts["serving_settings"]).parent.parent  # <model>/artifacts/serving
        self.model_name, self.model_version = registered_as(model_dir)
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or IMAGE_COLUMN not in model_input:
            raise MlflowException(
                f"expected a column {IMAGE_COLUMN!r} of image bytes (dataframe_split or dataframe_records, base64)",
                INVALID_PARAMETER_VALUE,
            )
        if model_input.empty:
            raise MlflowException("empty batch: send at least one image", INVALID_PARAMETER_VALUE)
        on_bad_image = (params or {}).get(ON_BAD_IMAGE, "fail")
        if on_bad_image not in ("fail", "report"):
            raise MlflowException(f"{ON_BAD_IMAGE} must be 'fail' or 'report', not {on_bad_image!r}", INVALID_PARAMETER_VALUE)
        column = list(model_input[IMAGE_COLUMN])
        for i, data in enumerate(column):
            if not isinstance(data, bytes):
                # A str would be read as a file path by Pillow: never open server files on request.
                raise MlflowException(f"image {i}: expected image bytes, got {type(data).__name__}", INVALID_PARAMETER_VALUE)

        view_sizes = self.settings.view_sizes

        def load(data: bytes):
            try:
                return load_views(data, self.settings.input_size, view_sizes, self.settings.max_pixels)
            except ImageError as err:
                return err

        deadline = serving_deadline()
        images = [load(column[0])] if len(column) == 1 else list(self.decoder.map(load, column))
        refused = {i: str(image) for i, image in enumerate(images) if isinstance(image, ImageError)}
        if refused and on_bad_image == "fail":
            i = min(refused)
            raise MlflowException(f"image {i}: {refused[i]}", INVALID_PARAMETER_VALUE)
        good = [i for i in range(len(images)) if i not in refused]
        batches = []
        for start in range(0, len(good), BATCH):
            if deadline is not None and time.monotonic() > deadline:
                raise MlflowException(f"stopped after {start} of {len(good)} images: the request timed out")
            batches.append(self.predictor(np.concatenate([images[i] for i in good[start : start + BATCH]])))
        channels = self.settings.embedding_stats.channels
        outputs = Outputs.from_batches([vars(batch) for batch in batches]).mean_over_views(len(view_sizes)) if batches else Outputs.empty(channels)
        rows = self.settings.verdicts(outputs).set_axis(good).reindex(range(len(images)))  # a refused image: an empty row
        which = (self.model_name, self.model_version, self.settings.weights, self.settings.runtime_label)
        rows = rows.assign(**dict(zip(MODEL_COLUMNS, which, strict=True)))
        if on_bad_image == "report":  # batch scoring: one bad file must not fail the job; each says why
            # Text, never None: spark_udf casts a text column holding None to the text "nan".
            rows["answer"] = rows["answer"].fillna("")
            rows[REFUSED] = [refused.get(i, "") for i in range(len(images))]
        return rows
