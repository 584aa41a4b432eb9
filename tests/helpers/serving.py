"""A tiny registered champion in a SQLite store, the photos it is asked about, and REST requests to a server."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.served.schema import IMAGE_COLUMN
from pipeline.store import mlflow_config

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT.parent / "shared" / "photos"
MODEL_NAME = mlflow_config().registered_model  # the page and server default to it
MAX_PIXELS = 2_000_000  # the model's pixel limit here, so the over-the-limit image stays small
ANSWERS = {"airplane", "automobile", "neither"}


def register_tiny_model(directory: Path) -> str:
    """Register a random-weight VGG16 at 32 pixels as champion in a SQLite store in directory -> its tracking URI.

    Built once per test session: a second call finds it done.
    """
    uri = f"sqlite:///{directory}/mlruns.db"
    if (directory / "done").exists():
        return uri
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from pipeline import calibration, config, tracking
    from pipeline import model as models
    from pipeline.embeddings import pooled
    from pipeline.packaging import log_candidate
    from pipeline.served import openvino_runtime
    from pipeline.served.settings import ServingSettings
    from pipeline.trained import Handover, TrainedModel
    from pipeline.weights import resolve_weights

    directory.mkdir(parents=True, exist_ok=True)
    overrides = [
        "preset=offline",
        "backbone=vgg16",
        f"mlflow.tracking_uri={uri}",
        f"mlflow.artifact_location={directory}/artifacts",
        f"mlflow.registered_model={MODEL_NAME}",
        f"data.max_pixels={MAX_PIXELS}",
    ]
    cfg = config.compose(overrides)
    spec = config.backbone_spec(cfg)
    extractor = models.build_extractor(spec, models.build_backbone(spec))
    images = np.random.default_rng(0).integers(0, 256, (8, spec.input_size, spec.input_size, 3), dtype=np.uint8)
    features = extractor.predict(images, verbose=0)
    head, other_head = (
        models.build_head(pooled(features, given.pooling), given, name) for given, name in ((cfg.head, "probability"), (cfg.neither_head, "other_probability"))
    )
    classifier = models.build_classifier(extractor, head, cfg.head.pooling, other_head, cfg.neither_head.pooling)
    stats = calibration.fit_embedding_stats(pooled(features, "avg"), np.array([0, 1] * 4))
    weights = resolve_weights(spec, None)
    settings = ServingSettings(
        classes=list(cfg.data.classes), input_size=spec.input_size, source_size=None, max_pixels=MAX_PIXELS, weights=weights.describe(),
        weights_meaningful=weights.meaningful, temperature=1.0, neither_score="max_probability", reject_threshold=0.45,
        accept_rate=0.95, embedding_stats=stats,
        runtime="openvino", openvino_precision="f32",  # served as register serves a model that agrees with Keras
    )
    ir_dir = openvino_runtime.export(classifier, directory / "openvino").parent
    example = next((PHOTOS / "airplane").glob("*.jpg")).read_bytes()

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # it wins over the config; never write to another store
    try:
        with tracking.backbone_run(cfg) as run:  # as train starts the backbone's run
            handover = Handover(run.info.run_id, spec.name, weights, source_size=None)
        trained = TrainedModel.write(directory / "model", classifier, pd.DataFrame(), stats, "# tiny test model\n", handover)
        logged = log_candidate(cfg, trained, settings, ir_dir, example)
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", logged.registered_model_version)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    (directory / "done").touch()
    return uri


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def split(*images: bytes) -> dict:
    return {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[b64(image)] for image in images]}}


def post(url: str, body, content_type: str = "application/json") -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def real_photos(per_folder: int) -> list[Path]:
    return [path for folder in ("airplane", "automobile", "other") for path in sorted((PHOTOS / folder).glob("*.jpg"))[:per_folder]]
