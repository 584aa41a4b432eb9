"""Stage `embed@<backbone>`: splits.csv + data/ + weights/ -> embeddings/<backbone>/ (<split>.npy, averages.npz, labels.npz, embed.json).

The one place the frozen backbone runs over the team data: its feature map of every image of
every split, and of each augmentation view of the training splits. train and evaluate read them,
so a change of head, learning rate, epochs or calibration runs no backbone. What changes the maps
(backbone, input size, weights, precision, augmentation, the split, the source resolution) is
exactly this stage's dependencies.
"""

from __future__ import annotations

from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow starts up without chatter)
# isort: on
import keras
import pandas as pd
from omegaconf import DictConfig

from pipeline import config
from pipeline.cli import main_of
from pipeline.features import embed_splits
from pipeline.model import build_backbone, build_extractor


def run(cfg: DictConfig) -> Path:
    keras.utils.set_random_seed(cfg.train.seed)
    spec = config.backbone_spec(cfg)
    out_dir = Path(cfg.paths.embeddings) / spec.name
    extractor = build_extractor(spec, build_backbone(spec, cfg.paths.weights))
    embed_splits(cfg, pd.read_csv(cfg.paths.splits), extractor).save(out_dir)
    print(f"embed: {cfg.backbone.name} -> {out_dir}")
    return out_dir


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
