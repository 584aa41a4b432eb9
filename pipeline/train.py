"""Stage `train@<backbone>`: splits.csv + data/ + weights/ -> models/<backbone>/ (model.keras, embedding_stats.npz, history.csv, run.json, config.yaml).

The backbone is frozen: each training image is embedded once per augmentation view and the heads
train on those cached embeddings, instead of running the backbone again in every epoch. With
train.fine_tune_layers > 0 the top of the backbone is then trained too, backbone in the loop.
Two heads: airplane vs automobile on the known classes, and the "neither" head, known vs the
reject class. run.json records the MLflow run and the weights file used (path and sha256).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import config, tracking
from pipeline.calibration import fit_embedding_stats, pool
from pipeline.errors import main_of
from pipeline.images import load_batch
from pipeline.io import write_json
from pipeline.model import (
    assemble,
    build_augmentation,
    build_backbone,
    build_extractor,
    build_head,
    embed,
    trainable_classifier,
    unfreeze,
)
from pipeline.weights import resolve_weights


class MlflowEpochMetrics(keras.callbacks.Callback):
    """Loss and accuracy per epoch as MLflow step metrics (the training curves in the UI)."""

    def __init__(self, offset: int = 0, prefix: str = "epoch_"):
        super().__init__()
        self.offset, self.prefix = offset, prefix

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items()}, step=self.offset + epoch)


def load_split(splits: pd.DataFrame, name: str, size: int, positive: str, max_pixels: int, source_size: int | None):
    part = splits[splits.split == name]
    images = load_batch(part.path, size, max_pixels, progress=f"decode {name}", source_size=source_size)
    return images, (part.label == positive).to_numpy(dtype="float32")


def source_resolution(splits: pd.DataFrame, cfg: DictConfig) -> int | None:
    """The training images' own resolution (median shorter side), or None when there is nothing to
    match: switched off, or at least the model's input size."""
    train = splits[splits.split == "train"]
    side = int(np.median(np.minimum(train.width, train.height)))
    return side if cfg.data.match_source_resolution and side < cfg.backbone.input_size else None


def seed_everything(seed: int) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(model: keras.Model, x, y, validation, cfg: DictConfig, learning_rate: float, epochs: int, callback, class_weight=None) -> pd.DataFrame:
    """Train up to `epochs`, stop when the validation loss stops improving, keep the best epoch."""
    model.compile(keras.optimizers.Adam(learning_rate), loss="binary_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(patience=cfg.train.patience, restore_best_weights=True)
    history = model.fit(
        x, y, validation_data=validation, epochs=epochs, batch_size=cfg.train.batch_size,
        class_weight=class_weight, callbacks=[callback, stop], verbose=2,
    )
    return pd.DataFrame(history.history)


def balanced(labels: np.ndarray) -> dict[int, float]:
    """Class weights that make both labels count alike (the reject class is the smaller folder)."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: len(labels) / (2 * max(n, 1)) for c, n in enumerate(counts)}


def fit_other_head(cfg: DictConfig, known: list[np.ndarray], other: list[np.ndarray], val: np.ndarray, other_val: np.ndarray) -> keras.Model:
    """The "neither" head: every view of the known images (label 0) against the reject-class ones
    (label 1), on pooled embeddings, the classes weighted alike."""
    x = np.concatenate([pool(v) for v in known + other])
    y = np.r_[np.zeros(sum(map(len, known))), np.ones(sum(map(len, other)))].astype("float32")
    validation = (np.r_[pool(val), pool(other_val)], np.r_[np.zeros(len(val)), np.ones(len(other_val))].astype("float32"))
    head = build_head(x, cfg.neither_head, "other_probability")
    fit(head, x, y, validation, cfg, cfg.train.learning_rate, cfg.train.epochs, MlflowEpochMetrics(prefix="other_epoch_"), balanced(y))
    return head


def train(cfg: DictConfig, images: dict[str, np.ndarray], y_train, y_val) -> tuple[keras.Model, pd.DataFrame, dict]:
    """Fit the head on cached embeddings (then fine-tune, if configured), then the "neither" head.

    images: raw images of the train, val, other_train and other_val splits. Returns the assembled
    model, the head's history and the class statistics of the training embeddings (for the
    embedding-distance score).
    """
    spec = config.backbone_spec(cfg)
    backbone = build_backbone(spec, cfg.paths.weights)
    backbone.trainable = False
    extractor = build_extractor(spec, backbone, cfg.head.pooling)
    augmentation = build_augmentation(cfg.augment)
    batch = cfg.train.extract_batch_size

    def views(x: np.ndarray) -> list[np.ndarray]:
        """The image itself, then each augmented view: the backbone runs once per view."""
        augmented = [embed(extractor, x, batch, augmentation, seed=cfg.train.seed + v) for v in range(1, cfg.augment.views + 1)]
        return [embed(extractor, x, batch), *augmented]

    known, val = views(images["train"]), embed(extractor, images["val"], batch)
    head = build_head(np.concatenate(known), cfg.head, "probability")
    history = fit(head, np.concatenate(known), np.tile(y_train, len(known)), (val, y_val), cfg, cfg.train.learning_rate, cfg.train.epochs, MlflowEpochMetrics())

    if cfg.train.fine_tune_layers > 0:
        unfreeze(backbone, cfg.train.fine_tune_layers)
        tuned = trainable_classifier(extractor, head, augmentation)
        callback = MlflowEpochMetrics(offset=len(history))
        more = fit(tuned, images["train"], y_train, (images["val"], y_val), cfg, cfg.train.fine_tune_learning_rate, cfg.train.fine_tune_epochs, callback)
        history = pd.concat([history, more], ignore_index=True)
        # Fine-tuning changed the backbone, so the cached embeddings no longer describe it.
        known, val = views(images["train"]), embed(extractor, images["val"], batch)
    history.insert(0, "epoch", range(1, len(history) + 1))

    other_head = fit_other_head(cfg, known, views(images["other_train"]), val, embed(extractor, images["other_val"], batch))
    return assemble(extractor, head, other_head), history, fit_embedding_stats(pool(known[0]), y_train)


def run(cfg: DictConfig) -> Path:
    seed_everything(cfg.train.seed)
    spec = config.backbone_spec(cfg)
    out_dir = Path(cfg.paths.models) / spec.name
    splits = pd.read_csv(cfg.paths.splits)
    positive = cfg.data.classes[1]
    source_size = source_resolution(splits, cfg)
    images, labels = {}, {}
    for name in ("train", "val", "other_train", "other_val"):
        images[name], labels[name] = load_split(splits, name, spec.input_size, positive, cfg.data.max_pixels, source_size)

    with tracking.backbone_run(cfg) as run:
        mlflow.log_params(tracking.run_params(cfg))
        model, history, embedding_stats = train(cfg, images, labels["train"], labels["val"])
        # After building: a download, if there was one, is in the Keras cache now and can be hashed.
        weights = resolve_weights(spec, cfg.paths.weights)
        mlflow.set_tags(tracking.weights_tags(weights))
        # Write everything beside the final folder, then swap it in: a killed run leaves no model.
        partial = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        model.save(partial / "model.keras")
        history.to_csv(partial / "history.csv", index=False)
        np.savez(partial / "embedding_stats.npz", **embedding_stats)
        (partial / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        handover = {"run_id": run.info.run_id, "backbone": spec.name, "weights": asdict(weights), "source_size": source_size}
        write_json(partial / "run.json", handover)
        mlflow.log_artifact(str(partial / "config.yaml"))
        shutil.rmtree(out_dir, ignore_errors=True)
        partial.rename(out_dir)
    print(f"train: {spec.name} -> {out_dir} (MLflow run {run.info.run_id})")
    return out_dir


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
