"""Pretrained weights: a backbone's config + the project's weights folder -> the file to load, and its hash.

No TensorFlow here: register and serving read a WeightsSource without loading Keras.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:
    from pipeline.config import BackboneConfig


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights came from: what runs, model cards and served answers report."""

    kind: str  # imagenet | random | file
    path: str | None = None  # the file loaded; None for random init or a download not yet cached
    sha256: str | None = None

    @property
    def meaningful(self) -> bool:
        """Random-init features make a model whose answers mean nothing."""
        return self.kind != "random"

    def describe(self) -> str:
        if self.kind == "random":
            return "random init"
        name = Path(self.path).name if self.path else "downloaded"
        return f"{self.kind} ({name}, sha256 {self.sha256[:12] if self.sha256 else '?'})"


def keras_cache() -> Path:
    """Where keras.utils.get_file keeps downloaded weights."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_weights(spec: BackboneConfig, weights_dir: str | Path | None) -> WeightsSource:
    """`imagenet`: the project's DVC-tracked weights folder, then the Keras cache, under Keras' own
    file name; a file found there is loaded as a file and no network is touched. Only when neither
    has it does Keras download (path None here)."""
    if spec.weights is None:
        return WeightsSource("random")
    if spec.weights != "imagenet":
        if not Path(spec.weights).is_file():
            raise UserError(f"backbones.{spec.name}.weights names {spec.weights}, which is not a file: give the path of a weights file, imagenet, or null")
        return WeightsSource("file", spec.weights, sha256(Path(spec.weights)))
    candidates = ([Path(weights_dir)] if weights_dir else []) + [keras_cache()]
    for folder in candidates:
        path = folder / spec.weights_file
        if spec.weights_file and path.is_file():
            return WeightsSource("imagenet", str(path), sha256(path))
    return WeightsSource("imagenet")
