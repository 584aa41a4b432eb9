"""A trained model + the settings evaluate fitted -> a pyfunc model logged in MLflow and registered:
its signature, pinned requirements and code_paths (only pipeline/served/)."""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from omegaconf import DictConfig

import pipeline
from pipeline import tracking
from pipeline.served.pyfunc import ImageClassifier
from pipeline.served.schema import IMAGE_COLUMN, ON_BAD_IMAGE, REFUSED, verdict_columns
from pipeline.served.settings import ServingSettings
from pipeline.trained import TrainedModel

PIPELINE = Path(pipeline.__file__).parent
SERVING_PACKAGES = ("keras", "openvino", "pillow", "numpy", "pandas", "scikit-learn")  # and TensorFlow: see serving_requirements


def serving_requirements() -> list[str]:
    """The served model's pip requirements, pinned as installed here, TensorFlow under the name of the
    distribution actually installed (tensorflow-cpu, or tensorflow where that has no wheel or on a GPU host)."""
    from importlib.metadata import PackageNotFoundError

    try:
        tensorflow = f"tensorflow-cpu=={version('tensorflow-cpu')}"
    except PackageNotFoundError:
        tensorflow = f"tensorflow=={version('tensorflow')}"
    return [tensorflow, *(f"{name}=={version(name)}" for name in SERVING_PACKAGES)]


def signature(classes: list[str]) -> ModelSignature:
    outputs = [ColSpec(kind, name, required=name != REFUSED) for name, kind in verdict_columns(classes).items()]  # REFUSED: only with on_bad_image=report
    params = ParamSchema([ParamSpec(ON_BAD_IMAGE, "string", "fail")])
    return ModelSignature(inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]), outputs=Schema(outputs), params=params)


def served_code(folder: Path) -> Path:
    """folder/pipeline: the package with only served/ in it, what the model ships as its code_paths.

    Loaded in a fresh process, the model then finds no other pipeline/ module: the served box stays closed.
    """
    package = folder / "pipeline"
    shutil.copytree(PIPELINE / "served", package / "served", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text('"""The served part of the pipeline package, as a registered model ships it."""\n')
    return package


def log_candidate(cfg: DictConfig, trained: TrainedModel, settings: ServingSettings, ir_dir: Path, example: bytes):
    """Log the candidate as a pyfunc model in its backbone's run and register a new version."""
    with tempfile.TemporaryDirectory() as tmp:
        settings.save(f"{tmp}/serving")  # as evaluate fitted it, with the runtime chosen here
        artifacts = {"keras_model": str(trained.model_file), "serving_settings": f"{tmp}/serving", "config": str(trained.config_file)}
        if settings.runtime == "openvino":
            artifacts["openvino_model"] = str(ir_dir)
        with tracking.backbone_run(cfg, trained.handover().run_id):
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=ImageClassifier(),
                artifacts=artifacts,
                code_paths=[str(served_code(Path(tmp)))],
                signature=signature(list(cfg.data.classes)),
                input_example=pd.DataFrame({IMAGE_COLUMN: [example]}),
                pip_requirements=serving_requirements(),
                registered_model_name=cfg.mlflow.registered_model,
            )
