"""Stage `embed@<backbone>`: splits.csv + data/ + weights/ -> embeddings/<backbone>/ (<split>.npy, averages.npz, labels.npz, embed.json).

The one place the frozen backbone runs over the team data: its feature map of every image of
every split, and of each augmentation view of the training splits, on OpenVINO or Keras
(embed.runtime), in this process or on Spark's executors (embed.engine). train and evaluate read them,
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
from pipeline.forward import backbone_forward
from pipeline.model import build_backbone, build_extractor
from pipeline.spark_embed import embed_splits_on_spark


def run(cfg: DictConfig) -> Path:
    keras.utils.set_random_seed(cfg.train.seed)
    spec = config.backbone_spec(cfg)
    out_dir = Path(cfg.paths.embeddings) / spec.name
    extractor = build_extractor(spec, build_backbone(spec, cfg.paths.weights))
    splits = pd.read_csv(cfg.paths.splits)
    if cfg.embed.engine == "spark":
        embeddings = embed_splits_on_spark(cfg, splits, extractor)
    else:
        embeddings = embed_splits(cfg, splits, backbone_forward(extractor, cfg.embed.runtime, spec.precision))
    embeddings.save(out_dir)
    print(f"embed: {cfg.backbone.name} on {cfg.embed.runtime}, {cfg.embed.engine} -> {out_dir}")
    return out_dir


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
