"""The team data + ../shared/photos -> the ablation table: MobileNetV2 (real weights) with one choice changed at a
time from the recipe (augmentation, head, how a photo reaches the input size), validation figures beside field ones.

Runs the real stages (ingest, split, embed, train, evaluate: their run(cfg)) on `--max-per-class` images per
folder, in a temporary folder with a temporary MLflow store; nothing of the project's is touched. Every fitted
number (C, temperature, "neither" score and threshold) is chosen on validation, as the pipeline does; the field
photos are only scored. The "neither" columns give each of the three scores at its own validation threshold.

Run by hand from the project root: python benchmarks/bench_ablation.py [--max-per-class 2000]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from pipeline import config
from pipeline.served.scores import SCORES
from pipeline.stages import embed, evaluate, ingest, split, train

RECIPE = {"augment": "none", "head": "logistic", "data.photo_resize": "both"}
# Each row: the recipe with these choices changed; "before" is the recipe this ablation replaced (issue 22).
ROWS = {  # in an order that embeds each augmentation once
    "recipe": {},
    "head=gap_dropout": {"head": "gap_dropout"},
    "head=flatten_dense": {"head": "flatten_dense"},
    "photo_resize=matched": {"data.photo_resize": "matched"},
    "photo_resize=direct": {"data.photo_resize": "direct"},
    "augment=light": {"augment": "light"},
    "before: gap_dropout, light, matched, Keras neither head": {
        "head": "gap_dropout", "augment": "light", "data.photo_resize": "matched", "neither_head.fit": "keras",
    },
    "augment=heavy": {"augment": "heavy"},
}
PATHS = ("manifest", "ingest_report", "metrics", "splits", "embeddings", "models", "evaluation", "comparison", "champion")


def composed(root: Path, choices: dict, max_per_class: int) -> object:
    paths = [f"paths.{key}={root / key}" for key in PATHS]
    paths[PATHS.index("splits")] = f"paths.splits={root / 'splits.csv'}"
    paths[PATHS.index("manifest")] = f"paths.manifest={root / 'manifest.csv'}"
    paths[PATHS.index("ingest_report")] = f"paths.ingest_report={root / 'ingest.json'}"
    overrides = [f"{k}={v}" for k, v in {**RECIPE, **choices}.items()]
    return config.compose(["preset=offline", f"data.max_per_class={max_per_class}", *paths, *overrides, "backbone=mobilenet_v2"])


def row(name: str, metrics: dict) -> str:
    field_known = f"{metrics['field_known_answered_right']:.3f}"
    neither = " | ".join(f"{metrics[f'val_neither_auroc_{s}']:.3f} / {metrics[f'field_three_way_accuracy_{s}']:.3f}" for s in SCORES)
    return (
        f"| {name} | {metrics['val_accuracy']:.3f} | {metrics['val_log_loss']:.3f} | {metrics['test_three_way_accuracy']:.3f} | "
        f"{metrics['field_accuracy']:.3f} | {field_known} | {metrics['field_neither_rate_on_other']:.3f} | "
        f"{metrics['field_three_way_accuracy']:.3f} | {neither} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-per-class", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        base = composed(root, {}, args.max_per_class)
        ingest.run(base)
        split.run(base)
        embedded, lines = set(), []
        for name, choices in ROWS.items():
            cfg = composed(root, choices, args.max_per_class)
            start = time.perf_counter()
            if cfg.augment.name not in embedded:  # the cache depends on the augmentation only, here
                embed.run(cfg)
                embedded = {cfg.augment.name}
            train.run(cfg)
            metrics = evaluate.run(cfg)
            lines.append(row(name, metrics))
            print(f"ablation: {name} in {time.perf_counter() - start:.0f} s (load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\nMobileNetV2, ImageNet weights; {args.max_per_class} images per folder; field: {metrics['field_images']:.0f} photos\n")
    print(
        "| row | val accuracy | val log loss | test three-way | field binary | field own class | field \"neither\" on other | "
        "field three-way (chosen score) | " + " | ".join(f"{s}: val AUROC / field three-way" for s in SCORES) + " |"
    )
    print("|" + " --- |" * (8 + len(SCORES)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
