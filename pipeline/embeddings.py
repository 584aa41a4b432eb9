"""The feature cache's hand-off: Embeddings (feature maps per split and augmentation view), saved and loaded as a folder; no TensorFlow.

The embed stage writes it (pipeline/features.py); train, evaluate, cross-validation and the audit read it,
so the backbone runs once per image. Reading it imports numpy only: the audit never starts TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.weights import WeightsSource

SPLITS = ("train", "val", "test", "other_train", "other_val", "other_test")
FLOAT16_LIMIT = 60000.0  # float16 halves the cache on disk; above this its range (65,504) ends


def pooled(features: np.ndarray, pooling: str) -> np.ndarray:
    """Feature maps (n, h, w, c) -> what a head's dense layers read: the channel means ("avg") or
    the whole map, flattened ("flatten"). As pool_layer does inside the model."""
    if pooling == "avg":
        return features.mean(axis=(1, 2), dtype="float32")  # no float32 copy of the whole map first
    return features.reshape(len(features), -1).astype("float32")


@dataclass
class Embeddings:
    """embed's hand-off to train, evaluate, register and the audit: feature maps per split, in splits.csv order."""

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
        """The split's features as a head's dense layers read them (pooled)."""
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
