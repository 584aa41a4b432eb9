"""Stage `train@<backbone>`: splits.csv + data/ -> models/<backbone>/ (model.keras, embedding_stats.npz, history.csv, run.json, config.yaml).

The backbone is frozen: each training image is embedded once per augmentation view and the head
trains on those cached embeddings, instead of running the backbone again in every epoch. With
train.fine_tune_layers > 0 the top of the backbone is then trained too, backbone in the loop.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import config, tracking
from pipeline.images import load_batch
from pipeline.io import write_json
from pipeline.calibration import fit_embedding_stats, pool
from pipeline.model import Predictor, assemble, build_augmentation, build_backbone, build_extractor, build_head, embed, unfreeze


class MlflowEpochMetrics(keras.callbacks.Callback):
    """Loss and accuracy per epoch as MLflow step metrics (the training curves in the UI)."""

    def __init__(self, offset: int = 0):
        super().__init__()
        self.offset = offset

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in (logs or {}).items()}, step=self.offset + epoch)


def load_split(splits: pd.DataFrame, name: str, size: int, positive: str, max_pixels: int):
    part = splits[splits.split == name]
    images = load_batch(part.path, size, max_pixels, progress=f"decode {name}")
    return images, (part.label == positive).to_numpy(dtype="float32")


def seed_everything(seed: int) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(cfg: DictConfig, x_train, y_train, x_val, y_val) -> tuple[keras.Model, pd.DataFrame, dict]:
    """Fit the head on cached embeddings (then fine-tune, if configured).

    Returns the model, its history and the class statistics of its training embeddings (for the
    "neither" score).
    """
    spec = config.backbone_spec(cfg)
    backbone = build_backbone(spec)
    backbone.trainable = False
    extractor = build_extractor(spec, backbone)
    augmentation = build_augmentation(cfg.augment)
    batch = cfg.train.extract_batch_size

    views = [embed(extractor, x_train, batch)]
    for view in range(1, cfg.augment.views + 1):
        views.append(embed(extractor, x_train, batch, augmentation, seed=cfg.train.seed + view))
    train_embeddings = np.concatenate(views)
    train_labels = np.tile(y_train, len(views))
    val_embeddings = embed(extractor, x_val, batch)

    head = build_head(train_embeddings, cfg.head)
    head.compile(keras.optimizers.Adam(cfg.train.learning_rate), loss="binary_crossentropy", metrics=["accuracy"])
    fit = head.fit(
        train_embeddings,
        train_labels,
        validation_data=(val_embeddings, y_val),
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        callbacks=[MlflowEpochMetrics()],
        verbose=2,
    )
    history = pd.DataFrame(fit.history)

    if cfg.train.fine_tune_layers > 0:
        unfreeze(backbone, cfg.train.fine_tune_layers)
        tuned = assemble(extractor, head, augmentation)
        tuned.compile(
            keras.optimizers.Adam(cfg.train.fine_tune_learning_rate), loss="binary_crossentropy", metrics=["accuracy"]
        )
        fit = tuned.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            epochs=cfg.train.fine_tune_epochs,
            batch_size=cfg.train.batch_size,
            callbacks=[MlflowEpochMetrics(offset=len(history))],
            verbose=2,
        )
        history = pd.concat([history, pd.DataFrame(fit.history)], ignore_index=True)

    history.insert(0, "epoch", range(1, len(history) + 1))
    model = assemble(extractor, head)
    # Fine-tuning changed the backbone, so the cached embeddings no longer describe it.
    train_pooled = Predictor(model, batch)(x_train)[1] if cfg.train.fine_tune_layers > 0 else pool(views[0])
    return model, history, fit_embedding_stats(train_pooled, y_train)


def run(cfg: DictConfig) -> Path:
    seed_everything(cfg.train.seed)
    spec = config.backbone_spec(cfg)
    out_dir = Path(cfg.paths.models) / spec.name
    splits = pd.read_csv(cfg.paths.splits)
    positive = cfg.data.classes[1]
    x_train, y_train = load_split(splits, "train", spec.input_size, positive, cfg.data.max_pixels)
    x_val, y_val = load_split(splits, "val", spec.input_size, positive, cfg.data.max_pixels)

    with tracking.backbone_run(cfg) as run:
        mlflow.log_params(tracking.run_params(cfg))
        model, history, embedding_stats = train(cfg, x_train, y_train, x_val, y_val)
        # Write everything beside the final folder, then swap it in: a killed run leaves no model.
        partial = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        model.save(partial / "model.keras")
        history.to_csv(partial / "history.csv", index=False)
        np.savez(partial / "embedding_stats.npz", **embedding_stats)
        (partial / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        write_json(partial / "run.json", {"run_id": run.info.run_id, "backbone": spec.name})
        mlflow.log_artifact(str(partial / "config.yaml"))
        shutil.rmtree(out_dir, ignore_errors=True)
        partial.rename(out_dir)
    print(f"train: {spec.name} -> {out_dir} (MLflow run {run.info.run_id})")
    return out_dir


def main() -> None:
    run(config.from_argv(description=__doc__))


if __name__ == "__main__":
    main()
