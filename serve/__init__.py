"""Serving the registered model: where it is (model_uri) and how to read one verdict row (confidence, reason, warning)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.store import mlflow_config, tracking_store

ROOT = Path(__file__).resolve().parent.parent
# A model URI naming an alias is followed: resolved again this often, a new version swapped in without
# a restart (serve.asgi.AliasFollower; the page reloads it), so a champion `dvc repro` promotes is served within a minute.
DEFAULT_ALIAS_SECONDS = 30.0
ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


def model_uri() -> str:
    """MODEL_URI if set, else the configured registered model under its champion alias."""
    conf = mlflow_config()
    return os.environ.get("MODEL_URI") or f"models:/{conf.registered_model}@{conf.champion_alias}"


def alias_seconds() -> float:
    """How often a models:/NAME@ALIAS URI is resolved again (SERVE_ALIAS_SECONDS; 0: never, as for a pinned version)."""
    return float(os.environ.get("SERVE_ALIAS_SECONDS", DEFAULT_ALIAS_SECONDS))


def by_version(uri: str) -> tuple[str, str, int] | None:
    """models:/NAME@ALIAS -> (models:/NAME/VERSION of the version the alias names now, NAME@ALIAS, VERSION); None for any other URI."""
    found = ALIAS_URI.match(uri)
    if not found:
        return None
    from mlflow import MlflowClient

    version = MlflowClient().get_model_version_by_alias(found["name"], found["alias"]).version
    return f"models:/{found['name']}/{version}", f"{found['name']}@{found['alias']}", version


def use_tracking_store() -> str:
    """Point MLflow at the pipeline's store (MLFLOW_TRACKING_URI wins), from any working directory; its URI.

    Through mlflow.set_tracking_uri, which wins over the variable inside this process (an earlier call
    would otherwise keep its store) and exports it to child processes.
    """
    import mlflow

    uri = tracking_store(mlflow_config())[0]
    mlflow.set_tracking_uri(uri)
    return uri


def confidence(row: dict) -> float:
    """How sure the answer is: the probability of the class answered; for "neither", the larger one."""
    probabilities = {key[2:]: value for key, value in row.items() if key.startswith("p_")}
    return probabilities.get(row["answer"], max(probabilities.values()))


def reason(row: dict) -> str:
    """Why the answer is "neither", in one line (empty for a class answer)."""
    if row["answer"] != "neither":
        return ""
    return (
        f"unlike the training photos: its neither score {row['neither_score']:.3g} is above "
        f"the threshold {row['neither_threshold']:.3g}"
    )


def demo_warning(row: dict) -> str:
    """A one-line warning when the answering model has random-init weights (empty otherwise)."""
    if str(row.get("model_weights", "")).startswith("random"):
        return "Demo model with random-init weights: its answers are not meaningful."
    return ""
