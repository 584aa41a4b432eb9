"""MLflow plumbing shared by the stages: store, experiment, per-backbone runs and their tags."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import mlflow
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import UserError
from pipeline.store import tracking_store

ERROR_TAG_CHARS = 5000  # MLflow's limit on a tag value


def setup(cfg: DictConfig) -> str:
    """Point MLflow at the project's store (store.tracking_store); return the experiment id."""
    uri, artifacts = tracking_store(cfg.mlflow)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is not None:
        return experiment.experiment_id
    # Keep artifacts beside the embedded store, not in whatever directory a run starts from; a
    # tracking server keeps them where it was told to (--artifacts-destination).
    location = None if uri.startswith(("http", "databricks")) else artifacts
    return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=location)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_version(data_dvc: str = "data.dvc") -> str:
    """The DVC directory hash of data/ as data.dvc records it."""
    try:
        return yaml.safe_load(Path(data_dvc).read_text())["outs"][0]["md5"]
    except (OSError, KeyError, IndexError, TypeError):
        return "untracked"


def lineage_tags() -> dict[str, str]:
    """The code and data a run was made from, and the DVC experiment it belongs to (if any), so the
    MLflow runs list and `dvc exp show` can be matched."""
    # run_by: "dvc" for a stage DVC ran (it sets DVC_ROOT), "hand" for one run by hand (under scratch/),
    # so the runs list can show the pipeline's runs alone.
    tags = {"git_commit": git_commit(), "data_version": data_version(), "run_by": "dvc" if os.environ.get("DVC_ROOT") else "hand"}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    return tags


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """What every run and registered version is tagged with, so any of them can be traced back."""
    return {
        **lineage_tags(),
        "backbone": cfg.backbone.name,
        "head": cfg.head.name,
        "augment": cfg.augment.name,
        "weights": str(cfg.backbone.weights),
    }


def weights_tags(source) -> dict[str, str]:
    """The weights a backbone was built from (a pipeline.model.WeightsSource): kind, file, content hash."""
    return {"weights": source.kind, "weights_file": source.path or "", "weights_sha256": source.sha256 or ""}


def run_params(cfg: DictConfig) -> dict[str, object]:
    """Parameters under the same names for every backbone, so the MLflow UI lines runs up."""
    sections = {
        "backbone": cfg.backbone,
        "head": cfg.head,
        "neither_head": cfg.neither_head,
        "augment": cfg.augment,
        "train": cfg.train,
        "data": cfg.data,
    }
    params = {}
    for section, node in sections.items():
        for key, value in OmegaConf.to_container(node).items():
            params[f"{section}.{key}"] = value
    return params


def end_abandoned_runs(experiment_id: str, backbone: str) -> None:
    """A stage killed midway leaves its run RUNNING forever; mark such runs KILLED."""
    client = MlflowClient()
    stale = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.backbone = '{backbone}'",
    )
    for run in stale:
        client.set_terminated(run.info.run_id, status="KILLED")


@contextmanager
def backbone_run(cfg: DictConfig, run_id: str | None = None):
    """Start a new run for one backbone, or resume the one train started (TrainedModel.handover().run_id).

    Under `mlflow run` (MLFLOW_RUN_ID set) new runs nest under that run, so one project run holds
    the comparison instead of every stage writing into the same run.
    """
    experiment_id = setup(cfg)
    if run_id is not None:
        with mlflow.start_run(run_id=run_id) as run, error_tagged():
            yield run
        return
    end_abandoned_runs(experiment_id, cfg.backbone.name)
    parent = os.environ.pop("MLFLOW_RUN_ID", None)
    tags = run_tags(cfg)
    if parent:
        tags["mlflow.parentRunId"] = parent
        experiment_id = MlflowClient().get_run(parent).info.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=cfg.backbone.name, tags=tags) as run, error_tagged():
        yield run


@contextmanager
def error_tagged():
    """An error inside the active run -> its `error` tag: the one paragraph the stage prints (a
    UserError's message), else the exception's type and message. start_run then ends the run FAILED,
    so a failed experiment, queued ones too, shows in the runs list with why."""
    try:
        yield
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        mlflow.set_tag("error", message[:ERROR_TAG_CHARS])
        raise
