"""The feature cache: decoded splits + a frozen backbone -> Embeddings (feature maps per split and augmentation view), saved and loaded as a folder.

The embed stage writes it; train, evaluate and cross-validation read it, so the backbone runs once per image.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline import config
from pipeline.forward import Forward, embed
from pipeline.model import build_augmentation, pooled
from pipeline.served.images import load_batch
from pipeline.weights import WeightsSource, resolve_weights

SPLITS = ("train", "val", "test", "other_train", "other_val", "other_test")
AUGMENTED = ("train", "other_train")  # the splits the heads train on get augmentation views
FLOAT16_LIMIT = 60000.0  # float16 halves the cache on disk; above this its range (65,504) ends


@dataclass
class Embeddings:
    """embed's hand-off to train and evaluate: feature maps per split, in splits.csv order."""

    # split -> (n, h, w, c); "<split>_view<k>" for the augmented views. Memory-mapped when loaded:
    # MobileNetV2's maps of the team data are 3 GB, and a head that averages them never reads them.
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # split -> 1.0 where the label is the second class, else 0.0
    views: int  # augmented views per training image
    source_size: int | None  # the training images' resolution photos are brought down to, or None
    weights: WeightsSource  # the weights file the backbone loaded
    # split -> (n, c) channel means of the maps: what average-pooling heads and the embedding
    # statistics read (a 50th of the maps' size), computed once, saved beside them.
    averages: dict[str, np.ndarray] = field(default_factory=dict)

    def pooled(self, name: str, pooling: str) -> np.ndarray:
        """The split's features as a head's dense layers read them (model.pooled)."""
        if pooling != "avg":
            return pooled(self.features[name], pooling)
        if name not in self.averages:
            self.averages[name] = pooled(self.features[name], "avg")
        return self.averages[name]

    def pooled_views(self, name: str, pooling: str) -> list[np.ndarray]:
        """The split's pooled features, then those of each of its augmented views."""
        return [self.pooled(key, pooling) for key in (name, *(f"{name}_view{k}" for k in range(1, self.views + 1)))]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        small = all(max(x.max(initial=0), -x.min(initial=0)) < FLOAT16_LIMIT for x in self.features.values())  # no |x| copy of 3.6 GB
        dtype = "float16" if small else "float32"  # float16 keeps ~3 significant digits: the heads do not notice
        for name, maps in self.features.items():
            np.save(folder / f"{name}.npy", maps.astype(dtype))
        np.savez(folder / "averages.npz", **{name: self.pooled(name, "avg") for name in self.features})
        np.savez(folder / "labels.npz", **self.labels)
        handover = {"views": self.views, "source_size": self.source_size, "weights": asdict(self.weights)}
        (folder / "embed.json").write_text(json.dumps(handover, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Embeddings:
        handover = json.loads((folder / "embed.json").read_text())
        with np.load(folder / "labels.npz") as labels, np.load(folder / "averages.npz") as averages:
            return cls(
                features={path.stem: np.load(path, mmap_mode="r") for path in sorted(folder.glob("*.npy"))},
                labels=dict(labels), views=handover["views"], source_size=handover["source_size"],
                weights=WeightsSource(**handover["weights"]), averages=dict(averages),
            )


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
