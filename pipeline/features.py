"""The feature cache, built: decoded splits + a frozen backbone -> Embeddings (pipeline/embeddings.py), every split and augmentation view."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline import config
from pipeline.embeddings import SPLITS, Embeddings
from pipeline.forward import Forward, embed
from pipeline.model import build_augmentation
from pipeline.served.images import load_batch
from pipeline.weights import WeightsSource, resolve_weights

AUGMENTED = ("train", "other_train")  # the splits the heads train on get augmentation views


def source_resolution(splits: pd.DataFrame, cfg: DictConfig) -> int | None:
    """The training images' own resolution (median shorter side), or None when there is nothing to
    match: at least the model's input size."""
    train = splits[splits.split == "train"]
    side = int(np.median(np.minimum(train.width, train.height)))
    return side if side < cfg.backbone.input_size else None


def decode(splits: pd.DataFrame, name: str, cfg: DictConfig, source_size: int | None, count: int | None = None) -> np.ndarray:
    """The first `count` (default: all) images of a split, as the model takes them: brought down to
    source_size first unless data.photo_resize is direct (the team's own images mostly are that size)."""
    paths = splits[splits.split == name].path[:count]
    return load_batch(paths, cfg.backbone.input_size, cfg.data.max_pixels, progress=f"decode {name}", source_size=view_size(cfg, source_size))


def view_size(cfg: DictConfig, source_size: int | None) -> int | None:
    """The resolution a training image is brought down to before the input size (None: straight to it)."""
    return None if cfg.data.photo_resize == "direct" else source_size


def embed_splits(cfg: DictConfig, splits: pd.DataFrame, forward: Forward) -> Embeddings:
    """Decode every split and run the backbone (forward) over it, once per augmentation view for the
    training splits (each view a different, seeded draw)."""
    augmentation = build_augmentation(cfg.augment)
    batch, source_size = cfg.train.extract_batch_size, source_resolution(splits, cfg)
    features, labels = {}, {}
    for name in SPLITS:
        images = decode(splits, name, cfg, source_size)
        labels[name] = split_labels(splits, name, cfg)
        print(f"embed {name}: {len(images)} images, {cfg.augment.views if name in AUGMENTED else 0} augmented views", flush=True)
        features[name] = embed(forward, images, batch)
        for k in range(1, cfg.augment.views + 1) if name in AUGMENTED else ():
            features[f"{name}_view{k}"] = embed(forward, images, batch, augmentation, seed=cfg.train.seed + k)
    return Embeddings(features, labels, cfg.augment.views, source_size, built_weights(cfg))


def split_labels(splits: pd.DataFrame, name: str, cfg: DictConfig) -> np.ndarray:
    """1.0 where the split's image is of the second class, else 0.0, in splits.csv order."""
    return (splits[splits.split == name].label == cfg.data.classes[1]).to_numpy(dtype="float32")


def built_weights(cfg: DictConfig) -> WeightsSource:
    # After building: a download, if there was one, is in the Keras cache now and can be hashed.
    return resolve_weights(config.backbone_spec(cfg), cfg.paths.weights)
