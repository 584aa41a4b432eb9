"""Stage `split`: manifest.csv -> splits.csv, a stratified, seeded train/val/test split.

Images of the reject class ("neither") never reach the head: half calibrate the "neither" answer
(other_val), half measure it (other_test). The manifest holds each content hash once, so no image
can land in two splits.
"""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig
from sklearn.model_selection import train_test_split

from pipeline import config
from pipeline.io import write_atomic


def subsample(manifest: pd.DataFrame, max_per_class: int | None, seed: int) -> pd.DataFrame:
    if max_per_class is None:
        return manifest
    return manifest.sample(frac=1.0, random_state=seed).groupby("label").head(max_per_class)


def assign_splits(manifest: pd.DataFrame, data: DictConfig) -> pd.DataFrame:
    manifest = subsample(manifest.sort_values("path"), data.max_per_class, data.seed)
    known = manifest[manifest.label.isin(list(data.classes))]
    rest, test = train_test_split(known, test_size=data.test_fraction, stratify=known.label, random_state=data.seed)
    train, val = train_test_split(
        rest, test_size=data.val_fraction / (1 - data.test_fraction), stratify=rest.label, random_state=data.seed
    )
    other = manifest[manifest.label == data.reject_class]
    other_val, other_test = train_test_split(other, train_size=data.other_val_fraction, random_state=data.seed)
    parts = {"train": train, "val": val, "test": test, "other_val": other_val, "other_test": other_test}
    splits = pd.concat([part.assign(split=name) for name, part in parts.items()])
    return splits[["path", "label", "sha256", "split"]].sort_values(["split", "path"])


def run(cfg: DictConfig) -> pd.DataFrame:
    splits = assign_splits(pd.read_csv(cfg.paths.manifest), cfg.data)
    write_atomic(cfg.paths.splits, splits.to_csv(index=False))
    print(splits.groupby(["split", "label"]).size().to_string())
    return splits


def main() -> None:
    run(config.from_argv(description=__doc__))


if __name__ == "__main__":
    main()
