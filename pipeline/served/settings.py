"""What serving applies to the network's outputs: evaluate fits it -> register logs it in the model -> the served model reads it.

One typed object, saved as a folder (serving_settings.json + embedding_stats.npz). numpy, pandas and
scipy only (pipeline/served/): the served model imports it in an environment that has no Hydra, OmegaConf or DVC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.served.schema import score_columns
from pipeline.served.scores import EmbeddingStats, answers, apply_temperature, neither_score


@dataclass
class Outputs:
    """The network's named outputs for a batch of images, as numpy arrays (from either runtime)."""

    probability: np.ndarray  # (n,) P(second class)
    other_probability: np.ndarray  # (n,) P(reject class)
    embedding: np.ndarray  # (n, channels) pooled backbone features

    @classmethod
    def from_batches(cls, batches: list) -> Outputs:
        """The network's named outputs for consecutive batches (mappings name -> array) -> one Outputs for them all."""

        def gather(name: str) -> np.ndarray:
            return np.concatenate([np.asarray(batch[name]) for batch in batches])

        return cls(gather("probability").ravel(), gather("other_probability").ravel(), gather("embedding"))

    def mean_over_views(self, views: int) -> Outputs:
        """Outputs of n images x `views` views each (image after image) -> the n images' outputs, each
        the mean over its views (ServingSettings.view_sizes)."""
        if views == 1:
            return self
        return Outputs(
            self.probability.reshape(-1, views).mean(axis=1),
            self.other_probability.reshape(-1, views).mean(axis=1),
            self.embedding.reshape(-1, views, self.embedding.shape[-1]).mean(axis=1),
        )

    @classmethod
    def empty(cls, channels: int) -> Outputs:
        """No images' outputs: a batch whose every image was refused still has its verdict columns."""
        return cls(np.empty(0), np.empty(0), np.empty((0, channels)))


@dataclass
class ServingSettings:
    classes: list[str]  # the two known classes; the model's `probability` output is P(classes[1])
    input_size: int  # pixels per side the model takes
    source_size: int | None  # the training images' resolution, if below input_size (None: nothing to match)
    max_pixels: int  # larger images are refused
    weights: str  # the backbone's weights (WeightsSource.describe()): "random init" means a demo model
    weights_meaningful: bool
    temperature: float  # divides the logit of `probability` (1.0: no scaling)
    neither_score: str  # one of scores.SCORES
    reject_threshold: float  # a score above it is answered "neither"
    accept_rate: float  # share of known-class validation images the threshold lets through
    # How a photo sharper than the training images is brought to input_size (data.photo_resize):
    # "matched" (down to source_size first, as training saw it), "direct", or "both" (the answer is
    # the mean over the two views).
    photo_resize: str = "matched"
    reject_class: str = "other"  # the data/ folder of images that are neither class (the page files "neither" there)
    # What runs the network when serving: "keras" (the reference), or "openvino" at openvino_precision
    # when registration measured that its answers agree with Keras' (pipeline/served/openvino_runtime.py).
    runtime: str = "keras"
    openvino_precision: str = ""  # OpenVINO's CPU inference precision, "bf16" or "f32" ("" with keras)
    embedding_stats: EmbeddingStats = field(repr=False, default_factory=EmbeddingStats.empty)  # for the embedding_distance score

    JSON = "serving_settings.json"

    @property
    def runtime_label(self) -> str:
        """What computes the answers, as every answer's `model_runtime` says it: "keras" or "openvino bf16"."""
        return f"openvino {self.openvino_precision}" if self.runtime == "openvino" else "keras"

    ARRAYS = "embedding_stats.npz"

    @property
    def view_sizes(self) -> list[int | None]:
        """Per view of a photo, the size it is first brought down to (images.load_views; None: straight to input_size)."""
        if self.source_size is None:
            return [None]
        return {"matched": [self.source_size], "direct": [None], "both": [self.source_size, None]}[self.photo_resize]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        scalars = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embedding_stats"}
        (folder / self.JSON).write_text(json.dumps(scalars, indent=2, sort_keys=True) + "\n")
        self.embedding_stats.save(folder / self.ARRAYS)

    @classmethod
    def load(cls, folder: str | Path) -> ServingSettings:
        folder = Path(folder)
        scalars = json.loads((folder / cls.JSON).read_text())
        return cls(**scalars, embedding_stats=EmbeddingStats.load(folder / cls.ARRAYS))

    def verdicts(self, out: Outputs) -> pd.DataFrame:
        """The network's outputs for a batch -> one row per image: answer, both probabilities, the "neither" score."""
        p = apply_temperature(out.probability, self.temperature)
        score = neither_score(self.neither_score, p, out.other_probability, out.embedding, self.embedding_stats)
        values = [answers(p, score, self.reject_threshold, self.classes), 1.0 - p, p, score, self.reject_threshold]
        return pd.DataFrame(dict(zip(score_columns(self.classes), values, strict=True)))
