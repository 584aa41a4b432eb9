"""Stage `train@<backbone>`: embeddings/<backbone>/ + weights/ -> models/<backbone>/ (model.keras, embedding_stats.npz, history.csv, run.json, config.yaml).

The backbone is frozen: the heads train on the feature maps the embed stage cached, each training
image once per augmentation view, and no backbone runs here. With train.fine_tune_layers > 0 the
top of the backbone is then trained too, backbone in the loop on the raw images (splits.csv, data/).
Two heads: airplane vs automobile on the known classes, and the "neither" head, known vs the
reject class. run.json records the MLflow run and the weights file used (path and sha256).
"""

from __future__ import annotations

import functools
from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow starts up without chatter)
# isort: on
import keras
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import config, tracking
from pipeline.calibration import fit_embedding_stats
from pipeline.cli import main_of
from pipeline.embeddings import Embeddings
from pipeline.features import decode, embed_splits
from pipeline.forward import backbone_forward
from pipeline.heads import fit, fit_known_head, fit_other_head
from pipeline.model import (
    build_augmentation,
    build_backbone,
    build_classifier,
    build_extractor,
    on_feature_maps,
    trainable_classifier,
    unfreeze,
)
from pipeline.served.scores import EmbeddingStats
from pipeline.trained import Handover, TrainedModel


class MlflowEpochMetrics(keras.callbacks.Callback):
    """Loss and accuracy per epoch as MLflow step metrics (the training curves in the UI)."""

    def __init__(self, offset: int = 0, prefix: str = "epoch_"):
        super().__init__()
        self.offset, self.prefix = offset, prefix

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items()}, step=self.offset + epoch)


def seed_everything(seed: int) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fine_tune(
    cfg: DictConfig, backbone: keras.Model, extractor: keras.Model, head: keras.Model, embeddings: Embeddings, first_epoch: int
) -> tuple[pd.DataFrame, Embeddings]:
    """Train the top train.fine_tune_layers of the backbone with the head, backbone in the loop on
    the raw images; then embed every split again, since the cached maps no longer describe it."""
    splits = pd.read_csv(cfg.paths.splits)
    images = {name: decode(splits, name, cfg, embeddings.source_size) for name in ("train", "val")}
    unfreeze(backbone, cfg.train.fine_tune_layers)
    tuned = trainable_classifier(extractor, head, build_augmentation(cfg.augment))
    validation = (images["val"], embeddings.labels["val"])
    history = fit(
        tuned, images["train"], embeddings.labels["train"], validation, cfg, cfg.train.fine_tune_learning_rate,
        cfg.train.fine_tune_epochs, [MlflowEpochMetrics(first_epoch)],
    )
    history.index += first_epoch
    forward = backbone_forward(extractor, cfg.embed.runtime, cfg.backbone.precision)
    return history, embed_splits(cfg, splits, forward)


def log_chosen_c(histories: dict[str, pd.DataFrame]) -> None:
    """The strength each logistic head kept, as <key>_c metrics (Keras-fitted heads have none)."""
    mlflow.log_metrics({f"{key}_c": float(h.c[h.val_loss.idxmin()]) for key, h in histories.items() if "c" in h})


def seed_spread(cfg: DictConfig, known: np.ndarray, y: np.ndarray, validation: tuple, first: pd.DataFrame) -> dict[str, float]:
    """train.seeds > 1: the head fitted again on seed+1, seed+2, ... -> the mean and standard deviation,
    over every seed, of its best epoch's (or C's) validation loss and accuracy. A logistic head's fit
    does not depend on the seed: its spread is 0, and says so."""
    best = [first.loc[first.val_loss.idxmin()]]
    for k in range(1, cfg.train.seeds):
        keras.utils.set_random_seed(cfg.train.seed + k)
        _, history = fit_known_head(cfg, known, y, validation, verbose=0)
        best.append(history.loc[history.val_loss.idxmin()])
    keras.utils.set_random_seed(cfg.train.seed)
    found = pd.DataFrame(best)[["val_loss", "val_accuracy"]]
    return {"seeds": float(cfg.train.seeds), **{f"seeds_{k}_mean": float(v) for k, v in found.mean().items()},
            **{f"seeds_{k}_std": float(v) for k, v in found.std(ddof=1).items()}}


def train(cfg: DictConfig, embeddings: Embeddings) -> tuple[keras.Model, pd.DataFrame, EmbeddingStats]:
    """Fit the head on the cached feature maps (then fine-tune, if configured), then the "neither" head.

    Returns the assembled model, the head's history and the class statistics of the training
    embeddings (for the embedding-distance score).
    """
    spec = config.backbone_spec(cfg)
    backbone = build_backbone(spec, cfg.paths.weights)  # part of the saved model; runs only to fine-tune
    if cfg.train.fine_tune_layers > len(backbone.layers):  # only the built backbone knows its depth
        raise config.ConfigError(
            f"train.fine_tune_layers is {cfg.train.fine_tune_layers}, but {spec.name} has {len(backbone.layers)} layers: give at most that"
        )
    backbone.trainable = False
    extractor = build_extractor(spec, backbone)
    map_shape = embeddings.features["val"].shape[1:]
    y_train, y_val = embeddings.labels["train"], embeddings.labels["val"]

    @functools.cache
    def vectors(name: str, pooling: str) -> list[np.ndarray]:
        """The split's pooled features, then those of each of its augmented views (pooled once)."""
        return embeddings.pooled_views(name, pooling)

    known = np.concatenate(vectors("train", cfg.head.pooling))
    validation = (embeddings.pooled("val", cfg.head.pooling), y_val)
    y_known = np.tile(y_train, len(known) // len(y_train))
    head, history = fit_known_head(cfg, known, y_known, validation, [MlflowEpochMetrics()])
    known_history = history  # before fine-tuning adds its epochs
    if cfg.train.seeds > 1:
        spread = seed_spread(cfg, known, y_known, validation, history)
        mlflow.log_metrics(spread)
        print(f"train: head over {cfg.train.seeds} seeds: validation loss {spread['seeds_val_loss_mean']:.4f} +- {spread['seeds_val_loss_std']:.4f}, "
              f"accuracy {spread['seeds_val_accuracy_mean']:.4f} +- {spread['seeds_val_accuracy_std']:.4f}")
    del known

    if cfg.train.fine_tune_layers > 0:
        on_maps = on_feature_maps(head, cfg.head.pooling, map_shape, "probability")  # shares the head's weights: tuning trains them
        more, embeddings = fine_tune(cfg, backbone, extractor, on_maps, embeddings, first_epoch=len(history))
        history = pd.concat([history, more])
        vectors.cache_clear()  # pooled from the backbone before it was tuned
    history.insert(0, "epoch", range(1, len(history) + 1))

    pooling = cfg.neither_head.pooling
    other_head, other_history = fit_other_head(
        cfg, vectors("train", pooling), vectors("other_train", pooling),
        embeddings.pooled("val", pooling), embeddings.pooled("other_val", pooling),
        [MlflowEpochMetrics(prefix="other_epoch_")],
    )
    log_chosen_c({"head": known_history, "neither_head": other_history})
    stats = fit_embedding_stats(embeddings.pooled("train", "avg"), y_train)
    return build_classifier(extractor, head, cfg.head.pooling, other_head, pooling), history, stats


def run(cfg: DictConfig) -> Path:
    seed_everything(cfg.train.seed)
    spec = config.backbone_spec(cfg)
    out_dir = Path(cfg.paths.models) / spec.name
    embeddings = Embeddings.load(Path(cfg.paths.embeddings) / spec.name)

    with tracking.backbone_run(cfg) as run:
        mlflow.log_params(tracking.run_params(cfg))
        mlflow.set_tags(tracking.weights_tags(embeddings.weights))
        model, history, embedding_stats = train(cfg, embeddings)
        handover = Handover(run.info.run_id, spec.name, embeddings.weights, embeddings.source_size)
        trained = TrainedModel.write(out_dir, model, history, embedding_stats, OmegaConf.to_yaml(cfg), handover)
        mlflow.log_artifact(str(trained.config_file))
    print(f"train: {spec.name} -> {out_dir} (MLflow run {run.info.run_id})")
    return out_dir


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
