"""data/airplane + data/automobile JPEGs -> wall time and test accuracy of backbone-in-the-loop training vs ours (embed once, train the head), and their ratio.

Run by hand from the repo root: `python benchmarks/bench_training.py [--images 100 --size 224 --epochs 10] [KEY=VALUE ...]`;
KEY=VALUE are config overrides for our side only (the original stays the plain float32 script).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np

from pipeline.config import backbone_spec, compose
from pipeline.embeddings import pooled
from pipeline.forward import embed, keras_forward
from pipeline.model import build_backbone, build_extractor, build_head
from pipeline.served.images import load_batch

ROOT = Path(__file__).resolve().parent.parent

CLASSES = ("airplane", "automobile")  # label 1 = automobile, as in the pipeline (classes[1] is positive)


def load(images_per_class: int, test_per_class: int, size: int):
    """The first N files of each class for training, the next ones for the test set (deterministic)."""
    train, test = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((ROOT / "data" / name).glob("*.jpg"))
        train += [(f, label) for f in files[:images_per_class]]
        test += [(f, label) for f in files[images_per_class : images_per_class + test_per_class]]
    rng = np.random.default_rng(0)
    train = [train[i] for i in rng.permutation(len(train))]  # mixed classes in every batch

    def as_arrays(pairs):
        return load_batch([p for p, _ in pairs], size), np.array([y for _, y in pairs], "float32")

    return as_arrays(train), as_arrays(test)


def sgd():
    # A typical original script's optimizer; both sides get the same one.
    return keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)


def original_head(features):
    """The original script's head, Flatten -> Dense 128 relu -> Dense 1 sigmoid, on a feature tensor."""
    x = keras.layers.Flatten()(features)
    x = keras.layers.Dense(128, activation="relu")(x)
    return keras.layers.Dense(1, activation="sigmoid")(x)


def original(extractor, x_train, y_train, x_test, y_test, epochs, batch_size):
    """The original approach: frozen backbone inside the model, so it runs on every image in every epoch."""
    start = time.perf_counter()
    keras.utils.set_random_seed(0)  # same head initialisation and batch order as "ours, original head"
    images = keras.Input(extractor.input_shape[1:])
    model = keras.Model(images, original_head(extractor(images)))
    model.compile(sgd(), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0)[1]
    return seconds, accuracy, {}


def ours(extractor, head_spec, extract_batch, x_train, y_train, x_test, y_test, epochs, batch_size):
    """Ours (pipeline.stages.embed + pipeline.stages.train without augmentation): the backbone runs once per image, the head trains on the embeddings.

    head_spec None trains the original head instead of ours (which standardises the features first):
    the same computation as the original approach, so its accuracy must match the original's.
    """
    start = time.perf_counter()
    pooling = head_spec.pooling if head_spec else "flatten"
    embeddings = pooled(embed(keras_forward(extractor), x_train, extract_batch), pooling)
    embedded = time.perf_counter()
    keras.utils.set_random_seed(0)
    if head_spec is None:
        features = keras.Input(embeddings.shape[1:])
        head = keras.Model(features, original_head(features))
    else:
        head = build_head(embeddings, head_spec, "probability")
    head.compile(sgd(), loss="binary_crossentropy", metrics=["accuracy"])
    head.fit(embeddings, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = head.evaluate(pooled(embed(keras_forward(extractor), x_test, extract_batch), pooling), y_test, batch_size=batch_size, verbose=0)[1]
    return seconds, accuracy, {"embed": embedded - start, "head": seconds - (embedded - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100, help="training images per class")
    parser.add_argument("--test", type=int, default=50, help="test images per class")
    parser.add_argument("--size", type=int, default=224, help="VGG16 input size (pixels per side)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("overrides", nargs="*", help="config overrides for our side, e.g. train.extract_batch_size=64")
    args = parser.parse_args()

    # The pipeline's own config: offline preset (random weights), the original Flatten -> Dense 128 head.
    base = ["preset=offline", "backbone=vgg16", "head=flatten_dense", f"backbones.vgg16.input_size={args.size}"]
    cfg = compose(base + args.overrides)
    spec = backbone_spec(cfg)
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = load(args.images, args.test, args.size)
    print(f"decoded {len(x_train)} train + {len(x_test)} test images at {args.size}px in {time.perf_counter() - start:.1f} s")

    # Both sides get the same frozen random weights, so their accuracies are comparable.
    extractors = {}
    for side, side_spec in (("ours", spec), ("original", backbone_spec(compose(base)))):
        keras.utils.set_random_seed(0)
        backbone = build_backbone(side_spec)
        backbone.trainable = False
        if extractors:  # the seed alone does not promise identical weights under another precision
            backbone.set_weights(extractors["ours"].get_layer(backbone.name).get_weights())
        extractors[side] = build_extractor(side_spec, backbone)
        backbone(x_train[:2].astype("float32"))  # warm-up (oneDNN kernels): neither side pays first-run costs

    data = (x_train, y_train, x_test, y_test)
    batches = (args.epochs, args.batch)
    results = {
        "ours": ours(extractors["ours"], cfg.head, cfg.train.extract_batch_size, *data, *batches),
        "ours, original head": ours(extractors["original"], None, cfg.train.extract_batch_size, *data, *batches),
        "original": original(extractors["original"], *data, *batches),
    }
    print(f"\nVGG16 {args.size}px random weights, {len(x_train)} train / {len(x_test)} test images, "
          f"{args.epochs} epochs, batch {args.batch}, SGD(1e-3, momentum 0.9); nproc {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}; overrides for ours: {args.overrides or 'none'}")
    for name, (seconds, accuracy, parts) in results.items():
        detail = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
        print(f"{name:20s} train {seconds:7.1f} s  test accuracy {accuracy:.3f}" + (f"  ({detail})" if detail else ""))
    speedup = results["original"][0] / results["ours"][0]
    print(f"speed-up original/ours: {speedup:.1f}x (target >= 12x)")


if __name__ == "__main__":
    main()
