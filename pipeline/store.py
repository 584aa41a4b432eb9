"""conf/mlflow/default.yaml and MLFLOW_TRACKING_URI -> where the MLflow store is: what serving needs of the config, with no training schema.

The pipeline's config (pipeline.config) types the same file as its `mlflow` group; the serving side
reads it here with PyYAML alone, so the server, the page and the client load no OmegaConf or Hydra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class MlflowConfig:
    tracking_uri: str
    artifact_location: str
    experiment: str
    registered_model: str
    champion_alias: str
    challenger_alias: str  # a registered version that did not beat the champion


def project_root() -> Path:
    """The project checkout: DVC_ROOT under `dvc exp run` (a queued experiment runs in a temporary
    copy, and its runs and versions must land in the project's own store), else this code's checkout."""
    return Path(os.environ.get("DVC_ROOT") or CONF_DIR.parent)


def tracking_store(conf: MlflowConfig) -> tuple[str, str]:
    """(tracking URI, artifact root URI): MLFLOW_TRACKING_URI when set (a team server), else the
    configured embedded store with its relative paths anchored at the project root, so every stage,
    `mlflow run`, a queued experiment, the server and the page all open the same store."""
    artifacts = (project_root() / conf.artifact_location).resolve().as_uri()
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], artifacts
    prefix, uri = "sqlite:///", conf.tracking_uri
    if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
        uri = prefix + str(project_root() / uri[len(prefix) :])
    return uri, artifacts


def mlflow_config() -> MlflowConfig:
    """conf/mlflow/default.yaml, typed; a missing or unknown key is named."""
    path = CONF_DIR / "mlflow" / "default.yaml"
    values = yaml.safe_load(path.read_text()) or {}
    expected = {f.name for f in fields(MlflowConfig)}
    if set(values) != expected:
        raise ValueError(f"{path}: expected the keys {sorted(expected)}, found {sorted(values)}")
    return MlflowConfig(**{key: str(value) for key, value in values.items()})


def project_path(key: str) -> Path:
    """A path the pipeline writes (conf/paths/default.yaml's `key`), under the project root: where the page reads the audit."""
    path = CONF_DIR / "paths" / "default.yaml"
    values = yaml.safe_load(path.read_text()) or {}
    if key not in values:
        raise ValueError(f"{path}: no key {key!r}")
    return project_root() / values[key]
