"""Stage `audit`: splits.csv + one backbone's cached feature maps -> label_issues.csv and label_issues.png, the team images likeliest mislabelled.

Every split is audited, the reject class as a third class: a label error anywhere misleads a head or
a score. Nothing here changes data/: a person reviews the list (the page's "Label audit" tab) and
moves what is wrong into review/, as "That's wrong" does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.audit import contact_sheet, label_issues, out_of_fold_probabilities
from pipeline.cli import main_of
from pipeline.embeddings import SPLITS, Embeddings
from pipeline.errors import UserError
from pipeline.io import write_atomic, write_json
from pipeline.store import project_root


def labelled_vectors(splits: pd.DataFrame, embeddings: Embeddings, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(images, their integer labels, their average-pooled feature maps), every split in the cache's order."""
    images = pd.concat([splits[splits.split == name] for name in SPLITS])
    vectors = np.concatenate([np.asarray(embeddings.averages[name], dtype="float32") for name in SPLITS])
    labels = images.label.map({name: k for k, name in enumerate(classes)}).to_numpy()
    return images, labels, vectors


def audit_folds(labels: np.ndarray, classes: list[str], folds: int) -> int:
    """The configured folds, or fewer on small data: each fold needs an image of every class."""
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 2:
        raise UserError(f"the audit needs at least 2 images of every class; {classes[counts.argmin()]} has {counts.min()}")
    if counts.min() < folds:
        print(f"audit: {counts.min()} images of {classes[counts.argmin()]}, so {counts.min()} folds instead of {folds}")
    return int(min(folds, counts.min()))


def run(cfg: DictConfig) -> pd.DataFrame:
    classes = [*cfg.data.classes, cfg.data.reject_class]
    embeddings = Embeddings.load(Path(cfg.paths.embeddings) / cfg.audit.backbone)
    images, labels, vectors = labelled_vectors(pd.read_csv(cfg.paths.splits), embeddings, classes)
    probabilities = out_of_fold_probabilities(vectors, labels, audit_folds(labels, classes, cfg.audit.folds), cfg.audit.c, cfg.data.seed)
    issues = label_issues(images, labels, probabilities, classes)
    out = Path(cfg.paths.audit)
    write_atomic(out / "label_issues.csv", issues.to_csv(index=False))
    contact_sheet(out / "label_issues.png", issues, cfg.audit.sheet, project_root())
    report = {"images": len(images), "label_issues": len(issues), "issue_share": round(len(issues) / len(images), 4),
              "out_of_fold_accuracy": round(float((probabilities.argmax(axis=1) == labels).mean()), 4)}
    write_json(cfg.paths.audit_report, report)
    print(f"audit ({cfg.audit.backbone}): {report['label_issues']} likely label errors of {report['images']} images; the first {cfg.audit.sheet} in {out / 'label_issues.png'}")
    return issues


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
