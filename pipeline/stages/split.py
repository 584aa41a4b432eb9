"""Stage `split`: manifest.csv -> splits.csv, a stratified, seeded train/val/test split.

Known classes go to train/val/test. The reject class ("neither") is split with the same fractions
into other_train (trains the "neither" head), other_val (chooses and calibrates the "neither"
score) and other_test (measures it); it never reaches the airplane/automobile head. The manifest
holds each content hash once, so no image can land in two splits.
"""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig
from sklearn.model_selection import train_test_split

from pipeline.cli import main_of
from pipeline.io import write_atomic


def subsample(manifest: pd.DataFrame, max_per_class: int | None, seed: int) -> pd.DataFrame:
    if max_per_class is None:
        return manifest
    return manifest.sample(frac=1.0, random_state=seed).groupby("label").head(max_per_class)


def three_way(images: pd.DataFrame, data: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, val, test), stratified by label, with the configured fractions."""
    rest, test = train_test_split(images, test_size=data.test_fraction, stratify=images.label, random_state=data.seed)
    val_share = data.val_fraction / (1 - data.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=rest.label, random_state=data.seed)
    return train, val, test


def assign_splits(manifest: pd.DataFrame, data: DictConfig) -> pd.DataFrame:
    manifest = subsample(manifest.sort_values("path"), data.max_per_class, data.seed)
    known = three_way(manifest[manifest.label.isin(list(data.classes))], data)
    other = three_way(manifest[manifest.label == data.reject_class], data)
    names = ("train", "val", "test")
    parts = {**dict(zip(names, known)), **{f"other_{name}": part for name, part in zip(names, other)}}
    splits = pd.concat([part.assign(split=name) for name, part in parts.items()])
    return splits[["path", "label", "sha256", "width", "height", "split"]].sort_values(["split", "path"])


def run(cfg: DictConfig) -> pd.DataFrame:
    splits = assign_splits(pd.read_csv(cfg.paths.manifest), cfg.data)
    write_atomic(cfg.paths.splits, splits.to_csv(index=False))
    print(splits.groupby(["split", "label"]).size().to_string())
    return splits


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
